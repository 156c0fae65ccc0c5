"""File helpers: atomic writes (a reader sees the old file or the complete new one, never a
part), one exclusive lock, and reads that fail as one line naming the file."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

__all__ = [
    "LockHeld",
    "exclusive_lock",
    "load_keras_model",
    "load_model_file",
    "load_npy",
    "model_file_kind",
    "one_line",
    "plain_mode",
    "read_bytes",
    "require_file",
    "write_atomically",
    "write_temporary",
]


def plain_mode(mode: int) -> int:
    """`mode` less the process umask: the permissions a plain `open()` (0o666) or `mkdir`
    (0o777) would give, for files and folders made by `tempfile` (0600 / 0700)."""
    umask = os.umask(0)
    os.umask(umask)
    return mode & ~umask


def write_temporary(path: str | os.PathLike, payload: bytes | str) -> Path:
    """Write `payload` to a new temporary file beside `path` (`.<name>.<random>.tmp`, the
    permissions a plain `open()` gives), flushed to disk; the caller renames it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, plain_mode(0o666))  # mkstemp's 0600 -> what a plain open() gives
        with os.fdopen(fd, "w" if isinstance(payload, str) else "wb") as f:
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return Path(tmp)


def write_atomically(path: str | os.PathLike, payload: bytes | str) -> Path:
    """Write `payload` to a temporary file beside `path`, then rename it over `path`."""
    tmp = write_temporary(path, payload)
    try:
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return Path(path)


class LockHeld(Exception):
    """`exclusive_lock(..., wait=False)` found the lock held; `holder` is what the holder
    wrote into the lock file (empty if nothing)."""

    def __init__(self, path: Path, holder: str):
        super().__init__(f"{path} is locked by another process ({holder or 'unknown'})")
        self.holder = holder


@contextlib.contextmanager
def exclusive_lock(path: str | os.PathLike, *, wait: bool = True) -> Iterator[int | None]:
    """Hold an exclusive `flock` on `path` (a directory, or a lock file made if missing) for
    the life of the block. The kernel releases it when the holder dies, so a stale lock
    file is no lock. Yields the open descriptor (a holder may record itself in a lock
    file), or None, and no lock, where the file system has no `flock` (some network file
    systems) or a directory cannot be opened. A lock file is never opened through a
    symbolic link (`OSError` ELOOP). `wait=False`: `LockHeld` at once when another process
    holds it."""
    path = Path(path)
    is_dir = path.is_dir()
    try:
        flags = os.O_RDONLY if is_dir else os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW
        fd = os.open(path, flags, 0o644)
    except OSError:
        if not is_dir:
            raise
        yield None
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
            locked = True
        except OSError as error:
            if error.errno in (errno.EAGAIN, errno.EACCES):  # held (EWOULDBLOCK == EAGAIN)
                holder = "" if is_dir else os.pread(fd, 32, 0).decode(errors="replace")
                raise LockHeld(path, holder.strip()) from None
            locked = False  # no flock on this file system
        yield fd if locked else None
    finally:
        os.close(fd)  # releases the flock


def require_file(path: str | os.PathLike, what: str, error: type[Exception]) -> Path:
    """`path` if it is a file; otherwise `error("<what> <path> does not exist.")`."""
    path = Path(path)
    if not path.is_file():
        kind = " (it is a directory)" if path.is_dir() else ""
        raise error(f"{what} {path} does not exist{kind}.")
    return path


def read_bytes(path: str | os.PathLike, what: str, error: type[Exception]) -> bytes:
    """The bytes of `path`; a missing or unreadable file raises `error` with one line naming
    `what` and the path (never a traceback for a user's wrong path)."""
    path = require_file(path, what, error)
    try:
        return path.read_bytes()
    except OSError as problem:
        raise error(f"cannot read {what} {path} ({problem.strerror or problem}).") from None


def one_line(text: object, limit: int = 300) -> str:
    """`text` on one line, cut to `limit` characters (for messages that echo input)."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def _unknown_classes(config) -> list[str]:
    """The class names in a saved model's config.json that nothing registered resolves."""
    import importlib

    import tensorflow as tf

    unknown, stack = [], [config]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            name, module = node.get("class_name"), node.get("module")
            if name == "function" and isinstance(node.get("config"), str):
                name = node["config"]  # a serialized function: its name is the config
                node = {**node, "registered_name": node.get("registered_name", name)}
                if node["registered_name"] == "function":
                    node["registered_name"] = name
            if isinstance(name, str) and isinstance(module, str) and "config" in node:
                registered = node.get("registered_name") or name
                found = tf.keras.utils.get_registered_object(registered) is not None
                if not found and module.startswith(("keras", "tensorflow")):
                    try:
                        found = hasattr(importlib.import_module(module), name)
                    except ImportError:
                        found = False
                if not found:
                    unknown.append(registered)
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return unknown


