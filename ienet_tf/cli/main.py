"""`ienet` entry point: sub-commands, and one clean error line (exit 2) for user errors."""

from __future__ import annotations

import argparse
import errno
import json
import logging
import os
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from ienet_tf.cli import report, verify_arm
from ienet_tf.cli.args import (
    checked_inputs,
    config_option,
    inputs_option,
    load_config,
    load_model,
    model_option,
    optional_config,
    path_arg,
    positive_arg,
    progress_lines,
    progress_to_stderr,
    read_inputs,
    run_option,
    run_or_model,
)
from ienet_tf.errors import IENetError
from ienet_tf.io import one_line, read_bytes
from ienet_tf.runs import MODEL_FILES, Run

if TYPE_CHECKING:  # `ienet --help` imports no numpy
    import numpy as np

__all__ = ["UserError", "main"]

RUN_FILES = ("final", "best", "last", "int8")
#: How many parity inputs an export compares (the first of the test split or of --inputs).
PARITY_INPUTS = 64
WHICH_HELP = (
    "the run's model: final (model.keras), best (best by the monitored accuracy), last "
    "(the latest epoch) or int8 (the int8 QAT model); default: final once the run is "
    "complete, else last"
)


def _version() -> str:
    from ienet_tf import __version__

    return __version__


class UserError(IENetError):
    """A problem with the command line's input: one line, no traceback, exit code 2."""


def _cmd_train(args: argparse.Namespace) -> int:
    from ienet_tf.train import train

    config = load_config(args)
    output_dir = args.run or Path("runs") / Path(args.config).stem
    run = Run(output_dir)
    run.refuse_foreign()  # before reading anything there
    if run.is_intact() and run.config() == config:
        metrics, done = run.metrics(), "already complete (nothing to train)"
    else:
        with progress_to_stderr():
            metrics, done = train(config, output_dir, verbose=_verbose(args)), "complete"
    if args.json:
        print(json.dumps({"output_dir": str(output_dir), **metrics}, indent=2))
    else:
        print(
            f"{output_dir}: {done}; test top-1 {metrics['test_accuracy']:.2%} after "
            f"{metrics['epochs']} epochs on {metrics.get('replicas', 1)} replica(s) "
            f"(metrics in {run.metrics_path})"
        )
    return 0


def _verbose(args: argparse.Namespace) -> int | str:
    return "auto" if args.verbose is None else args.verbose


def _cmd_tune(args: argparse.Namespace) -> int:
    from ienet_tf import config as config_lib
    from ienet_tf.tune import run_search

    config = config_lib.load(args.config, args.set, schema=config_lib.TuneFileConfig)
    output_dir = args.output or Path("runs") / Path(args.config).stem
    with progress_to_stderr():
        summary = run_search(config, output_dir, verbose=_verbose(args))
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        best = ", ".join(f"{key}={value:g}" for key, value in summary["best"].items())
        print((Path(output_dir) / "trials.md").read_text().rstrip())
        print(f"best of {summary['trials']} trials: {best} ({output_dir}/best_config.yaml)")
    return 0


def _which(args: argparse.Namespace) -> str:
    """`--which`, or the run's latest model (final once complete, else last)."""

    return args.which or Run(args.run).latest()


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from ienet_tf.train import load_run

    if (args.inputs is None) != (args.labels is None):
        raise UserError("--inputs and --labels go together: the inputs and their classes")
    data = (read_inputs(args), read_inputs(args, "--labels"))  # file errors first
    say = progress_lines("evaluate")
    if args.run is not None:
        optional_config(args)  # refuses a --config: the run has its own
        which = _which(args)
        subject, shown = f"the {which} model of {args.run}", f" ({which})"
        say(f"evaluating {subject} on {args.inputs or 'its test split'} ...")
        config, model = load_run(args.run, which)
    else:
        config = optional_config(args)
        if config is None and args.inputs is None:
            raise UserError(
                "evaluating --model needs data: --inputs X.npy --labels Y.npy, or --config "
                "CONFIG (its data set's test split)"
            )
        subject, shown = str(args.model), ""
        model = load_model(args)
        split = f"the {config.data.name} test split" if config is not None else ""
        say(f"evaluating {subject} on {args.inputs or split} ...")
    results = _evaluate(args, model, config, data, subject)
    line = f"{results['model']}{shown}: top-1 {results['top1']:.2%}"
    if "top5" in results:
        line += f", top-5 {results['top5']:.2%}"
    if "bn_reestimated_batches" in results:
        line += (
            f" with BatchNorm statistics re-estimated on {results['bn_reestimated_batches']} "
            "un-augmented training batches (not saved)"
        )
    print(line)
    return 0


