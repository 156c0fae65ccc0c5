"""ImageNet-family networks of the IE-Net paper: Bi-Real-style ResNet-18 and ResNet-34.

A shortcut per 3x3 conv (`hardtanh(BN(conv(x)) + shortcut(x))`); the downsampling
shortcut is a real-valued 1x1 stride-2 conv + BN. As in the release, every BatchNorm that
follows a convolution starts with gamma = 1e-8.
"""

from __future__ import annotations

import tensorflow as tf

from ienet_tf.models.blocks import Trunk, batch_norm, bireal_stages, hard_tanh
from ienet_tf.models.variants import Variant

__all__ = ["projection", "resnet18", "resnet34", "stem"]

CONV_BN_GAMMA = 1e-8


def stem(inputs: tf.Tensor, bn_gamma: float = CONV_BN_GAMMA) -> tf.Tensor:
    """Float 7x7/2 conv(64) -> BN -> hardtanh -> 3x3/2 max-pool: the ImageNet stem."""
    x = tf.keras.layers.Conv2D(64, 7, 2, padding="same", use_bias=False, name="stem_conv")(inputs)
    x = batch_norm(bn_gamma, name="stem_bn")(x)
    x = tf.keras.layers.Activation(hard_tanh, name="stem_out")(x)
    return tf.keras.layers.MaxPooling2D(3, 2, padding="same", name="stem_pool")(x)


def projection(
    x: tf.Tensor, filters: int, name: str, strides: int = 2, bn_gamma: float = CONV_BN_GAMMA
) -> tf.Tensor:
    """The real-valued shortcut where the shape changes: 1x1 conv (strided) + BN."""
    x = tf.keras.layers.Conv2D(filters, 1, strides, use_bias=False, name=f"{name}_down_conv")(x)
    return batch_norm(bn_gamma, name=f"{name}_down_bn")(x)


def _bireal_resnet(inputs, variant: Variant, blocks) -> Trunk:
    x = stem(inputs)
    stages = [(filters, 2 * n) for filters, n in zip((64, 128, 256, 512), blocks, strict=True)]
    *shallow, final = bireal_stages(x, variant, stages, projection, bn_gamma=CONV_BN_GAMMA)
    return Trunk(final, (x, *shallow))


def resnet18(inputs: tf.Tensor, variant: Variant) -> Trunk:
    """Bi-Real ResNet-18: blocks [2, 2, 2, 2] (16 binary 3x3 convs)."""
    return _bireal_resnet(inputs, variant, (2, 2, 2, 2))


def resnet34(inputs: tf.Tensor, variant: Variant) -> Trunk:
    """Bi-Real ResNet-34: blocks [3, 4, 6, 3] (32 binary 3x3 convs)."""
    return _bireal_resnet(inputs, variant, (3, 4, 6, 3))
