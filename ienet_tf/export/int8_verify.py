"""Verify a binary + int8 conversion of an int8 QAT model: ops, I/O, parity, sizes.

`export.to_tflite(qat, path, inputs, int8=True)` and `export.convert_int8` use these; the
pieces are public for tests and benchmarks.

1. **Before converting** (`check_qat_model`): the model must be an int8 QAT model
   (`qat_model`), calibrated, and pass LCE's binary rules; IE-BC branches with identical
   thresholds are refused (the converter would merge them into one `LceBconv2d` whose
   output feeds two scales: a float op).
2. **Ops** (`int8_ops`, `verify_int8_ops`): every operator is classified as *binary*
   (`LceQuantize`, `LceBconv2d`, `LceBMaxPool2d`), *int8* (no float tensor in or out),
   *io* (the `QUANTIZE` of a float model input / `DEQUANTIZE` of a float model output,
   with `int8_io=False`) or *float* (anything else that reads or writes a float32 tensor,
   constants aside: LceBconv2d's float output transform is a constant). The export fails
   on any float op (named with the Keras layer its output tensor comes from), any
   `LceDequantize`, int8 I/O that is not int8 (LCE falls back to a float model with only
   a warning), or counts that differ from the QAT model's (`expected_int8_ops`: one
   `LceBconv2d` per IE-BC branch, one int8 `CONV_2D` / `DEPTHWISE_CONV_2D` /
   `FULLY_CONNECTED` per int8 layer).
3. **Parity** (`int8_parity`): the LCE interpreter against the QAT model in inference mode
   on the same inputs, in output quantization steps (LSB). Biases are first put on the
   int32 grid the converter stores them on (`snap_biases`, on a copy), so the only
   differences left are TFLite's fixed-point requantization, whose rounding is off by up
   to ~1e-3 of a step (measured), so 0.1-0.4 % of an int8 layer's outputs are 1 step off.
   Where such an element sits at the rounding boundary below the zero point of a tensor
   that is binarized next, its sign flips, the flip moves every output it reaches, and
   flips compound with depth: on a trained Fashion-MNIST ResNet-20 (19 binary layers) the
   logits differ by a median of 3 steps and at most ~20 (top-1 agreement ~93 %, the same
   test accuracy), on the shallow demo network by at most 1-5 steps. The rule is
   sign-flip aware: an input agrees when at least `element_fraction` (default half) of its
   outputs lie within `lsb_tolerance` (default 8) steps, so a flipped path through some
   outputs does not fail it, and the export needs `min_agreement` of the inputs to agree.
   It catches what moves most outputs of most inputs (a lost scale or bias, wrong padding
   everywhere, wrong input quantization); a subtle error in one layer of a deep binary
   network hides in the flip noise: the exact op check and the numpy-verified layers
   (tests/int8/test_int8.py) cover those. Parity needs real inputs (test images) and trained
   weights: random weights and inputs make a deep binary network chaotic.
4. **Sizes** (`int8_weight_bytes`): constant bytes split into binary (bitpacked filters),
   int8 (int8 weights and their int32 biases) and float (LceBconv2d's per-channel output
   transform, shape constants).
"""

from __future__ import annotations

import collections
import dataclasses

import numpy as np
import tensorflow as tf
from tensorflow.lite.python import schema_py_generated as schema

from ienet_tf import errors
from ienet_tf.compat import inbound_layers
from ienet_tf.export.flatbuffer import operator_names, read_graph
from ienet_tf.export.rules import check_model
from ienet_tf.int8.fake_quant import FakeQuantOwner, fake_quant_owners, is_calibrated
from ienet_tf.int8.layers import (
    Int8Conv2D,
    Int8Dense,
    Int8DepthwiseConv2D,
    Int8ElasticLink,
    Int8IEBinaryConv2D,
)
from ienet_tf.int8.qat import PASS_THROUGH
from ienet_tf.ir2net import inference_model

__all__ = [
    "DEFAULT_ELEMENT_FRACTION",
    "DEFAULT_LSB_TOLERANCE",
    "DEFAULT_MIN_AGREEMENT",
    "BINARY_OPS",
    "Int8Op",
    "Int8Parity",
    "check_lsb_tolerance",
    "check_parity",
    "check_qat_model",
    "expected_int8_ops",
    "int8_ops",
    "int8_parity",
    "int8_predict",
    "int8_weight_bytes",
    "op_summary",
    "reference_model",
    "sidecar_section",
    "snap_biases",
    "verify_int8_ops",
]

