"""`ienet` entry point: sub-commands, and one clean error line (exit 2) for user errors."""

from __future__ import annotations

import argparse
import json
import os
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path

from ienet_tf.cli import report
from ienet_tf.cli.args import path_arg, positive_arg
from ienet_tf.errors import IENetError
from ienet_tf.io import one_line

__all__ = ["UserError", "main"]

RUN_FILES = ("final", "best", "last")
WHICH_HELP = (
    "the run's model: final (model.keras), best (best by the monitored accuracy) or last "
    "(the latest epoch); default: final once the run is complete, else last"
)


class UserError(IENetError):
    """A problem with the command line's input: one line, no traceback, exit code 2."""


def _load_config(args: argparse.Namespace):
    from ienet_tf import config

    return config.load(args.config, args.set)


def _cmd_train(args: argparse.Namespace) -> int:
    from ienet_tf.runs import Run
    from ienet_tf.train import train

    config = _load_config(args)
    output_dir = args.output_dir or Path("runs") / Path(args.config).stem
    run = Run(output_dir)
    if run.exists() and run.is_complete() and run.config() == config:
        print(f"{output_dir}: already complete (nothing to train); its metrics.json:")
        print(json.dumps(run.metrics(), indent=2))
        return 0
    metrics = train(config, output_dir, verbose=args.verbose)
    print(json.dumps({"output_dir": str(output_dir), **metrics}, indent=2))
    return 0


def _cmd_tune(args: argparse.Namespace) -> int:
    from ienet_tf import config as config_lib
    from ienet_tf.tune import run_search

    config = config_lib.load(args.config, args.set, schema=config_lib.TuneFileConfig)
    output_dir = args.output_dir or Path("runs") / Path(args.config).stem
    summary = run_search(config, output_dir, verbose=args.verbose)
    print((Path(output_dir) / "trials.md").read_text())
    print(json.dumps(summary, indent=2))
    return 0


def _which(args: argparse.Namespace) -> str:
    """`--which`, or the run's latest model (final once complete, else last)."""
    from ienet_tf.runs import Run

    return args.which or Run(args.checkpoint).latest()


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from ienet_tf.train import evaluate

    which = _which(args)
    results = evaluate(args.checkpoint, which)
    line = f"{results['model']} ({which}): top-1 {results['top1']:.2%}"
    if "top5" in results:
        line += f", top-5 {results['top5']:.2%}"
    print(line)
    return 0


def _format_count(value: float) -> str:
    return f"{value:.3g}" if value >= 1e4 else f"{value:g}"


def _cmd_cost(args: argparse.Namespace) -> int:
    from ienet_tf.cost import model_cost
    from ienet_tf.train import build_model

    cost = model_cost(build_model(_load_config(args)))
    if args.json:
        print(json.dumps(cost.as_dict(), indent=2))
        return 0
    header = ("layer", "type", "1-bit params", "32-bit params", "kbit", "FP MACs", "binary ops")
    rows = [header]
    for layer in cost.layers:
        if layer.params or layer.fp_macs or layer.binary_ops:
            rows.append(
                (
                    layer.name,
                    layer.type,
                    str(layer.params_by_bits.get(1, 0)),
                    str(sum(n for b, n in layer.params_by_bits.items() if b != 1)),
                    f"{layer.memory_bits / 1e3:.1f}",
                    _format_count(layer.fp_macs),
                    _format_count(layer.binary_ops),
                )
            )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))
    print(
        f"\n{cost.name}: memory {cost.memory_mbit:.2f} Mbit, FP MACs {cost.fp_macs:.3g}, "
        f"binary ops {cost.binary_ops:.3g}, FLOPs {cost.flops:.3g} "
        f"(paper convention, one IE-BC branch: {cost.flops_paper:.3g})"
    )
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from ienet_tf import config as config_lib
    from ienet_tf.export import DEFAULT_TOLERANCE, check_output_path, to_tflite
    from ienet_tf.train import load_run, test_images

    output = check_output_path(args.output, "--output")  # before anything slow
    which = _which(args)
    config, model = load_run(args.checkpoint, which)
    images = test_images(config, 64)
    tolerance = DEFAULT_TOLERANCE if args.tolerance is None else args.tolerance
    source = {
        "checkpoint": str(args.checkpoint),
        "which": which,
        "parity_inputs": f"first {min(64, len(images))} {config.data.name} test images",
        "config": config_lib.to_dict(config),
    }
    if args.verbose:
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "0"  # LCE reads it at its first log line
    result = to_tflite(
        model,
        output,
        images,
        tolerance,
        source,
        verbose=args.verbose,
        progress=lambda message: _progress(f"ienet export: {message}"),
    )
    weights = result.weight_bytes
    print(
        f"{result.path}: {result.size_bytes:,} bytes (binary weights {weights['binary']:,} B, "
        f"float weights {weights['float']:,} B); report {result.sidecar}\n"
        f"ops: {result.op_histogram}\n"
        f"parity on {result.parity.num_inputs} test images: "
        f"{result.parity.within_tolerance:.0%} within {result.parity.tolerance:g}, max |diff| "
        f"{result.parity.max_abs_diff:.2e}, top-1 agreement {result.parity.top1_agreement:.2%}"
    )
    return 0


