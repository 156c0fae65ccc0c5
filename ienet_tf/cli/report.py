"""`ienet report`: figures and a report.md for a finished (or interrupted) run, or for a
saved Keras model (`--model FILE`: what needs a run, its metrics and checkpoints, is left out).

Wired into `ienet_tf.cli.main` with `add_parser(commands)`; user errors are
`ienet_tf.errors.IENetError`s, which `main` prints as one line (exit 2).
"""

from __future__ import annotations

import argparse

from ienet_tf.cli.args import (
    checked_inputs,
    config_option,
    inputs_option,
    load_model,
    optional_config,
    path_arg,
    progress_lines,
    read_inputs,
    run_or_model,
)
from ienet_tf.errors import UsageError

__all__ = ["add_parser"]


def _cmd_report(args: argparse.Namespace) -> int:
    from ienet_tf.report import write_model_report, write_report

    say = progress_lines("report")
    if args.run is not None:
        if args.inputs is not None:
            raise UsageError("--inputs is for --model; a run reports on its own test data")
        optional_config(args)  # refuses a --config: the run has its own
        path = write_report(args.run, args.output, k_sweep_source=args.k_sweep, progress=say)
    else:
        inputs = read_inputs(args)  # file errors before the model loads
        config = optional_config(args)
        model = load_model(args)
        given = {}
        if inputs is not None:
            inputs = checked_inputs(args, inputs, model)
            given = {"inputs": inputs, "inputs_note": f"the {len(inputs)} inputs of {args.inputs}"}
        file = args.model if args.model.name else args.model.absolute()  # "." has no name
        path = write_model_report(
            model,
            args.output or file.with_name(f"{file.stem}_report"),
            source=str(args.model),
            config=config,
            k_sweep_source=args.k_sweep,
            progress=say,
            **given,
        )
    print(path)
    return 0


def add_parser(commands) -> None:
    """Register `report` on the `ienet` sub-command parsers (`add_subparsers()`'s result)."""
    report = commands.add_parser(
        "report", help="figures + report.md: weights, IEE surrogate, thresholds, entropy"
    )
    run_or_model(report, "the run directory to report on")
    report.add_argument(
        "--output",
        type=path_arg,
        metavar="DIR",
        help="where to write (default: <run>/report, or <FILE>_report beside --model)",
    )
    report.add_argument(
        "--k-sweep",
        type=path_arg,
        metavar="DIR_OR_CSV",
        help="also plot error vs K from a directory of runs or the tuner's trials.csv",
    )
    config_option(
        report, required=False, help="with --model: the config whose data and IEE schedule to use"
    )
    inputs_option(report, "for the tables and the activation figure (with --model)")
    report.set_defaults(handler=_cmd_report)
