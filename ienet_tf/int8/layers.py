"""The layers of an int8 QAT model: what `ienet_tf.int8.qat_model` puts in place of the
trained model's real-valued layers and binary convolutions.

Real-valued weights are rounded to the int8 grid the converter stores them on, in the
forward pass (straight-through gradient): symmetric, [-127, 127], per output channel for
convolutions (`Int8Conv2D`, `Int8DepthwiseConv2D`) and per tensor for the classifier
(`Int8Dense`), TFLite's int8 scheme. The converter re-quantizes these already-rounded
weights to exactly the same integers, so the QAT model computes what the `.tflite` does,
up to the requantization of int8 kernels (an LSB here and there). BatchNorms are folded
into these layers' kernels and biases (`qat_model` does it, with the moving statistics):
there is no BatchNorm left in an int8 QAT model.

`Int8IEBinaryConv2D` is IE-BC (an `IEBinaryConv2D`) in the form that converts to int8 all
through: per branch `FQ(x + beta_k) -> sign -> BConv -> * s_k (+ bias on branch 0) -> FQ`,
the branches summed by a chain of adds, each fake-quantized (TFLite's `ADD_N` has no int8
kernel). The BatchNorm after it is folded into `alpha` and the bias, which LCE fuses into
the `LceBconv2d` output transform.
"""

from __future__ import annotations

import tensorflow as tf

from ienet_tf.elastic_link import ElasticLink
from ienet_tf.int8.fake_quant import DEFAULT_EMA_DECAY, FakeQuantOwner
from ienet_tf.layers import IEBinaryConv2D
from ienet_tf.registration import register

__all__ = [
    "Int8Conv2D",
    "Int8Dense",
    "Int8DepthwiseConv2D",
    "Int8ElasticLink",
    "Int8IEBinaryConv2D",
    "quantize_constant",
    "round_to_int8",
]

INT8_MAX = 127


def round_to_int8(weights: tf.Tensor, reduce_axes=None) -> tf.Tensor:
    """`weights` on TFLite's symmetric int8 grid: `round(w / s) * s` with `s = max|w| / 127`
    over `reduce_axes` (None: the whole tensor, per-tensor quantization; else one scale per
    index of the other axes, per-channel). The gradient is the identity (straight-through).
    """
    magnitude = tf.reduce_max(tf.abs(weights), axis=reduce_axes, keepdims=True)
    scale = magnitude / INT8_MAX
    scale = tf.where(scale > 0, scale, tf.ones_like(scale))
    rounded = tf.round(weights / scale) * scale
    return weights + tf.stop_gradient(rounded - weights)


def quantize_constant(values: tf.Tensor) -> tf.Tensor:
    """`values` (a constant operand of an int8 `ADD`: IE-BC's thresholds) on the int8 grid
    the converter stores it on: asymmetric, per tensor, over `[min(values, 0), max(values,
    0)]` (FakeQuant's nudging). Without it the converter rounds the thresholds its own way,
    and ~1 in 1000 shifted activations lands on the other side of 0 (a sign flip) in the
    `.tflite`. The gradient is the identity (every value lies inside the range)."""
    low = tf.minimum(tf.reduce_min(values), 0.0)
    high = tf.maximum(tf.maximum(tf.reduce_max(values), 0.0), low + 1e-6)
    return tf.quantization.fake_quant_with_min_max_vars(
        values, low, high, num_bits=8, narrow_range=False
    )


@register
class Int8Conv2D(tf.keras.layers.Conv2D):
    """A real-valued `Conv2D` whose kernel is rounded to int8 per output channel."""

    def convolution_op(self, inputs, kernel):
        return super().convolution_op(inputs, round_to_int8(kernel, [0, 1, 2]))


@register
class Int8DepthwiseConv2D(tf.keras.layers.DepthwiseConv2D):
    """A real-valued `DepthwiseConv2D` whose kernel is rounded to int8 per output channel
    (input channel x multiplier, TFLite's channel axis)."""

    def call(self, inputs):
        outputs = tf.keras.backend.depthwise_conv2d(
            inputs,
            round_to_int8(self.depthwise_kernel, [0, 1]),
            strides=self.strides,
            padding=self.padding,
            dilation_rate=self.dilation_rate,
            data_format=self.data_format,
        )
        if self.use_bias:
            outputs = tf.keras.backend.bias_add(outputs, self.bias, data_format=self.data_format)
        if self.activation is not None:
            return self.activation(outputs)
        return outputs


