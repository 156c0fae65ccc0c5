"""The directories the commands write: one owner each for their layout, state and lock.

`Run`, the run directory of `ienet train`:

    config.yaml              the resolved config (a rerun must match it)
    state.json               the committed training state: epochs done, history rows, best
                             score and epoch, artefact SHA-256s, wall time (the commit point)
    resume/epoch-NNNN/       the training checkpoint (weights + optimizer) of the last epoch
    checkpoints/last.keras   the model after the last finished epoch
    checkpoints/best.keras   the model of the best epoch by the monitored score
    history.csv              the history rows of state.json (rendered from it)
    model.keras              the final model;     metrics.json  the final metrics (complete)
    tensorboard/             TensorBoard logs

Every file is written to a temporary name and renamed. An epoch is committed by renaming
`state.json`, which records the SHA-256 of every artefact of that epoch: artefacts written
before the commit wait under a pending name (`checkpoints/.pending-best.keras`) and are
renamed after it. A crash at any moment leaves either the old committed state or the new
one; `recover()` (run under the lock before training) rolls pending artefacts forward when
the committed state names them, and deletes everything else that no commit names. Readers
(`Run.model`) verify the SHA-256 of what they load against the state.

```python
from ienet_tf.runs import Run

run = Run("runs/demo")
run.config().model.variant, run.metrics()["test_accuracy"]
model = run.model("best")  # verified against state.json
```

A directory is written by one process at a time: `Run.lock()` takes an exclusive `flock`
on `.lock`, which the kernel releases when the holder dies (a stale lock is no lock).
`Search` is the output directory of `ienet tune`, locked the same way (`hold`).
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from ienet_tf.errors import RunError, RunLockedError
from ienet_tf.io import LockHeld, exclusive_lock, plain_mode, write_atomically

__all__ = ["MODEL_FILES", "Run", "Search", "hold", "sha256"]

#: `which` -> the model file of a run, relative to its directory.
MODEL_FILES = {
    "final": "model.keras",
    "best": "checkpoints/best.keras",
    "last": "checkpoints/last.keras",
    "int8": "model_int8.keras",  # the int8 QAT model (config export.int8)
}
_PENDING = {which: f"checkpoints/.pending-{which}.keras" for which in MODEL_FILES}
_PENDING["final"] = ".pending-model.keras"
_PENDING["int8"] = ".pending-model_int8.keras"
STATE_VERSION = 1
#: The run's own files and folders besides its models (relative paths).
_OWN_FILES = frozenset(
    {*MODEL_FILES.values(), "config.yaml", "state.json", "metrics.json", "history.csv", ".lock"}
)
_OWN_FOLDERS = ("resume/", "tensorboard/")


def sha256(path: str | os.PathLike) -> str:
    """The hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError, UnicodeDecodeError) as error:
        raise RunError(f"{path} is unreadable or corrupt ({error}).") from None


class _Entry:
    """One entry of a directory's layout, read as `obj.path / name`: the layout is a list
    of names, declared once per class."""

    def __init__(self, name: str):
        self.name = name

    def __get__(self, obj: _Directory | None, owner: type | None = None) -> Path:
        if obj is None:
            return Path(self.name)  # on the class: the relative name
        return obj.path / self.name


class _Directory:
    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.path)!r})"