def _evaluate(args: argparse.Namespace, model, config, data, subject: str) -> dict:
    """`train.evaluate_model` of a loaded model, a run's or a file's: on `data`
    (`--inputs`, `--labels`) if given, else on `config`'s test split."""
    import tensorflow as tf

    from ienet_tf.train import evaluate_model, load_datasets

    if args.bn_reestimation_batches and config is None:
        raise UserError(
            "--bn-reestimation-batches re-estimates on a config's training split; pass --config"
        )
    if data[0] is None:
        dataset = lambda: load_datasets(config, ("test",))["test"]  # noqa: E731
    else:
        inputs = checked_inputs(args, data[0], model)
        labels = _checked_labels(args.labels, data[1], len(inputs), model)
        batch_size = 256 if config is None else config.train.batch_size
        dataset = tf.data.Dataset.from_tensor_slices((inputs, labels)).batch(batch_size)
    return evaluate_model(model, dataset, config, args.bn_reestimation_batches, subject)


def _checked_labels(path: Path, values, count: int, model) -> np.ndarray:
    """`--labels`' array as `count` class indices of the model's classes; a one-line
    error naming the file otherwise."""
    import numpy as np

    what = f"--labels {path}"
    classes = int(model.output_shape[-1])
    if values.ndim == 2 and values.shape[1] == 1:
        values = values[:, 0]
    if values.ndim != 1:
        hint = "; one-hot labels? save labels.argmax(1)" if values.ndim == 2 else ""
        raise UserError(
            f"{what} has shape {values.shape}; pass one class index per input, shape "
            f"({count},){hint}"
        )
    if len(values) != count:
        raise UserError(
            f"{what} has {len(values)} labels for the {count} inputs of --inputs; pass one "
            "per input"
        )
    integral = values.dtype.kind in "iu" or (
        values.dtype.kind == "f" and np.isfinite(values).all() and (values % 1 == 0).all()
    )
    if not integral:
        raise UserError(f"{what} has dtype {values.dtype}; pass integer class indices")
    values = values.astype(np.int64)
    outside = values[(values < 0) | (values >= classes)]
    if len(outside):
        raise UserError(
            f"{what} holds class {outside[0]}, but {model.name} has {classes} classes "
            f"(0 to {classes - 1})"
        )
    return values


def _cmd_cost(args: argparse.Namespace) -> int:
    from ienet_tf.cost import model_cost
    from ienet_tf.train import build_model, model_input_shape

    say = progress_lines("cost")
    if args.model is not None:
        if args.set:
            raise UserError("--set overrides a --config value; a --model is costed as saved")
        model = load_model(args)
    else:
        config = load_config(args)
        shape = model_input_shape(config)  # a config error before any progress line
        m = config.model
        say(f"building {m.name} ({m.variant}) at input {list(shape)} ...")
        model = build_model(config)
    say(f"counting {len(model.layers)} layers ...")
    cost = model_cost(model)
    print(json.dumps(cost.as_dict(), indent=2) if args.json else cost.table())
    return 0


def _parity_inputs(args: argparse.Namespace, inputs, model, config) -> tuple[np.ndarray, str]:
    """The export's parity batch and what it is: the first `PARITY_INPUTS` of `--inputs`
    (checked against the model), else of the config's test images."""
    from ienet_tf.train import test_images

    if inputs is not None:
        return checked_inputs(args, inputs, model)[:PARITY_INPUTS], f"inputs of {args.inputs}"
    return test_images(config, PARITY_INPUTS), f"{config.data.name} test images"


