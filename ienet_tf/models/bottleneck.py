"""Binarized bottleneck ResNet-26, the network of the Elastic-Link paper.

Bottleneck blocks [2, 2, 2, 2] (24 convolutions + stem + classifier = 26 layers): each block
is 1x1 (width w) -> 3x3 (w, strided in the first block of stages 2-4) -> 1x1 (4w), each
conv binary and followed by BN (hardtanh after the first two), with ONE shortcut around
the block: identity, or a real-valued 1x1 conv + BN projection where the shape changes;
`hardtanh(BN(conv3(...)) + shortcut(x))`. Widths w = 64/128/256/512 (outputs 256 ... 2048).

The 1x1 convs change the channel count by 4x, which is where binarization loses the most
and what Elastic-Link's squeeze / expand path is for: use the `+el` variants
(`"bireal+el"`, `"ienet+el"`) to give every binary conv its real-valued link.

`resnet26` has the ImageNet stem (7x7/2 conv, max-pool); `resnet26_cifar` a 3x3 conv
stem and no max-pool, for 32x32 inputs. All BatchNorm gammas start at 1.
"""

from __future__ import annotations

import tensorflow as tf

from ienet_tf.models import cifar, imagenet
from ienet_tf.models.blocks import Trunk, batch_norm, hard_tanh
from ienet_tf.models.variants import Variant

__all__ = ["resnet26", "resnet26_cifar"]

EXPANSION = 4
WIDTHS = (64, 128, 256, 512)
BLOCKS = (2, 2, 2, 2)


def _bottleneck(x: tf.Tensor, variant: Variant, width: int, strides: int, name: str):
    out_filters = width * EXPANSION
    y = x
    for i, (filters, size, stride) in enumerate(
        ((width, 1, 1), (width, 3, strides), (out_filters, 1, 1))
    ):
        y = variant.conv(filters, size, stride, name=f"{name}_conv{i + 1}")(y)
        y = batch_norm(name=f"{name}_bn{i + 1}")(y)
        if i < 2:
            y = tf.keras.layers.Activation(hard_tanh, name=f"{name}_act{i + 1}")(y)
    shortcut = x
    if strides != 1 or x.shape[-1] != out_filters:
        shortcut = imagenet.projection(x, variant, out_filters, name, strides=strides, bn_gamma=1.0)
    y = tf.keras.layers.Add(name=f"{name}_add")([y, shortcut])
    return tf.keras.layers.Activation(hard_tanh, name=f"{name}_out")(y)


def _stages(x: tf.Tensor, variant: Variant, stem_out: tf.Tensor) -> Trunk:
    stage_outputs = []
    for stage, (width, blocks) in enumerate(zip(WIDTHS, BLOCKS, strict=True)):
        for block in range(blocks):
            strides = 2 if stage > 0 and block == 0 else 1
            x = _bottleneck(x, variant, width, strides, name=f"stage{stage + 1}_block{block + 1}")
        stage_outputs.append(x)
    return Trunk(stage_outputs[-1], (stem_out, *stage_outputs[:-1]))


def resnet26(inputs: tf.Tensor, variant: Variant) -> Trunk:
    """Binarized bottleneck ResNet-26 for ImageNet-sized inputs."""
    x, unpooled = imagenet.stem(inputs, variant, bn_gamma=1.0)
    return _stages(x, variant, unpooled)


def resnet26_cifar(inputs: tf.Tensor, variant: Variant) -> Trunk:
    """Binarized bottleneck ResNet-26 for CIFAR-sized inputs (3x3 stem, no max-pool)."""
    x = cifar.stem(inputs, variant, 64, activation=True)
    return _stages(x, variant, x)