#: Output quantization steps within which an output element agrees (requantization is
#: off by 1; sign flips deep in a binary network move an output by a few to ~20).
DEFAULT_LSB_TOLERANCE = 8.0
#: The fraction of an input's output elements that must agree for the input to agree:
#: half, so that a flipped path through some outputs does not fail the input.
DEFAULT_ELEMENT_FRACTION = 0.5
#: The fraction of inputs that must agree.
DEFAULT_MIN_AGREEMENT = 0.9

#: The LCE ops that compute on binarized tensors.
BINARY_OPS = ("LceQuantize", "LceBconv2d", "LceBMaxPool2d")
_WEIGHTED = {
    "CONV_2D": (Int8Conv2D,),
    "DEPTHWISE_CONV_2D": (Int8DepthwiseConv2D, Int8ElasticLink),
    "FULLY_CONNECTED": (Int8Dense,),
}
_TYPES = {code: name for name, code in vars(schema.TensorType).items() if name.isupper()}


@dataclasses.dataclass(frozen=True)
class Int8Op:
    """One operator of a converted model: its name, kind and the tensors it touches."""

    name: str
    kind: str  # "binary", "int8", "io" or "float"
    input_types: tuple[str, ...]
    output_types: tuple[str, ...]
    output_names: tuple[str, ...]

    def __str__(self) -> str:
        ins = ",".join(self.input_types)
        outs = ",".join(self.output_types)
        return f"{self.name}({ins} -> {outs})"


@dataclasses.dataclass(frozen=True)
class _Tensor:
    name: str
    type: str
    constant_bytes: int
    scale: tuple[float, ...]
    zero_point: tuple[int, ...]


@dataclasses.dataclass(frozen=True)
class _Model:
    ops: tuple[tuple[str, tuple[int, ...], tuple[int, ...]], ...]
    tensors: tuple[_Tensor, ...]
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]


def _parse(flatbuffer: bytes) -> _Model:
    read_graph(flatbuffer)  # verifies the file before anything reads it
    model = schema.Model.GetRootAsModel(flatbuffer, 0)
    names = operator_names(model)
    subgraph = model.Subgraphs(0)
    tensors = []
    for t in range(subgraph.TensorsLength()):
        tensor = subgraph.Tensors(t)
        buffer = model.Buffers(tensor.Buffer())
        quantization = tensor.Quantization()
        scale: tuple[float, ...] = ()
        zero: tuple[int, ...] = ()
        if quantization is not None and quantization.ScaleLength():
            scale = tuple(float(v) for v in quantization.ScaleAsNumpy())
            zero = tuple(int(v) for v in quantization.ZeroPointAsNumpy())
        tensors.append(
            _Tensor(
                (tensor.Name() or b"").decode(errors="replace"),
                _TYPES.get(tensor.Type(), str(tensor.Type())),
                buffer.DataLength() if buffer is not None else 0,
                scale,
                zero,
            )
        )
    ops = []
    for o in range(subgraph.OperatorsLength()):
        op = subgraph.Operators(o)
        inputs = tuple(int(i) for i in op.InputsAsNumpy()) if op.InputsLength() else ()
        outputs = tuple(int(i) for i in op.OutputsAsNumpy()) if op.OutputsLength() else ()
        ops.append((names[op.OpcodeIndex()], inputs, outputs))
    return _Model(
        tuple(ops),
        tuple(tensors),
        tuple(int(i) for i in subgraph.InputsAsNumpy()),
        tuple(int(i) for i in subgraph.OutputsAsNumpy()),
    )


def int8_ops(flatbuffer: bytes) -> list[Int8Op]:
    """Every operator of `flatbuffer`, classified (see the module doc)."""
    model = _parse(flatbuffer)
    found = []
    for name, inputs, outputs in model.ops:
        tensors = model.tensors
        in_types = tuple("-" if i < 0 else tensors[i].type for i in inputs)
        out_types = tuple(tensors[i].type for i in outputs)
        variable_float = (
            any(
                i >= 0 and tensors[i].type == "FLOAT32" and not tensors[i].constant_bytes
                for i in inputs
            )
            or "FLOAT32" in out_types
        )
        if name in BINARY_OPS and not variable_float:
            kind = "binary"
        elif name == "QUANTIZE" and inputs[0] in model.inputs and in_types[0] == "FLOAT32":
            kind = "io"
        elif name == "DEQUANTIZE" and outputs[0] in model.outputs:
            kind = "io"
        elif variable_float or name == "LceDequantize":
            kind = "float"
        else:
            kind = "int8"
        found.append(
            Int8Op(name, kind, in_types, out_types, tuple(tensors[i].name for i in outputs))
        )
    return found


