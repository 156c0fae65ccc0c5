"""Binary + int8: .tflite sizes for every model, and accuracy / latency of a trained run.

    .venv/bin/python benchmarks/int8.py sizes [--models convnet resnet18 ...] [--imagenet-size 224]
    .venv/bin/python benchmarks/int8.py accuracy --run RUN [--qat-epochs 2] [--test-subset N]
    (or python -m benchmarks.int8 ...)

Both write into benchmarks/results/int8.json (`--output`), each its own section, with the
provenance block (command, commit, machine, versions).

- `sizes`: every registered model at its default input size (`--imagenet-size` for the
  ImageNet ones: the file size does not depend on it, the conversion time does) as float
  (`fp`), binary + float remainder (`ienet`, what `ienet export` writes) and binary + int8
  (the `ienet` model's int8 QAT counterpart, `ienet_tf.int8.qat_model`, converted with the
  op checks of `to_tflite(..., int8=True)`): file size, constant bytes split into binary /
  int8 / float, op kinds. Weights are random, made to look trained (`as_if_trained`); the
  size does not depend on training, the ranges are calibrated on random inputs.
- `accuracy --run RUN`: a trained run directory (`ienet train`). The binary + float parent
  is its final model (Keras and its `.tflite` in the LCE interpreter); the binary + int8
  model is the run's int8 QAT model when the run has one (`model_int8.keras`, written by
  `ienet train --set export.int8=true`), else this script makes it with the same
  `ienet_tf.train.int8_fine_tune`: `qat_model`, calibration on `--calibration-batches`
  training batches and `--qat-epochs` epochs of fine-tuning with `--qat-optimizer`
  (default Adam) at `--qat-lr` (cosine to 0 over the steps), seeded with the run's
  `train.seed`. Both `.tflite` files are evaluated on the test
  split in the LCE interpreter (the int8 one with parity against its QAT model), and timed
  on x86 (single image, 1 thread).

x86 latency is not an ARM number: LCE has no optimized binary kernels for x86.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import tensorflow as tf

from ienet_tf import export, int8, models
from ienet_tf.export import int8_verify as verify
from ienet_tf.export.bench import X86_CAVEAT, benchmark
from ienet_tf.models.testing import as_if_trained

if __package__ in (None, ""):  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.common import (
    RESULTS,
    merge_result,
    num,
    provenance_lines,
    result_section,
    run_script,
    table,
)

OUTPUT = RESULTS / "int8.json"
SIZE_VARIANTS = ("fp", "ienet", "ienet int8")
#: The issue's goal for ImageNet ResNet-18 binary + int8.
RESNET18_GOAL_BYTES = 2_300_000
INT8_MODEL_FILE = "model_int8.keras"


def _classifier(model: tf.keras.Model) -> tf.keras.Model:
    return getattr(model, "classifier", model)


def _input_shape(name: str, imagenet_size: int) -> tuple[int, int, int]:
    spec = models.spec(name)
    if spec.family == "imagenet":
        return (imagenet_size, imagenet_size, spec.input_shape[-1])
    return tuple(spec.input_shape)


def size_row(name: str, variant: str, shape: tuple[int, int, int]) -> dict:
    """One model as `fp`, `ienet` (binary + float) or `ienet int8` (binary + int8)."""
    start = time.perf_counter()
    row = {"model": name, "variant": variant, "input_shape": list(shape)}
    try:
        base = "ienet" if variant == "ienet int8" else variant
        model = as_if_trained(_classifier(models.build(name, base, input_shape=shape)))
        if variant == "ienet int8":
            rng = np.random.default_rng(0)
            batches = [rng.normal(size=(4, *shape)).astype(np.float32) for _ in range(2)]
            qat = int8.qat_model(model, batches)
            flatbuffer, ops, _ = export.convert_int8(qat)
            summary = verify.op_summary(ops)
            row["op_kinds"] = {k: summary[k] for k in ("int8", "binary", "float", "io")}
            row["LceBconv2d"] = summary["ops"].get("binary", {}).get("LceBconv2d", 0)
            weights = verify.int8_weight_bytes(flatbuffer)
        else:
            flatbuffer, histogram = export.convert(model)
            row["LceBconv2d"] = histogram.get("LceBconv2d", 0)
            weights = verify.int8_weight_bytes(flatbuffer)
    except Exception as error:  # recorded, not fatal: the table shows what failed
        return {**row, "error": f"{type(error).__name__}: {error}"}
    finally:
        tf.keras.backend.clear_session()
    return {
        **row,
        "size_bytes": len(flatbuffer),
        "weight_bytes": weights,
        "seconds": time.perf_counter() - start,
        "error": None,
    }


def sizes(names: Sequence[str], imagenet_size: int) -> dict:
    start = time.perf_counter()
    rows = []
    for name in names:
        shape = _input_shape(name, imagenet_size)
        for variant in SIZE_VARIANTS:
            row = size_row(name, variant, shape)
            rows.append(row)
            text = row["error"] or (
                f"{row['size_bytes'] / 1e6:.3f} MB (binary {row['weight_bytes']['binary']:,} B, "
                f"int8 {row['weight_bytes']['int8']:,} B, float {row['weight_bytes']['float']:,}"
                f" B), {row['seconds']:.0f} s"
            )
            print(f"{name:>15} {variant:>10}: {text}", flush=True)
    table_bytes = {}
    for row in rows:
        if not row["error"]:
            table_bytes.setdefault(row["model"], {})[row["variant"]] = row["size_bytes"]
    for found in table_bytes.values():
        if "ienet" in found and "ienet int8" in found:
            found["int8_over_float_remainder"] = found["ienet int8"] / found["ienet"]
        if "fp" in found and "ienet int8" in found:
            found["fp_over_int8"] = found["fp"] / found["ienet int8"]
    goal = table_bytes.get("resnet18", {}).get("ienet int8")
    return {
        "weights": "random, as_if_trained; int8 ranges calibrated on random inputs (the size "
        "does not depend on either)",
        "imagenet_size": imagenet_size,
        "wall_seconds": time.perf_counter() - start,
        "rows": rows,
        "table_bytes": table_bytes,
        "resnet18_goal": {
            "goal_bytes": RESNET18_GOAL_BYTES,
            "bytes": goal,
            "met": None if goal is None else goal <= RESNET18_GOAL_BYTES,
        },
    }


# --- accuracy of a trained run ---------------------------------------------------------


def _tflite_top1(flatbuffer: bytes, dataset, predict) -> tuple[float, int]:
    correct = total = 0
    for images, labels in dataset:
        logits = predict(flatbuffer, np.asarray(images))
        correct += int(np.sum(logits.argmax(-1) == np.asarray(labels)))
        total += len(labels)
    return correct / total, total


def _keras_top1(model: tf.keras.Model, dataset) -> float:
    correct = total = 0
    for images, labels in dataset:
        logits = model(images, training=False).numpy()
        correct += int(np.sum(logits.argmax(-1) == np.asarray(labels)))
        total += len(labels)
    return correct / total


def accuracy(args) -> dict:
    from ienet_tf.runs import Run
    from ienet_tf.train import int8_fine_tune, load_datasets, load_run

    config, model = load_run(args.run, "final")
    if args.test_subset:
        config = config.replace(data=config.data.replace(test_subset=args.test_subset))
    datasets = load_datasets(config, ("train", "test"))
    model = _classifier(model)
    result: dict = {
        "run": str(args.run),
        "model": model.name,
        "config": config.model.model_dump(),
    }

    start = time.perf_counter()
    parent_fb, _ = export.convert(model)
    result["float_remainder"] = {
        "keras_top1": _keras_top1(model, datasets["test"]),
        "tflite_top1": _tflite_top1(parent_fb, datasets["test"], export.lce_predict)[0],
        "size_bytes": len(parent_fb),
        "weight_bytes": verify.int8_weight_bytes(parent_fb),
    }
    print(f"binary + float: {result['float_remainder']}", flush=True)

    run = Run(args.run)
    if (run.path / INT8_MODEL_FILE).is_file() and not args.refine:
        qat = _classifier(tf.keras.models.load_model(run.path / INT8_MODEL_FILE))
        result["qat"] = {
            "source": f"{INT8_MODEL_FILE} of the run",
            "keras_top1": _keras_top1(qat, datasets["test"]),
        }
    else:  # the same fine-tune as `ienet train --set export.int8=true`
        export_cfg = config.export.replace(
            int8=True,
            int8_epochs=args.qat_epochs,
            int8_optimizer=args.qat_optimizer,
            int8_learning_rate=args.qat_lr,
            int8_calibration_batches=args.calibration_batches,
        )
        config = config.replace(export=export_cfg)
        qat, metrics = int8_fine_tune(config, model, datasets, verbose=2)
        result["qat"] = {
            "source": "this script (ienet_tf.train.int8_fine_tune)",
            "calibration_batches": args.calibration_batches,
            "keras_top1_calibrated": metrics["int8_test_accuracy_calibrated"],
            "epochs": args.qat_epochs,
            "optimizer": args.qat_optimizer,
            "learning_rate": metrics["int8_learning_rate"],
            "keras_top1": metrics["int8_test_accuracy"],
        }

    images, _ = next(iter(datasets["test"]))
    with tempfile.TemporaryDirectory() as folder:
        exported = export.to_tflite(
            qat, Path(folder) / "model_int8.tflite", np.asarray(images)[:64], int8=True
        )
        int8_fb = exported.path.read_bytes()
    top1, total = _tflite_top1(int8_fb, datasets["test"], verify.int8_predict)
    result["int8"] = {
        "tflite_top1": top1,
        "size_bytes": exported.size_bytes,
        "weight_bytes": exported.weight_bytes,
        "parity": dataclasses.asdict(exported.parity),
        "op_kinds": exported.int8["op_kinds"],
        "ops_by_kind": exported.int8["ops_by_kind"],
    }
    delta = result["int8"]["tflite_top1"] - result["float_remainder"]["tflite_top1"]
    result["test_examples"] = total
    result["int8_minus_float_points"] = 100 * delta
    # The goal: binary + int8 loses at most half a point against its float-remainder parent.
    result["within_half_point"] = 100 * delta >= -0.5
    print(f"binary + int8: {result['int8']['tflite_top1']:.4f} ({100 * delta:+.2f} points)")

    result["latency_x86"] = {
        "caveat": X86_CAVEAT,
        "float_remainder": benchmark(parent_fb, "binary+float", runs=args.runs).as_dict(),
        "int8": benchmark(int8_fb, "binary+int8", runs=args.runs).as_dict(),
    }
    result["wall_seconds"] = time.perf_counter() - start
    return result


# --- docs/results.md ---------------------------------------------------------------------

SIZES_HEADER = (
    "model",
    "float",
    "binary + float",
    "binary + int8",
    "binary / int8 / float bytes (int8 file)",
)
ACCURACY_HEADER = ("model", "test top-1 %", "bytes", "x86 ms (1 thread)")


def size_rows(result: dict) -> list[list[str]]:
    """Per model of the `sizes` section: the MB of each variant ("-" if not converted, the
    error if it failed) and the int8 file's binary / int8 / float constant bytes."""
    by_model: dict[str, dict[str, dict]] = {}
    for row in result["rows"]:
        by_model.setdefault(row["model"], {})[row["variant"]] = row

    def mb(row: dict | None) -> str:
        if row is None or row.get("error"):
            return "-" if row is None else f"failed: {row['error']}"
        return f"{row['size_bytes'] / 1e6:.3f}"

    rows = []
    for model, variants in by_model.items():
        int8_row = variants.get("ienet int8")
        split = "-"
        if int8_row and not int8_row.get("error"):
            w = int8_row["weight_bytes"]
            split = f"{w['binary']:,} / {w['int8']:,} / {w['float']:,}"
        rows.append([model, mb(variants.get("fp")), mb(variants.get("ienet")), mb(int8_row), split])
    return rows


