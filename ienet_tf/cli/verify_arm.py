"""`ienet verify-arm`: run a .tflite on LCE's aarch64 kernels under qemu, compare with x86.

Wired into `ienet_tf.cli.main` with `add_parser(commands)`; user errors are
`ienet_tf.errors.IENetError`s, which `main` prints as one line (exit 2): a damaged file,
a missing qemu or runtime (naming `make arm-runtime` / the apt-get command), and a mode
whose outputs disagree (after the table or JSON is printed).
"""

from __future__ import annotations

import argparse
import json

from ienet_tf.cli.args import path_arg, positive_arg

__all__ = ["add_parser"]

# `arm.MODES` and `arm.DEFAULT_INPUTS`, spelled out: importing `ienet_tf.export` imports
# TensorFlow, which `ienet --help` should not wait for (a test checks they match).
MODES = ("default", "reference", "indirect")
DEFAULT_INPUTS = 8


def _cmd_verify_arm(args: argparse.Namespace) -> int:
    from ienet_tf.export import arm

    modes = MODES if args.mode == "all" else (args.mode,)
    result = arm.verify_arm(args.model, modes, inputs=args.inputs, runtime=args.runtime)
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
        help=f"seeded random inputs to compare on (default: {DEFAULT_INPUTS})",
    )
    verify.add_argument(
        "--runtime",
        type=path_arg,
        metavar="DIR",
        help="a build of converters/arm_runtime (default: the one `make arm-runtime` makes)",
    )
    verify.add_argument("--json", action="store_true", help="print the result as JSON")
    verify.set_defaults(handler=_cmd_verify_arm)
