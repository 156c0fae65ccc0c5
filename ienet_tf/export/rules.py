"""The LCE converter's rules, checked on the Keras model, so a failed export names layers.

LCE turns a larq convolution into `LceBconv2d` only when (see the converter's patterns):

1. `sign-input`: the input quantizer's forward pass is exactly `sign(x)` (+-1, sign(0)=+1);
   scaling the binary activation before the convolution breaks the pattern;
2. `binary-kernel`: the quantized kernel is +-alpha per OUTPUT channel (alpha non-zero);
   per-input-channel scales or ternary values become a float `CONV_2D`;
3. `binary-pair`: a binarized input meets a binarized kernel (either alone stays float);
4. `no-quant-dense`: `QuantDense` is not accelerated: use a 1x1 `QuantConv2D`;
5. `symmetric-stride-padding`: PyTorch-style symmetric zero padding before a strided
   convolution (`compat="release"` models: IE-BC `symmetric_padding=True` at stride 2, or
   a `ZeroPadding2D` before a strided 'valid' conv). The binary form has no LCE kernel (it
   is dequantized to a float `CONV_2D`), and LCE 0.16's padding fusion folds a symmetric
   pad into TensorFlow's asymmetric "same", which computes a different function: measured
   output errors of 2-400 on 3x3/2 and 7x7/2 convs. Export a `compat="lce"` model.
6. `zero-padding-small-map`: a binary conv padded "same" with `pad_values=0` whose (dilated)
   kernel is larger than its input map in a dimension (a 3x3 conv on a 2x2 or 1xN map).
   LCE 0.16's optimized kernels correct the zero padding wrongly there: measured on every
   such shape from 1x1 to 6x6, output errors of 6-40 (x86, and aarch64 in the default and
   indirect BGEMM modes; only the aarch64 reference kernel is right). Maps at least the
   kernel's size, and `pad_values=1.0` (LCE's native padding), are exact.
7. `grouped-binary-conv`: `groups > 1`. LCE 0.16 keeps a grouped binary conv float (an
   `LceDequantize` before a float `CONV_2D`) unless each group has a multiple of 32 input
   channels, and then writes an `LceBconv2d` that its default kernels refuse to prepare
   ("Grouped binary convolutions are not supported with this kernel"): only the reference
   and indirect BGEMM kernels run it (measured exact on x86 and aarch64).

Scales, biases and BatchNorm after the convolution are fine: they fuse into `LceBconv2d`.
"""

from __future__ import annotations

import dataclasses

import larq as lq
import numpy as np
import tensorflow as tf

from ienet_tf.compat import inbound_layers
from ienet_tf.inspection import binary_layers, is_binary, is_binary_conv

__all__ = ["Violation", "binary_layers", "check_model", "is_binary_conv"]


@dataclasses.dataclass(frozen=True)
class Violation:
    layer: str
    rule: str
    detail: str

    def __str__(self) -> str:
        return f"layer {self.layer!r} breaks `{self.rule}`: {self.detail}"


def _check_input(layer) -> str | None:
    channels = int(layer.kernel.shape[-2])
    ramp = np.linspace(-2.0, 2.0, 41, dtype=np.float32)  # includes exactly 0
    probe = np.repeat(ramp[:, None], channels, axis=1)[None, None]
    out = np.asarray(layer.input_quantizer(tf.constant(probe), training=False))
    if out.shape != probe.shape or not np.array_equal(out, np.where(probe >= 0, 1.0, -1.0)):
        return (
            "its input quantizer's forward pass is not exactly sign(x) (+-1, sign(0) = +1); "
            "keep scales after the convolution"
        )
    return None


def _check_kernel(layer) -> str | None:
    with lq.context.quantized_scope(True):
        kernel = np.asarray(tf.convert_to_tensor(layer.kernel))
    magnitudes = np.abs(kernel.reshape(-1, kernel.shape[-1]))
    per_channel = magnitudes.max(axis=0)
    if np.any(per_channel == 0) or not np.allclose(magnitudes, per_channel, rtol=1e-5):
        return (
            "its quantized kernel is not +-alpha per output channel (alpha != 0); "
            "use a sign-based kernel quantizer"
        )
    return None