def _progress(message: str) -> None:
    """A progress line on stderr (stdout keeps the command's result)."""
    print(message, file=sys.stderr, flush=True)


def _cmd_import_torch(args: argparse.Namespace) -> int:
    from ienet_tf.interop import release
    from ienet_tf.runs import sha256
    from ienet_tf.train import build_model, start_from_weights

    config = _load_config(args)
    if config.model.compat != "release":
        raise UserError(
            f"{args.config}: model.compat is {config.model.compat!r}; a release checkpoint "
            "needs the release's network: --set model.compat=release"
        )
    state_dict = release.read_checkpoint(args.checkpoint)
    model = build_model(config)
    report = release.load_state_dict(model, state_dict)
    source = {"checkpoint": str(args.checkpoint), "sha256": sha256(args.checkpoint)}
    run = start_from_weights(config, model, args.output_dir, source)
    print(
        f"{run.path}: {report.weights_set} weights of {model.name} set from "
        f"{report.keys_consumed} release keys ({len(report.keys_ignored)} ignored: "
        "num_batches_tracked and the release's unused bn3); evaluate or export it, or "
        f"continue training with ienet train --config {args.config} --output-dir {run.path}"
    )
    return 0


def _read_tflite(path: Path) -> bytes:
    from ienet_tf.export.flatbuffer import verify

    try:
        flatbuffer = path.read_bytes()
    except FileNotFoundError:
        raise UserError(f"no such file: {path}") from None
    except OSError as error:
        raise UserError(f"{path}: cannot read it ({error.strerror})") from None
    try:
        verify(flatbuffer)
    except ValueError as error:
        raise UserError(f"{path}: {error} (write one with `ienet export`)") from None
    return flatbuffer


def _counterparts(path: Path, variants=("fp", "bireal")) -> dict[str, bytes]:
    """Convert the float and Bi-Real (K=1) versions of the exported model's architecture."""
    from ienet_tf import config as config_lib
    from ienet_tf import export, models

    sidecar = path.with_name(path.name + ".json")
    try:
        report = json.loads(sidecar.read_text())
        config = config_lib.from_dict(report["source"]["config"])
    except (FileNotFoundError, KeyError, json.JSONDecodeError):
        raise UserError(
            f"--compare needs {sidecar} with the source config, as `ienet export` writes it"
        ) from None
    converted = {}
    for variant in variants:
        model = models.build(
            config.model.name,
            variant,
            num_classes=report.get("num_classes"),
            input_shape=tuple(report["input_shape"]),
        )
        print(f"converting the {variant} counterpart of {config.model.name} ...", file=sys.stderr)
        converted[f"{config.model.name} {variant}"], _ = export.convert(model)
    return converted


