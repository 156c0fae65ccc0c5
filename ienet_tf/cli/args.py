"""argparse types and output helpers shared by the `ienet` sub-commands."""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Callable
from pathlib import Path

__all__ = [
    "path_arg",
    "positive_arg",
    "progress_lines",
    "progress_to_stderr",
    "run_option",
]


def progress_to_stderr() -> contextlib.AbstractContextManager:
    """Send what the block prints (Keras' progress) to stderr: stdout keeps the result,
    so `ienet train --json ... | python -c "import json, sys; json.load(sys.stdin)"`
    works."""
    return contextlib.redirect_stdout(sys.stderr)


def progress_lines(command: str) -> Callable[[str], None]:
    """A progress callback printing `ienet <command>: <message>` lines on stderr (stdout
    keeps the command's result)."""

    def progress(message: str) -> None:
        print(f"ienet {command}: {message}", file=sys.stderr, flush=True)

    return progress


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


def run_option(command, required: bool = True, **kwargs) -> None:
    """`--run DIR`, the run directory, in every command (usage shows it as required where
    it is)."""
    command.add_argument("--run", type=path_arg, metavar="DIR", required=required, **kwargs)
