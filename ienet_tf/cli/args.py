"""argparse types shared by the `ienet` sub-commands."""

from __future__ import annotations

import argparse
from pathlib import Path

__all__ = ["path_arg", "positive_arg"]


def path_arg(text: str) -> Path:
    """An argparse type: a non-empty path (`Path("")` would silently be the current
    directory)."""
    if not text.strip():
        raise argparse.ArgumentTypeError("expected a path, got an empty string")
    return Path(text)


def positive_arg(cast):
    """An argparse type: `cast(text)`, which must be > 0."""
    kind = {int: "integer", float: "number"}[cast]

    def parse(text: str):
        try:
            value = cast(text)
        except ValueError:
            value = None
        if value is None or not value > 0:
            raise argparse.ArgumentTypeError(f"expected a positive {kind}, got {text!r}")
        return value

    return parse