def _cmd_export(args: argparse.Namespace) -> int:
    from ienet_tf import config as config_lib
    from ienet_tf.export import DEFAULT_TOLERANCE, check_output_path, to_tflite
    from ienet_tf.train import load_run

    output = check_output_path(args.output, "--output")  # before anything slow
    if args.int8_io and not args.int8:
        raise UserError("--int8-io needs --int8 (a binary + int8 export)")
    checks = []
    if args.verify_arm:
        from ienet_tf.export.arm import ArmCheck

        checks.append(ArmCheck())  # a missing qemu or runtime: before the model loads
    inputs = read_inputs(args)
    if args.run is not None:
        optional_config(args)  # refuses a --config: the run has its own
        if args.int8:
            if args.which not in (None, "int8"):
                raise UserError("--int8 exports the run's int8 model; leave out --which")
            which = "int8"
            if MODEL_FILES["int8"] not in Run(args.run).artefacts():
                raise UserError(
                    f"{args.run} has no int8 model (model_int8.keras); fine-tune one with "
                    f"ienet train --config ... --run {args.run} --set export.int8=true"
                )
        else:
            which = _which(args)
        config, model = load_run(args.run, which)
        source = {"checkpoint": str(args.run), "which": which, "config": config_lib.to_dict(config)}
    else:
        config = optional_config(args)
        if config is None and inputs is None:
            raise UserError(
                "exporting --model needs parity inputs (Keras vs the LCE interpreter): "
                "--inputs FILE.npy, or --config CONFIG (its data set's test images)"
            )
        model = load_model(args)
        # No "config" key: that names the exported network (bench --compare reads it),
        # and a config given for its data need not build this model.
        source = {"model_file": str(args.model)}
        if config is not None:
            source["data_config"] = config_lib.to_dict(config)
    images, noun = _parity_inputs(args, inputs, model, config)
    source["parity_inputs"] = f"first {len(images)} {noun}"
    tolerance = DEFAULT_TOLERANCE if args.tolerance is None else args.tolerance
    if args.verbose:
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "0"  # LCE reads it at its first log line
    result = to_tflite(
        model,
        output,
        images,
        DEFAULT_TOLERANCE if args.int8 else tolerance,
        source,
        verbose=args.verbose,
        progress=progress_lines("export"),
        int8=args.int8,
        int8_io=args.int8_io or (args.int8 and config is not None and config.export.int8_io),
        lsb_tolerance=args.tolerance if args.int8 else None,
        checks=checks,
    )
    weights = result.weight_bytes
    p = result.parity
    sizes = f"binary weights {weights['binary']:,} B, "
    if args.int8:
        sizes += f"int8 weights {weights.get('int8', 0):,} B, "
        agreement = (
            f"{p.within_tolerance:.0%} with >= 50% of outputs within {p.lsb_tolerance:g} "
            f"output steps (median {p.median_lsb:.1f}, max {p.max_lsb:.0f} steps)"
        )
        kinds = f"\nop kinds: {result.int8['op_kinds']}"
    else:
        agreement = (
            f"{p.within_tolerance:.0%} within {p.tolerance:g}, max |diff| {p.max_abs_diff:.2e}"
        )
        kinds = ""
    print(
        f"{result.path}: {result.size_bytes:,} bytes ({sizes}float weights "
        f"{weights['float']:,} B); report {result.sidecar}\n"
        f"ops: {result.op_histogram}{kinds}\n"
        f"parity on {p.num_inputs} {noun}: {agreement}, top-1 agreement "
        f"{p.top1_agreement:.2%}"
    )
    if "arm" in result.checks:
        print(result.checks["arm"].table())
    return 0


def _cmd_import_torch(args: argparse.Namespace) -> int:
    from ienet_tf.interop import release
    from ienet_tf.runs import sha256
    from ienet_tf.train import build_model, start_from_weights

    config = load_config(args)
    Run(args.run).refuse_foreign()  # before the checkpoint is read
    if config.model.compat != "release":
        raise UserError(
            f"{args.config}: model.compat is {config.model.compat!r}; a release checkpoint "
            "needs the release's network: --set model.compat=release"
        )
    state_dict = release.read_checkpoint(args.weights)
    model = build_model(config)
    report = release.load_state_dict(model, state_dict)
    source = {"checkpoint": str(args.weights), "sha256": sha256(args.weights)}
    run = start_from_weights(config, model, args.run, source)
    print(
        f"{run.path}: {report.weights_set} weights of {model.name} set from "
        f"{report.keys_consumed} release keys ({len(report.keys_ignored)} ignored: "
        "num_batches_tracked and the release's unused bn3); evaluate or export it, or "
        f"continue training with ienet train --config {args.config} --run {run.path}"
    )
    return 0


