"""Deployment numbers: .tflite sizes, x86 LCE latency, parity for every model x variant.

    .venv/bin/python benchmarks/export_bench.py [--runs 20] [--skip-parity]

Writes benchmarks/results/export.json (command, commit, versions, machine, date) and prints
a summary. Weights are random (sizes and latency do not depend on training), made to look
trained (`as_if_trained`: distinct thresholds, so every branch converts to its own
LceBconv2d, and BN gammas of order 1, so parity is not trivially met by ~0 outputs).
x86 latency is not an ARM speed-up: LCE has no optimized x86 kernels.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import tensorflow as tf

from ienet_tf import export, models
from ienet_tf.export.bench import X86_CAVEAT, benchmark
from ienet_tf.models.testing import as_if_trained

if __package__ in (None, ""):  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.common import (
    RESULTS,
    provenance_lines,
    result_section,
    run_script,
    table,
    write_result,
)

SMALL_INPUT = {"convnet": (8, 8, 1), "resnet18": (32, 32, 3), "resnet34": (32, 32, 3)}


# ----------------------------------------------------------------------------- docs/results.md

RESNET18_HEADER = (
    "variant",
    "size MB",
    "binary weight bytes",
    "float weight bytes",
    "LceBconv2d",
    "median ms",
)
PARITY_HEADER = ("model", "variant", "LceBconv2d", "within 1e-3", "max abs diff", "top-1 agreement")


def resnet18_rows(result: dict) -> list[tuple]:
    """Per variant of ResNet-18 at 224x224: size, weight bytes, LceBconv2d, x86 median ms."""
    return [
        (
            variant,
            f"{entry['size_bytes'] / 1e6:.2f}",
            f"{entry['weight_bytes'].get('binary', 0):,}",
            f"{entry['weight_bytes'].get('float', 0):,}",
            entry.get("LceBconv2d", "-"),
            f"{entry['latency_ms']['median_ms']:.1f}",
        )
        for variant, entry in result.get("resnet18_224", {}).items()
        if variant != "ratios"
    ]


def parity_rows(result: dict) -> list[tuple]:
    """Per model x variant: how closely the LCE interpreter matches Keras."""
    return [
        (
            row["model"],
            row["variant"],
            row["LceBconv2d"],
            f"{row['within_tolerance']:.0%}",
            f"{row['max_abs_diff']:.1e}",
            f"{row['top1_agreement']:.0%}",
        )
        for row in result.get("parity", [])
    ]


@result_section(
    "export.json",
    "## Deployment: ResNet-18 at 224x224 and LCE parity",
    "python benchmarks/export_bench.py",
)
def section(result: dict) -> list[str]:
    """ResNet-18's size and x86 latency at 224x224, and LCE-vs-Keras parity of every model."""
    lines = [
        "x86 latency in the LCE Python interpreter, 1 thread (LCE has no optimized x86 kernels: "
        "not an ARM speed-up).",
        "",
        *table(RESNET18_HEADER, resnet18_rows(result)),
    ]
    ratios = result.get("resnet18_224", {}).get("ratios", {})
    if ratios:
        lines += [", ".join(f"{key}: {value:.2f}" for key, value in ratios.items()), ""]
    parity = parity_rows(result)
    if parity:
        lines += ["LCE interpreter vs Keras:", "", *table(PARITY_HEADER, parity)]
    return [*lines, *provenance_lines(result)]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--skip-parity", action="store_true")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    results: dict = {"resnet18_224": {}, "parity": []}

    for variant, k in (("ienet", 2), ("bireal", None), ("fp", None)):
        model = as_if_trained(models.build("resnet18", variant, k=k))
        flatbuffer, ops = export.convert(model)
        timing = benchmark(flatbuffer, f"resnet18 {variant}", threads=1, runs=args.runs)
        results["resnet18_224"][variant] = {
            "size_bytes": len(flatbuffer),
            "weight_bytes": export.read_graph(flatbuffer).weight_bytes(),
            "LceBconv2d": ops.get("LceBconv2d", 0),
            "latency_ms": timing.as_dict(),
        }
        print(
            f"resnet18 {variant}: {len(flatbuffer) / 1e6:.2f} MB, median {timing.median_ms:.1f} ms",
            flush=True,
        )
    r18 = results["resnet18_224"]
    results["resnet18_224"]["ratios"] = {
        "size_fp_over_ienet": r18["fp"]["size_bytes"] / r18["ienet"]["size_bytes"],
        "latency_ienet_over_bireal": r18["ienet"]["latency_ms"]["median_ms"]
        / r18["bireal"]["latency_ms"]["median_ms"],
        "latency_ienet_over_fp": r18["ienet"]["latency_ms"]["median_ms"]
        / r18["fp"]["latency_ms"]["median_ms"],
    }

    if not args.skip_parity:
        for name in models.available():
            shape = SMALL_INPUT.get(name, (16, 16, 3))
            for variant in models.VARIANTS:
                tf.keras.backend.clear_session()
                model = as_if_trained(models.build(name, variant, input_shape=shape))
                start = time.perf_counter()
                flatbuffer, ops = export.convert(model)
                inputs = rng.normal(size=(32, *shape)).astype(np.float32)
                agreement = export.parity(model, flatbuffer, inputs)
                row = {
                    "model": name,
                    "variant": variant,
                    "input_shape": list(shape),
                    "LceBconv2d": ops.get("LceBconv2d", 0),
                    "convert_s": time.perf_counter() - start,
                    **agreement.__dict__,
                }
                results["parity"].append(row)
                print(
                    f"{name:>15} {variant:>7}: {row['within_tolerance']:.0%} within "
                    f"{row['tolerance']:g}, max |diff| {row['max_abs_diff']:.1e}, top-1 "
                    f"{row['top1_agreement']:.0%}",
                    flush=True,
                )

    write_result(RESULTS / "export.json", results)
    ratios = results["resnet18_224"]["ratios"]
    print(
        f"\nResNet-18 (224x224): float/IE-Net size {ratios['size_fp_over_ienet']:.1f}x; "
        f"x86 latency IE-Net/Bi-Real {ratios['latency_ienet_over_bireal']:.2f}, "
        f"IE-Net/float {ratios['latency_ienet_over_fp']:.2f}\n{X86_CAVEAT}"
    )


if __name__ == "__main__":
    run_script(main)
