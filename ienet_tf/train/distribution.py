"""Distributed training: what a run records about its strategy, and how the workers of a
`MultiWorkerMirroredStrategy` cluster share one run directory (docs/distributed.md).

Every worker runs the same `train()` on the same config and `--run`. Their saves and
evaluations are collective operations (reading a BatchNorm moving statistic or a metric
all-reduces it over the workers), so every worker must save exactly when the chief does:
the chief trains the run directory itself, every other worker a private copy of it in a
temporary directory that is removed at the end (the TensorFlow multi-worker guide's rule:
non-chief workers write to a temporary place). Before anything else the workers compare
their config and the state of the run they see (`agree`): a worker given another config, or
one that sees another state of `--run` (no shared storage), is one line on every worker, not
a hang or a mixed run. A worker that dies makes the collectives of the others fail
(`lost_worker`): one line, and the directory keeps its committed epochs.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import tensorflow as tf

from ienet_tf.errors import RunError
from ienet_tf.io import one_line
from ienet_tf.runs import Run

__all__ = ["Worker", "agree", "describe", "lost_worker", "private_copy", "worker"]

#: The jobs whose tasks train (an "evaluator" or "ps" task holds no replica).
_TRAINING_JOBS = ("chief", "worker")


@dataclasses.dataclass(frozen=True)
class Worker:
    """This process's task in a multi-worker cluster of `count` training tasks."""

    task: str  # "chief" or "worker"
    index: int
    count: int
    chief: bool  # the task that writes the run directory

    @property
    def name(self) -> str:
        return f"{self.task} {self.index}"


def _tasks(strategy: tf.distribute.Strategy) -> list[tuple[str, int]]:
    """The training tasks of the strategy's cluster in replica order (chief first)."""
    spec = strategy.cluster_resolver.cluster_spec()
    jobs = [job for job in _TRAINING_JOBS if job in spec.jobs]
    return [(job, index) for job in jobs for index in spec.task_indices(job)]


def worker(strategy: tf.distribute.Strategy) -> Worker | None:
    """This process's place in a cluster of several workers; None when it trains alone
    (any strategy but `MultiWorkerMirroredStrategy`, or one without a TF_CONFIG cluster)."""
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return None
    resolver = strategy.cluster_resolver
    tasks = _tasks(strategy)
    if len(tasks) < 2 or resolver.task_type is None:
        return None
    return Worker(
        resolver.task_type, int(resolver.task_id), len(tasks), strategy.extended.should_checkpoint
    )


#: The public names of the strategies (some are aliases of private classes).
_PUBLIC_NAMES = (
    ("MultiWorkerMirroredStrategy", tf.distribute.MultiWorkerMirroredStrategy),
    ("MirroredStrategy", tf.distribute.MirroredStrategy),
    ("TPUStrategy", tf.distribute.TPUStrategy),
    ("OneDeviceStrategy", tf.distribute.OneDeviceStrategy),
)


def _name(strategy: tf.distribute.Strategy) -> str:
    """The strategy's public class name ("default" for TensorFlow's default strategy)."""
    for name, kind in _PUBLIC_NAMES:
        if isinstance(strategy, kind):
            return name
    name = type(strategy).__name__.lstrip("_")
    return "default" if name == "DefaultDistributionStrategy" else name


def _devices(strategy: tf.distribute.Strategy) -> list[str]:
    """The devices of all replicas. The default strategy runs on the first GPU, else the
    CPU; a multi-worker strategy knows only its own task's devices, and every task has as
    many (TensorFlow's rule), so the others are named after them."""
    if _name(strategy) == "default":  # it has no device list of its own
        kind = "GPU" if tf.config.list_logical_devices("GPU") else "CPU"
        return [f"/job:localhost/replica:0/task:0/device:{kind}:0"]
    local = list(strategy.extended.worker_devices)
    if worker(strategy) is None:
        return local
    return [
        tf.DeviceSpec.from_string(device).replace(job=job, task=index).to_string()
        for job, index in _tasks(strategy)
        for device in local
    ]


def describe(strategy: tf.distribute.Strategy) -> dict:
    """The record of how a run trains (metrics.json's and state.json's `distribution`):
    the strategy's class, its replicas (`num_replicas_in_sync`) and their devices, and in
    a cluster the number of workers and the task that wrote the record."""
    record = {
        "strategy": _name(strategy),
        "replicas": int(strategy.num_replicas_in_sync),
        "devices": _devices(strategy),
    }
    here = worker(strategy)
    if here is not None:
        record.update(workers=here.count, task=f"{here.task}:{here.index}")
    return record


