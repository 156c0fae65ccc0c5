"""Building blocks shared by the model factories."""

from __future__ import annotations

import dataclasses

import tensorflow as tf

from ienet_tf.models.variants import Variant
from ienet_tf.registration import register
from ienet_tf.torch_form import TorchBatchNormalization

__all__ = [
    "PROJECTION_SUFFIX",
    "PadChannels",
    "SliceChannels",
    "SpatialPad",
    "Trunk",
    "batch_norm",
    "binary_unit",
    "bireal_stages",
    "hard_tanh",
    "identity",
    "pooled_head",
]


#: The name suffix of the real-valued 1x1 downsampling projections (`imagenet.projection`):
#: the ImageNet recipe's weight decay leaves them out, as the release does.
PROJECTION_SUFFIX = "_down_conv"


@register
def hard_tanh(x: tf.Tensor) -> tf.Tensor:
    """`clip(x, -1, 1)`, the activation of Bi-Real-style BNNs (TFLite: RELU_N1_TO_1)."""
    return tf.clip_by_value(x, -1.0, 1.0)


class _ToChannels(tf.keras.layers.Layer):
    """A parameter-free layer that changes the channel count to `channels`."""

    def __init__(self, channels: int, **kwargs):
        super().__init__(**kwargs)
        self.channels = int(channels)

    def compute_output_shape(self, input_shape):
        return tf.TensorShape(input_shape)[:-1].concatenate([self.channels])

    def get_config(self):
        return {**super().get_config(), "channels": self.channels}


@register
class PadChannels(_ToChannels):
    """Zero-pads the channel axis to `channels`, half before and half after: the
    parameter-free shortcut of CIFAR ResNets ("option A")."""

    def call(self, inputs):
        extra = self.channels - inputs.shape[-1]
        if extra < 0:
            raise ValueError(
                f"PadChannels({self.channels}) got {inputs.shape[-1]} channels, more than "
                "it pads to."
            )
        before = extra // 2
        return tf.pad(inputs, [[0, 0], [0, 0], [0, 0], [before, extra - before]])


@register
class SliceChannels(_ToChannels):
    """Keeps the first `channels` channels (a Ghost module's cut back to its width)."""

    def call(self, inputs):
        if inputs.shape[-1] < self.channels:
            raise ValueError(
                f"SliceChannels({self.channels}) got {inputs.shape[-1]} channels, fewer than "
                "it keeps."
            )
        return inputs[..., : self.channels]


@register
class SpatialPad(tf.keras.layers.Layer):
    """Pads height and width by `padding` on every side with the constant `value`: the
    release's max-pool padding (PyTorch pads with -inf; after a hardtanh, -1 is the same)."""

    def __init__(self, padding: int, value: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        self.padding = int(padding)
        self.value = float(value)

    def call(self, inputs):
        p = self.padding
        return tf.pad(inputs, [[0, 0], [p, p], [p, p], [0, 0]], constant_values=self.value)

    def compute_output_shape(self, input_shape):
        shape = tf.TensorShape(input_shape).as_list()
        for axis in (1, 2):
            shape[axis] = None if shape[axis] is None else shape[axis] + 2 * self.padding
        return tf.TensorShape(shape)

    def get_config(self):
        return {**super().get_config(), "padding": self.padding, "value": self.value}


def identity(x: tf.Tensor) -> tf.Tensor:
    """The identity shortcut."""
    return x


def batch_norm(gamma: float = 1.0, name: str | None = None):
    """BatchNorm as PyTorch's (momentum 0.1 = Keras 0.9, epsilon 1e-5, the unbiased
    batch variance in the running variance: `TorchBatchNormalization`) with a chosen gamma
    init.

    Synchronized across replicas, so a `tf.distribute` run normalises with the statistics
    of the whole global batch, as single-device training does (a no-op on one device).
    """
    return TorchBatchNormalization(
        momentum=0.9,
        epsilon=1e-5,
        synchronized=True,
        gamma_initializer=tf.keras.initializers.Constant(gamma),
        name=name,
    )


def binary_unit(
    x: tf.Tensor,
    variant: Variant,
    filters: int,
    strides: int,
    shortcut,
    bn_gamma: float = 1.0,
    name: str = "unit",
) -> tf.Tensor:
    """Bi-Real unit, one shortcut per 3x3 conv: `hardtanh(BN(conv(x)) + shortcut(x))`."""
    y = variant.conv(filters, 3, strides, name=f"{name}_conv")(x)
    y = batch_norm(bn_gamma, name=f"{name}_bn")(y)
    y = tf.keras.layers.Add(name=f"{name}_add")([y, shortcut(x)])
    return tf.keras.layers.Activation(hard_tanh, name=f"{name}_out")(y)


def bireal_stages(
    x: tf.Tensor,
    variant: Variant,
    stages,
    downsample,
    bn_gamma: float = 1.0,
) -> list[tf.Tensor]:
    """Stack `binary_unit`s: `stages` is a list of (filters, units); the first unit of every
    stage but the first has stride 2 and the shortcut `downsample(x, filters, name)`.
    Returns every stage's output."""
    outputs = []
    for stage, (filters, units) in enumerate(stages):
        for unit in range(units):
            strides = 2 if stage > 0 and unit == 0 else 1
            name = f"stage{stage + 1}_unit{unit + 1}"
            if strides == 1:
                shortcut = identity
            else:

                def shortcut(t, filters=filters, name=name):
                    return downsample(t, filters, name)

            x = binary_unit(x, variant, filters, strides, shortcut, bn_gamma, name=name)
        outputs.append(x)
    return outputs


@dataclasses.dataclass(frozen=True)
class Trunk:
    """What a model factory builds before its head: the final-stage features and the
    shallower feature maps (stem and every earlier stage) that IR²Net's information
    recovery fuses into them."""

    features: tf.Tensor
    shallow: tuple[tf.Tensor, ...]


def pooled_head(x: tf.Tensor, num_classes: int, variant: Variant, bn: bool = True) -> tf.Tensor:
    """Global average pooling -> (BatchNorm) -> float dense logits."""
    x = tf.keras.layers.GlobalAveragePooling2D(name="pool")(x)
    if bn:
        x = batch_norm(name="head_bn")(x)
    return variant.dense(num_classes, name="logits")(x)