def load_keras_model(path: str | os.PathLike):
    """`tf.keras.models.load_model(path, compile=False)`, with every way a file can fail
    to be a loadable model (not a zip, no config.json, an unknown class, mismatched
    weights) turned into one `RunError` line naming the file."""
    import json
    import zipfile

    import tensorflow as tf

    import ienet_tf
    from ienet_tf.errors import RunError

    ienet_tf.register_all()  # the custom objects the file names
    path = require_file(path, "model file", RunError)
    fix = "the file is damaged or was not written by this version of ienet-tf"
    if not zipfile.is_zipfile(path):
        raise RunError(f"cannot load {path}: not a .keras file (not a zip archive); {fix}.")
    try:
        with zipfile.ZipFile(path) as archive:
            config = json.loads(archive.read("config.json"))
    except KeyError:
        raise RunError(f"cannot load {path}: the archive has no config.json; {fix}.") from None
    except (ValueError, zipfile.BadZipFile, OSError) as error:
        raise RunError(
            f"cannot load {path}: unreadable config.json ({one_line(error, 120)}); {fix}."
        ) from None
    unknown = _unknown_classes(config)
    if unknown:
        raise RunError(
            f"cannot load {path}: unknown class {unknown[0]!r} (not a Keras, larq or ienet-tf "
            f"class); {fix}."
        )
    try:
        return tf.keras.models.load_model(path, compile=False)
    except (OSError, ValueError, KeyError, TypeError, AttributeError, zipfile.BadZipFile) as error:
        raise RunError(
            f"cannot load {path}: {type(error).__name__}: {one_line(error)}; {fix}."
        ) from None


def model_file_kind(path: str | os.PathLike) -> str | None:
    """What kind of saved Keras model `path` is ("a .keras file", "an HDF5 file", "a
    SavedModel directory"), by its name or contents; None for anything else (a YAML config,
    a path that does not exist). Cheap (a file's first bytes or zip directory): commands
    call it to name a model passed where a config is expected."""
    import zipfile

    path = Path(path)
    if not path.exists():
        return None  # the caller's own "does not exist" says more
    if path.is_dir():
        return "a SavedModel directory" if (path / "saved_model.pb").is_file() else None
    if path.suffix in (".h5", ".hdf5"):
        return "an HDF5 file"
    if path.suffix == ".keras":
        return "a .keras file"
    try:  # a .keras archive under another name
        with zipfile.ZipFile(path) as archive:
            if "config.json" in archive.namelist():
                return "a .keras file"
    except (OSError, zipfile.BadZipFile):
        pass
    try:
        with path.open("rb") as f:
            return "an HDF5 file" if f.read(8) == b"\x89HDF\r\n\x1a\n" else None
    except OSError:
        return None


def load_model_file(path: str | os.PathLike):
    """A user's saved Keras model, uncompiled, with ienet-tf's custom objects: a `.keras`
    file (`load_keras_model`, every failure one line), an HDF5 file (`.h5`) or a SavedModel
    directory written by `model.save(DIR)`. A path that is none of them (a YAML config, a
    SavedModel without Keras metadata, a missing file) is one `UsageError` line naming it."""
    import tensorflow as tf

    import ienet_tf
    from ienet_tf.errors import RunError, UsageError

    path = Path(path)
    kind = model_file_kind(path)
    if kind is None:
        if path.suffix in (".yaml", ".yml"):
            raise UsageError(f"{path} is a config, not a model file; pass it as --config.")
        if path.is_dir():
            raise UsageError(
                f"{path} is a directory without saved_model.pb: not a SavedModel (a run "
                "directory is passed as --run)."
            )
        require_file(path, "model file", UsageError)
        raise UsageError(
            f"{path} is not a Keras model file; pass a .keras or .h5 file or a SavedModel "
            "directory (model.save(...))."
        )
    if kind == "a .keras file":
        return load_keras_model(path)
    if kind == "a SavedModel directory" and not (path / "keras_metadata.pb").is_file():
        raise UsageError(
            f"{path} is a SavedModel without Keras metadata (written by tf.saved_model.save); "
            "save the Keras model with model.save(...) instead."
        )
    ienet_tf.register_all()  # the custom objects the file names
    try:
        model = tf.keras.models.load_model(path, compile=False)
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
        raise RunError(
            f"cannot load {path} ({kind}): {type(error).__name__}: {one_line(error)}."
        ) from None
    if not isinstance(model, tf.keras.Model):
        raise UsageError(f"{path} ({kind}) does not hold a Keras model.")
    return model


def load_npy(path: str | os.PathLike, what: str):
    """The array of the `.npy` file `path`; a missing, unreadable or malformed file (or
    one holding Python objects) is one `UsageError` line naming `what` and the path."""
    import numpy as np

    from ienet_tf.errors import UsageError

    path = require_file(path, what, UsageError)
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as error:
        raise UsageError(
            f"{what} {path} is not a readable .npy array ({one_line(error, 120)}); save one "
            "with numpy.save."
        ) from None
    if not isinstance(array, np.ndarray):  # an .npz archive of several arrays
        array.close()
        raise UsageError(f"{what} {path} is an .npz archive; pass one array saved with numpy.save.")
    return array