def _fingerprint(*parts: bytes) -> int:
    """52 bits of the SHA-256 of `parts`: an int64 that every collective carries exactly."""
    digest = hashlib.sha256()
    for part in parts:
        digest.update(hashlib.sha256(part).digest())
    return int(digest.hexdigest()[:13], 16)


def _epochs_done(record: bytes) -> int:
    """The committed epochs a state.json names (-1: no run); a damaged record is the
    trainer's to name, after the workers agree that they see the same one."""
    try:
        return int(json.loads(record)["epochs_done"]) if record else -1
    except (ValueError, TypeError, KeyError):
        return -1


def agree(strategy: tf.distribute.Strategy, config_text: str, run: Run) -> None:
    """Compare, over all workers, the config each was given and the committed state of the
    run each sees (the bytes of its state.json and metrics.json; a non-chief's `run` is its
    private copy); a `RunError` on every worker if one differs. The first collective of a
    training: every worker reaches it."""
    records = (run.state_path, run.metrics_path)
    state, metrics = (path.read_bytes() if path.is_file() else b"" for path in records)
    mine = [_fingerprint(config_text.encode()), _fingerprint(state, metrics), _epochs_done(state)]

    @tf.function
    def gather():
        values = tf.constant([mine], tf.int64)
        return tf.distribute.get_replica_context().all_gather(values, axis=0)

    rows = strategy.experimental_local_results(strategy.run(gather))[0].numpy().tolist()
    per_task = len(rows) // len(_tasks(strategy))
    tasks = [f"{job} {index}" for job, index in _tasks(strategy)]
    seen = {tasks[i // per_task]: row for i, row in enumerate(rows)}
    chief, first = tasks[0], rows[0]
    for task, row in seen.items():
        if row[0] != first[0]:
            raise RunError(
                f"{task} was given another config than {chief}: start every worker with the "
                "same command (the same config and --set options)."
            )
        if row[1] != first[1]:
            raise RunError(
                f"{task} sees another state of its --run than {chief} ({_committed(row[2])}, "
                f"not {_committed(first[2])}): every worker must pass the same "
                "--run on storage all of them read (a shared file system); see "
                "docs/distributed.md."
            )


def _committed(epochs: int) -> str:
    if epochs < 0:
        return "no run"
    return f"{epochs} epoch{'' if epochs == 1 else 's'} committed"


@contextlib.contextmanager
def private_copy(run: Run, here: Worker) -> Iterator[Run]:
    """A copy of `run`'s own files (the records, the models, the resume checkpoint; not
    its TensorBoard logs) in a new temporary directory, for a non-chief worker to train
    exactly as the chief trains `run`; removed when the block ends."""
    folder = Path(tempfile.mkdtemp(prefix=f"ienet-{here.task}{here.index}-"))
    try:
        for name in sorted(run.own_files - {".lock"}):
            source = run.path / name
            if source.is_file() and not source.is_symlink():
                (folder / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(source, folder / name)
        if run.resume_dir.is_dir() and not run.resume_dir.is_symlink():
            shutil.copytree(run.resume_dir, folder / "resume", symlinks=True)
        yield Run(folder)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


#: How TensorFlow reports collectives aborted because a peer died or stopped answering.
_PEER_ERRORS = (
    tf.errors.UnavailableError,
    tf.errors.DeadlineExceededError,
    tf.errors.AbortedError,
    tf.errors.CancelledError,
)
_TASK = re.compile(r"/job:(\w+)/(?:replica:\d+/)?task:(\d+)")


def lost_worker(error: BaseException, here: Worker, shown: Path) -> RunError | None:
    """The one-line error for a collective that failed because another worker died or
    stopped answering (None if `error` is something else)."""
    if not isinstance(error, _PEER_ERRORS):
        return None
    text = str(error)
    cause = text.split("aborted by: ", 1)[-1]  # the collective's own reason, if it says
    task = _TASK.search(cause)
    who = "another worker" if task is None else f"{task[1]} {task[2]}"
    reason = cause.strip().splitlines()[0] if cause.strip() else type(error).__name__
    reason = re.sub(r"^Error reported from \S+: ", "", reason).split(". This indicates")[0]
    reason = _TASK.sub(lambda m: f"{m[1]} {m[2]}", reason).removeprefix(f"Task {who} ")
    return RunError(
        f"{here.name} lost contact with {who} of the {here.count}-worker cluster "
        f"({one_line(reason, 120)}); {shown} keeps the epochs committed before: start every "
        "worker again with the same command to resume."
    )
