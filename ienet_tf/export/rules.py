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
        for rule, check in (("sign-input", _check_input), ("binary-kernel", _check_kernel)):
            detail = check(layer)
            if detail:
                violations.append(Violation(layer.name, rule, detail))
    return violations
