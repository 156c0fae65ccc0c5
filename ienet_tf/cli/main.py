"""`ienet` entry point: sub-commands, and one clean error line (exit 2) for user errors."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

__all__ = ["UserError", "main"]


class UserError(Exception):
    """A problem with the user's input: printed as one line, no traceback, exit code 2."""


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _run_demo(args: argparse.Namespace) -> int:
    from ienet_tf.demo import run_demo
    from ienet_tf.export import ExportError

    try:
        result = run_demo(args.output_dir, epochs=args.epochs, k=args.k, seed=args.seed, verbose=2)
    except (ValueError, ExportError) as error:
        raise UserError(str(error)) from error
    parity = result.parity
    print(
        f"\n== ienet demo: IE-Net (k={args.k}) on scikit-learn digits ==\n"
        f"test accuracy:       {result.test_accuracy:.2%}\n"
        f"LCE op histogram:    {result.op_histogram}\n"
        f"parity (LCE vs Keras on {parity.num_inputs} test images): "
        f"max |diff| {parity.max_abs_diff:.2e}, "
        f"top-1 agreement {parity.top1_agreement:.2%}\n"
        f"tflite:              {result.tflite_path} ({result.tflite_bytes:,} bytes)"
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ienet", description="Information-enhanced binary neural networks (IE-Net)."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = commands.add_parser(
        "demo",
        help="train a small IE-Net on the embedded digits data and export it with LCE",
    )
    demo.add_argument("--epochs", type=_positive_int, default=40)
    demo.add_argument("--k", type=_positive_int, default=2, help="IE-BC branches")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--output-dir", type=Path, default=Path("runs/demo"))
    demo.set_defaults(handler=_run_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except UserError as error:
        print(f"ienet {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"ienet {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
