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
    .ienet-tf.json           the ownership manifest, written before anything else

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

A command writes only into a directory it owns: a new or empty one, which it claims by
writing the manifest `.ienet-tf.json` first (`claim()`), or one that holds its manifest (or,
for a run of an older version without one, committed models whose SHA-256 its records
prove). Anything else (a user's folder, a file, a dangling link, another command's
directory) is refused in one line before anything is written. Inside, it writes and deletes
only its own names (the layout above), never through a symbolic link: a link at one of
them is refused. `state.json` records the config the run was trained with (config.yaml is
its copy) and both records carry their own checksum, so a file edited by hand is named, and
a resume never mixes two configs.

A directory is written by one process at a time: `claim()` takes an exclusive `flock`
on `.lock`, which the kernel releases when the holder dies (a stale lock is no lock).
`Search` (`ienet tune`) and `Report` (`ienet report`) follow the same rules.
"""

from __future__ import annotations

import contextlib
import csv
import errno
import hashlib
import io
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import ClassVar

from ienet_tf.errors import ConfigError, RunError, RunLockedError
from ienet_tf.io import LockHeld, exclusive_lock, plain_mode, write_atomically

__all__ = ["MANIFEST", "MODEL_FILES", "Report", "Run", "Search", "describe", "hold", "sha256"]

#: The ownership manifest every directory a command writes holds from its first moment.
MANIFEST = ".ienet-tf.json"
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
#: The names of a run's resume checkpoints (and their temporary twins) under resume/.
_RESUME_NAME = re.compile(r"\.?(epoch-\d{4}|imported)(\.tmp)?")
#: The temporary file of the manifest's atomic write (`io.write_temporary`'s name).
_MANIFEST_TEMPORARY = re.compile(rf"\.{re.escape(MANIFEST)}\.\w+\.tmp")
#: Who writes each kind of directory.
_COMMANDS = {"run": "ienet train", "search": "ienet tune", "report": "ienet report"}


def sha256(path: str | os.PathLike) -> str:
    """The hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _checksum(record: dict) -> str:
    body = {key: value for key, value in record.items() if key != "checksum"}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def _read_json(path: Path) -> dict | None:
    """A record the package wrote (None if missing); one that no longer matches the
    checksum it was written with was edited or damaged, and says so."""
    try:
        record = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError, UnicodeDecodeError) as error:
        raise RunError(f"{path} is unreadable or corrupt ({error}).") from None
    if not isinstance(record, dict):
        raise RunError(f"{path} is corrupt (not a JSON object).")
    if "checksum" in record and record["checksum"] != _checksum(record):
        raise RunError(
            f"{path} was edited or damaged since ienet-tf wrote it (it no longer matches its "
            "checksum); restore it from a copy, or train into a new --run."
        )
    return record


