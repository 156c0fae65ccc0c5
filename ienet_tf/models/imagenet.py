"""ImageNet-family networks of the IE-Net paper: Bi-Real-style ResNet-18 and ResNet-34.

A shortcut per 3x3 conv (`hardtanh(BN(conv(x)) + shortcut(x))`); the downsampling
shortcut is a real-valued 1x1 stride-2 conv + BN. As in the release, every BatchNorm that
follows a convolution starts with gamma = 1e-8.
"""

from __future__ import annotations

import tensorflow as tf

from ienet_tf.models.blocks import (
    PROJECTION_SUFFIX,
    SpatialPad,
    Trunk,
    batch_norm,
    bireal_stages,
    hard_tanh,
)
from ienet_tf.models.variants import Variant

__all__ = ["projection", "resnet18", "resnet34", "stem"]

CONV_BN_GAMMA = 1e-8


def stem(
    inputs: tf.Tensor, variant: Variant, bn_gamma: float = CONV_BN_GAMMA
) -> tuple[tf.Tensor, tf.Tensor]:
    """Float 7x7/2 conv(64) -> BN -> hardtanh -> 3x3/2 max-pool: the ImageNet stem.
    Returns (the max-pool's output, its input); the latter is what IR²Net's recovery
    fuses. Under `compat="release"` the conv and the pool pad symmetrically (PyTorch's
    padding 3 and 1; the pool pads with -1, which after the hardtanh is PyTorch's -inf)."""
    x = variant.float_conv(64, 7, 2, name="stem_conv")(inputs)
    x = batch_norm(bn_gamma, name="stem_bn")(x)
    x = unpooled = tf.keras.layers.Activation(hard_tanh, name="stem_out")(x)
    if variant.release:
        x = SpatialPad(1, -1.0, name="stem_pool_pad")(x)
        return tf.keras.layers.MaxPooling2D(3, 2, name="stem_pool")(x), unpooled
    return tf.keras.layers.MaxPooling2D(3, 2, padding="same", name="stem_pool")(x), unpooled


def projection(
    x: tf.Tensor,
    variant: Variant,
    filters: int,
    name: str,
    strides: int = 2,
    bn_gamma: float = CONV_BN_GAMMA,
) -> tf.Tensor:
    """The real-valued shortcut where the shape changes: 1x1 conv (strided) + BN."""
    x = variant.float_conv(filters, 1, strides, name=f"{name}{PROJECTION_SUFFIX}")(x)
    return batch_norm(bn_gamma, name=f"{name}_down_bn")(x)


def _bireal_resnet(inputs, variant: Variant, blocks) -> Trunk:
    x, unpooled = stem(inputs, variant)
    stages = [(filters, 2 * n) for filters, n in zip((64, 128, 256, 512), blocks, strict=True)]

    def downsample(t, filters, name):
        return projection(t, variant, filters, name)

    *shallow, final = bireal_stages(x, variant, stages, downsample, bn_gamma=CONV_BN_GAMMA)
    return Trunk(final, (unpooled, *shallow))


def resnet18(inputs: tf.Tensor, variant: Variant) -> Trunk:
    """Bi-Real ResNet-18: blocks [2, 2, 2, 2] (16 binary 3x3 convs)."""
    return _bireal_resnet(inputs, variant, (2, 2, 2, 2))


def resnet34(inputs: tf.Tensor, variant: Variant) -> Trunk:
    """Bi-Real ResNet-34: blocks [3, 4, 6, 3] (32 binary 3x3 convs)."""
    return _bireal_resnet(inputs, variant, (3, 4, 6, 3))
