"""CIFAR-family networks of the IE-Net paper (any small input size): ResNet-20, ResNet-18,
VGG-Small.

First convolution and last dense layer stay full precision in every variant. Each factory
returns its `Trunk` (final features + shallow feature maps); the registry adds the head.
"""

from __future__ import annotations

import tensorflow as tf

from ienet_tf.models.blocks import PadChannels, Trunk, batch_norm, bireal_stages, hard_tanh
from ienet_tf.models.variants import Variant

__all__ = ["flatten_head", "resnet18_cifar", "resnet20", "stem", "vgg_small"]


def stem(x: tf.Tensor, variant: Variant, filters: int, activation: bool) -> tf.Tensor:
    """Float 3x3 conv -> BN (-> hardtanh): the CIFAR stem."""
    x = variant.float_conv(filters, 3, name="stem_conv")(x)
    x = batch_norm(name="stem_bn")(x)
    return tf.keras.layers.Activation(hard_tanh, name="stem_out")(x) if activation else x


def _pool_and_pad(x: tf.Tensor, filters: int, name: str) -> tf.Tensor:
    x = tf.keras.layers.AveragePooling2D(2, name=f"{name}_pool")(x)
    return PadChannels(filters, name=f"{name}_pad")(x)


def resnet20(inputs: tf.Tensor, variant: Variant) -> Trunk:
    """Bi-Real ResNet-20: 18 units [6, 6, 6] at widths 16/32/64, each ONE 3x3 binary conv
    with its own shortcut; the downsampling shortcut is 2x2 average pooling + zero
    channel padding (no parameters)."""
    x = stem(inputs, variant, 16, activation=True)
    *shallow, final = bireal_stages(x, variant, [(16, 6), (32, 6), (64, 6)], _pool_and_pad)
    return Trunk(final, (x, *shallow))


def resnet18_cifar(inputs: tf.Tensor, variant: Variant) -> Trunk:
    """CIFAR ResNet-18: basic blocks [2, 2, 2, 2] at 64/128/256/512, two binary 3x3 convs
    per block, a single-branch binary 1x1 conv (no thresholds, K = 1, as in the release)
    + BN shortcut where the shape changes. Under `compat="release"` the block convs have
    the release's conv bias."""
    x = stem_out = stem(inputs, variant, 64, activation=False)
    stage_outputs = []
    in_filters = 64
    for stage, filters in enumerate((64, 128, 256, 512)):
        for block in range(2):
            strides = 2 if stage > 0 and block == 0 else 1
            name = f"stage{stage + 1}_block{block + 1}"
            bias = variant.release
            y = variant.conv(filters, 3, strides, name=f"{name}_conv1", use_bias=bias)(x)
            y = batch_norm(name=f"{name}_bn1")(y)
            y = tf.keras.layers.Activation(hard_tanh, name=f"{name}_act1")(y)
            y = variant.conv(filters, 3, 1, name=f"{name}_conv2", use_bias=bias)(y)
            y = batch_norm(name=f"{name}_bn2")(y)
            shortcut = x
            if strides != 1 or in_filters != filters:
                shortcut = variant.conv(
                    filters, 1, strides, name=f"{name}_down_conv", single_branch=True
                )(x)
                shortcut = batch_norm(name=f"{name}_down_bn")(shortcut)
            y = tf.keras.layers.Add(name=f"{name}_add")([y, shortcut])
            x = tf.keras.layers.Activation(hard_tanh, name=f"{name}_out")(y)
            in_filters = filters
        stage_outputs.append(x)
    return Trunk(stage_outputs[-1], (stem_out, *stage_outputs[:-1]))


def vgg_small(inputs: tf.Tensor, variant: Variant) -> Trunk:
    """VGG-Small: FP conv(128) -> BN, then binary convs 128 [pool], 256, 256 [pool],
    512, 512 [pool], each -> (max-pool) -> BN -> hardtanh; flatten -> dense. Information
    recovery fuses the stem's output alone (the IR²Net release), and under
    `compat="release"` the binary convs have the release's conv bias."""
    x = stem_out = stem(inputs, variant, 128, activation=False)
    for i, (filters, pool) in enumerate(
        ((128, True), (256, False), (256, True), (512, False), (512, True))
    ):
        name = f"conv{i + 1}"
        x = variant.conv(filters, 3, 1, name=name, use_bias=variant.release)(x)
        if pool:
            x = tf.keras.layers.MaxPooling2D(2, name=f"{name}_pool")(x)
        x = batch_norm(name=f"{name}_bn")(x)
        x = tf.keras.layers.Activation(hard_tanh, name=f"{name}_out")(x)
    return Trunk(x, (stem_out,))


def flatten_head(x: tf.Tensor, num_classes: int, variant: Variant) -> tf.Tensor:
    """VGG-Small's head: flatten -> float dense."""
    x = tf.keras.layers.Flatten(name="flatten")(x)
    return variant.dense(num_classes, name="logits")(x)