def describe(path: str | os.PathLike) -> str | None:
    """What `path` is when a command cannot use it as a directory of its own: a file (a
    .tflite, a .keras), a dangling link, a link loop, something not a folder; None for a
    folder or a path that does not exist."""
    path = Path(path)
    try:
        os.stat(path)
    except FileNotFoundError:
        if path.is_symlink():
            return f"a symbolic link to {os.readlink(path)}, which does not exist"
        return None
    except OSError as error:
        if error.errno == errno.ELOOP:
            return "a symbolic link loop"
        if error.errno == errno.ENOTDIR:
            return "a path through a file"
        raise
    if path.is_dir():
        return None
    kinds = {".tflite": " (an export)", ".keras": " (a saved model)", ".yaml": " (a config)"}
    if path.is_file():
        return f"a file{kinds.get(path.suffix, '')}, not a directory"
    return "not a directory"


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
    """A directory one command writes: its `kind`, its own names (files and folders,
    relative), and the rules of the module docstring (`claim`)."""

    kind: ClassVar[str]
    option: ClassVar[str]  # the command-line option that names it
    own_files: ClassVar[frozenset[str]]
    own_folders: ClassVar[tuple[str, ...]] = ()

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.path)!r})"

    @property
    def command(self) -> str:
        return _COMMANDS[self.kind]

    def manifest(self) -> dict | None:
        """The directory's ownership manifest (None if it has none, or a link there)."""
        path = self.path / MANIFEST
        if path.is_symlink() or not path.is_file():
            return None
        try:
            manifest = json.loads(path.read_text())
        except (OSError, ValueError, UnicodeDecodeError):
            return None
        return manifest if isinstance(manifest, dict) else None

    def owned_kind(self) -> str | None:
        """The kind of directory the manifest names (`run`, `search`, `report`), or None."""
        manifest = self.manifest()
        return manifest.get("kind") if manifest and manifest.get("owner") == "ienet-tf" else None

    def _proven(self) -> bool:
        """Whether a directory without a manifest is provably this command's (an older
        version's): nothing is, unless a subclass proves it."""
        return False

    def _entries(self) -> list[str]:
        """What the directory holds besides the lock and a claim killed mid-write."""
        return sorted(
            entry.name
            for entry in os.scandir(self.path)
            if entry.name != ".lock" and not _MANIFEST_TEMPORARY.fullmatch(entry.name)
        )

    def _refuse_other(self, fix: str) -> bool:
        """A `RunError` ending in `fix` if the path is something no command of ours may use
        as this directory (a file, a dangling link, another command's directory); whether a
        folder is there."""
        what = describe(self.path)
        if what is not None:
            raise RunError(f"{self.option} {self.path} is {what}; {fix}.")
        if not self.path.is_dir():
            return False
        kind = self.owned_kind()
        if kind not in (None, self.kind):
            raise RunError(
                f"{self.path} is the directory of an `{_COMMANDS.get(kind, kind)}`, not of an "
                f"`{self.command}`; {fix}."
            )
        return True

    def refuse_foreign(self) -> None:
        """A `RunError` (nothing written) unless the directory is new, empty, or ours."""
        fix = f"pass a new or empty directory as {self.option} (nothing was written)"
        if not self._refuse_other(fix) or self.owned_kind() == self.kind:
            return
        entries = self._entries()
        if entries and not self._proven():
            shown = ", ".join(entries[:3]) + (", ..." if len(entries) > 3 else "")
            raise RunError(
                f"{self.option} {self.path} is not empty ({shown}) and was not written by "
                f"`{self.command}` (it has no {MANIFEST}); it would mix with or replace those "
                f"files: {fix}."
            )

    def refuse_links(self) -> None:
        """A `RunError` if one of the directory's own names, or anything inside its own
        folders, is a symbolic link: writing there could write outside the directory."""
        candidates = [self.path / name for name in self.own_files]
        for folder in self.own_folders:
            top = self.path / folder
            candidates.append(top)
            if top.is_dir() and not top.is_symlink():
                for root, folders, files in os.walk(top):
                    candidates += [Path(root, name) for name in folders + files]
        for path in candidates:
            if path.is_symlink():
                raise RunError(
                    f"{path} is a symbolic link; `{self.command}` never writes through links "
                    f"(it could write outside {self.path}): replace it with the file or folder "
                    "itself, or remove it."
                )

    @contextlib.contextmanager
    def claim(self) -> Iterator[None]:
        """Hold the directory to write it: refuse what is not ours (see the module
        docstring), take the lock (a `RunLockedError` naming the holder if another process
        has it), write the manifest of a new directory, refuse links at our names."""
        self.refuse_foreign()  # before anything is written, even the lock
        created = not self.path.exists()
        try:
            with hold(self.path, f"use another {self.option}"):
                self.refuse_foreign()  # again, now that no one else writes it
                for stray in self.path.iterdir():  # of a claim killed mid-write
                    if _MANIFEST_TEMPORARY.fullmatch(stray.name):
                        stray.unlink(missing_ok=True)
                if self.owned_kind() is None:
                    manifest = {"owner": "ienet-tf", "kind": self.kind, "format": 1}
                    write_atomically(self.path / MANIFEST, json.dumps(manifest) + "\n")
                self.refuse_links()
                yield
        except BaseException:
            # A directory this claim made and that got nothing else leaves no trace.
            if created and self.path.is_dir() and set(self._entries()) <= {MANIFEST}:
                for name in (MANIFEST, ".lock"):
                    (self.path / name).unlink(missing_ok=True)
                with contextlib.suppress(OSError):
                    self.path.rmdir()
            raise

    def discard(self, relative: str) -> None:
        """Delete one of the directory's own entries (a file, a link itself, or a folder
        of ours), never anything else."""
        top = relative.rstrip("/").split("/")[0]
        if relative not in self.own_files and f"{top}/" not in self.own_folders:
            raise AssertionError(f"{relative} is not one of {type(self).__name__}'s names")
        _remove(self.path / relative)


