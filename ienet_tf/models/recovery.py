"""IR²Net's information recovery head: shallow features fused into the final ones.

The shallow feature maps (stem and every stage before the last) are average-pooled to the
final spatial size, concatenated with the final features on channels and fused back to the
final width C by full-precision layers: with `ratio=1` a 1x1 conv -> BN -> PReLU (the
"full" head of the release's ImageNet IR2Net-A); with `ratio=r >= 2` the release's Ghost
module: a 1x1 conv to m = ceil(C/r) channels -> BN -> activation, a cheap 3x3 depthwise
conv (multiplier r - 1) on that ACTIVATED output -> BN -> activation, both concatenated
and cut to C. The activation is a hardtanh in the release's CIFAR networks (ratios 4, 20
and 32 for ResNet-20, ResNet-18 and VGG-Small) and a PReLU on ImageNet (ratios 2, 4, 20).
The head costs about 1/r of the full head's FLOPs. (The release's ImageNet ratio-4 head
uses a grouped cheap conv, 16 channels per group; this one is always depthwise.)
Information restriction, the training half of IR²Net, is `ienet_tf.ir2net`.
"""

from __future__ import annotations

import math

import tensorflow as tf

from ienet_tf.checks import is_positive_int
from ienet_tf.models.blocks import SliceChannels, batch_norm, hard_tanh

__all__ = ["RECOVERY_ACTIVATIONS", "information_recovery"]

#: The activation after each BatchNorm of the Ghost head: the release's CIFAR networks use
#: a hardtanh, its ImageNet networks a PReLU.
RECOVERY_ACTIVATIONS = ("hardtanh", "prelu")


def _pool_to(x: tf.Tensor, height: int, width: int, name: str) -> tf.Tensor:
    """Average-pool `x` to (height, width) with window = stride ("same" padding)."""
    h, w = x.shape[1], x.shape[2]
    stride = (math.ceil(h / height), math.ceil(w / width))
    if (math.ceil(h / stride[0]), math.ceil(w / stride[1])) != (height, width):
        raise ValueError(
            f"Information recovery cannot pool a {h}x{w} feature map to {height}x{width} "
            "with one window; use an input size whose feature maps halve evenly."
        )
    if stride == (1, 1):
        return x
    return tf.keras.layers.AveragePooling2D(stride, stride, padding="same", name=name)(x)


def _activation(kind: str, name: str) -> tf.keras.layers.Layer:
    if kind == "prelu":  # PyTorch's PReLU starts at 0.25 (Keras' at 0)
        return tf.keras.layers.PReLU(
            tf.keras.initializers.Constant(0.25), shared_axes=[1, 2], name=name
        )
    return tf.keras.layers.Activation(hard_tanh, name=name)


def information_recovery(
    final: tf.Tensor,
    shallow: list[tf.Tensor],
    ratio: int = 1,
    activation: str = "hardtanh",
    name: str = "recovery",
) -> tf.Tensor:
    """Fuse `shallow` feature maps into `final` (B, h, w, C) -> (B, h, w, C).

    `ratio=1`: the full 1x1 conv → BN → PReLU head; `ratio>=2`: the Ghost module of the
    release (see the module docstring), with `activation` ("hardtanh", the CIFAR
    release, or "prelu", the ImageNet one) after each of its BatchNorms.
    """
    if not is_positive_int(ratio):
        raise ValueError(
            f"`recovery_ratio` must be an integer >= 1 (1 = full head), got {ratio!r}."
        )
    if activation not in RECOVERY_ACTIVATIONS:
        raise ValueError(
            f"Unknown recovery `activation` {activation!r}; allowed: {list(RECOVERY_ACTIVATIONS)}."
        )
    height, width, channels = final.shape[1:]
    pooled = [_pool_to(t, height, width, name=f"{name}_pool{i}") for i, t in enumerate(shallow)]
    x = tf.keras.layers.Concatenate(name=f"{name}_concat")([*pooled, final])
    if ratio == 1:
        x = tf.keras.layers.Conv2D(channels, 1, use_bias=False, name=f"{name}_conv")(x)
        x = batch_norm(name=f"{name}_bn")(x)
        return _activation("prelu", f"{name}_prelu")(x)
    primary = math.ceil(channels / ratio)
    x = tf.keras.layers.Conv2D(primary, 1, use_bias=False, name=f"{name}_conv")(x)
    x = batch_norm(name=f"{name}_bn")(x)
    x = _activation(activation, f"{name}_act")(x)
    cheap = tf.keras.layers.DepthwiseConv2D(
        3, padding="same", depth_multiplier=ratio - 1, use_bias=False, name=f"{name}_cheap"
    )(x)
    cheap = batch_norm(name=f"{name}_cheap_bn")(cheap)
    cheap = _activation(activation, f"{name}_cheap_act")(cheap)
    x = tf.keras.layers.Concatenate(name=f"{name}_ghost")([x, cheap])
    if primary * ratio != channels:
        x = SliceChannels(channels, name=f"{name}_slice")(x)
    return x
