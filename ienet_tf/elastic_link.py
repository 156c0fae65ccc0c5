r"""Elastic-Link (EL): add the real-valued input of a binary convolution to its output.

\\[
Y = \operatorname{BinConv}(X) + \gamma \odot \operatorname{SE}(X)
\\]

`SE` makes `X` the shape of the conv's output without parameters:

- **pool**: a strided conv's input is average-pooled with window = stride ("same"
  padding, so the output is `ceil(H / stride)` as the conv's);
- **squeeze** (C_in > C_out): each output channel `c` is the mean of the C_in / C_out
  consecutive input channels `[c·g, (c+1)·g)`;
- **expand** (C_in < C_out): the input channels are repeated C_out / C_in times, as a
  whole (`[X, X, ...]` on the channel axis, ReActNet's convention);

so C_in and C_out must divide one another (a clear error says so otherwise).

Assumptions (the EL paper's full text is not available here; both are options):
`gamma` is learnable, one per output channel (`gamma_mode="channel"`, or `"scalar"`),
initialised to 1 (`gamma_initializer`): at the start the link is an unscaled real-valued
shortcut around the binary conv, and training weighs the two paths. Apply EL before the
conv's BatchNorm, as the paper's "adding real-valued input features to the subsequent
convolutional output" says; in TFLite it is float AVERAGE_POOL / MEAN / TILE, MUL and
ADD after the binary conv, which stays an `LceBconv2d`.

```python
y = layers.IEBinaryConv2D(64, 1)(x)
y = tf.keras.layers.Add()([y, layers.ElasticLink(64)(x)])
```
"""

from __future__ import annotations

import tensorflow as tf

from ienet_tf.checks import is_positive_int
from ienet_tf.registration import register

__all__ = ["GAMMA_MODES", "ElasticLink"]

GAMMA_MODES = ("channel", "scalar")


@register
class ElasticLink(tf.keras.layers.Layer):
    """`gamma ⊙ SE(x)`: the real-valued path of Elastic-Link, to add to `BinConv(x)`.

    # Arguments
        filters: C_out, the number of output channels of the convolution it accompanies.
        strides: that convolution's stride (an int, the same on both axes).
        gamma_mode: `"channel"` (one gamma per output channel) or `"scalar"`.
        gamma_initializer: initializer of gamma (default ones).
        gamma_regularizer: regularizer of gamma.
    """

    def __init__(
        self,
        filters: int,
        strides: int = 1,
        gamma_mode: str = "channel",
        gamma_initializer="ones",
        gamma_regularizer=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        for label, value in (("filters", filters), ("strides", strides)):
            if not is_positive_int(value):
                raise ValueError(f"ElasticLink `{label}` must be an integer >= 1, got {value!r}.")
        if gamma_mode not in GAMMA_MODES:
            raise ValueError(
                f"ElasticLink `gamma_mode` must be one of {GAMMA_MODES}, got {gamma_mode!r}."
            )
        self.filters = int(filters)
        self.strides = int(strides)
        self.gamma_mode = gamma_mode
        self.gamma_initializer = tf.keras.initializers.get(gamma_initializer)
        self.gamma_regularizer = tf.keras.regularizers.get(gamma_regularizer)

    def build(self, input_shape):
        channels = tf.TensorShape(input_shape)[-1]
        if channels is None:
            raise ValueError("ElasticLink needs a known number of input channels.")
        big, small = max(channels, self.filters), min(channels, self.filters)
        if big % small:
            raise ValueError(
                f"ElasticLink cannot match {channels} input channels to {self.filters} output "
                "channels: one must be a multiple of the other (squeeze averages groups of "
                "channels, expand repeats them). Choose widths that divide each other."
            )
        self.input_channels = int(channels)
        self.gamma = self.add_weight(
            name="gamma",
            shape=(self.filters,) if self.gamma_mode == "channel" else (),
            initializer=self.gamma_initializer,
            regularizer=self.gamma_regularizer,
            trainable=True,
        )
        super().build(input_shape)

    def shape_matched(self, inputs: tf.Tensor, after_squeeze=None) -> tf.Tensor:
        """SE(x): pool to the conv's stride, squeeze or expand to its channels.
        `after_squeeze` (optional) is applied to the squeezed means (the int8 form
        fake-quantizes them)."""
        x = inputs
        if self.strides > 1:
            x = tf.nn.avg_pool2d(x, self.strides, self.strides, padding="SAME")
        if self.input_channels > self.filters:
            group = self.input_channels // self.filters
            spatial = tf.shape(x)[:-1]
            x = tf.reshape(x, tf.concat([spatial, [self.filters, group]], axis=0))
            x = tf.reduce_mean(x, axis=-1)
            if after_squeeze is not None:
                x = after_squeeze(x)
        elif self.input_channels < self.filters:
            x = tf.tile(x, [1, 1, 1, self.filters // self.input_channels])
        return x

    def call(self, inputs):
        return self.shape_matched(inputs) * self.gamma

    def compute_output_shape(self, input_shape):
        shape = tf.TensorShape(input_shape)
        height, width = (None if d is None else -(-d // self.strides) for d in shape[1:3])
        return tf.TensorShape([shape[0], height, width, self.filters])

    def get_config(self):
        return {
            **super().get_config(),
            "filters": self.filters,
            "strides": self.strides,
            "gamma_mode": self.gamma_mode,
            "gamma_initializer": tf.keras.initializers.serialize(self.gamma_initializer),
            "gamma_regularizer": tf.keras.regularizers.serialize(self.gamma_regularizer),
        }