class Run(_Directory):
    """The run directory `path` of `ienet train` (see the module docstring)."""

    kind = "run"
    option = "--run"
    own_files = frozenset(
        {
            *MODEL_FILES.values(),
            *_PENDING.values(),
            "config.yaml",
            "state.json",
            "metrics.json",
            "history.csv",
            ".lock",
            MANIFEST,
        }
    )
    #: The folders whose every entry is the run's (checkpoints/ may also hold the user's).
    whole_folders = ("resume/", "tensorboard/")
    own_folders = ("checkpoints/", *whole_folders)

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
        """Whether `path` (inside the directory) is one of the run's own names, which only
        `ienet train` may write: its models (also pending), metadata, and its folders."""
        relative = Path(path).relative_to(self.path).as_posix()
        return relative in self.own_files or relative.startswith(self.whole_folders)

    # -- reading ------------------------------------------------------------------------
    def exists(self) -> bool:
        """Whether the directory holds a run (its config.yaml)."""
        return self.config_path.is_file()

    def _require(self) -> None:
        fix = "pass the --run of an `ienet train`"
        if not self._refuse_other(fix):
            raise RunError(f"run directory {self.path} does not exist; {fix}.")
        if not self.exists():
            if self.state_path.is_file():
                raise RunError(
                    f"{self.config_path} is missing; rerun `ienet train --config FILE --run "
                    f"{self.path}` with the config the run was trained with to restore it."
                )
            raise RunError(
                f"{self.path} is not an `ienet train` run directory (no config.yaml); {fix}."
            )

    def config(self, schema=None):
        """The run's validated config; a `RunError` if config.yaml no longer says what the
        run was trained with (edited by hand: state.json records the original)."""
        from ienet_tf import config as config_lib

        self._require()
        config = config_lib.load(self.config_path, schema=schema or config_lib.Config)
        recorded = (self.state() or {}).get("config")
        if recorded is not None and schema is None:
            changes = config_changes(recorded, training_part(config))
            if changes:
                raise RunError(
                    f"{self.config_path} was edited after the run began ({'; '.join(changes)}; "
                    f"state.json records what it was trained with); undo the edit, or rerun "
                    f"`ienet train` on {self.path} with the original config to restore it."
                )
        return config

    def state(self) -> dict | None:
        """The committed training state (None before the first epoch is committed)."""
        return _read_json(self.state_path)

    def metrics(self) -> dict | None:
        """The final metrics (None until the run is complete)."""
        return _read_json(self.metrics_path)

    def is_complete(self) -> bool:
        metrics = self.metrics()
        return bool(metrics and metrics.get("completed"))

    def is_intact(self) -> bool:
        """Complete, with every committed model and config.yaml as its records say: nothing
        for `ienet train` to do (otherwise it restores what it can)."""
        if not (self.is_complete() and self.exists() and not self.damaged()):
            return False
        try:
            self.config()  # a RunError when config.yaml no longer says what state.json records
        except (RunError, ConfigError):
            return False
        return True

    def history(self) -> list[dict]:
        """One row per committed epoch (epoch, lr, iee_q, loss, accuracy, val_*, time_s)."""
        state = self.state()
        return list(state["history"]) if state else []

    def latest(self) -> str:
        """The model a command reads by default: `final` once the run is complete, else
        `last` (the latest committed epoch, or imported weights)."""
        self._require()
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

    def _committed_file(self, which: str, expected: str) -> Path | None:
        """The file of committed model `which` that matches `expected`, or None."""
        for candidate in (self.model_path(which), self.path / _PENDING[which]):
            # a committed artefact may still wait pending; a link is never ours
            if candidate.is_file() and not candidate.is_symlink() and sha256(candidate) == expected:
                return candidate
        return None

    def damaged(self) -> list[str]:
        """The committed models (`which`) whose file is missing, or differs from the SHA-256
        the run's records hold."""
        artefacts = self.artefacts()
        return [
            which
            for which, name in MODEL_FILES.items()
            if name in artefacts and self._committed_file(which, artefacts[name]) is None
        ]

    def _proven(self) -> bool:
        """A run of a version before manifests: its records name committed models, and
        every one of them is there with the recorded SHA-256."""
        if not self.exists():
            return False
        try:
            artefacts = self.artefacts()
        except RunError:
            return False
        return bool(artefacts) and not self.damaged()

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
            hint = {
                "final": "the run has not finished",
                "int8": "the run has no int8 model; fine-tune one with `ienet train --config "
                f"... --run {self.path} --set export.int8=true`",
            }.get(which, "no epoch has finished")
            raise RunError(f"{path} does not exist ({hint}).")
        found = self._committed_file(which, expected)
        if found is None:
            problem = (
                "is missing (the run's records name it)"
                if not path.exists()
                else f"does not match the SHA-256 recorded in {self.path.name}'s metadata "
                "(changed or damaged since it was written)"
            )
            raise RunError(
                f"{path} {problem}; rerun `ienet train` on the directory to restore it, or "
                "train again."
            )
        return found

    def model(self, which: str = "final"):
        """Load model `which` (verified, see `verified_model_path`), uncompiled."""
        from ienet_tf.io import load_keras_model

        return load_keras_model(self.verified_model_path(which))

    # -- writing (under `claim()`) -------------------------------------------------------
    def write_config(self, config) -> None:
        from ienet_tf import config as config_lib

        write_atomically(self.config_path, config_lib.dump(config))

    def recover(self) -> None:
        """Bring the directory to its last committed state: roll committed pending
        artefacts forward, delete uncommitted ones, the temporary files of its own names,
        and resume checkpoints that the state does not name. Only the run's own names are
        touched; a user's file beside them stays."""
        artefacts = self.artefacts()
        for which, pending_name in _PENDING.items():
            pending = self.path / pending_name
            if not (pending.exists() or pending.is_symlink()):
                continue
            expected = artefacts.get(MODEL_FILES[which])
            if pending.is_file() and not pending.is_symlink() and expected == sha256(pending):
                os.replace(pending, self.model_path(which))
            else:
                self.discard(pending_name)
        names = {name for name in self.own_files if "/" not in name or name.count("/") == 1}
        temporary = re.compile(
            r"\.(" + "|".join(re.escape(Path(name).name) for name in names) + r")\.\w+\.tmp"
        )
        for folder in (self.path, self.path / "checkpoints"):
            if folder.is_dir():
                for stray in folder.iterdir():
                    if temporary.fullmatch(stray.name):
                        _remove(stray)
        state = self.state()
        self._prune_resume(state.get("resume") if state else None)

    def _prune_resume(self, keep: str | None) -> None:
        if self.resume_dir.is_dir():
            for entry in self.resume_dir.iterdir():
                if entry.name != keep and _RESUME_NAME.fullmatch(entry.name):
                    _remove(entry)

    def write_pending(self, which: str, save) -> Path:
        """Write model `which` to its pending name with `save(path)`; it becomes the
        committed file when a commit names its SHA-256."""
        pending = self.path / _PENDING[which]
        pending.parent.mkdir(parents=True, exist_ok=True)
        pending.unlink(missing_ok=True)
        try:
            save(pending)
        except BaseException:
            pending.unlink(missing_ok=True)  # never a half-written file (a full disk)
            raise
        return pending

    def write_resume(self, epoch: int | str, save: Callable[[str], object]) -> Path:
        """Write the resume checkpoint after `epoch` (or of a named state such as
        "imported") with `save(prefix)` into a temporary folder renamed into place; a
        failure leaves no part of it."""
        name = epoch if isinstance(epoch, str) else f"epoch-{epoch:04d}"
        tmp, final = self.resume_dir / f".{name}.tmp", self.resume_dir / name
        _remove(tmp)
        try:
            save(str(tmp / "checkpoint"))
            tmp.rename(final)
        except BaseException:
            _remove(tmp)
            raise
        return final

    def commit(self, record: dict, pending: dict[str, Path], final: bool = False) -> dict:
        """Commit `record` (the new state.json, or metrics.json when `final`) naming the
        SHA-256 of the `pending` artefacts, then move them to their names."""
        artefacts = {**self.artefacts(), **record.get("artefacts", {})}  # the record's win
        for which, path in pending.items():
            artefacts[MODEL_FILES[which]] = sha256(path)
        record = {**record, "artefacts": artefacts}
        record["checksum"] = _checksum(record)
        target = self.metrics_path if final else self.state_path
        write_atomically(target, json.dumps(record, indent=2) + "\n")
        for which, path in pending.items():
            os.replace(path, self.model_path(which))
        if not final:
            self._render_history(record["history"])
            self._prune_resume(record.get("resume"))
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
        `destination` only if that is a run (never a folder of the user's): a failure
        leaves the old one, or none, never a half one."""
        from ienet_tf.io import load_keras_model

        metrics = self.metrics()
        if not (metrics and metrics.get("completed")):
            raise RunError(f"{self.path} has not finished; only a complete run is published.")
        if which not in ("final", "best"):
            raise ValueError(f"which must be 'final' or 'best', not {which!r}")
        source = self.verified_model_path(which)
        destination = Path(destination)
        Run(destination).refuse_foreign()
        destination.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=destination.parent, prefix=f".{destination.name}."))
        staging.chmod(plain_mode(0o777))  # mkdtemp's 0700 would outlive the rename
        try:
            staged = Run(staging)
            with staged.claim():
                shutil.copyfile(self.config_path, staged.config_path)
                # uncompiled: no optimizer
                pending = staged.write_pending("final", load_keras_model(source).save)
                record = {
                    **{k: v for k, v in metrics.items() if k not in ("artefacts", "checksum")},
                    **({"test_accuracy": _best_test_accuracy(metrics)} if which == "best" else {}),
                    "published_from": {
                        "run": self.path.name,
                        "model": MODEL_FILES[which],
                        "sha256": sha256(source),
                    },
                }
                staged.commit(record, {"final": pending}, final=True)
                if finish is not None:
                    finish(staged)
            staged.discard(".lock")
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


def training_part(config) -> dict:
    """The config as plain JSON data without its `export` section: what the trained weights
    depend on (the record a run keeps in state.json)."""
    from ienet_tf import config as config_lib

    part = {key: value for key, value in config_lib.to_dict(config).items() if key != "export"}
    return json.loads(json.dumps(part))


def config_changes(old: dict, new: dict) -> list[str]:
    """`section.key: old -> new` for every key where two training parts differ."""
    return [
        f"{section}.{key}: {old.get(section, {}).get(key)!r} -> {new[section][key]!r}"
        for section in new
        for key in new[section]
        if old.get(section, {}).get(key) != new[section][key]
    ]


@contextlib.contextmanager
def hold(directory: Path, alternative: str) -> Iterator[None]:
    """`io.exclusive_lock` on `directory/.lock` (created with the directory, never through
    a link) for the life of the block, recording this PID; a `RunLockedError` naming the
    holder's PID and `alternative` when another process holds it."""
    directory.mkdir(parents=True, exist_ok=True)
    lock = directory / ".lock"
    if lock.is_symlink() or lock.is_dir():
        raise RunError(f"{lock} is not a lock file (a link or a folder); remove it.")
    with contextlib.ExitStack() as stack:
        try:
            fd = stack.enter_context(exclusive_lock(lock, wait=False))
        except LockHeld as held:
            raise RunLockedError(
                f"{directory} is in use by another process (PID {held.holder or 'unknown'}); "
                f"wait for it to finish or {alternative}."
            ) from None
        except OSError as error:
            if error.errno != errno.ELOOP:  # a link made since the check above
                raise
            raise RunError(f"{lock} is not a lock file (a link); remove it.") from None
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

    Written by one process at a time, under the rules of the module docstring (`claim()`)."""

    kind = "search"
    option = "--output"
    own_files = frozenset(
        {"config.yaml", "trials.csv", "trials.md", "best_config.yaml", ".lock", MANIFEST}
    )
    own_folders = ("tuner/",)

    config_path = _Entry("config.yaml")
    tuner_dir = _Entry("tuner")
    trials_csv = _Entry("trials.csv")
    trials_markdown = _Entry("trials.md")
    best_config_path = _Entry("best_config.yaml")

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


class Report(_Directory):
    """The output directory of `ienet report` (`report.md` and its figures); by default
    `report/` inside the run, which the run's directory proves ours."""

    kind = "report"
    option = "--output"
    own_files: ClassVar[frozenset[str]] = frozenset({"report.md", ".lock", MANIFEST})

    def __init__(self, path: str | os.PathLike, figures: tuple[str, ...] = ()):
        super().__init__(path)
        self.own_files = frozenset({*type(self).own_files, *figures})

    def _proven(self) -> bool:
        """A report of an older version inside its run (`RUN/report`, only our names)."""
        parent = Run(self.path.parent)
        return (
            self.path.name == "report"
            and parent.exists()
            and set(self._entries()) <= self.own_files
        )


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)
