import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import pytest  # noqa: E402

import seqapps  # noqa: E402,F401  (registers the custom classes)


@pytest.fixture(autouse=True)
def _seed_and_clear():
    keras.utils.set_random_seed(1234)
    yield
    # Without Python's full garbage collection (free_memory=True): with TensorFlow and JAX loaded it took
    # about 0.9 s after every test, 6 of the suite's 33 minutes; the collector still runs on its own.
    keras.backend.clear_session(free_memory=False)
