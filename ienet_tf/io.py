"""Atomic file writes: a reader sees the old file or the complete new one, never a part."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

__all__ = ["load_keras_model", "one_line", "write_atomically"]


def write_atomically(path: str | os.PathLike, payload: bytes | str) -> Path:
    """Write `payload` to a temporary file beside `path`, then rename it over `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        # mkstemp creates the file 0600; give it the permissions a plain open() would.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        with os.fdopen(fd, "w" if isinstance(payload, str) else "wb") as f:
            f.write(payload)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def one_line(text: object, limit: int = 300) -> str:
    """`text` on one line, cut to `limit` characters (for messages that echo input)."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def load_keras_model(path: str | os.PathLike):
    """`tf.keras.models.load_model(path, compile=False)`, with every way a file can fail
    to be a loadable model (not a zip, no config.json, an unknown class, mismatched
    weights) turned into one `RunError` line naming the file."""
    import zipfile

    import tensorflow as tf

    import ienet_tf
    from ienet_tf.errors import RunError

    ienet_tf.register_all()  # the custom objects the file names
    path = Path(path)
    if not path.is_file():
        raise RunError(f"{path} does not exist.")
    try:
        return tf.keras.models.load_model(path, compile=False)
    except (OSError, ValueError, KeyError, TypeError, AttributeError, zipfile.BadZipFile) as error:
        raise RunError(
            f"cannot load {path}: {type(error).__name__}: {one_line(error)}; the file is "
            "damaged or was not written by this version of ienet-tf."
        ) from None