class Run(_Directory):
    """The run directory `path` of `ienet train` (see the module docstring)."""

    # -- layout -------------------------------------------------------------------------
    config_path = _Entry("config.yaml")
    state_path = _Entry("state.json")
    metrics_path = _Entry("metrics.json")
    history_path = _Entry("history.csv")
    tensorboard_dir = _Entry("tensorboard")
    resume_dir = _Entry("resume")

    def model_path(self, which: str = "final") -> Path:
        """Where the `final`, `best` or `last` model of the run is (whether or not it
        exists yet)."""
        if which not in MODEL_FILES:
            raise RunError(f"unknown model {which!r}; choose one of {list(MODEL_FILES)}.")
        return self.path / MODEL_FILES[which]

    @classmethod
    def enclosing(cls, path: str | os.PathLike) -> Run | None:
        """The nearest run directory above `path` (a folder with config.yaml and state.json
        or metrics.json), or None."""
        for folder in Path(path).parents:
            run = cls(folder)
            if run.exists() and (run.state_path.is_file() or run.metrics_path.is_file()):
                return run
        return None

    def owns(self, path: str | os.PathLike) -> bool:
        """Whether `path` (inside the directory) is one of the run's own files, which only
        `ienet train` may write: its models (also pending), metadata, resume/ and
        tensorboard/."""
        relative = Path(path).relative_to(self.path).as_posix()
        return (
            relative in _OWN_FILES
            or relative.startswith(_OWN_FOLDERS)
            or Path(path).name.startswith(".pending-")
        )

    # -- reading ------------------------------------------------------------------------
    def exists(self) -> bool:
        """Whether the directory holds a run (its config.yaml)."""
        return self.config_path.is_file()

    def _require(self) -> None:
        if not self.path.is_dir():
            raise RunError(
                f"run directory {self.path} does not exist; pass the --run of an `ienet train`."
            )
        if not self.exists():
            raise RunError(
                f"{self.path} is not an `ienet train` run directory (no config.yaml); "
                "pass the --run of an `ienet train`."
            )

    def config(self, schema=None):
        """The run's validated config."""
        from ienet_tf import config as config_lib

        self._require()
        return config_lib.load(self.config_path, schema=schema or config_lib.Config)

    def state(self) -> dict | None:
        """The committed training state (None before the first epoch is committed)."""
        return _read_json(self.state_path)

    def metrics(self) -> dict | None:
        """The final metrics (None until the run is complete)."""
        return _read_json(self.metrics_path)

    def is_complete(self) -> bool:
        metrics = self.metrics()
        return bool(metrics and metrics.get("completed"))

    def history(self) -> list[dict]:
        """One row per committed epoch (epoch, lr, iee_q, loss, accuracy, val_*, time_s)."""
        state = self.state()
        return list(state["history"]) if state else []

    def latest(self) -> str:
        """The model a command reads by default: `final` once the run is complete, else
        `last` (the latest committed epoch, or imported weights)."""
        return "final" if self.is_complete() else "last"

    def artefacts(self) -> dict[str, str]:
        """Committed artefact -> SHA-256 (relative paths), from metrics.json and state.json."""
        found = {}
        for record in (self.state(), self.metrics()):
            if record:
                found.update(record.get("artefacts", {}))
        return found

    def checkpoints(self) -> dict[str, Path]:
        """`which` -> path of every committed model of the run (`final`, `best`, `last`)."""
        artefacts = self.artefacts()
        return {which: self.path / name for which, name in MODEL_FILES.items() if name in artefacts}

    def verified_model_path(self, which: str = "final") -> Path:
        """The committed file of model `which`, its SHA-256 checked against the run's
        metadata; a `RunError` naming the problem otherwise."""
        self._require()
        name = MODEL_FILES.get(which)
        path = self.model_path(which)
        expected = self.artefacts().get(name)
        if expected is None:
            if path.exists() and not self.state_path.exists():
                return path  # a run written before state.json existed: nothing to verify
            hint = "the run has not finished" if which == "final" else "no epoch has finished"
            raise RunError(f"{path} does not exist ({hint}).")
        pending = self.path / _PENDING[which]
        for candidate in (path, pending):  # a committed artefact may still wait pending
            if candidate.is_file() and sha256(candidate) == expected:
                return candidate
        raise RunError(
            f"{path} does not match the SHA-256 recorded in {self.path.name}'s metadata "
            "(changed or damaged since it was written); rerun `ienet train` on the directory "
            "to restore its checkpoints, or train again."
        )

    def model(self, which: str = "final"):
        """Load model `which` (verified, see `verified_model_path`), uncompiled."""
        from ienet_tf.io import load_keras_model

        return load_keras_model(self.verified_model_path(which))

    # -- writing (under `lock()`) --------------------------------------------------------
    def lock(self) -> contextlib.AbstractContextManager[None]:
        """Hold the directory for this process, or fail at once naming the holder."""
        return hold(self.path, "use another --run")

    def write_config(self, config) -> None:
        from ienet_tf import config as config_lib

        write_atomically(self.config_path, config_lib.dump(config))

    def recover(self) -> None:
        """Bring the directory to its last committed state: roll committed pending
        artefacts forward, delete uncommitted ones, temporary files and resume
        checkpoints that the state does not name."""
        artefacts = self.artefacts()
        for which, pending_name in _PENDING.items():
            pending = self.path / pending_name
            if not pending.exists():
                continue
            if artefacts.get(MODEL_FILES[which]) == sha256(pending):
                os.replace(pending, self.model_path(which))
            else:
                pending.unlink()
        for directory in (self.path, self.path / "checkpoints", self.resume_dir):
            if directory.is_dir():
                for stray in directory.glob(".*.tmp*"):
                    _remove(stray)
        state = self.state()
        keep = state.get("resume") if state else None
        if self.resume_dir.is_dir():
            for entry in self.resume_dir.iterdir():
                if entry.name != keep:
                    _remove(entry)

    def write_pending(self, which: str, save) -> Path:
        """Write model `which` to its pending name with `save(path)`; it becomes the
        committed file when a commit names its SHA-256."""
        pending = self.path / _PENDING[which]
        pending.parent.mkdir(parents=True, exist_ok=True)
        pending.unlink(missing_ok=True)
        save(pending)
        return pending

    def commit(self, record: dict, pending: dict[str, Path], final: bool = False) -> dict:
        """Commit `record` (the new state.json, or metrics.json when `final`) naming the
        SHA-256 of the `pending` artefacts, then move them to their names."""
        artefacts = dict(self.artefacts())
        for which, path in pending.items():
            artefacts[MODEL_FILES[which]] = sha256(path)
        record = {**record, "artefacts": artefacts}
        target = self.metrics_path if final else self.state_path
        write_atomically(target, json.dumps(record, indent=2) + "\n")
        for which, path in pending.items():
            os.replace(path, self.model_path(which))
        if not final:
            self._render_history(record["history"])
            keep = record.get("resume")
            if self.resume_dir.is_dir():
                for entry in self.resume_dir.iterdir():
                    if entry.name != keep:
                        _remove(entry)
        return record

    def _render_history(self, rows: list[dict]) -> None:
        columns: list[str] = []
        for row in rows:
            columns += [key for key in row if key not in columns]
        text = io.StringIO()
        writer = csv.DictWriter(text, columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        write_atomically(self.history_path, text.getvalue())

    # -- a copy for distribution ---------------------------------------------------------
    def publish(
        self,
        destination: str | os.PathLike,
        finish: Callable[[Run], None] | None = None,
        which: str = "final",
    ) -> Run:
        """A self-contained run at `destination` holding only one model of this complete
        run as its `model.keras`: the final one, or with `which="best"` the checkpoint
        chosen on the monitored split (the validation split when the run has one). Beside
        it `config.yaml` and `metrics.json` (this run's metrics with `test_accuracy` that of
        the published model, naming the new file's SHA-256 and the source). Every command
        that reads a run reads it (`evaluate`, `export`, `report`).

        It is built in a staging directory beside `destination`, `finish(staged_run)` adds
        to it (an export, say), and only then is it renamed into place, replacing an older
        `destination`: a failure leaves the old one, or none, never a half one."""
        from ienet_tf.io import load_keras_model

        metrics = self.metrics()
        if not (metrics and metrics.get("completed")):
            raise RunError(f"{self.path} has not finished; only a complete run is published.")
        if which not in ("final", "best"):
            raise ValueError(f"which must be 'final' or 'best', not {which!r}")
        source = self.verified_model_path(which)
        destination = Path(destination)
        destination.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=destination.parent, prefix=f".{destination.name}."))
        staging.chmod(plain_mode(0o777))  # mkdtemp's 0700 would outlive the rename
        try:
            staged = Run(staging)
            shutil.copyfile(self.config_path, staged.config_path)
            load_keras_model(source).save(staged.model_path("final"))  # uncompiled: no optimizer
            record = {
                **{key: value for key, value in metrics.items() if key != "artefacts"},
                **({"test_accuracy": _best_test_accuracy(metrics)} if which == "best" else {}),
                "published_from": {
                    "run": self.path.name,
                    "model": MODEL_FILES[which],
                    "sha256": sha256(source),
                },
                "artefacts": {MODEL_FILES["final"]: sha256(staged.model_path("final"))},
            }
            write_atomically(staged.metrics_path, json.dumps(record, indent=2) + "\n")
            if finish is not None:
                finish(staged)
        except BaseException:
            _remove(staging)
            raise
        old = staging.with_name(f"{staging.name}.old")
        if destination.exists():
            os.replace(destination, old)  # a directory cannot be renamed over a full one
        try:
            os.replace(staging, destination)
        except BaseException:
            if old.exists() and not destination.exists():
                os.replace(old, destination)
            _remove(staging)
            raise
        _remove(old)
        return Run(destination)

    def new_resume_dir(self, epoch: int | str) -> tuple[Path, Path]:
        """(temporary, final) directories for the resume checkpoint after `epoch` (or of
        a named state such as "imported"); a leftover temporary one is removed."""
        name = epoch if isinstance(epoch, str) else f"epoch-{epoch:04d}"
        tmp = self.resume_dir / f".{name}.tmp"
        _remove(tmp)
        return tmp, self.resume_dir / name


