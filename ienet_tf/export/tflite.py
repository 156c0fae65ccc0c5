"""Convert with the Larq Compute Engine and verify that the binary kernels survived.

LCE's converter fails silently: a layer that breaks one of its patterns becomes
`LceDequantize` + a float `CONV_2D` with no warning. So every conversion here is checked
against the model: the flatbuffer's op histogram must hold the expected number of
`LceBconv2d` and no `LceDequantize`, and the LCE interpreter must agree with Keras.
"""

from __future__ import annotations

import collections
import dataclasses
from pathlib import Path

import numpy as np
import tensorflow as tf
from tensorflow.lite.python import schema_py_generated as schema

from ienet_tf.io import write_atomically
from ienet_tf.layers import IEBinaryConv2D

__all__ = [
    "DEFAULT_TOLERANCE",
    "ExportError",
    "ExportResult",
    "Parity",
    "convert",
    "expected_binary_convs",
    "lce_predict",
    "op_histogram",
    "parity",
    "to_tflite",
    "verify_ops",
]

#: Max |LCE - Keras| on the logits. Float ops agree to ~1e-5; a pre-activation within
#: float rounding of a threshold can flip one binary activation, which moves a logit by
#: far more than that, so this bound is loose enough for that and tight for real bugs.
DEFAULT_TOLERANCE = 1e-3

_BUILTIN_NAMES = {
    code: name for name, code in vars(schema.BuiltinOperator).items() if name.isupper()
}


class ExportError(RuntimeError):
    """A conversion that would not run the binary kernels, or does not match Keras."""


def op_histogram(flatbuffer: bytes) -> dict[str, int]:
    """Count the operators of every subgraph of a TFLite flatbuffer, by op name
    (custom ops such as `LceBconv2d` by their custom code)."""
    model = schema.Model.GetRootAsModel(flatbuffer, 0)
    names = []
    for i in range(model.OperatorCodesLength()):
        code = model.OperatorCodes(i)
        if code.CustomCode():
            names.append(code.CustomCode().decode())
        else:
            # Codes above 127 live only in `BuiltinCode`; older ones in the deprecated field.
            builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
            names.append(_BUILTIN_NAMES.get(builtin, f"BUILTIN_{builtin}"))
    counts: collections.Counter[str] = collections.Counter()
    for s in range(model.SubgraphsLength()):
        subgraph = model.Subgraphs(s)
        for o in range(subgraph.OperatorsLength()):
            counts[names[subgraph.Operators(o).OpcodeIndex()]] += 1
    return dict(sorted(counts.items()))


def _binary_layers(model: tf.keras.Model):
    for layer in model.submodules:
        if isinstance(layer, IEBinaryConv2D):
            yield layer


def expected_binary_convs(model: tf.keras.Model) -> int:
    """The number of `LceBconv2d` a correct conversion holds: one per distinct branch.

    Branches whose thresholds are equal binarize the input identically, and the
    converter merges them (freshly initialised IE-BC layers have all thresholds at 0, so
    they convert to one `LceBconv2d` each until training separates the thresholds).
    """
    total = 0
    for layer in _binary_layers(model):
        if layer.thresholds is None:
            total += 1
        else:
            total += len(np.unique(layer.thresholds.numpy(), axis=0))
    return total


def verify_ops(histogram: dict[str, int], expected_bconv: int) -> None:
    """Raise `ExportError` unless the ops show exactly `expected_bconv` binary convs."""
    problems = []
    if histogram.get("LceDequantize", 0):
        problems.append(
            f"{histogram['LceDequantize']} LceDequantize op(s): some binarized tensor "
            "feeds a float op instead of a binary convolution"
        )
    if histogram.get("LceBconv2d", 0) != expected_bconv:
        problems.append(
            f"{histogram.get('LceBconv2d', 0)} LceBconv2d op(s), expected {expected_bconv}"
        )
    if problems:
        raise ExportError(
            "The LCE conversion fell back to float kernels: "
            + "; ".join(problems)
            + f". Op histogram: {histogram}. Binary layers must binarize their input with "
            "`lq.math.sign`, keep a +-alpha kernel per output channel, scale after the "
            "convolution and pad with `pad_values=1.0` (see STACK.md)."
        )


def convert(model: tf.keras.Model) -> tuple[bytes, dict[str, int]]:
    """Convert `model` with LCE (ARM target) and check its op histogram."""
    import larq_compute_engine as lce

    flatbuffer = lce.convert_keras_model(model, target="arm")
    histogram = op_histogram(flatbuffer)
    verify_ops(histogram, expected_binary_convs(model))
    return flatbuffer, histogram


def lce_predict(flatbuffer: bytes, inputs: np.ndarray, num_threads: int = 1) -> np.ndarray:
    """Run a converted model in the LCE interpreter (which knows the `Lce*` custom ops)."""
    from larq_compute_engine.tflite.python.interpreter import Interpreter

    interpreter = Interpreter(flatbuffer, num_threads=num_threads)
    return np.asarray(interpreter.predict(np.asarray(inputs, np.float32)))


@dataclasses.dataclass(frozen=True)
class Parity:
    """How the converted model agrees with Keras on the same inputs."""

    max_abs_diff: float
    top1_agreement: float
    num_inputs: int


def parity(model: tf.keras.Model, flatbuffer: bytes, inputs: np.ndarray) -> Parity:
    """Compare LCE interpreter outputs with Keras inference outputs."""
    expected = model(inputs, training=False).numpy()
    actual = lce_predict(flatbuffer, inputs).reshape(expected.shape)
    return Parity(
        max_abs_diff=float(np.max(np.abs(actual - expected))),
        top1_agreement=float(np.mean(actual.argmax(-1) == expected.argmax(-1))),
        num_inputs=len(inputs),
    )


@dataclasses.dataclass(frozen=True)
class ExportResult:
    path: Path
    op_histogram: dict[str, int]
    parity: Parity
    size_bytes: int


def to_tflite(
    model: tf.keras.Model,
    path: str | Path,
    inputs: np.ndarray | None = None,
    tolerance: float = DEFAULT_TOLERANCE,
) -> ExportResult:
    """Convert `model` with LCE, verify ops and parity, and only then write `path`.

    `inputs` are the parity batch (random normal inputs when `None`). On any failure
    `ExportError` is raised and nothing is written.
    """
    flatbuffer, histogram = convert(model)
    if inputs is None:
        shape = (8, *model.input_shape[1:])
        inputs = np.random.default_rng(0).normal(size=shape).astype(np.float32)
    agreement = parity(model, flatbuffer, inputs)
    if not agreement.max_abs_diff <= tolerance:
        raise ExportError(
            f"LCE interpreter and Keras disagree: max |diff| {agreement.max_abs_diff:.3g} > "
            f"{tolerance:g} on {agreement.num_inputs} inputs (top-1 agreement "
            f"{agreement.top1_agreement:.1%}); nothing was written."
        )
    path = Path(path)
    write_atomically(path, flatbuffer)
    return ExportResult(path, histogram, agreement, len(flatbuffer))