@register
class Int8Dense(tf.keras.layers.Dense):
    """A real-valued `Dense` whose kernel is rounded to int8 per tensor (TFLite's
    `FULLY_CONNECTED` scheme)."""

    def call(self, inputs):
        kernel = round_to_int8(self.kernel)
        if inputs.shape.rank == 2:
            outputs = tf.matmul(inputs, kernel)
        else:
            outputs = tf.tensordot(inputs, kernel, [[inputs.shape.rank - 1], [0]])
        if self.use_bias:
            outputs = tf.nn.bias_add(outputs, self.bias)
        if self.activation is not None:
            outputs = self.activation(outputs)
        return outputs


@register
class Int8IEBinaryConv2D(FakeQuantOwner, IEBinaryConv2D):
    """IE-BC with its BatchNorm folded in and every real-valued tensor fake-quantized.

    Per branch k: `t_k = FQ(x + q(beta_k))` (`q`: `quantize_constant`; without thresholds,
    `x` as is: it is already int8), `y_k = BConv(B_W, sign(t_k)) * lambda_k * alpha` (+ the
    bias for k = 0), and with K > 1 `FQ(y_k)`; the sum is a chain
    `FQ(FQ(y_1 + y_2) + y_3) ...` (the last FQ, or with K = 1 the only one, is the
    output's, after `activation`). Weights: those of
    `IEBinaryConv2D` (alpha holds the folded BatchNorm scale, the bias its shift) and a
    (min, max) pair per fake-quantized tensor.

    Converts into K `LceQuantize` (int8 in) + `LceBconv2d` (int8 out, scales and bias fused)
    and K - 1 int8 `ADD`s (plus the K int8 threshold `ADD`s).
    """

    def __init__(self, *args, ema_decay: float = DEFAULT_EMA_DECAY, **kwargs):
        kwargs["bias_in_branches"] = False
        super().__init__(*args, **kwargs)
        self.ema_decay = float(ema_decay)
        if float(self.pad_values) != 1.0 or self.symmetric_padding:
            raise ValueError(
                f"{self.name}: an int8 binary convolution pads its binarized input with +1 "
                "(`pad_values=1.0`, `symmetric_padding=False`): LceBconv2d has no int8 "
                "output for other padding."
            )

    def build(self, input_shape):
        super().build(input_shape)
        if self.thresholds is not None:
            for branch in range(self.k):
                self._add_range(f"shift{branch}")
        if self.k > 1:
            for branch in range(self.k):
                self._add_range(f"branch{branch}")
            for branch in range(1, self.k - 1):
                self._add_range(f"sum{branch}")
        self._add_range("output")

    def call(self, inputs, training=None):
        def shift(x, threshold, k):
            return self._fake_quant(x + quantize_constant(threshold), f"shift{k}", training)

        def branch(y, k):
            y = y + self.bias if k == 0 and self.use_bias else y
            return self._fake_quant(y, f"branch{k}", training) if self.k > 1 else y

        branches = self.branch_outputs(inputs, shift, branch)
        outputs = branches[0]
        for k, y in enumerate(branches[1:], start=1):
            outputs = outputs + y
            if k < self.k - 1:
                outputs = self._fake_quant(outputs, f"sum{k}", training)
        if self.activation is not None:
            outputs = self.activation(outputs)
        return self._fake_quant(outputs, "output", training)

    def get_config(self):
        config = super().get_config()
        config.pop("bias_in_branches", None)
        return {**config, "ema_decay": self.ema_decay}


@register
class Int8ElasticLink(FakeQuantOwner, ElasticLink):
    """Elastic-Link's `gamma * SE(x)` in int8: the squeeze's channel mean fake-quantized,
    gamma applied as a 1x1 depthwise convolution (per-channel int8 weights, exact) and the
    output fake-quantized."""

    def __init__(self, *args, ema_decay: float = DEFAULT_EMA_DECAY, **kwargs):
        super().__init__(*args, **kwargs)
        self.ema_decay = float(ema_decay)

    def build(self, input_shape):
        super().build(input_shape)
        if self.input_channels > self.filters:
            self._add_range("mean")
        self._add_range("output")

    def call(self, inputs, training=None):
        x = self.shape_matched(inputs, lambda means: self._fake_quant(means, "mean", training))
        gamma = tf.broadcast_to(tf.convert_to_tensor(self.gamma), [self.filters])
        kernel = round_to_int8(tf.reshape(gamma, [1, 1, self.filters, 1]), [0, 1])
        y = tf.nn.depthwise_conv2d(x, kernel, [1, 1, 1, 1], "VALID")
        return self._fake_quant(y, "output", training)

    def get_config(self):
        return {**super().get_config(), "ema_decay": self.ema_decay}
