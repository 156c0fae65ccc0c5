import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import gc

import numpy as np
import pytest
import tensorflow as tf
from hypothesis import HealthCheck, settings

from ienet_tf import compat

# Hypothesis profiles: `ci` (the default) keeps the suite's time bounded and its examples
# the same on every run; `--hypothesis-profile=long` explores, for local runs (the fault
# harness, tests/test_fault_harness.py, above all). Tests that set their own
# `max_examples` keep it.
settings.register_profile(
    "ci",
    max_examples=3,
    stateful_step_count=8,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile(
    "long",
    max_examples=200,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.load_profile("ci")


def pytest_runtest_logfinish(nodeid, location):
    """With IENET_RSS_LOG=FILE, append each test's resident memory after it ran (MB): the
    suite's memory profile, to find what keeps memory alive between tests."""
    path = os.environ.get("IENET_RSS_LOG")
    if path:
        import psutil

        rss = psutil.Process().memory_info().rss / 2**20
        with open(path, "a") as log:
            log.write(f"{rss:.0f}\t{nodeid}\n")


@pytest.fixture(autouse=True)
def _seeded():
    """Every test starts from the same seeds and a fresh Keras name space, and leaves
    nothing behind: TF keeps every graph a custom gradient (larq's quantizers, ours) was
    traced in, with its variables, until `forget_custom_gradients` (see ienet_tf.compat)."""
    tf.keras.backend.clear_session()
    tf.keras.utils.set_random_seed(1234)
    yield
    tf.keras.backend.clear_session()
    compat.forget_custom_gradients()
    gc.collect()


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """A finished `ienet train` run of the demo config: 1 epoch on 128 digits."""
    from ienet_tf.cli import main

    run = tmp_path_factory.mktemp("tiny_run")
    argv = [
        "train",
        "--config",
        "configs/digits_convnet_ienet.yaml",
        "--run",
        str(run),
        "--verbose",
        "0",
        "--set",
        "train.epochs=1",
        "--set",
        "data.subset=128",
    ]
    assert main(argv) == 0
    return run


@pytest.fixture
def verify_calls(monkeypatch):
    """How many times `export.flatbuffer.verify` runs (the parse cache starts empty)."""
    from ienet_tf.export import flatbuffer

    calls = []
    real = flatbuffer.verify
    monkeypatch.setattr(flatbuffer, "verify", lambda *a, **k: calls.append(1) or real(*a, **k))
    flatbuffer._verified_graph.cache_clear()
    return calls