def op_summary(ops: list[Int8Op]) -> dict:
    """`{"int8": n, "binary": n, "float": n, "io": n, "ops": {kind: {name: n}}}`."""
    by_kind: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    for op in ops:
        by_kind[op.kind][op.name] += 1
    summary = {kind: sum(by_kind[kind].values()) for kind in ("int8", "binary", "float", "io")}
    summary["ops"] = {kind: dict(sorted(by_kind[kind].items())) for kind in sorted(by_kind)}
    return summary


def expected_int8_ops(model: tf.keras.Model) -> dict[str, int]:
    """What a correct conversion of the QAT `model` holds: one `LceBconv2d` per branch of
    every `Int8IEBinaryConv2D`, one int8 `CONV_2D` / `DEPTHWISE_CONV_2D` /
    `FULLY_CONNECTED` per int8 layer."""
    model = inference_model(model)
    layers = list(model.submodules)
    expected = {
        "LceBconv2d": sum(layer.k for layer in layers if isinstance(layer, Int8IEBinaryConv2D))
    }
    for op, classes in _WEIGHTED.items():
        expected[op] = sum(1 for layer in layers if type(layer) in classes)
    return expected


def _layer_of(tensor_name: str) -> str:
    """The Keras layer a converted tensor comes from (`model/stem_conv/Conv2D;...`)."""
    first = tensor_name.split(";")[0]
    parts = first.split("/")
    return parts[1] if len(parts) > 2 else first


def verify_int8_ops(ops: list[Int8Op], expected: dict[str, int], int8_io: bool) -> None:
    """Raise `ExportError` unless the converted model computes in binary and int8 only,
    with the expected op counts and I/O types (see the module doc)."""
    problems = []
    floats = [op for op in ops if op.kind == "float"]
    if floats:
        named = [f"{op} from layer {_layer_of(op.output_names[0])!r}" for op in floats[:6]]
        more = f" and {len(floats) - 6} more" if len(floats) > 6 else ""
        problems.append(
            f"{len(floats)} op(s) compute in float: {', '.join(named)}{more} (a tensor "
            "without a fake-quant range; build the model with ienet_tf.int8.qat_model)"
        )
    histogram = collections.Counter(op.name for op in ops if op.kind != "float")
    for name, count in expected.items():
        if histogram.get(name, 0) != count:
            problems.append(f"{histogram.get(name, 0)} int8 {name} op(s), expected {count}")
    io = [op for op in ops if op.kind == "io"]
    if int8_io and io:
        problems.append(f"the model's I/O is float ({', '.join(map(str, io))}), not int8")
    if problems:
        raise errors.ExportError(
            "The int8 LCE conversion is not binary + int8 all through: "
            + "; ".join(problems)
            + "; nothing was written."
        )


def check_qat_model(model: tf.keras.Model) -> None:
    """`ExportError` / `UsageError` unless `model` can be converted to binary + int8."""
    if not fake_quant_owners(model):
        raise errors.UsageError(
            f"int8=True needs an int8 QAT model, but {model.name} has no fake-quant layers; "
            "make it with ienet_tf.int8.qat_model(model, calibration_images), fine-tune it, "
            "then export that model (ienet train --set export.int8=true does both)."
        )
    if not is_calibrated(model):
        raise errors.UsageError(
            f"{model.name}'s int8 ranges were never calibrated nor trained (all at their "
            "initial [-6, 6]); call ienet_tf.int8.calibrate(model, training_images) first."
        )
    violations = check_model(model)
    if violations:
        raise errors.ExportError(
            "The model would not convert to binary LCE kernels: "
            + "; ".join(str(v) for v in violations)
            + "."
        )
    for layer in model.submodules:
        if isinstance(layer, Int8IEBinaryConv2D) and layer.thresholds is not None:
            thresholds = layer.thresholds.numpy()
            if len(np.unique(thresholds, axis=0)) < len(thresholds):
                raise errors.ExportError(
                    f"int8: IE-BC layer {layer.name!r} has branches with identical "
                    "thresholds (an untrained layer); the converter would merge them into "
                    "one LceBconv2d with a float output. Train the model (or "
                    "ienet_tf.models.testing.as_if_trained for a test) before exporting."
                )


def _input_ranges(model: tf.keras.Model) -> dict[str, tuple[float, float]]:
    """For every int8 conv / dense layer, the (min, max) of the fake-quant that feeds it
    (through layers that pass their input's scale on, a concatenation excepted)."""
    found = {}
    for layer in model.layers:
        if type(layer) not in (Int8Conv2D, Int8Dense, Int8DepthwiseConv2D):
            continue
        sources = inbound_layers(layer)
        while (
            len(sources) == 1
            and isinstance(sources[0], PASS_THROUGH)
            and not isinstance(sources[0], tf.keras.layers.Concatenate)
        ):
            sources = inbound_layers(sources[0])
        if len(sources) == 1 and isinstance(sources[0], FakeQuantOwner):
            found[layer.name] = sources[0].output_range()
    return found


