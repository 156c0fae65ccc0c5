"""argparse types, output helpers and the readers of the options shared by the `ienet`
sub-commands (`--config`, `--model`, `--inputs`)."""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from ienet_tf.errors import UsageError
from ienet_tf.io import load_npy, model_file_kind

if TYPE_CHECKING:  # `ienet --help` imports neither numpy nor TensorFlow
    import numpy as np
    import tensorflow as tf

    from ienet_tf.config import Config

__all__ = [
    "CONFIG_HELP",
    "MODEL_HELP",
    "MODEL_COMMANDS",
    "checked_inputs",
    "config_option",
    "load_config",
    "load_model",
    "optional_config",
    "read_inputs",
    "path_arg",
    "positive_arg",
    "progress_lines",
    "progress_to_stderr",
    "inputs_option",
    "model_option",
    "run_option",
    "run_or_model",
]

CONFIG_HELP = "YAML config (see configs/)"
#: The commands that take a saved Keras model as `--model FILE`.
MODEL_COMMANDS = ("cost", "evaluate", "export", "report")
#: `--model FILE`'s help where it is a saved Keras model (bench's is a .tflite).
MODEL_HELP = "a saved Keras model instead: .keras, .h5, or a SavedModel directory"


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


def config_option(command, required: bool = True, help: str = CONFIG_HELP, group=None) -> None:
    """`--config FILE` (on `group`, a mutually exclusive group of `command`, if given) and
    its repeatable `--set KEY=VALUE` overrides."""
    (command if group is None else group).add_argument("--config", required=required, help=help)
    command.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value, e.g. --set train.epochs=5 (repeatable)",
    )


def model_option(command, help: str = MODEL_HELP) -> None:
    """`--model FILE`: a saved Keras model (bench: a .tflite)."""
    command.add_argument("--model", type=path_arg, metavar="FILE", help=help)


def run_or_model(command, run_help: str) -> argparse._MutuallyExclusiveGroup:
    """`--run DIR` or `--model FILE` (a saved Keras model), exactly one (usage shows
    `(--run DIR | --model FILE)`); returns the group."""
    source = command.add_mutually_exclusive_group(required=True)
    run_option(source, required=False, help=run_help)
    model_option(source)
    return source


def inputs_option(command, purpose: str) -> None:
    """`--inputs FILE.npy`: a batch of the user's own inputs, for `purpose`."""
    command.add_argument(
        "--inputs",
        type=path_arg,
        metavar="FILE.npy",
        help=f"a batch of inputs (.npy of shape (N, *input shape)) {purpose}",
    )


def load_config(args: argparse.Namespace) -> Config:
    """`--config` with its `--set` overrides, validated; a model file passed as `--config`
    is named as one (with the fix) instead of being read as YAML."""
    from ienet_tf import config

    kind = model_file_kind(args.config)
    if kind is not None:  # else the YAML reader's "not UTF-8 text" would be all it says
        fix = (
            f"pass it as --model {args.config}"
            if args.command in MODEL_COMMANDS
            else "pass a YAML config (see configs/)"
        )
        raise UsageError(f"--config {args.config} is a model file ({kind}), not a config; {fix}")
    return config.load(args.config, args.set)


def optional_config(args: argparse.Namespace) -> Config | None:
    """The `--config` that goes with `--model` (its data set, its schedule), or None. With
    `--run` it is refused: a run has its own."""
    if args.config is None:
        if args.set:
            raise UsageError("--set overrides a --config value; pass --config too")
        return None
    if getattr(args, "run", None) is not None:
        raise UsageError(f"--config is for --model; the run {args.run} has its own config")
    return load_config(args)


def load_model(args: argparse.Namespace) -> tf.keras.Model:
    """The `--model FILE` (a saved Keras model), with ienet-tf's custom objects."""
    from ienet_tf.io import load_model_file

    if getattr(args, "which", None) is not None:
        raise UsageError("--which picks one of a run's models; --model is the model itself")
    progress_lines(args.command)(f"loading {args.model} ...")
    return load_model_file(args.model)


def read_inputs(args: argparse.Namespace, what: str = "--inputs") -> np.ndarray | None:
    """The array of `what` (`--inputs` or `--labels`; None without it), read before
    anything slow; `checked_inputs` checks `--inputs` against the model."""
    path = getattr(args, what.removeprefix("--"))
    return None if path is None else load_npy(path, what)


def checked_inputs(args: argparse.Namespace, values, model: tf.keras.Model) -> np.ndarray:
    """`--inputs`' array as a float32 batch the model takes: a one-line error naming the
    file and the shape the model takes otherwise (`checks.input_batch`, as the export API
    checks its inputs)."""
    from ienet_tf.checks import input_batch
    from ienet_tf.ir2net import inference_model

    classifier = inference_model(model)
    return input_batch(values, classifier.input_shape, classifier.name, f"--inputs {args.inputs}")
