"""ImageNet-family networks of the IE-Net paper: Bi-Real-style ResNet-18 and ResNet-34.

A shortcut per 3x3 conv (`hardtanh(BN(conv(x)) + shortcut(x))`); the downsampling
shortcut is a real-valued 1x1 stride-2 conv + BN. As in the release, every BatchNorm that
follows a convolution starts with gamma = 1e-8.
"""

from __future__ import annotations

import tensorflow as tf

from ienet_tf.models.blocks import batch_norm, bireal_stages, hard_tanh
from ienet_tf.models.variants import Variant

__all__ = ["resnet18", "resnet34"]

CONV_BN_GAMMA = 1e-8


def _real_downsample(x: tf.Tensor, filters: int, name: str) -> tf.Tensor:
    x = tf.keras.layers.Conv2D(filters, 1, 2, use_bias=False, name=f"{name}_down_conv")(x)
    return batch_norm(CONV_BN_GAMMA, name=f"{name}_down_bn")(x)


def _bireal_resnet(inputs, variant: Variant, num_classes: int, blocks) -> tf.Tensor:
    x = tf.keras.layers.Conv2D(64, 7, 2, padding="same", use_bias=False, name="stem_conv")(inputs)
    x = batch_norm(CONV_BN_GAMMA, name="stem_bn")(x)
    x = tf.keras.layers.Activation(hard_tanh, name="stem_out")(x)
    x = tf.keras.layers.MaxPooling2D(3, 2, padding="same", name="stem_pool")(x)
    stages = [(filters, 2 * n) for filters, n in zip((64, 128, 256, 512), blocks, strict=True)]
    x = bireal_stages(x, variant, stages, _real_downsample, bn_gamma=CONV_BN_GAMMA)
    x = tf.keras.layers.GlobalAveragePooling2D(name="pool")(x)
    x = batch_norm(name="head_bn")(x)
    return tf.keras.layers.Dense(num_classes, name="logits")(x)


def resnet18(inputs: tf.Tensor, variant: Variant, num_classes: int) -> tf.Tensor:
    """Bi-Real ResNet-18: blocks [2, 2, 2, 2] (16 binary 3x3 convs)."""
    return _bireal_resnet(inputs, variant, num_classes, (2, 2, 2, 2))


def resnet34(inputs: tf.Tensor, variant: Variant, num_classes: int) -> tf.Tensor:
    """Bi-Real ResNet-34: blocks [3, 4, 6, 3] (32 binary 3x3 convs)."""
    return _bireal_resnet(inputs, variant, num_classes, (3, 4, 6, 3))