def snap_biases(model: tf.keras.Model) -> int:
    """Put the bias of every int8 conv / dense layer of `model` (in place) on the int32
    grid the converter stores it on, `input_scale * weight_scale`; returns how many
    layers changed. The change is below half a step of that grid."""
    from ienet_tf.int8.fake_quant import nudged_range

    snapped = 0
    for name, (low, high) in _input_ranges(model).items():
        layer = model.get_layer(name)
        if not layer.use_bias:
            continue
        *_, input_scale, _ = nudged_range(low, high)
        if type(layer) is Int8DepthwiseConv2D:
            kernel = layer.depthwise_kernel.numpy()
            weight_scale = np.abs(kernel).max(axis=(0, 1)).reshape(-1) / 127
        elif type(layer) is Int8Dense:
            weight_scale = np.full(layer.units, np.abs(layer.kernel.numpy()).max() / 127)
        else:
            weight_scale = np.abs(layer.kernel.numpy()).max(axis=(0, 1, 2)) / 127
        step = input_scale * weight_scale.astype(np.float64)
        bias = layer.bias.numpy().astype(np.float64)
        safe = np.where(step > 0, step, 1.0)
        layer.bias.assign(np.where(step > 0, np.round(bias / safe) * safe, bias).astype(np.float32))
        snapped += 1
    return snapped


def reference_model(model: tf.keras.Model) -> tf.keras.Model:
    """The Keras model a conversion of the QAT `model` must match: a copy with its biases
    on the converter's int32 grid (`snap_biases`); convert this copy."""
    copy = tf.keras.Model.from_config(model.get_config())
    copy.set_weights(model.get_weights())
    snap_biases(copy)
    return copy


def _io_quantization(flatbuffer: bytes) -> tuple[tuple, tuple]:
    """((input scale, zero point) or None, (output scale, zero point)) of the model; the
    output's is that of the int8 tensor behind a float output's DEQUANTIZE."""
    model = _parse(flatbuffer)
    tensors = model.tensors
    (first,) = model.inputs[:1]
    (last,) = model.outputs[:1]
    inp = tensors[first]
    input_q = (inp.scale[0], inp.zero_point[0]) if inp.type == "INT8" and inp.scale else None
    out = tensors[last]
    if out.type != "INT8":
        producer = next(op for op in model.ops if last in op[2])
        out = tensors[producer[1][0]] if producer[0] == "DEQUANTIZE" else out
    output_q = (out.scale[0], out.zero_point[0]) if out.scale else None
    return input_q, output_q


def int8_predict(flatbuffer: bytes, inputs: np.ndarray, num_threads: int = 1) -> np.ndarray:
    """Run a binary + int8 model in the LCE interpreter on float `inputs`: int8 inputs are
    quantized with the model's input scale and zero point (`floor(x / s + 0.5) + z`,
    FakeQuant's rounding), int8 outputs dequantized."""
    from larq_compute_engine.tflite.python.interpreter import Interpreter

    interpreter = Interpreter(flatbuffer, num_threads=num_threads)
    x = np.asarray(inputs, np.float32)
    if interpreter.input_types[0] == np.int8:
        scale, zero = interpreter.input_scales[0], interpreter.input_zero_points[0]
        x = np.clip(np.floor(x / scale + 0.5) + zero, -128, 127).astype(np.int8)
    y = np.asarray(interpreter.predict(x))
    if interpreter.output_types[0] == np.int8:
        scale, zero = interpreter.output_scales[0], interpreter.output_zero_points[0]
        y = (y.astype(np.float32) - zero) * scale
    return y


@dataclasses.dataclass(frozen=True)
class Int8Parity:
    """How the binary + int8 `.tflite` agrees with its QAT Keras model (module doc, 3.).

    Differences are in output steps (`output_scale`); `within_tolerance` is the fraction of
    inputs with at least `element_fraction` of their outputs within `lsb_tolerance` steps.
    """

    max_abs_diff: float
    max_lsb: float
    median_lsb: float
    elements_within: float
    within_tolerance: float
    top1_agreement: float
    num_inputs: int
    output_scale: float
    lsb_tolerance: float
    element_fraction: float

    @property
    def tolerance(self) -> float:
        """The tolerance in output units (`lsb_tolerance` steps)."""
        return self.lsb_tolerance * self.output_scale


