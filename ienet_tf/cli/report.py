"""`ienet report`: figures and a report.md for a finished (or interrupted) run.

Wired into `ienet_tf.cli.main` with `add_parser(commands)`; user errors are
`ienet_tf.errors.IENetError`s, which `main` prints as one line (exit 2).
"""

from __future__ import annotations

import argparse

from ienet_tf.cli.args import path_arg, progress_lines, run_option

__all__ = ["add_parser"]


def _cmd_report(args: argparse.Namespace) -> int:
    from ienet_tf.report import write_report

    path = write_report(
        args.run, args.output, k_sweep_source=args.k_sweep, progress=progress_lines("report")
    )
    print(path)
    return 0


def add_parser(commands) -> None:
    """Register `report` on the `ienet` sub-command parsers (`add_subparsers()`'s result)."""
    report = commands.add_parser(
        "report", help="figures + report.md: weights, IEE surrogate, thresholds, entropy"
    )
    run_option(report, help="the run directory to report on")
    report.add_argument(
        "--output", type=path_arg, metavar="DIR", help="where to write (default: <run>/report)"
    )
    report.add_argument(
        "--k-sweep",
        type=path_arg,
        metavar="DIR_OR_CSV",
        help="also plot error vs K from a directory of runs or the tuner's trials.csv",
    )
    report.set_defaults(handler=_cmd_report)
