"""The built wheel holds every module and config of the source tree (a plain `pip install .`, not only -e)."""

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _source_files():
    """Package files that must ship: every .py and configs/*.yaml under seqapps/ (caches excluded)."""
    files = [p for p in (ROOT / "seqapps").rglob("*") if p.is_file() and "__pycache__" not in p.parts]
    return sorted(
        p.relative_to(ROOT).as_posix()
        for p in files
        if p.suffix == ".py" or (p.suffix == ".yaml" and p.parent.name == "configs")
    )


def test_wheel_contains_every_module_and_config(tmp_path):
    pytest.importorskip("setuptools")
    src = tmp_path / "src"
    shutil.copytree(ROOT / "seqapps", src / "seqapps", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("setup.cfg", "pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "wheel",
        "--no-deps",
        "--no-build-isolation",
        "-q",
        "-w",
        str(tmp_path / "dist"),
        str(src),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    assert proc.returncode == 0, f"building the wheel failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
    (wheel,) = (tmp_path / "dist").glob("seqapps-*.whl")
    shipped = set(zipfile.ZipFile(wheel).namelist())
    expected = _source_files()
    assert "seqapps/translate/app.py" in expected and "seqapps/forecast/configs/weather.yaml" in expected
    missing = [f for f in expected if f not in shipped]
    assert not missing, f"the wheel lacks {missing}: a package folder without __init__.py, or package_data in setup.cfg"


def test_tfds_builders_prepare_without_a_missing_module():
    """`tfds:` specs download through a builder whose code_path needs importlib_resources, which
    tensorflow-datasets 4.9 does not install on Python >= 3.9 (tensorflow/datasets#11212); setup.cfg
    declares it. No network: only the step that raised ModuleNotFoundError is run."""
    tfds = pytest.importorskip("tensorflow_datasets")
    for name in ("imdb_reviews", "speech_commands", "ted_hrlr_translate"):
        assert Path(str(tfds.builder(name).code_path)).name.endswith(".py"), name
