"""Convert with the Larq Compute Engine and verify that the binary kernels survived.

LCE's converter fails silently: a layer that breaks one of its patterns becomes
`LceDequantize` + a float `CONV_2D` with no warning, and a file 10-20x larger. So every
export here is checked three ways before anything is written:

1. the Keras model against the converter's rules (`rules.check_model`), naming layers;
2. the flatbuffer's ops: one `LceBconv2d` per distinct IE-BC branch, no `LceDequantize`, a
   float `CONV_2D` only for the layers meant to be float, no `MUL` right after a binary
   conv (alpha and lambda fuse into it);
3. the LCE interpreter against Keras on real inputs (`parity`).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import larq as lq
import numpy as np
import tensorflow as tf

from ienet_tf import errors
from ienet_tf.export.flatbuffer import read_graph
from ienet_tf.export.rules import binary_layers, check_model, is_binary_conv
from ienet_tf.io import write_atomically
from ienet_tf.ir2net import inference_model
from ienet_tf.layers import IEBinaryConv2D

__all__ = [
    "DEFAULT_MIN_AGREEMENT",
    "DEFAULT_TOLERANCE",
    "MUL_AFTER_BCONV",
    "ExportError",
    "ExportResult",
    "Parity",
    "convert",
    "expected_ops",
    "lce_predict",
    "op_histogram",
    "parity",
    "stack_versions",
    "to_tflite",
    "verify_ops",
]

#: Max |LCE - Keras| on one input's outputs. The float parts agree to ~1e-5 (the same
#: arithmetic in another order); 1e-3 leaves room for deep float stems and large logits.
DEFAULT_TOLERANCE = 1e-3

#: The fraction of parity inputs that must agree within the tolerance (see `Parity`).
DEFAULT_MIN_AGREEMENT = 0.9

#: The key of `expected_ops` for MULs that consume an `LceBconv2d` output directly.
MUL_AFTER_BCONV = "MUL after LceBconv2d"


# A conversion that would not run the binary kernels, or does not match Keras.
ExportError = errors.ExportError


def op_histogram(flatbuffer: bytes) -> dict[str, int]:
    """Count the operators of a TFLite flatbuffer by name (custom ops by custom code)."""
    return read_graph(flatbuffer).histogram()


def _branch_groups(layer) -> list[int]:
    """Sizes of the groups of identical branches of a binary conv layer.

    Branches with equal thresholds binarize identically and the converter merges them into
    one `LceBconv2d` (freshly initialised IE-BC layers have all thresholds at 0). A merged
    convolution feeds several per-branch scales, so those MULs cannot fuse into it.
    """
    if not isinstance(layer, IEBinaryConv2D) or layer.thresholds is None:
        return [1]
    _, counts = np.unique(layer.thresholds.numpy(), axis=0, return_counts=True)
    return [int(c) for c in counts]


def _is_float_conv(layer) -> bool:
    """A 2D convolution that converts to a float `CONV_2D`: Keras' own, or a larq
    `QuantConv2D` without quantizers (depthwise/separable/transposed ones are other ops)."""
    return type(layer) is tf.keras.layers.Conv2D or (
        type(layer) is lq.layers.QuantConv2D
        and layer.input_quantizer is None
        and layer.kernel_quantizer is None
    )


def expected_ops(model: tf.keras.Model) -> dict[str, int]:
    """What a correct conversion of `model` holds: `LceBconv2d` (one per distinct branch of
    every binary conv), `CONV_2D` (the full-precision convolutions) and the MULs left right
    after a binary conv (0 unless identical branches were merged, see `_branch_groups`)."""
    model = inference_model(model)
    groups = [
        g for layer in binary_layers(model) if is_binary_conv(layer) for g in _branch_groups(layer)
    ]
    return {
        "LceBconv2d": len(groups),
        "CONV_2D": sum(1 for layer in model.submodules if _is_float_conv(layer)),
        MUL_AFTER_BCONV: sum(g for g in groups if g > 1),
    }


def verify_ops(histogram: dict[str, int], expected: dict[str, int]) -> None:
    """Raise `ExportError` unless the ops (`histogram`, plus the count of MULs right after a
    binary conv under `MUL_AFTER_BCONV`) match `expected_ops`."""
    problems = []
    if histogram.get("LceDequantize", 0):
        problems.append(
            f"{histogram['LceDequantize']} LceDequantize op(s): a binarized tensor feeds a "
            "float op instead of a binary convolution"
        )
    for op, count in expected.items():
        if histogram.get(op, 0) != count:
            problems.append(f"{histogram.get(op, 0)} {op} op(s), expected {count}")
    if problems:
        raise ExportError(
            "The LCE conversion fell back to float kernels: "
            + "; ".join(problems)
            + f". Op histogram: {histogram}. Binary layers must binarize their input with "
            "`lq.math.sign`, keep a +-alpha kernel per output channel, scale after the "
            "convolution and pad with `pad_values=1.0`."
        )


def convert(model: tf.keras.Model) -> tuple[bytes, dict[str, int]]:
    """Convert `model` with LCE (ARM target); check the rules and the op histogram.
    A training wrapper (IR²Net's `InformationRestriction`) converts its classifier."""
    import larq_compute_engine as lce

    model = inference_model(model)
    violations = check_model(model)
    if violations:
        raise ExportError(
            "The model would not convert to binary LCE kernels: "
            + "; ".join(str(v) for v in violations)
            + "."
        )
    flatbuffer = lce.convert_keras_model(model, target="arm")
    graph = read_graph(flatbuffer)
    histogram = graph.histogram()
    verify_ops(
        {**histogram, MUL_AFTER_BCONV: graph.multiplies_after("LceBconv2d")}, expected_ops(model)
    )
    return flatbuffer, histogram


def lce_predict(flatbuffer: bytes, inputs: np.ndarray, num_threads: int = 1) -> np.ndarray:
    """Run a converted model in the LCE interpreter (which knows the `Lce*` custom ops)."""
    from larq_compute_engine.tflite.python.interpreter import Interpreter

    interpreter = Interpreter(flatbuffer, num_threads=num_threads)
    return np.asarray(interpreter.predict(np.asarray(inputs, np.float32)))


@dataclasses.dataclass(frozen=True)
class Parity:
    """How the converted model agrees with Keras on the same inputs.

    `within_tolerance` is the fraction of inputs whose outputs all agree within
    `tolerance`. sign() is discontinuous at 0 and LCE computes the float pre-activations in
    another order than TensorFlow, so a value within ~1e-6 of 0 can binarize differently
    (seen: Keras -2.1e-7, LCE 0.0). That one flip changes that input's outputs far beyond
    any float tolerance, while a real conversion bug (padding, a lost scale, a float
    fallback) changes every input: so the verdict counts inputs, not the worst difference.
    """

    max_abs_diff: float
    within_tolerance: float
    top1_agreement: float
    num_inputs: int
    tolerance: float


def parity(
    model: tf.keras.Model,
    flatbuffer: bytes,
    inputs: np.ndarray,
    tolerance: float = DEFAULT_TOLERANCE,
) -> Parity:
    """Compare LCE interpreter outputs with Keras inference outputs."""
    expected = model(inputs, training=False).numpy()
    actual = lce_predict(flatbuffer, inputs).reshape(expected.shape)
    per_input = np.abs(actual - expected).reshape(len(expected), -1).max(axis=1)
    return Parity(
        max_abs_diff=float(per_input.max()),
        within_tolerance=float(np.mean(per_input <= tolerance)),
        top1_agreement=float(np.mean(actual.argmax(-1) == expected.argmax(-1))),
        num_inputs=len(inputs),
        tolerance=tolerance,
    )


@dataclasses.dataclass(frozen=True)
class ExportResult:
    path: Path
    sidecar: Path
    op_histogram: dict[str, int]
    parity: Parity
    size_bytes: int
    weight_bytes: dict[str, int]


def stack_versions() -> dict[str, str]:
    """Installed versions of TensorFlow, larq, LCE and ienet-tf (for reports)."""
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for package in ("tensorflow", "tensorflow-cpu", "larq", "larq-compute-engine", "ienet-tf"):
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            pass
    return found


def to_tflite(
    model: tf.keras.Model,
    path: str | Path,
    inputs: np.ndarray | None = None,
    tolerance: float = DEFAULT_TOLERANCE,
    source: dict | None = None,
    min_agreement: float = DEFAULT_MIN_AGREEMENT,
) -> ExportResult:
    """Convert `model` with LCE, verify ops and parity, and only then write `path` and its
    JSON sidecar `path + ".json"` (op histogram, sizes, parity, versions, `source`).

    `inputs` are the parity batch (random normal inputs when `None`: say so in `source`);
    at least `min_agreement` of them must agree within `tolerance` (see `Parity`).
    On any failure `ExportError` is raised and nothing is written.
    """
    model = inference_model(model)
    flatbuffer, histogram = convert(model)
    if inputs is None:
        shape = (8, *model.input_shape[1:])
        inputs = np.random.default_rng(0).normal(size=shape).astype(np.float32)
    agreement = parity(model, flatbuffer, inputs, tolerance)
    if not agreement.within_tolerance >= min_agreement:
        raise ExportError(
            f"LCE interpreter and Keras disagree: only {agreement.within_tolerance:.0%} of "
            f"{agreement.num_inputs} inputs agree within {tolerance:g} (need "
            f"{min_agreement:.0%}; max |diff| {agreement.max_abs_diff:.3g}, top-1 agreement "
            f"{agreement.top1_agreement:.1%}); nothing was written."
        )
    path = Path(path)
    sidecar = path.with_name(path.name + ".json")
    weights = read_graph(flatbuffer).weight_bytes()
    report = {
        "tflite": path.name,
        "model": model.name,
        "input_shape": list(model.input_shape[1:]),
        "num_classes": int(model.output_shape[-1]),
        "size_bytes": len(flatbuffer),
        "weight_bytes": weights,
        "op_histogram": histogram,
        "expected_ops": expected_ops(model),
        "parity": {**dataclasses.asdict(agreement), "min_agreement": min_agreement},
        "versions": stack_versions(),
        "source": source or {},
    }
    write_atomically(path, flatbuffer)
    try:
        write_atomically(sidecar, json.dumps(report, indent=2) + "\n")
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return ExportResult(path, sidecar, histogram, agreement, len(flatbuffer), weights)