def _read_tflite(path: Path) -> bytes:
    from ienet_tf.export.flatbuffer import verify

    flatbuffer = read_bytes(path, ".tflite file", UserError)
    try:
        verify(flatbuffer)
    except ValueError as error:
        raise UserError(f"{path}: {error} (write one with `ienet export`)") from None
    return flatbuffer


def _cmd_bench(args: argparse.Namespace) -> int:
    from ienet_tf.export.bench import benchmark, check_settings, counterparts, results_table

    model = args.model
    if model is None:
        raise UserError("which model? pass --model FILE.tflite (written by `ienet export`)")
    check_settings(args.threads, args.runs, args.warmup)  # before any slow conversion
    flatbuffers = {model.name: _read_tflite(model)}
    if args.compare:
        flatbuffers.update(
            counterparts(
                model, progress=progress_lines("bench"), flatbuffer=flatbuffers[model.name]
            )
        )
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
            source=str(model) if name == model.name else None,
        )
        for name, flatbuffer in flatbuffers.items()
    ]
    if args.json:
        print(json.dumps([r.as_dict() for r in results], indent=2))
    else:
        print(results_table(results))
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The `ienet` command line. One vocabulary: `--config` (+ `--set`) is what to build,
    `--run DIR` a run directory, `--model FILE` a saved Keras model (bench: a .tflite)
    instead of a run or a config, `--inputs FILE.npy` data of the user's own, `--output
    PATH` what a command writes; `--verbose` shows more."""
    parser = argparse.ArgumentParser(
        prog="ienet", description="Information-enhanced binary neural networks (IE-Net)."
    )
    parser.add_argument(
        "--debug", action="store_true", help="print the traceback of user errors too"
    )
    parser.add_argument("--version", action="version", version=f"ienet-tf {_version()}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    data_config = "with --model: the YAML config whose data set to use"

    def with_verbose(command):
        command.add_argument(
            "--verbose",
            type=int,
            choices=(0, 1, 2),
            help="Keras progress on stderr: 0 silent, 1 a progress bar, 2 one line per "
            "epoch (default: 1 on a terminal, else 2)",
        )
        command.add_argument(
            "--json", action="store_true", help="print the result as one JSON object"
        )

    train = commands.add_parser("train", help="train a config (resumes an interrupted run)")
    config_option(train)
    run_option(train, required=False, help="run directory (default: runs/<config>)")
    with_verbose(train)
    train.set_defaults(handler=_cmd_train)

    tune = commands.add_parser("tune", help="keras-tuner search over K and T_min/T_max")
    config_option(tune)
    tune.add_argument(
        "--output", type=path_arg, metavar="DIR", help="search directory (default: runs/<config>)"
    )
    with_verbose(tune)
    tune.set_defaults(handler=_cmd_tune)

    evaluate = commands.add_parser("evaluate", help="top-1 (top-5) of a saved run or model")
    run_or_model(evaluate, "a run directory of `ienet train` or `ienet import-torch`")
    evaluate.add_argument("--which", choices=RUN_FILES, help=WHICH_HELP)
    config_option(evaluate, required=False, help=data_config + " (its test split)")
    inputs_option(evaluate, "to evaluate on, instead of the test split")
    evaluate.add_argument(
        "--labels", type=path_arg, metavar="FILE.npy", help="with --inputs: their N classes"
    )
    evaluate.add_argument(
        "--bn-reestimation-batches",
        type=positive_arg(int),
        metavar="N",
        help="first re-estimate the BatchNorm statistics on N un-augmented training batches "
        "(as train.bn_reestimation_batches does; nothing is saved): shows how much the "
        "number owes to the moving statistics",
    )
    evaluate.set_defaults(handler=_cmd_evaluate)

    cost = commands.add_parser("cost", help="parameters, memory, MACs, binary ops, FLOPs")
    what = cost.add_mutually_exclusive_group(required=True)
    model_option(what)  # before --config: usage shows the group only if nothing is between
    config_option(cost, required=False, help="YAML config of the model to build", group=what)
    cost.add_argument("--json", action="store_true", help="print one JSON object, not a table")
    cost.set_defaults(handler=_cmd_cost)

    export = commands.add_parser("export", help="LCE .tflite, verified (ops and parity)")
    run_or_model(export, "the run directory to export")
    export.add_argument(
        "--output", type=path_arg, required=True, metavar="FILE", help="the .tflite to write"
    )
    export.add_argument("--which", choices=RUN_FILES, help=WHICH_HELP)
    export.add_argument(
        "--tolerance",
        type=positive_arg(float),
        help="max |LCE - Keras| on the logits (default 1e-3); with --int8, output steps (8)",
    )
    export.add_argument(
        "--int8",
        action="store_true",
        help="binary + int8: the run's int8 QAT model (train with --set export.int8=true)",
    )
    export.add_argument(
        "--int8-io", action="store_true", help="with --int8: int8 input and output tensors"
    )
    export.add_argument(
        "--verbose",
        action="store_true",
        help="show the LCE converter's log (shown anyway when the conversion fails)",
    )
    export.add_argument(
        "--verify-arm",
        action="store_true",
        help="then run the file on LCE's aarch64 kernels under qemu in all three modes on the "
        "parity inputs (`ienet verify-arm`); nothing is written if one disagrees",
    )
    inputs_option(export, f"for the parity check (its first {PARITY_INPUTS})")
    config_option(export, required=False, help=data_config + " (its test images for parity)")
    export.set_defaults(handler=_cmd_export)

    report.add_parser(commands)
    verify_arm.add_parser(commands)

    import_torch = commands.add_parser(
        "import-torch", help="start a run from the IE-Net authors' PyTorch checkpoint"
    )
    import_torch.add_argument(
        "--weights",
        type=path_arg,
        metavar="FILE",
        required=True,
        help="the release's checkpoint: .pth / .pth.tar / .th (torch) or .npz",
    )
    config_option(import_torch)
    run_option(import_torch, help="the new run directory to write")
    import_torch.set_defaults(handler=_cmd_import_torch)

    bench = commands.add_parser("bench", help="LCE interpreter latency of a .tflite")
    bench.add_argument(
        "--model",
        type=path_arg,
        metavar="FILE",
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
        "--compare",
        action="store_true",
        help="also time the float and Bi-Real counterparts (of a registered network, read "
        "from the sidecar or the file)",
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
    # The application, not the library, chooses what its log shows: larq's per-layer
    # "starved weights" warning does not apply to IEESign's standardized weights (see its
    # docstring) and would repeat once per layer of every network built.
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.debug:
        logging.getLogger("larq.layers_base").setLevel(logging.ERROR)
    try:
        code = args.handler(args)
        sys.stdout.flush()  # a closed pipe shows here, not at exit
        return code
    except IENetError as error:
        if args.debug:
            traceback.print_exc()
        print(f"ienet {args.command}: error: {one_line(error, 2000)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"ienet {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # `ienet ... | head`: the reader has gone; nothing more to say (the shell's 141).
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except Exception as error:
        failure = system_failure(error)
        if failure is None:
            raise  # a bug: keep the traceback
        if args.debug:
            traceback.print_exc()
        print(f"ienet {args.command}: error: {failure}", file=sys.stderr)
        return 2


#: The operating system's refusals a user fixes (the disk, the permissions), by errno.
_SYSTEM_FIXES = {
    errno.ENOSPC: "free some space",
    errno.EDQUOT: "free some space (disk quota)",
    errno.EROFS: "choose a writable location",
    errno.EACCES: "choose a location you may write, or fix its permissions",
    errno.EPERM: "choose a location you may write, or fix its permissions",
}


def system_failure(error: BaseException) -> str | None:
    """One line for a failure of the operating system's (disk full, a read-only or
    forbidden location), raised as `OSError` or inside a TensorFlow error; None for
    anything else. Every write is atomic, so nothing half-written is left: the rerun
    continues from what was committed."""
    code = getattr(error, "errno", None)
    if code not in _SYSTEM_FIXES:
        # TensorFlow's file system reports the strerror inside its own error types.
        text = str(error)
        code = next((c for c in _SYSTEM_FIXES if os.strerror(c) in text), None)
        if code is None or not _is_tensorflow_error(error):
            return None
    where = getattr(error, "filename", None)
    return (
        f"{os.strerror(code)}{f' ({where})' if where else ''}; {_SYSTEM_FIXES[code]} and "
        "rerun (what was committed is kept, nothing half-written is left)."
    )


def _is_tensorflow_error(error: BaseException) -> bool:
    tf = sys.modules.get("tensorflow")
    return tf is not None and isinstance(error, tf.errors.OpError)


if __name__ == "__main__":
    sys.exit(main())
