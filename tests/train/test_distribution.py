"""What a run records about its `tf.distribute` strategy, a strategy passed from Python, and
the one-line errors of a cluster that lost a worker (the cluster itself:
test_multi_worker.py)."""

import logging
from pathlib import Path

import pytest
import tensorflow as tf

from ienet_tf import config as config_lib
from ienet_tf.runs import Run
from ienet_tf.train import distribution, make_strategy, train

DEMO = Path("configs/digits_convnet_ienet.yaml")
CPU = "/job:localhost/replica:0/task:0/device:CPU:0"


def test_a_mirrored_strategy_on_one_device_says_so_in_one_line(caplog):
    with caplog.at_level(logging.WARNING, logger="ienet_tf"):
        strategy = make_strategy("mirrored")
    assert [r.getMessage() for r in caplog.records] == [
        "mirrored strategy found 1 device: training on one replica"
    ]
    assert distribution.describe(strategy) == {
        "strategy": "MirroredStrategy",
        "replicas": 1,
        "devices": [CPU],
    }
    default = make_strategy("default")
    assert distribution.describe(default) == {
        "strategy": "default",
        "replicas": 1,
        "devices": [CPU],
    }
    assert distribution.worker(default) is None and distribution.worker(strategy) is None


def test_a_strategy_from_python_wins_over_the_config_and_is_recorded(tmp_path, caplog):
    # A config naming a TPU trains under the strategy given: no TPU is looked for.
    overrides = ["data.subset=64", "data.test_subset=32", "train.epochs=1"]
    config = config_lib.load(DEMO, [*overrides, "train.strategy=tpu"])
    with caplog.at_level(logging.WARNING, logger="ienet_tf"):
        metrics = train(config, tmp_path, verbose=0, strategy=tf.distribute.MirroredStrategy())
    assert "train(strategy=MirroredStrategy) overrides train.strategy 'tpu'" in caplog.text
    expected = {"strategy": "MirroredStrategy", "replicas": 1, "devices": [CPU]}
    assert metrics["replicas"] == 1 and metrics["distribution"] == expected
    assert Run(tmp_path).metrics() == metrics
    assert Run(tmp_path).state()["distribution"] == expected
    with pytest.raises(ValueError, match=r"strategy must be a tf\.distribute\.Strategy, got 'tpu'"):
        train(config, tmp_path / "other", strategy="tpu")
    assert not (tmp_path / "other").exists()


HEARTBEAT = (
    "Graph execution error:\n\nDetected at node CollectiveReduceV2 defined at (most recent "
    'call last):\n  File "train.py", line 13, in <module>\n\nCollective ops is aborted by: '
    "Error reported from /job:worker/task:1: Task /job:worker/replica:0/task:1 heartbeat "
    "timeout. This indicates that the remote task has failed, got preempted, or crashed "
    "unexpectedly. Check the task logs for an earlier error to debug further.\nThe error "
    "could be from a previous operation. Restart your program to reset.\n\t [[{{node "
    "CollectiveReduceV2}}]] [Op:__inference_step_31]"
)
RESET = (
    "Graph execution error:\n\nDetected at node CollectiveReduceV2 defined at (most recent "
    'call last):\n  File "train.py", line 13, in <module>\n\nCollective ops is aborted by: '
    "Connection reset by peer\nAdditional GRPC error information from remote target "
    "/job:worker/replica:0/task:0 while calling /tensorflow.WorkerService/CompleteInstance:\n"
    ':{"grpc_message":"Connection reset by peer","grpc_status":14}\nThe error could be from '
    "a previous operation. Restart your program to reset."
)


@pytest.mark.parametrize(
    "here, message, expected",
    [
        # What TensorFlow 2.15 said, measured: the chief when worker 1 was killed (its
        # coordination service misses the heartbeats), worker 1 when the chief was.
        (
            distribution.Worker("worker", 0, 2, True),
            HEARTBEAT,
            "worker 1 of the 2-worker cluster (heartbeat timeout)",
        ),
        (
            distribution.Worker("worker", 1, 2, False),
            RESET,
            "worker 0 of the 2-worker cluster (Connection reset by peer)",
        ),
    ],
)
def test_a_lost_worker_is_one_line_naming_it(here, message, expected):
    error = distribution.lost_worker(
        tf.errors.UnavailableError(None, None, message), here, Path("runs/x")
    )
    text = str(error)
    assert text.startswith(f"{here.name} lost contact with {expected}; runs/x keeps the epochs")
    assert "\n" not in text and "File " not in text
    assert distribution.lost_worker(ValueError("a bug"), here, Path("runs/x")) is None
