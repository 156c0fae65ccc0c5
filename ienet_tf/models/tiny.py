"""A tiny network for small inputs (8x8 digits): the embedded demo's model."""

from __future__ import annotations

import tensorflow as tf

from ienet_tf.models.blocks import batch_norm
from ienet_tf.models.variants import Variant

__all__ = ["convnet"]


def convnet(inputs: tf.Tensor, variant: Variant, num_classes: int) -> tf.Tensor:
    """Float stem conv(32) -> BN, three binary 3x3 convs (64, 64/2, 128) each -> BN,
    global average pooling, float dense."""
    x = tf.keras.layers.Conv2D(32, 3, padding="same", use_bias=False, name="stem_conv")(inputs)
    x = batch_norm(name="stem_bn")(x)
    for i, (filters, strides) in enumerate(((64, 1), (64, 2), (128, 1))):
        x = variant.conv(filters, 3, strides, name=f"conv{i + 1}")(x)
        x = batch_norm(name=f"conv{i + 1}_bn")(x)
    x = tf.keras.layers.GlobalAveragePooling2D(name="pool")(x)
    return tf.keras.layers.Dense(num_classes, name="logits")(x)
