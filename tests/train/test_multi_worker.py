"""`train.strategy: multi_worker` for real: `ienet train` workers as processes on this machine,
a `TF_CONFIG` cluster on free 127.0.0.1 ports (docs/distributed.md).

Every worker process has a hard time limit and is killed (SIGKILL: TensorFlow's preemption
notifier catches SIGTERM in a multi-worker process) when a test ends, so a cluster that hangs
fails its test instead of the suite.
"""

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import tensorflow as tf

from ienet_tf import config as config_lib
from ienet_tf.runs import Run
from ienet_tf.train import train

DEMO = "configs/digits_convnet_ienet.yaml"
SMALL = ["data.subset=128", "data.test_subset=64", "train.batch_size=32"]
#: The hard limit of one worker process, start-up included (seconds).
WORKER_TIMEOUT = 180

pytestmark = pytest.mark.slow


def _free_ports(count: int) -> list[int]:
    """`count` distinct ports that are free now (bound at once to port 0, then released)."""
    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(count)]
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]


def _overrides(epochs: int) -> list[str]:
    return [*SMALL, f"train.epochs={epochs}", "train.strategy=multi_worker"]


class Cluster:
    """`ienet train` workers, one process each, worker i training into `runs[i]`; each has
    its own temporary directory (where a non-chief keeps its private copy of the run) and
    its stdout and stderr in files."""

    def __init__(self, tmp_path: Path, runs: list[Path], epochs: int):
        ports = _free_ports(len(runs))
        cluster = {"worker": [f"127.0.0.1:{port}" for port in ports]}
        self.tmp_path, self.processes = tmp_path, []
        for index, run in enumerate(runs):
            temporary = self.temporary(index)
            temporary.mkdir()
            task = {"cluster": cluster, "task": {"type": "worker", "index": index}}
            env = {
                **os.environ,
                "TF_CONFIG": json.dumps(task),
                "TMPDIR": str(temporary),
                "TF_CPP_MIN_LOG_LEVEL": "2",  # what the CLI sets
            }
            argv = ["train", "--config", DEMO, "--run", str(run), "--verbose", "0"]
            argv += [a for o in _overrides(epochs) for a in ("--set", o)]
            with (
                self.output(index, "out").open("w") as out,
                self.output(index, "err").open("w") as err,
            ):
                self.processes.append(
                    subprocess.Popen(
                        [sys.executable, "-m", "ienet_tf", *argv], stdout=out, stderr=err, env=env
                    )
                )
        self.deadline = time.monotonic() + WORKER_TIMEOUT

    def temporary(self, index: int) -> Path:
        return self.tmp_path / f"worker{index}-tmp"

    def output(self, index: int, stream: str) -> Path:
        return self.tmp_path / f"worker{index}.{stream}"

    def wait(self, index: int) -> int:
        """Worker `index`'s exit code (the test fails if it outlives its time limit)."""
        try:
            return self.processes[index].wait(max(self.deadline - time.monotonic(), 0))
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(f"worker {index} ran past {WORKER_TIMEOUT} s: {self.tail(index)}")

    def tail(self, index: int) -> str:
        return self.output(index, "err").read_text()[-3000:]

    def kill(self, index: int | None = None) -> None:
        for process in self.processes if index is None else [self.processes[index]]:
            if process.poll() is None:
                process.kill()
                process.wait()

    def private_copies(self, index: int) -> list[str]:
        """The private run copies a worker left in its temporary directory."""
        return [p.name for p in self.temporary(index).glob("ienet-*")]


@pytest.fixture
def cluster(tmp_path):
    clusters = []

    def start(runs, epochs):
        clusters.append(Cluster(tmp_path, runs, epochs))
        return clusters[-1]

    yield start
    for started in clusters:  # whatever the test did: no worker outlives it
        started.kill()


def _files(path: Path) -> set[str]:
    """A run's files, its TensorBoard event files by folder (their names hold a host name
    and a time)."""
    names = set()
    for file in path.rglob("*"):
        if file.is_file():
            relative = file.relative_to(path).as_posix()
            if ".tfevents." in file.name:
                relative = f"{file.parent.relative_to(path).as_posix()}/<events>"
            names.add(relative)
    return names


