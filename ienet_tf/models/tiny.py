"""A tiny network for small inputs (8x8 digits): the embedded demo's model."""

from __future__ import annotations

import tensorflow as tf

from ienet_tf.models.blocks import Trunk, batch_norm
from ienet_tf.models.variants import Variant

__all__ = ["convnet"]


def convnet(inputs: tf.Tensor, variant: Variant) -> Trunk:
    """Float stem conv(32) -> BN, three binary 3x3 convs (64, 64/2, 128) each -> BN;
    the head is global average pooling -> float dense."""
    x = variant.float_conv(32, 3, name="stem_conv")(inputs)
    x = stem_out = batch_norm(name="stem_bn")(x)
    outputs = []
    for i, (filters, strides) in enumerate(((64, 1), (64, 2), (128, 1))):
        x = variant.conv(filters, 3, strides, name=f"conv{i + 1}")(x)
        x = batch_norm(name=f"conv{i + 1}_bn")(x)
        outputs.append(x)
    return Trunk(outputs[-1], (stem_out, outputs[0]))
