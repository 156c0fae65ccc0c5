"""`ienet verify-arm`: run a .tflite on LCE's aarch64 kernels under qemu, compare with x86.

Wired into `ienet_tf.cli.main` with `add_parser(commands)`; user errors are
`ienet_tf.errors.IENetError`s, which `main` prints as one line (exit 2): a damaged file,
a missing qemu, runtime or (`--trace`) aarch64 binutils (naming `make arm-runtime` / the
apt-get command), and a mode whose outputs disagree (after the table or JSON is printed).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

from ienet_tf.cli.args import path_arg, positive_arg

__all__ = ["add_parser"]

# `arm.MODES` and `arm.DEFAULT_INPUTS`, spelled out: importing `ienet_tf.export` imports
# TensorFlow, which `ienet --help` should not wait for (a test checks they match).
MODES = ("default", "reference", "indirect")
DEFAULT_INPUTS = 32


def _recorded_inputs(model: Path) -> tuple[object, str | None]:
    """The export's own parity inputs, where its sidecar (`MODEL.json`, of this very file:
    its SHA-256 matches) records a config: the first `parity.num_inputs` test images of
    that config's data set. `(None, why)` otherwise (random inputs are used then)."""
    from ienet_tf import config as config_lib
    from ienet_tf.errors import IENetError
    from ienet_tf.export.bench import read_sidecar
    from ienet_tf.runs import sha256

    report = read_sidecar(model)
    try:
        recorded = report["source"].get("config") or report["source"].get("data_config")
        count = int(report["parity"]["num_inputs"])
        ours = report["sha256"] == sha256(model)
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None, None
    if not (ours and recorded):
        return None, None
    try:
        from ienet_tf.train import test_images

        config = config_lib.from_dict(recorded)
        return test_images(config, count), f"the export's parity inputs ({count} " + (
            f"{config.data.name} test images, from its sidecar)"
        )
    except IENetError as error:  # e.g. the data set is not on this machine
        return None, f"its sidecar's {count} test images cannot be read here: {error}"


def _cmd_verify_arm(args: argparse.Namespace) -> int:
    from ienet_tf.export import arm

    modes = MODES if args.mode == "all" else (args.mode,)
    inputs, described = (args.inputs, None) if args.inputs else _recorded_inputs(args.model)
    result = arm.verify_arm(
        args.model, modes, inputs=inputs, runtime=args.runtime, trace=args.trace
    )
    if described is not None:
        if inputs is None:  # random, but say why not the recorded ones
            described = f"{result.inputs}; {described}"
        result = dataclasses.replace(result, inputs=described)
    print(json.dumps(result.as_dict(), indent=2) if args.json else result.table())
    if not result.agrees:
        raise arm.disagreement(result)
    return 0


def add_parser(commands) -> None:
    """Register `verify-arm` on the `ienet` sub-command parsers (`add_subparsers()`'s
    result)."""
    verify = commands.add_parser(
        "verify-arm", help="run a .tflite on LCE's aarch64 kernels (qemu), compare with x86"
    )
    verify.add_argument(
        "--model",
        type=path_arg,
        metavar="FILE",
        required=True,
        help="a .tflite written by `ienet export` (verified before anything runs)",
    )
    verify.add_argument(
        "--mode",
        choices=[*MODES, "all"],
        default="all",
        help="LCE's LceBconv2d kernel: default (BGEMM), reference, indirect (BGEMM), or all "
        "three (default: all)",
    )
    verify.add_argument(
        "--inputs",
        type=positive_arg(int),
        metavar="N",
        help="seeded random inputs to compare on (default: the export's own parity inputs "
        f"where its sidecar records their config, else {DEFAULT_INPUTS} random ones)",
    )
    verify.add_argument(
        "--runtime",
        type=path_arg,
        metavar="DIR",
        help="a build of converters/arm_runtime (default: the one `make arm-runtime` makes)",
    )
    verify.add_argument(
        "--trace",
        action="store_true",
        help="also count the aarch64 instructions of one input in every mode (qemu's trace): "
        "per category, the LCE kernel functions that ran, per op (needs the aarch64 "
        "binutils; ~20x slower than a plain run)",
    )
    verify.add_argument("--json", action="store_true", help="print the result as JSON")
    verify.set_defaults(handler=_cmd_verify_arm)