def int8_parity(
    model: tf.keras.Model,
    flatbuffer: bytes,
    inputs: np.ndarray,
    lsb_tolerance: float = DEFAULT_LSB_TOLERANCE,
    element_fraction: float = DEFAULT_ELEMENT_FRACTION,
) -> Int8Parity:
    """Compare the LCE interpreter with the QAT Keras `model` (inference mode)."""
    expected = model(inputs, training=False).numpy()
    actual = int8_predict(flatbuffer, inputs).reshape(expected.shape)
    _, output_q = _io_quantization(flatbuffer)
    scale = float(output_q[0]) if output_q else 1.0
    diff = np.abs(actual - expected).reshape(len(expected), -1)
    steps = diff / scale
    within = steps <= lsb_tolerance + 1e-3
    agree = within.mean(axis=1) >= element_fraction
    return Int8Parity(
        max_abs_diff=float(diff.max()),
        max_lsb=float(steps.max()),
        median_lsb=float(np.median(steps)),
        elements_within=float(within.mean()),
        within_tolerance=float(agree.mean()),
        top1_agreement=float(np.mean(actual.argmax(-1) == expected.argmax(-1))),
        num_inputs=len(inputs),
        output_scale=scale,
        lsb_tolerance=float(lsb_tolerance),
        element_fraction=float(element_fraction),
    )


def int8_weight_bytes(flatbuffer: bytes) -> dict[str, int]:
    """Constant bytes: `binary` (LceBconv2d's bitpacked filters), `int8` (quantized
    constants: int8 weights and their int32 biases) and `float` (the rest)."""
    model = _parse(flatbuffer)
    binary = {inputs[1] for name, inputs, _ in model.ops if name == "LceBconv2d"}
    split = {"binary": 0, "int8": 0, "float": 0}
    for index, tensor in enumerate(model.tensors):
        if not tensor.constant_bytes:
            continue
        if index in binary:
            split["binary"] += tensor.constant_bytes
        elif tensor.scale and tensor.type in ("INT8", "INT32"):
            split["int8"] += tensor.constant_bytes
        else:
            split["float"] += tensor.constant_bytes
    return split


def check_lsb_tolerance(lsb_tolerance) -> float:
    """`lsb_tolerance` (None: the default) as a float, or a `UsageError`."""
    if lsb_tolerance is None:
        return DEFAULT_LSB_TOLERANCE
    if (
        isinstance(lsb_tolerance, bool)
        or not isinstance(lsb_tolerance, (int, float))
        or not (np.isfinite(lsb_tolerance) and lsb_tolerance >= 0)
    ):
        raise errors.UsageError(
            f"lsb_tolerance is {lsb_tolerance!r}; it must be a number of output quantization "
            f"steps >= 0 (default {DEFAULT_LSB_TOLERANCE:g})."
        )
    return float(lsb_tolerance)


def check_parity(agreement: Int8Parity, min_agreement: float) -> None:
    """`ExportError` unless `min_agreement` of the inputs agree."""
    if agreement.within_tolerance >= min_agreement:
        return
    raise errors.ExportError(
        f"LCE interpreter and the int8 QAT model disagree: only "
        f"{agreement.within_tolerance:.0%} of {agreement.num_inputs} inputs have "
        f"{agreement.element_fraction:.0%} of their outputs within {agreement.lsb_tolerance:g} "
        f"output steps (need {min_agreement:.0%}; max {agreement.max_lsb:.0f} steps, median "
        f"{agreement.median_lsb:.1f}, top-1 agreement {agreement.top1_agreement:.1%}); nothing "
        "was written. Parity needs real images and a trained model: random ones make a deep "
        "binary network chaotic."
    )


def sidecar_section(
    flatbuffer: bytes, ops: list[Int8Op], reference: tf.keras.Model, int8_io: bool
) -> dict:
    """The sidecar's `int8` section: I/O types and quantization, op kinds, expected ops."""
    input_q, output_q = _io_quantization(flatbuffer)
    summary = op_summary(ops)
    return {
        "io": "int8" if int8_io else "float32",
        "input_quantization": None
        if input_q is None
        else {"scale": input_q[0], "zero_point": input_q[1]},
        "output_quantization": None
        if output_q is None
        else {"scale": output_q[0], "zero_point": output_q[1]},
        "op_kinds": {kind: summary[kind] for kind in ("int8", "binary", "float", "io")},
        "ops_by_kind": summary["ops"],
        "expected_ops": expected_int8_ops(reference),
    }