def _cmd_bench(args: argparse.Namespace) -> int:
    from ienet_tf.export.bench import X86_CAVEAT, benchmark, check_settings

    check_settings(args.threads, args.runs, args.warmup)  # before any slow conversion
    flatbuffers = {args.model.name: _read_tflite(args.model)}
    if args.compare:
        flatbuffers.update(_counterparts(args.model))
    terminal = sys.stderr.isatty()

    def progress(done: int, total: int, name: str = "") -> None:
        # One line rewritten in place on a terminal; in a log, one line per model.
        if terminal:
            end = "\n" if done == total else ""
            print(f"\r{name}: run {done}/{total}", end=end, file=sys.stderr, flush=True)
        elif done == total:
            print(f"{name}: {total} runs", file=sys.stderr, flush=True)

    results = [
        benchmark(
            flatbuffer,
            name,
            args.threads,
            args.runs,
            args.warmup,
            args.reference_bconv,
            progress=lambda d, t, name=name: progress(d, t, name),
            source=str(args.model) if name == args.model.name else None,
        )
        for name, flatbuffer in flatbuffers.items()
    ]
    if args.json:
        print(json.dumps([r.as_dict() for r in results], indent=2))
        return 0
    base = results[0]
    print(
        f"{'model':<32} {'median ms':>10} {'min':>8} {'max':>8} {'size KB':>9} "
        f"{'latency x':>10} {'size x':>7}"
    )
    for r in results:
        print(
            f"{r.model:<32} {r.median_ms:>10.2f} {r.min_ms:>8.2f} {r.max_ms:>8.2f} "
            f"{r.size_bytes / 1e3:>9.1f} {r.median_ms / base.median_ms:>10.2f} "
            f"{r.size_bytes / base.size_bytes:>7.2f}"
        )
    print(
        f"({base.threads} thread(s), {base.runs} runs, {base.machine}; ratios to "
        f"{base.model})\n{X86_CAVEAT}"
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ienet", description="Information-enhanced binary neural networks (IE-Net)."
    )
    parser.add_argument(
        "--debug", action="store_true", help="print the traceback of user errors too"
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def with_config(command):
        command.add_argument("--config", required=True, help="YAML config (see configs/)")
        command.add_argument(
            "--set",
            action="append",
            default=[],
            metavar="KEY=VALUE",
            help="override a config value, e.g. --set train.epochs=5 (repeatable)",
        )

    train = commands.add_parser("train", help="train a config (resumes an interrupted run)")
    with_config(train)
    train.add_argument("--output-dir", type=path_arg, help="default: runs/<config name>")
    train.add_argument("--verbose", type=int, choices=(0, 1, 2), default=1)
    train.set_defaults(handler=_cmd_train)

    tune = commands.add_parser("tune", help="keras-tuner search over K and T_min/T_max")
    with_config(tune)
    tune.add_argument("--output-dir", type=path_arg, help="default: runs/<config name>")
    tune.add_argument("--verbose", type=int, choices=(0, 1, 2), default=1)
    tune.set_defaults(handler=_cmd_tune)

    evaluate = commands.add_parser("evaluate", help="top-1 (top-5) of a saved run")
    evaluate.add_argument("--checkpoint", type=path_arg, required=True, help="a run directory")
    evaluate.add_argument("--which", choices=RUN_FILES, help=WHICH_HELP)
    evaluate.set_defaults(handler=_cmd_evaluate)

    cost = commands.add_parser("cost", help="parameters, memory, MACs, binary ops, FLOPs")
    with_config(cost)
    cost.add_argument("--json", action="store_true", help="one JSON object")
    cost.set_defaults(handler=_cmd_cost)

    export = commands.add_parser("export", help="LCE .tflite, verified (ops and parity)")
    export.add_argument("--checkpoint", type=path_arg, required=True, help="a run directory")
    export.add_argument("--output", type=path_arg, required=True, help="the .tflite to write")
    export.add_argument("--which", choices=RUN_FILES, help=WHICH_HELP)
    export.add_argument(
        "--tolerance", type=positive_arg(float), help="max |LCE - Keras| on the logits (1e-3)"
    )
    export.add_argument(
        "--verbose",
        action="store_true",
        help="show the LCE converter's log (shown anyway when the conversion fails)",
    )
    export.set_defaults(handler=_cmd_export)

    report.add_parser(commands)

    import_torch = commands.add_parser(
        "import-torch", help="start a run from the IE-Net authors' PyTorch checkpoint"
    )
    import_torch.add_argument(
        "--checkpoint", type=path_arg, required=True, help=".pth / .pth.tar / .th (torch) or .npz"
    )
    with_config(import_torch)
    import_torch.add_argument(
        "--output-dir", type=path_arg, required=True, help="the new run directory to write"
    )
    import_torch.set_defaults(handler=_cmd_import_torch)

    bench = commands.add_parser("bench", help="LCE interpreter latency of a .tflite")
    bench.add_argument(
        "model",
        type=path_arg,
        help="a .tflite written by `ienet export` (verified, then run in a child process)",
    )
    bench.add_argument(
        "--threads", type=int, default=1, help="LCE interpreter threads, 1 to 64 (default: 1)"
    )
    bench.add_argument(
        "--runs",
        type=int,
        default=50,
        help="timed single-image inferences, 1 to 100000; reports median, min and max "
        "(default: 50)",
    )
    bench.add_argument(
        "--warmup",
        type=int,
        default=5,
        help="untimed inferences before timing, 0 to 10000 (default: 5)",
    )
    bench.add_argument(
        "--reference-bconv", action="store_true", help="LCE's reference LceBconv2d kernel"
    )
    bench.add_argument(
        "--compare", action="store_true", help="also time the float and Bi-Real counterparts"
    )
    bench.add_argument(
        "--json",
        action="store_true",
        help="print the results as a JSON list (the fields of converters/lce_benchmark.py)",
    )
    bench.set_defaults(handler=_cmd_bench)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one `ienet` command. An `IENetError` (the user's to fix) is one line on stderr
    and exit code 2; any other exception is a bug and keeps its traceback (`--debug` shows
    the traceback of user errors too)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except IENetError as error:
        if args.debug:
            traceback.print_exc()
        print(f"ienet {args.command}: error: {one_line(error, 2000)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"ienet {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