@contextlib.contextmanager
def hold(directory: Path, alternative: str) -> Iterator[None]:
    """`io.exclusive_lock` on `directory/.lock` (created with the directory) for the life
    of the block, recording this PID; a `RunLockedError` naming the holder's PID and
    `alternative` when another process holds it."""
    directory.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as stack:
        try:
            fd = stack.enter_context(exclusive_lock(directory / ".lock", wait=False))
        except LockHeld as held:
            raise RunLockedError(
                f"{directory} is in use by another process (PID {held.holder or 'unknown'}); "
                f"wait for it to finish or {alternative}."
            ) from None
        if fd is not None:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield


def _best_test_accuracy(metrics: dict) -> float:
    """The test accuracy of `best.keras`: chosen on the validation split when the run has
    one, else on the test split itself (`monitor: test`, the papers' releases' way)."""
    if "test_accuracy_best_val" in metrics:
        return metrics["test_accuracy_best_val"]
    return metrics["best_test_accuracy"]


class Search(_Directory):
    """The output directory of `ienet tune`:

        config.yaml        the resolved tune config (a rerun must match it)
        tuner/             keras-tuner's own state (a rerun continues the search)
        trials.csv/.md     one row per trial
        best_config.yaml   the best completed trial as an `ienet train` config

    Written by one process at a time (`lock()`, as `Run.lock`)."""

    config_path = _Entry("config.yaml")
    tuner_dir = _Entry("tuner")
    trials_csv = _Entry("trials.csv")
    trials_markdown = _Entry("trials.md")
    best_config_path = _Entry("best_config.yaml")

    def lock(self) -> contextlib.AbstractContextManager[None]:
        return hold(self.path, "use another --output")

    def config(self):
        """The search's validated tune config (None before the search has started)."""
        from ienet_tf import config as config_lib

        if not self.config_path.is_file():
            return None
        return config_lib.load(self.config_path, schema=config_lib.TuneFileConfig)

    def objective(self) -> str | None:
        """`tune.objective` of the search's config.yaml, read without validating it (a
        search of another version still names its objective); None without a config."""
        import yaml

        if not self.config_path.is_file():
            return None
        try:
            raw = yaml.safe_load(self.config_path.read_text())
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
            raise RunError(f"{self.config_path} is unreadable ({error}).") from None
        tune = raw.get("tune") if isinstance(raw, dict) else None
        return (tune if isinstance(tune, dict) else {}).get("objective", "val_accuracy")


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)
