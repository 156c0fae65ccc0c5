"""A directory tree as data, to assert that a command changed nothing in it."""

import os
from pathlib import Path

from ienet_tf.runs import sha256


def snapshot(root: Path) -> dict[str, str]:
    """Every file and link under `root` (links not followed): path -> SHA-256 or target."""
    found = {}
    for path in sorted(root.rglob("*")):
        key = path.relative_to(root).as_posix()
        if path.is_symlink():
            found[key] = "-> " + os.readlink(path)
        elif path.is_file():
            found[key] = sha256(path)
    return found
