"""Shared fixtures. Figures are drawn headless."""

import os

os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import pytest

from fmnist_utils import data


@pytest.fixture(scope="session")
def fashion_mnist():
    """The four verified arrays, loaded once: ((x_train, y_train), (x_test, y_test))."""
    return data.load_data(verbose=False)


@pytest.fixture(autouse=True)
def float32_policy():
    """Every test starts and ends with Keras' default float32 policy (``start_run`` sets the machine's policy)."""
    import keras

    keras.mixed_precision.set_global_policy("float32")
    yield
    keras.mixed_precision.set_global_policy("float32")
