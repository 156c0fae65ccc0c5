"""Cost and size tables: the IE-Net paper's Table 6 for every model, and .tflite sizes.

    .venv/bin/python benchmarks/cost_tables.py [--only cost|sizes] [--smoke] [--output-dir DIR]

- benchmarks/results/cost.json: `ienet_tf.cost.model_cost` (what `ienet cost` prints) of
  every registered model x every benchmark variant (`common.VARIANTS`) at the model's
  default input shape: parameters, memory (Mbit), FP MACs, binary ops, FLOPs and
  `flops_paper`, beside the published Table 6 numbers (ResNet-18/34).
- benchmarks/results/sizes.json: `.tflite` sizes from `ienet_tf.export.convert` (the
  converter and op checks `ienet export` runs) of every model as fp, bireal and ienet (and
  ienet+el for the ResNet-26 models, Elastic-Link's network): file size, bitpacked binary
  and float weight bytes, `LceBconv2d` count, float/binary size ratios. Weights are random
  (made to look trained with `as_if_trained`, so every IE-BC branch converts to its own
  `LceBconv2d`); the size does not depend on training. ImageNet models convert at 32x32:
  their weights do not depend on the input size (global-pool head), and 224x224 only makes
  the conversion slower (benchmarks/results/export.json has ResNet-18 at 224x224).

`--smoke` does the tiny `convnet` only, into runs/bench-smoke/results/.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import tensorflow as tf

from ienet_tf import export, models
from ienet_tf.cost import model_cost
from ienet_tf.models.testing import as_if_trained

if __package__ in (None, ""):  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.common import (
    RESULTS,
    SMOKE_DIR,
    VARIANTS,
    errors,
    num,
    provenance_lines,
    result_section,
    run_script,
    table,
    write_result,
)

# The IE-Net paper's Table 6 (SPEC §6): memory in Mbit, FLOPs = FP MACs + binary ops / 64.
PAPER_TABLE6 = {
    "resnet18": {
        "ienet": {"memory_mbit": 33.8, "flops": 1.63e8},
        "bireal": {"memory_mbit": 33.6, "flops": 1.63e8},
        "fp": {"memory_mbit": 374.1, "flops": 1.81e9},
    },
    "resnet34": {
        "ienet": {"memory_mbit": 44.1, "flops": 1.93e8},
        "bireal": {"memory_mbit": 43.7},
        "fp": {"memory_mbit": 697.3, "flops": 3.66e9},
    },
}
SIZE_VARIANTS = ("fp", "bireal", "ienet")
ELASTIC_LINK_MODELS = ("resnet26", "resnet26_cifar")  # + ienet+el in the size table
SIZE_INPUT = {"resnet18": (32, 32, 3), "resnet34": (32, 32, 3), "resnet26": (32, 32, 3)}
SMOKE_MODELS = ("convnet",)


def _classifier(model: tf.keras.Model) -> tf.keras.Model:
    """The deployable classifier (IR²Net's training wrapper holds one)."""
    return getattr(model, "classifier", model)


def _paper_comparison(name: str, variant: str, cost: dict) -> dict | None:
    paper = PAPER_TABLE6.get(name, {}).get(variant)
    if not paper:
        return None
    ours = {"memory_mbit": cost["memory_mbit"], "flops": cost["flops_paper"]}
    return {
        "paper": paper,
        "relative_difference": {key: ours[key] / value - 1 for key, value in paper.items()},
    }


def cost_row(name: str, variant: str) -> dict:
    """Table-6 totals of `name` as `variant` at its default input shape."""
    start = time.perf_counter()
    try:
        cost = model_cost(models.build(name, variant)).as_dict()
    except Exception as error:  # a variant a model cannot have: recorded, not fatal
        return {"model": name, "variant": variant, "error": f"{type(error).__name__}: {error}"}
    finally:
        tf.keras.backend.clear_session()
    row = {
        "model": name,
        "variant": variant,
        "input_shape": list(models.spec(name).input_shape),
        **{key: value for key, value in cost.items() if key not in ("layers", "model")},
        "keras_name": cost["model"],
        "seconds": time.perf_counter() - start,
        "error": None,
    }
    comparison = _paper_comparison(name, variant, row)
    return {**row, **({"table6": comparison} if comparison else {})}


def size_row(name: str, variant: str) -> dict:
    """The converted `.tflite` of `name` as `variant`: sizes and binary-kernel count."""
    shape = SIZE_INPUT.get(name, models.spec(name).input_shape)
    start = time.perf_counter()
    try:
        model = as_if_trained(_classifier(models.build(name, variant, input_shape=shape)))
        flatbuffer, ops = export.convert(model)
    except Exception as error:
        return {"model": name, "variant": variant, "error": f"{type(error).__name__}: {error}"}
    finally:
        tf.keras.backend.clear_session()
    return {
        "model": name,
        "variant": variant,
        "input_shape": list(shape),
        "size_bytes": len(flatbuffer),
        "weight_bytes": export.read_graph(flatbuffer).weight_bytes(),
        "LceBconv2d": ops.get("LceBconv2d", 0),
        "convert_s": time.perf_counter() - start,
        "error": None,
    }


def _size_variants(name: str) -> tuple[str, ...]:
    extra = ("ienet+el",) if name in ELASTIC_LINK_MODELS else ()
    return (*SIZE_VARIANTS, *extra)


def _ratios(rows: list[dict]) -> dict:
    """size(fp) / size(binary variant), per model."""
    sizes = {(r["model"], r["variant"]): r["size_bytes"] for r in rows if not r["error"]}
    ratios: dict[str, dict] = {}
    for (name, variant), size in sizes.items():
        fp = sizes.get((name, "fp"))
        if variant != "fp" and fp:
            ratios.setdefault(name, {})[f"fp_over_{variant}"] = fp / size
    return ratios


def cost_table(names: Sequence[str], output: Path) -> int:
    """Write the cost table; returns the number of failed rows."""
    start = time.perf_counter()
    rows = []
    for name in names:
        for variant in VARIANTS:
            rows.append(cost_row(name, variant))
            _report(rows[-1], lambda r: f"{r['memory_mbit']:.2f} Mbit, FLOPs {r['flops']:.3g}")
    write_result(
        output,
        {
            "benchmark": "cost",
            "variants": list(VARIANTS),
            "conventions": "memory: 1 Mbit = 1e6 bits (binary weights 1 bit, the rest 32); "
            "FLOPs = FP MACs + binary ops / 64 (all K branches); flops_paper: one branch per "
            "IE-BC layer (Table 6's convention; compared with the paper)",
            "wall_seconds": time.perf_counter() - start,
            "rows": rows,
        },
    )
    print(f"wrote {output}")
    return sum(1 for row in rows if row["error"])


def size_table(names: Sequence[str], output: Path) -> int:
    """Write the size table; returns the number of failed rows."""
    start = time.perf_counter()
    rows = []
    for name in names:
        for variant in _size_variants(name):
            rows.append(size_row(name, variant))
            _report(rows[-1], lambda r: f"{r['size_bytes'] / 1e6:.3f} MB, {r['convert_s']:.0f} s")
    write_result(
        output,
        {
            "benchmark": "sizes",
            "weights": "random, as_if_trained (size does not depend on training)",
            "wall_seconds": time.perf_counter() - start,
            "rows": rows,
            "ratios": _ratios(rows),
        },
    )
    print(f"wrote {output}")
    return sum(1 for row in rows if row["error"])


def _report(row: dict, describe) -> None:
    text = f"FAILED: {row['error']}" if row["error"] else describe(row)
    print(f"{row['model']:>15} {row['variant']:>13}: {text}", flush=True)


# ----------------------------------------------------------------------------- docs/results.md

COST_HEADER = (
    "model",
    "variant",
    "input",
    "params",
    "memory Mbit",
    "FP MACs",
    "binary ops",
    "FLOPs",
    "FLOPs (one branch)",
    "paper (ours - paper)",
)
SIZE_HEADER = (
    "model",
    "variant",
    "input",
    "size MB",
    "binary weight bytes",
    "float weight bytes",
    "LceBconv2d",
    "fp size / this",
)


def _shape(row: dict) -> str:
    """The row's input shape, "32x32x3"."""
    return "x".join(str(s) for s in row["input_shape"])


def _failed(rows: Sequence[dict]) -> list[str]:
    """The rows that failed, named by model and variant."""
    return errors(rows, lambda row: f"{row['model']} {row['variant']}")


def _paper_cell(published: dict, diff: dict) -> str:
    """Table 6's memory and FLOPs of a model, each with our relative difference."""
    parts = []
    if "memory_mbit" in published:
        parts.append(f"{published['memory_mbit']} Mbit ({diff['memory_mbit'] * 100:+.1f}%)")
    if "flops" in published:
        parts.append(f"{published['flops']:.3g} FLOPs ({diff['flops'] * 100:+.1f}%)")
    return "; ".join(parts) or "-"


def cost_rows(result: dict) -> list[tuple]:
    """A row per model x variant of cost.json that did not fail (`COST_HEADER`)."""
    rows = []
    for row in result["rows"]:
        if row.get("error"):
            continue
        paper = row.get("table6", {})
        rows.append(
            (
                row["model"],
                row["variant"],
                _shape(row),
                f"{row['params']:,}",
                f"{row['memory_mbit']:.2f}",
                num(row["fp_macs"]),
                num(row["binary_ops"]),
                num(row["flops"]),
                num(row["flops_paper"]),
                _paper_cell(paper.get("paper", {}), paper.get("relative_difference", {})),
            )
        )
    return rows


def size_rows(result: dict) -> list[tuple]:
    """A row per model x variant of sizes.json that did not fail (`SIZE_HEADER`)."""
    ratios = result.get("ratios", {})
    rows = []
    for row in result["rows"]:
        if row.get("error"):
            continue
        ratio = ratios.get(row["model"], {}).get(f"fp_over_{row['variant']}")
        weights = row["weight_bytes"]
        rows.append(
            (
                row["model"],
                row["variant"],
                _shape(row),
                f"{row['size_bytes'] / 1e6:.3f}",
                f"{weights.get('binary', 0):,}",
                f"{weights.get('float', 0):,}",
                row["LceBconv2d"],
                f"{ratio:.1f}x" if ratio else "-",
            )
        )
    return rows


@result_section(
    "cost.json",
    "## Model cost (the paper's Table 6)",
    "python benchmarks/cost_tables.py --only cost",
)
def cost_section(result: dict) -> list[str]:
    """`ienet cost` of every model x variant beside the paper's Table 6."""
    return [
        f"`ienet cost` of every registered model x variant at its default input size. "
        f"{result.get('conventions', '')}. The paper column is Table 6 (memory Mbit / FLOPs).",
        "",
        *table(COST_HEADER, cost_rows(result)),
        *_failed(result["rows"]),
        *provenance_lines(result),
    ]


@result_section("sizes.json", "## `.tflite` sizes", "python benchmarks/cost_tables.py --only sizes")
def sizes_section(result: dict) -> list[str]:
    """The .tflite size of every model x size variant, random weights."""
    return [
        "LCE conversion (`ienet_tf.export.convert`, the checks of `ienet export`) of random "
        f"weights ({result.get('weights', '')}); binary weights are bitpacked, float weights "
        "32-bit.",
        "",
        *table(SIZE_HEADER, size_rows(result)),
        *_failed(result["rows"]),
        *provenance_lines(result),
    ]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", choices=("cost", "sizes"), help="one of the two tables")
    parser.add_argument("--smoke", action="store_true", help="the tiny convnet only")
    parser.add_argument("--models", nargs="+", help="default: every registered model")
    parser.add_argument("--output-dir", type=Path, help="default benchmarks/results/")
    args = parser.parse_args(argv)
    names = args.models or (SMOKE_MODELS if args.smoke else models.available())
    output_dir = args.output_dir or (SMOKE_DIR / "results" if args.smoke else RESULTS)
    failed = 0
    if args.only in (None, "cost"):
        failed += cost_table(names, output_dir / "cost.json")
    if args.only in (None, "sizes"):
        failed += size_table(names, output_dir / "sizes.json")
    if failed:
        print(f"{failed} row(s) failed (recorded in the result files)", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    run_script(main)
