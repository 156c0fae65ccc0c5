"""IR²Net's information recovery head: shallow features fused into the final ones.

The shallow feature maps (stem and every stage before the last) are average-pooled to the
final spatial size, concatenated with the final features on channels and fused back to the
final width C by full-precision layers: with `ratio=1` a 1x1 conv -> BN -> PReLU (the
"full" head); with `ratio=r >= 2` a Ghost-style module: 1x1 conv to m = ceil(C/r)
channels -> BN, a cheap 3x3 depthwise conv (multiplier r - 1) -> BN, concatenated and cut
to C -> PReLU, which costs about 1/r of the full head's FLOPs (the release's streamlined
2 / 4 / 20). Information restriction, the training half of IR²Net, is `ienet_tf.ir2net`.
"""

from __future__ import annotations

import math

import tensorflow as tf

from ienet_tf.checks import is_positive_int
from ienet_tf.models.blocks import SliceChannels, batch_norm

__all__ = ["information_recovery"]


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


def information_recovery(
    final: tf.Tensor, shallow: list[tf.Tensor], ratio: int = 1, name: str = "recovery"
) -> tf.Tensor:
    """Fuse `shallow` feature maps into `final` (B, h, w, C) -> (B, h, w, C).

    `ratio=1`: the full 1x1 conv → BN → PReLU head; `ratio>=2`: the Ghost-style
    streamlined head (see the module docstring).
    """
    if not is_positive_int(ratio):
        raise ValueError(
            f"`recovery_ratio` must be an integer >= 1 (1 = full head), got {ratio!r}."
        )
    height, width, channels = final.shape[1:]
    pooled = [_pool_to(t, height, width, name=f"{name}_pool{i}") for i, t in enumerate(shallow)]
    x = tf.keras.layers.Concatenate(name=f"{name}_concat")([*pooled, final])
    primary = math.ceil(channels / ratio)
    x = tf.keras.layers.Conv2D(primary, 1, use_bias=False, name=f"{name}_conv")(x)
    x = batch_norm(name=f"{name}_bn")(x)
    if ratio > 1:
        cheap = tf.keras.layers.DepthwiseConv2D(
            3, padding="same", depth_multiplier=ratio - 1, use_bias=False, name=f"{name}_cheap"
        )(x)
        cheap = batch_norm(name=f"{name}_cheap_bn")(cheap)
        x = tf.keras.layers.Concatenate(name=f"{name}_ghost")([x, cheap])
        if primary * ratio != channels:
            x = SliceChannels(channels, name=f"{name}_slice")(x)
    return tf.keras.layers.PReLU(shared_axes=[1, 2], name=f"{name}_prelu")(x)
