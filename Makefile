# seqapps — every target creates .venv and installs the project into it when needed.
#   make test              the test suite (what CI runs)
#   make train-translate   the main job: trains on the offline embedded corpus, prints BLEU, exports
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
APPS := translate sentiment speech forecast
OUT =
CONFIG =
DATA =
MODEL =
ARGS =

.PHONY: help install test test-fast lint format bench clean adding notebooks $(addprefix train-,$(APPS)) $(addprefix export-,$(APPS)) $(addprefix evaluate-,$(APPS))

help:  ## list the targets
	@grep -E '^[a-zA-Z0-9_%-]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{printf "%-16s %s\n", $$1, $$2}'
	@echo "train-APP / evaluate-APP / export-APP for APP in: $(APPS)"
	@echo "variables: CONFIG=file.yaml DATA=spec OUT=dir MODEL=dir ARGS='--set key=value ...'"

# setup.cfg's python_requires (Keras >= 3.13 has no wheels for older Pythons), checked on the interpreter
# that .venv has or will get, before anything is installed
PY_MIN ?= 3.11
PY_CHECK = import sys; have = sys.version_info[:2]; need = tuple(map(int, "$(PY_MIN)".split("."))); \
	sys.exit(0 if have >= need else f"seqapps needs Python >= $(PY_MIN); {sys.executable} is {have[0]}.{have[1]}: \
	rerun with PYTHON=python$(PY_MIN) or newer (delete $(VENV) first if it was made with this one)")

$(STAMP): setup.cfg pyproject.toml
	@$$(test -x $(PY) && echo $(PY) || echo $(PYTHON)) -c '$(PY_CHECK)'
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev,offline]"
	@touch $(STAMP)

install: $(STAMP)  ## create .venv and install the project (with dev and offline-data extras)

# test processes for make test: each test file runs whole in one of them (its module fixtures are built once)
TEST_JOBS ?= 2

PYTEST = $(PY) -m pytest -q -n $(TEST_JOBS) --dist loadfile

test: $(STAMP)  ## run the test suite (TEST_JOBS=2 processes)
	$(PYTEST)

test-fast: $(STAMP)  ## the test suite without the slow end-to-end runs
	$(PYTEST) -m "not slow"

lint: $(STAMP)  ## ruff lint and format check
	$(VENV)/bin/ruff check seqapps tests
	$(VENV)/bin/ruff format --check seqapps tests

format: $(STAMP)  ## ruff format
	$(VENV)/bin/ruff format seqapps tests
	$(VENV)/bin/ruff check --fix seqapps tests

bench: $(STAMP)  ## benchmarks: custom cells vs Keras built-ins, shipped models (writes bench/results.md)
	$(PY) -m seqapps bench all

notebooks: $(STAMP)  ## re-execute notebooks/*.ipynb against the shipped models in trained/, storing their outputs
	$(PY) -m tests.notebooks_util

adding: $(STAMP)  ## the adding problem (long-range memory) for RNN/LSTM/GRU, with gradient-norm plot
	$(PY) -m seqapps.experiments.adding $(ARGS)

$(addprefix train-,$(APPS)): train-%: $(STAMP)  ## train APP (CONFIG=, DATA=, OUT=, ARGS=)
	$(PY) -m seqapps train $* $(if $(CONFIG),--config "$(CONFIG)") $(if $(DATA),--data "$(DATA)") $(if $(OUT),--out "$(OUT)") $(ARGS)

$(addprefix evaluate-,$(APPS)): evaluate-%: $(STAMP)  ## evaluate APP (MODEL=, DATA=)
	$(PY) -m seqapps evaluate $* $(if $(MODEL),--model "$(MODEL)") $(if $(DATA),--data "$(DATA)") $(ARGS)

$(addprefix export-,$(APPS)): export-%: $(STAMP)  ## export APP to SavedModel + TFLite (MODEL=, OUT=, ARGS=)
	$(PY) -m seqapps export $* $(if $(MODEL),--model "$(MODEL)") $(if $(OUT),--out "$(OUT)") $(ARGS)

clean:  ## remove runs/ and caches (keeps .venv and trained/)
	rm -rf runs .pytest_cache .ruff_cache
