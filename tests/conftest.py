import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest
import tensorflow as tf


@pytest.fixture(autouse=True)
def _seeded():
    """Every test starts from the same seeds and a fresh Keras name space."""
    tf.keras.backend.clear_session()
    tf.keras.utils.set_random_seed(1234)
    yield


@pytest.fixture
def rng():
    return np.random.default_rng(1234)