def test_two_workers_train_one_run_with_the_files_of_one_worker(tmp_path, cluster):
    run = tmp_path / "run"
    workers = cluster([run, run], epochs=1)
    for index in (0, 1):
        assert workers.wait(index) == 0, workers.tail(index)
        summary = workers.output(index, "out").read_text()
        assert f"{run}: complete; test top-1" in summary
    metrics = Run(run).metrics()
    assert metrics["completed"] and metrics["replicas"] == 2
    assert metrics["distribution"] == {
        "strategy": "MultiWorkerMirroredStrategy",
        "replicas": 2,
        "devices": [f"/job:worker/replica:0/task:{i}/device:CPU:0" for i in (0, 1)],
        "workers": 2,
        "task": "worker:0",
    }
    assert Run(run).state()["distribution"] == metrics["distribution"]
    # Only the chief wrote: the non-chief's private copy is gone, and nothing of it is
    # in the run.
    assert workers.private_copies(1) == [] and workers.private_copies(0) == []
    single = tmp_path / "single"
    config = config_lib.load(DEMO, [*SMALL, "train.epochs=1"])
    reference = train(config, single, verbose=0)
    assert reference["replicas"] == 1 and reference["distribution"]["strategy"] == "default"
    assert _files(run) == _files(single)
    assert metrics.keys() == reference.keys()


def test_a_killed_worker_is_one_line_on_the_other_and_the_run_resumes(tmp_path, cluster, caplog):
    run, epochs = tmp_path / "run", 6
    workers = cluster([run, run], epochs=epochs)
    history = run / "history.csv"
    while workers.processes[0].poll() is None and time.monotonic() < workers.deadline:
        if history.is_file() and len(history.read_text().splitlines()) >= 2:
            break  # the chief committed epoch 0
        time.sleep(0.05)
    killed = time.monotonic()
    workers.kill(1)
    assert workers.wait(0) == 2, workers.tail(0)
    detected = time.monotonic() - killed
    lines = workers.tail(0).strip().splitlines()
    assert lines[-1].startswith(
        "ienet train: error: worker 0 lost contact with worker 1 of the 2-worker cluster "
        "(heartbeat timeout)"
    ), lines[-1]
    assert f"{run} keeps the epochs committed before" in lines[-1]
    assert "Traceback" not in workers.tail(0)
    assert [line for line in lines if line.startswith("ienet ")] == lines[-1:]
    assert detected < 60  # TensorFlow's coordination service: a 10 s heartbeat timeout
    state = Run(run).state()
    done = state["epochs_done"]
    assert 1 <= done < epochs and not Run(run).is_complete()
    assert state["distribution"]["replicas"] == 2

    # The same config on one process resumes the run: here from Python, under the default
    # strategy, which overrides train.strategy (and says so).
    config = config_lib.load(DEMO, _overrides(epochs))
    with caplog.at_level("WARNING", logger="ienet_tf"):
        metrics = train(config, run, verbose=0, strategy=tf.distribute.get_strategy())
    assert "overrides train.strategy 'multi_worker'" in caplog.text
    assert metrics["completed"] and metrics["invocations"] == 2
    assert metrics["epochs_this_invocation"] == epochs - done
    assert metrics["replicas"] == 1 and metrics["distribution"]["strategy"] == "default"


def test_workers_that_see_different_runs_say_so_on_every_worker(tmp_path, cluster, monkeypatch):
    """No shared storage: worker 1's --run is not the chief's. The chief would resume at
    epoch 1 and worker 1 start at epoch 0, their collectives out of step."""
    from ienet_tf.train import trainer

    end = trainer._EpochCommit.on_epoch_end

    def stop_after_first(self, epoch, logs=None):
        end(self, epoch, logs)
        raise KeyboardInterrupt

    run = tmp_path / "run"
    default = tf.distribute.get_strategy()  # no MultiWorkerMirroredStrategy in pytest's process
    with monkeypatch.context() as patch, pytest.raises(KeyboardInterrupt):
        patch.setattr(trainer._EpochCommit, "on_epoch_end", stop_after_first)
        train(config_lib.load(DEMO, _overrides(2)), run, verbose=0, strategy=default)
    workers = cluster([run, tmp_path / "elsewhere"], epochs=2)
    for index in (0, 1):
        assert workers.wait(index) == 2, workers.tail(index)
        line = workers.tail(index).strip().splitlines()[-1]
        assert line.startswith(
            "ienet train: error: worker 1 sees another state of its --run than worker 0 "
            "(no run, not 1 epoch committed)"
        ), line
        assert "storage all of them read" in line
    assert workers.private_copies(1) == []
    assert not (tmp_path / "elsewhere").exists()
    assert Run(run).state()["epochs_done"] == 1  # untouched
