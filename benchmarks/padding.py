"""LCE cost of zero vs one padding of the binarized input of an IE-BC layer.

    nice -n 5 .venv/bin/python benchmarks/padding.py [--runs 31] [--output PATH] [--smoke]

For every shape (56x56x64->64 and 28x28x256->256, ResNet-18 ImageNet-like), stride s in
{1, 2} and K in {1, 2}, one pair of models with the SAME weights,
`Input -> BatchNormalization -> IEBinaryConv2D(C, 3, k=K, strides=s, pad_values=P) ->
BatchNormalization`, with P = 1.0 (same-one, `compat="lce"`) and P = 0.0 (same-zero, TF's
'same' split: the release's zero padding without its symmetric stride-2 padding), random
BN statistics, thresholds and lambdas (`as_if_trained`: distinct branches, else the
converter merges them). Each model is converted with `ienet_tf.export.convert` (which
checks K `LceBconv2d`, no `LceDequantize`, no MUL left after a binary conv); recorded:
the op histogram, every `LceBconv2d`'s padding, pad value, stride, fused activation and
output dtype (int32 = bitpacked), and the max |LCE - Keras| on 3 random inputs. Both models
of a pair are then timed in the LCE interpreter (1 thread, default and indirect BGEMM
kernels), interleaved invoke by invoke so that background load hits both alike: 5
warm-ups, then the median of `--runs` single-image invokes each. The result is the ratio
time(P=0) / time(P=1) per pair and kernel.

x86 caveat: LCE has no optimized x86 binary kernels (x86 runs its portable C++ BGEMM), so
the ratios compare padding modes on the same kernel; they are never ARM speeds, and the
ARM-only losses of zero padding (`ARM_NOTE`) do not show here at all.

The whole network is not timed: `models.build("resnet20", "ienet")` (compat "lce") pads
with 1, and the only public zero-padded build, compat "release", pads symmetrically at
stride 2, which the exporter refuses (no LCE binary kernel; LCE 0.16's padding fusion
computes a different function). The compat "lce" ResNet-20 (K = 1 and 2) is converted to see
whether any of its `LceBconv2d` writes bitpacked output (the fusion zero padding loses).

Writes benchmarks/results/padding.json (`--smoke`: one 14x14x32->32 pair, K=2, s=1, few
runs, to runs/bench-smoke/padding.json, never to benchmarks/results).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

if __package__ in (None, ""):  # run as a script: make `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import tensorflow as tf
from flatbuffers import flexbuffers
from tensorflow.lite.python import schema_py_generated as schema

from benchmarks.common import (
    RESULTS,
    provenance_lines,
    result_section,
    run_script,
    table,
    write_result,
)
from ienet_tf import export, models
from ienet_tf.export.bench import X86_CAVEAT
from ienet_tf.layers import IEBinaryConv2D
from ienet_tf.models.testing import as_if_trained

ROOT = Path(__file__).resolve().parents[1]
SHAPES = ((56, 64, 64), (28, 256, 256))  # (H = W, C_in, C_out)
STRIDES, KS, PADS = (1, 2), (1, 2), (1.0, 0.0)
KERNELS = {"default": {}, "indirect": {"use_indirect_bgemm": True}}
WARMUP, PARITY_INPUTS = 5, 3

ARM_NOTE = (
    "On ARM, LCE 0.16 converts pad_values=0 to LceBconv2d(padding=SAME, pad_values=0) "
    "(prepare_patterns_target_arm.td: 'On ARM we support same-zero padding'). The optimized "
    "kernels cannot store 0 in a bitpacked tensor, so im2col / the indirection buffer pad "
    "with +1 and the GEMM runs the normal NEON BGEMM (or the aarch64 indirect BGEMM) as for "
    "same-one padding; a zero-padding correction (core/bconv2d/zero_padding_correction.h, "
    "ApplyCorrection, values cached at the first invoke) then adds a per-channel constant to "
    "the border output pixels only - a scalar loop over border pixels x C_out, the same code "
    "on x86, where it is invisible here. The real ARM cost of zero padding is lost fusions "
    "(tflite/kernels/bconv2d.cc Prepare: zero padding only 'when using float output with no "
    "fused activation function'): no bitpacked output (bitpack_activations_patterns.td fuses "
    "LceQuantize into LceBconv2d only for VALID or SAME+pad 1), no fused ReLU "
    "(optimize_patterns_common.td), no int8 output; larq/zoo PR #136 moved QuickNet to "
    "one-padding for faster inference (benchmarks in larq/compute-engine PR #294). IE-BC "
    "layers lose none of these: every converted LceBconv2d here writes float32 with no fused "
    "activation, for P=1 as for P=0 (see bitpacked_outputs), because each branch's output is "
    "scaled by its lambda, summed with ADD_N (K > 1), batch-normalised and added to a float "
    "residual, and the next layer binarizes x + threshold, so an ADD always sits between a "
    "binary conv and the next LceQuantize (also in the compat 'lce' ResNet-20, K=1 and K=2: "
    "network_check). So on ARM, zero padding of an IE-BC layer should cost only the border "
    "correction on top of the same GEMM, as on x86 - an inference from the LCE sources, not "
    "measured on an ARM device."
)

_PADDING = {0: "SAME", 1: "VALID"}
_DTYPE = {0: "float32", 2: "int32 (bitpacked)", 9: "int8"}


def bconv_attributes(flatbuffer: bytes) -> list[dict]:
    """Padding, pad value, stride, fused activation and output dtype of every LceBconv2d."""
    model = schema.Model.GetRootAsModel(flatbuffer, 0)
    codes = [model.OperatorCodes(i).CustomCode() for i in range(model.OperatorCodesLength())]
    graph, found = model.Subgraphs(0), []
    for i in range(graph.OperatorsLength()):
        op = graph.Operators(i)
        if codes[op.OpcodeIndex()] != b"LceBconv2d":
            continue
        options = flexbuffers.Loads(bytes(op.CustomOptionsAsNumpy()))
        dtype = graph.Tensors(op.Outputs(0)).Type()
        found.append(
            {
                "padding": _PADDING.get(options["padding"], options["padding"]),
                "pad_values": options["pad_values"],
                "stride": options["stride_height"],
                "fused_activation": options["fused_activation_function"],
                "output": _DTYPE.get(dtype, dtype),
            }
        )
    return found


def build_pair(hw: int, cin: int, cout: int, k: int, stride: int, seed: int) -> dict:
    """The P=1 and P=0 models, with the same random weights."""
    pair = {}
    for pad in PADS:
        inputs = tf.keras.Input((hw, hw, cin), batch_size=1)
        x = tf.keras.layers.BatchNormalization()(inputs)
        x = IEBinaryConv2D(cout, 3, k=k, strides=stride, pad_values=pad)(x)
        outputs = tf.keras.layers.BatchNormalization()(x)
        pair[pad] = tf.keras.Model(inputs, outputs)
    one, zero = pair[1.0], pair[0.0]
    as_if_trained(one, seed)
    rng = np.random.default_rng(seed)
    for layer in one.layers:  # shift the BNs too: inputs are not trivially signed
        if isinstance(layer, tf.keras.layers.BatchNormalization):
            layer.beta.assign(rng.normal(0, 0.5, layer.beta.shape))
    zero.set_weights(one.get_weights())
    return pair


def convert_and_check(model: tf.keras.Model, inputs: list[np.ndarray]) -> tuple[bytes, dict]:
    from larq_compute_engine.tflite.python.interpreter import Interpreter

    flatbuffer, histogram = export.convert(model)  # raises unless K LceBconv2d, no dequantize
    interpreter = Interpreter(flatbuffer, num_threads=1)
    keras = [model(x, training=False).numpy() for x in inputs]
    lce = [interpreter.predict(x) for x in inputs]
    return flatbuffer, {
        "ops": histogram,
        "bconv": bconv_attributes(flatbuffer),
        "max_abs_diff": float(max(np.abs(a - b).max() for a, b in zip(lce, keras, strict=True))),
        "max_abs_output": float(max(np.abs(a).max() for a in keras)),
        "bytes": len(flatbuffer),
    }


def time_interleaved(flatbuffers: dict, image: np.ndarray, runs: int, **kernel) -> dict:
    """Median ms of `runs` single-image invokes per model, alternating the models."""
    from larq_compute_engine.tflite.python.interpreter import Interpreter

    raw = {
        key: Interpreter(fb, num_threads=1, use_reference_bconv=False, **kernel).interpreter
        for key, fb in flatbuffers.items()
    }
    timings = {key: [] for key in raw}
    for i in range(WARMUP + runs):
        for key, interpreter in raw.items():
            start = time.perf_counter()
            interpreter.predict([image])
            if i >= WARMUP:
                timings[key].append((time.perf_counter() - start) * 1e3)
    return {key: statistics.median(t) for key, t in timings.items()}


def measure_pair(hw, cin, cout, k, stride, runs, seed) -> dict:
    name = f"{hw}x{hw}x{cin}->{cout} s{stride} K{k}"
    rng = np.random.default_rng(seed)
    inputs = [rng.normal(size=(1, hw, hw, cin)).astype(np.float32) for _ in range(PARITY_INPUTS)]
    flatbuffers, record = {}, {"name": name, "shape": [hw, hw, cin, cout], "k": k, "s": stride}
    pair = build_pair(hw, cin, cout, k, stride, seed)
    for pad, model in pair.items():
        flatbuffers[pad], record[f"P{pad:g}"] = convert_and_check(model, inputs)
        if record[f"P{pad:g}"]["ops"].get("LceBconv2d") != k:
            raise RuntimeError(f"{name} P={pad:g}: expected {k} LceBconv2d")
    # Same weights, different padding: the two models differ (on the border pixels only).
    outputs = [pair[pad](inputs[0], training=False).numpy() for pad in PADS]
    record["keras_P0_vs_P1_max_abs"] = float(np.abs(outputs[0] - outputs[1]).max())
    for kernel, options in KERNELS.items():
        ms = time_interleaved(flatbuffers, inputs[0], runs, **options)
        record[f"ms_{kernel}"] = {f"P{pad:g}": round(t, 4) for pad, t in ms.items()}
        record[f"ratio_{kernel}"] = round(ms[0.0] / ms[1.0], 3)
    print(
        f"{name}: ratio P0/P1 default {record['ratio_default']:.3f}, indirect "
        f"{record['ratio_indirect']:.3f}; max|LCE-Keras| P1 {record['P1']['max_abs_diff']:.1e}"
        f" P0 {record['P0']['max_abs_diff']:.1e}",
        flush=True,
    )
    return record


def network_check(k: int) -> dict:
    """The compat 'lce' ResNet-20: does any LceBconv2d write bitpacked or activated output?"""
    model = as_if_trained(models.build("resnet20", "ienet", k=k))
    flatbuffer, histogram = export.convert(model)
    bconvs = bconv_attributes(flatbuffer)
    return {
        "model": f'models.build("resnet20", "ienet", k={k}), compat "lce" (pad 1)',
        "ops": histogram,
        "bitpacked_outputs": sum(b["output"] != "float32" for b in bconvs),
        "fused_activations": sum(b["fused_activation"] != 0 for b in bconvs),
        "note": "not timed: compat 'lce' only pads with 1, and the zero-padded compat "
        "'release' build pads symmetrically at stride 2, which the exporter refuses (no LCE "
        "binary kernel; LCE 0.16's padding fusion folds it into TF's asymmetric 'same').",
    }


# ----------------------------------------------------------------------------- docs/results.md

HEADER = (
    "IE-BC layer",
    "default ms (pad 1 / pad 0)",
    "ratio",
    "indirect BGEMM ms",
    "ratio",
    "max |LCE - Keras|",
)


def pair_rows(result: dict) -> list[list[str]]:
    """Per timed pair: the ms of pad 1 and pad 0 and their ratio with each kernel, and the
    larger max |LCE - Keras| of the two models."""
    return [
        [
            pair["name"],
            f"{pair['ms_default']['P1']:.2f} / {pair['ms_default']['P0']:.2f}",
            f"{pair['ratio_default']:.3f}",
            f"{pair['ms_indirect']['P1']:.2f} / {pair['ms_indirect']['P0']:.2f}",
            f"{pair['ratio_indirect']:.3f}",
            f"{max(pair['P0']['max_abs_diff'], pair['P1']['max_abs_diff']):.1e}",
        ]
        for pair in result["pairs"]
    ]


@result_section(
    "padding.json",
    "## LCE cost of zero padding (the release's) vs one padding (LCE's fast path)",
    "python benchmarks/padding.py",
)
def section(result: dict) -> list[str]:
    """Zero vs one padding of binarized inputs in LCE (the release pads with 0)."""
    summary = result["summary"]
    return [
        "One `IEBinaryConv2D` (K branches) between two BatchNorms, converted with LCE, each with "
        "exactly K `LceBconv2d`; both paddings timed interleaved in one run (1 thread, median "
        f"of {result['setup']['runs']}). {summary['x86_caveat']}",
        "",
        *table(HEADER, pair_rows(result)),
        summary["arm_note"],
        "",
        *provenance_lines(result),
    ]


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--runs", type=int, default=None, help="timed invokes per model")
    parser.add_argument("--output", type=Path, default=None, help="result file path")
    parser.add_argument("--smoke", action="store_true", help="one small pair, few runs")
    args = parser.parse_args(argv)
    runs = args.runs or (3 if args.smoke else 31)
    default = ROOT / "runs/bench-smoke" if args.smoke else RESULTS
    output = (args.output or default / "padding.json").resolve()
    if args.smoke and RESULTS.resolve() in output.parents:
        parser.error("--smoke never writes to benchmarks/results")
    tf.keras.utils.set_random_seed(0)
    grid = [(*shape, k, s) for shape in SHAPES for s in STRIDES for k in KS]
    if args.smoke:
        grid = [(14, 32, 32, 2, 1)]
    pairs = [measure_pair(*case, runs=runs, seed=i) for i, case in enumerate(grid)]
    networks = [network_check(k) for k in ((2,) if args.smoke else KS)]
    for network in networks:
        print(f"{network['model']}: {network['bitpacked_outputs']} bitpacked LceBconv2d outputs")
    bconvs = [b for p in pairs for pad in PADS for b in p[f"P{pad:g}"]["bconv"]]
    summary = {
        "ratio_P0_over_P1": {
            p["name"]: {kernel: p[f"ratio_{kernel}"] for kernel in KERNELS} for p in pairs
        },
        "max_abs_diff": max(p[f"P{pad:g}"]["max_abs_diff"] for p in pairs for pad in PADS),
        "bitpacked_outputs": sum(b["output"] != "float32" for b in bconvs),
        "fused_activations": sum(b["fused_activation"] != 0 for b in bconvs),
        "x86_caveat": X86_CAVEAT,
        "arm_note": ARM_NOTE,
    }
    # The note's claim that IE-BC layers never write bitpacked or activated output:
    claims = ("bitpacked_outputs", "fused_activations")
    summary["arm_note_holds"] = not any(m[c] for m in [summary, *networks] for c in claims)
    setup = {"runs": runs, "warmup": WARMUP, "threads": 1, "parity_inputs": PARITY_INPUTS}
    payload = {"smoke": args.smoke, "setup": setup, "summary": summary, "pairs": pairs}
    return write_result(output, {**payload, "network_check": networks})


if __name__ == "__main__":
    run_script(main)