def accuracy_rows(result: dict) -> list[list[str]]:
    """The binary + float and binary + int8 models of the `accuracy` section: test top-1 %,
    bytes and x86 median ms."""
    latency = result.get("latency_x86", {})
    return [
        [
            label,
            f"{result[key]['tflite_top1'] * 100:.2f}",
            f"{result[key]['size_bytes']:,}",
            num(latency.get(key, {}).get("median_ms")),
        ]
        for key, label in (("float_remainder", "binary + float"), ("int8", "binary + int8"))
    ]


def _size_lines(result: dict | None) -> list[str]:
    """The `sizes` table with what it shows; nothing without the section."""
    if not result:
        return []
    side = result.get("imagenet_size", 224)
    return [
        f".tflite sizes in MB at each model's default input size (ImageNet models at "
        f"{side}x{side}); weights: {result.get('weights', 'random')}. The binary + int8 file "
        "has zero float convolution or dense ops and zero `LceDequantize` (the exporter's op "
        "check).",
        "",
        *table(SIZES_HEADER, size_rows(result)),
    ]


def _accuracy_lines(result: dict | None) -> list[str]:
    """The `accuracy` pair with the QAT settings; nothing without the section."""
    if not result:
        return []
    qat = result["qat"]
    calibrated = qat.get("keras_top1_calibrated")
    return [
        f"Accuracy of `{result['model']}` ({result['config']['name']}, "
        f"{result['test_examples']} test images, both in the LCE interpreter): int8 minus "
        f"float remainder {result['int8_minus_float_points']:+.2f} points (goal: at most "
        f"0.5 below it: {'met' if result['within_half_point'] else 'NOT met'}); QAT "
        f"fine-tune {qat.get('epochs', '?')} epoch(s), "
        f"{qat.get('optimizer', 'the run optimizer')} at lr "
        f"{qat.get('learning_rate', float('nan')):g}"
        + (
            f" (calibration alone: Keras {calibrated * 100:.2f}%)."
            if calibrated is not None
            else "."
        ),
        "",
        *table(ACCURACY_HEADER, accuracy_rows(result)),
        result.get("latency_x86", {}).get("caveat", ""),
        "",
    ]