def _check_padding(layer) -> str | None:
    if layer.padding != "same" or getattr(layer, "pad_values", 0.0) != 0.0:
        return None
    try:
        height, width = layer.input_shape[1:3]
    except (AttributeError, RuntimeError, ValueError):  # not called once in a graph
        return None
    extent = [(k - 1) * d + 1 for k, d in zip(layer.kernel_size, layer.dilation_rate, strict=True)]
    sizes = (height, width)
    if all(size is None or size >= span for size, span in zip(sizes, extent, strict=True)):
        return None
    return (
        f"its {extent[0]}x{extent[1]} kernel is larger than its {height}x{width} input and it "
        "pads with zeros, which LCE's optimized kernels get wrong on such maps; use "
        "pad_values=1.0, or an input large enough that this map is at least the kernel's size"
    )


def _check_groups(layer) -> str | None:
    groups = getattr(layer, "groups", 1)
    if groups == 1:
        return None
    per_group = int(layer.kernel.shape[-2])
    if per_group % 32:
        outcome = (
            f"it keeps it float unless each group has a multiple of 32 input channels "
            f"(this one has {per_group})"
        )
    else:
        outcome = (
            "its default kernels refuse to run it (only its reference and indirect BGEMM "
            "kernels do)"
        )
    return f"LCE 0.16 cannot run a grouped binary conv ({groups} groups): {outcome}; use groups=1"


_STRIDED_CONVS = (tf.keras.layers.Conv2D, tf.keras.layers.DepthwiseConv2D)


def _symmetric_stride_padding(model: tf.keras.Model) -> list[Violation]:
    found = []
    for layer in model.submodules:
        if not isinstance(layer, _STRIDED_CONVS) or max(layer.strides) < 2:
            continue
        if getattr(layer, "symmetric_padding", False) and layer.padding == "same":
            found.append((layer.name, f"it pads symmetrically at stride {max(layer.strides)}"))
            continue
        sources = inbound_layers(layer)
        if layer.padding == "valid" and any(
            isinstance(source, tf.keras.layers.ZeroPadding2D) for source in sources
        ):
            found.append((layer.name, f"it follows a ZeroPadding2D at stride {max(layer.strides)}"))
    return [
        Violation(
            name,
            "symmetric-stride-padding",
            f"{reason}; LCE 0.16 cannot convert PyTorch-style padding at stride 2 (no binary "
            "kernel, and its padding fusion computes a different function); export the "
            "compat='lce' form of the model",
        )
        for name, reason in found
    ]


def check_model(model: tf.keras.Model) -> list[Violation]:
    """Every layer of `model` that the LCE converter would not turn into `LceBconv2d` or
    would convert wrongly, with the rule it breaks. Empty when the model converts cleanly."""
    violations = _symmetric_stride_padding(model)
    for layer in binary_layers(model):
        if isinstance(layer, lq.layers.QuantDense):
            violations.append(
                Violation(
                    layer.name,
                    "no-quant-dense",
                    "LCE has no binary dense kernel; use a 1x1 QuantConv2D",
                )
            )
            continue
        if not (is_binary(layer.input_quantizer) and is_binary(layer.kernel_quantizer)):
            missing = "kernel" if is_binary(layer.input_quantizer) else "input"
            violations.append(
                Violation(
                    layer.name,
                    "binary-pair",
                    f"its {missing} is not binarized, so the binarized side is dequantized "
                    "and the convolution stays float",
                )
            )
            continue
        for rule, check in (
            ("sign-input", _check_input),
            ("binary-kernel", _check_kernel),
            ("zero-padding-small-map", _check_padding),
            ("grouped-binary-conv", _check_groups),
        ):
            detail = check(layer)
            if detail:
                violations.append(Violation(layer.name, rule, detail))
    return violations