@result_section(
    OUTPUT.name,
    "## Binary + int8: the float remainder in 8 bits",
    "python benchmarks/int8.py sizes; python benchmarks/int8.py accuracy --run RUN",
)
def section(result: dict) -> list[str]:
    """Binary + int8: sizes of every model, and the accuracy pair of a trained run."""
    return [
        *_size_lines(result.get("sizes")),
        *_accuracy_lines(result.get("accuracy")),
        *provenance_lines(result),
    ]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    size_parser = commands.add_parser("sizes", help=".tflite sizes of every model")
    size_parser.add_argument("--models", nargs="+", help="default: every registered model")
    size_parser.add_argument("--imagenet-size", type=int, default=224)
    acc = commands.add_parser("accuracy", help="binary + float vs binary + int8 of a run")
    acc.add_argument("--run", type=Path, required=True, help="a finished `ienet train` run")
    acc.add_argument("--qat-epochs", type=int, default=2)
    acc.add_argument("--qat-optimizer", default="adam", choices=("adam", "sgd", "keras_sgd"))
    acc.add_argument(
        "--qat-lr", type=float, help="default: 1e-5 with adam, the run's LR / 100 with SGD"
    )
    acc.add_argument("--calibration-batches", type=int, default=8)
    acc.add_argument("--test-subset", type=int, help="evaluate the first N test examples")
    acc.add_argument("--runs", type=int, default=20, help="timed runs per model")
    acc.add_argument(
        "--refine",
        action="store_true",
        help=f"fine-tune here even if the run has {INT8_MODEL_FILE}",
    )
    for sub in (size_parser, acc):
        sub.add_argument("--output", type=Path, default=OUTPUT)
    args = parser.parse_args(argv)
    if args.command == "sizes":
        payload = sizes(args.models or models.available(), args.imagenet_size)
        merge_result(args.output, "sizes", payload)
        failed = sum(1 for row in payload["rows"] if row["error"])
        print(f"wrote {args.output}; ResNet-18 goal: {payload['resnet18_goal']}")
        return 1 if failed else 0
    payload = accuracy(args)
    merge_result(args.output, "accuracy", payload)
    print(f"wrote {args.output}\n{X86_CAVEAT}")
    return 0


if __name__ == "__main__":
    run_script(main)
