"""Activation fake-quantization for int8 QAT beside binary layers, and its calibration.

Every real-valued activation of an int8 model is fake-quantized with
`tf.quantization.fake_quant_with_min_max_vars` (8 bits, asymmetric, `narrow_range=False`):
the op the LCE/TFLite converter turns into the tensor's int8 scale and zero point. Its
range `[min, max]` is a pair of non-trainable variables:

- `calibrate(model, data)` sets every range to the min/max of the tensor over a few
  batches (in inference mode, graph order, upstream fake-quants active);
- in training (`model.fit`, the QAT fine-tune) the range follows an exponential moving
  average of the batch min/max (`ema_decay`), always containing 0;
- in inference the stored range is used.

The gradient is the straight-through estimator, zero outside the range (the op's own).
`FakeQuantOwner` is the part shared by `ActFakeQuant` (one range, a Keras layer of its own)
and the int8 layers of `ienet_tf.int8.layers` that hold ranges inside them (the threshold
shifts and branches of IE-BC).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np
import tensorflow as tf

from ienet_tf import errors
from ienet_tf.checks import input_batch
from ienet_tf.io import one_line
from ienet_tf.registration import register

__all__ = [
    "DEFAULT_EMA_DECAY",
    "HARD_TANH_RANGE",
    "INITIAL_RANGE",
    "ActFakeQuant",
    "FakeQuantOwner",
    "calibrate",
    "fake_quant_owners",
    "is_calibrated",
    "nudged_range",
]

#: EMA decay of the ranges in training: a time constant of ~100 steps, so a fine-tune of
#: a few epochs follows the weights it changes (tfmot's 0.999 suits long QAT runs).
DEFAULT_EMA_DECAY = 0.99

#: The range before calibration (tfmot's default): a QAT model must be calibrated first.
INITIAL_RANGE = (-6.0, 6.0)

#: The fixed range of a hardtanh's output: scale 1/127 with -1, 0 and +1 on the int8 grid
#: (-128, -1, 126). With the calibrated [-1, 1] the clamp values -1 and +1 fall halfway
#: between two grid points, where TFLite's fused RELU_N1_TO_1 and FakeQuant round apart:
#: every saturated value would differ by one step.
HARD_TANH_RANGE = (-1.0, 128.0 / 127.0)

# The narrowest range a calibration leaves (a tensor that is 0 everywhere would give a zero
# range, and a zero scale).
_MIN_RANGE = 1e-6


def nudged_range(low: float, high: float, num_bits: int = 8) -> tuple[float, float, float, int]:
    """`(nudged_min, nudged_max, scale, zero_point)` of TensorFlow's FakeQuant for `[low,
    high]` (`narrow_range=False`): the zero point is rounded so that 0.0 is exact; the
    returned zero point is the int8 one (the uint8 grid shifted by -128)."""
    quant_max = 2**num_bits - 1
    scale = (high - low) / quant_max
    zero_from_min = -low / scale
    zero = float(np.clip(np.floor(zero_from_min + 0.5), 0, quant_max))
    return -zero * scale, (quant_max - zero) * scale, scale, int(zero) - 2 ** (num_bits - 1)


class FakeQuantOwner:
    """Mix-in of a Keras layer that fake-quantizes tensors with ranges of its own.

    `ema_decay`: the moving average of the ranges in training. `calibrating` is set by
    `calibrate` only (the ranges then grow to the min/max of what they see)."""

    ema_decay: float = DEFAULT_EMA_DECAY
    calibrating: bool = False

    def _add_range(self, name: str, fixed: tuple[float, float] | None = None) -> str:
        """Add the (min, max) variables of the fake-quantized tensor `name`; returns `name`.
        A `fixed` range is neither calibrated nor moved in training."""
        found = []
        for end, initial in zip(("min", "max"), fixed or INITIAL_RANGE, strict=True):
            found.append(
                self.add_weight(
                    name=f"{name}_{end}" if name else end,
                    shape=(),
                    dtype=tf.float32,
                    initializer=tf.keras.initializers.Constant(initial),
                    trainable=False,
                    synchronization=tf.VariableSynchronization.ON_READ,
                    aggregation=tf.VariableAggregation.MEAN,
                )
            )
        # Not a tracked attribute: the variables are the layer's weights already.
        self.__dict__.setdefault("_fake_quant_ranges", {})[name] = (found[0], found[1])
        if fixed is not None:
            self.__dict__.setdefault("_fixed_ranges", set()).add(name)
        return name

    def fake_quant_ranges(self) -> dict[str, tuple[tf.Variable, tf.Variable]]:
        """The (min, max) variables of every calibrated fake-quantized tensor of this layer,
        by name (fixed ranges are left out)."""
        fixed = self.__dict__.get("_fixed_ranges", set())
        ranges = self.__dict__.get("_fake_quant_ranges", {})
        return {name: pair for name, pair in ranges.items() if name not in fixed}

    def output_range(self) -> tuple[float, float]:
        """The (min, max) of the layer's output tensor (fixed or calibrated)."""
        low, high = self.__dict__["_fake_quant_ranges"]["output"]
        return float(low.numpy()), float(high.numpy())

    def _fake_quant(self, x: tf.Tensor, name: str, training=None) -> tf.Tensor:
        low, high = self.__dict__["_fake_quant_ranges"][name]
        if name in self.__dict__.get("_fixed_ranges", ()):
            pass
        elif self.calibrating:
            low.assign(tf.minimum(low, tf.reduce_min(x)))
            high.assign(tf.maximum(tf.maximum(high, tf.reduce_max(x)), low + _MIN_RANGE))
        elif _is_training(training):
            decay = self.ema_decay
            low.assign(decay * low + (1.0 - decay) * tf.minimum(tf.reduce_min(x), 0.0))
            high.assign(decay * high + (1.0 - decay) * tf.maximum(tf.reduce_max(x), 0.0))
        return tf.quantization.fake_quant_with_min_max_vars(
            x, low, high, num_bits=8, narrow_range=False
        )


def _is_training(training) -> bool:
    """`training` as a Python bool (Keras passes a bool, None or, rarely, a constant)."""
    if isinstance(training, (tf.Tensor, tf.Variable)):
        training = tf.get_static_value(training)
    return bool(training)


@register
class ActFakeQuant(FakeQuantOwner, tf.keras.layers.Layer):
    """Fake-quantize a tensor to int8 with a moving-average range (see the module doc).

    ```python
    y = ActFakeQuant(name="stem_fq")(x)  # int8 in the converted model
    ```
    """

    def __init__(
        self,
        ema_decay: float = DEFAULT_EMA_DECAY,
        fixed_range: tuple[float, float] | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        ema_decay = float(ema_decay)
        if not 0.0 <= ema_decay < 1.0:
            raise ValueError(f"`ema_decay` must be in [0, 1), got {ema_decay!r}.")
        self.ema_decay = ema_decay
        if fixed_range is not None:
            fixed_range = (float(fixed_range[0]), float(fixed_range[1]))
            if not fixed_range[0] <= 0.0 <= fixed_range[1] or fixed_range[0] == fixed_range[1]:
                raise ValueError(f"`fixed_range` must contain 0, got {fixed_range!r}.")
        self.fixed_range = fixed_range

    def build(self, input_shape):
        self._add_range("output", self.fixed_range)
        super().build(input_shape)

    def call(self, inputs, training=None):
        return self._fake_quant(inputs, "output", training)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        fixed = None if self.fixed_range is None else list(self.fixed_range)
        return {**super().get_config(), "ema_decay": self.ema_decay, "fixed_range": fixed}


def fake_quant_owners(model: tf.keras.Model) -> list:
    """Every layer of `model` (nested ones included) that holds fake-quant ranges."""
    return [layer for layer in model.submodules if isinstance(layer, FakeQuantOwner)]


def is_calibrated(model: tf.keras.Model) -> bool:
    """False while every range of `model` is still `INITIAL_RANGE` (never calibrated nor
    trained)."""
    ranges = [r for layer in fake_quant_owners(model) for r in layer.fake_quant_ranges().values()]
    return any((float(low.numpy()), float(high.numpy())) != INITIAL_RANGE for low, high in ranges)


def _check_batch(batch, model: tf.keras.Model) -> np.ndarray:
    """One calibration batch as float32 of the model's input shape, or a `UsageError`
    naming what is wrong (see `checks.input_batch`)."""
    return input_batch(batch, tuple(model.input_shape), model.name, "calibration data")


def _batches(model: tf.keras.Model, data, max_batches: int | None) -> Iterator[np.ndarray]:
    """The calibration batches of `data`, each checked against the model's input: an array
    (one batch), `(images, labels)`, a list of batches, a `tf.data.Dataset` or an iterator
    (of images or `(images, labels)`)."""
    if isinstance(data, (tf.data.Dataset, Iterator, list)):
        batches: Iterable = data
    else:
        batches = [data]
    count = 0
    for batch in batches:
        if max_batches is not None and count >= max_batches:
            return
        if isinstance(batch, tuple) and batch:
            batch = batch[0]  # (images, labels)
        if isinstance(batch, tf.Tensor):
            batch = batch.numpy()
        count += 1
        yield _check_batch(batch, model)
    if count == 0:
        raise errors.UsageError(
            "calibration data is empty; pass a few batches of training images (e.g. "
            "`dataset.take(8)`) to calibrate the int8 ranges."
        )


def calibrate(model: tf.keras.Model, data, max_batches: int | None = 8) -> int:
    """Set every fake-quant range of `model` to the min/max (with 0) of its tensor over the
    batches of `data`, in inference mode; returns the number of batches used.

    `data`: an array of inputs (one batch), a `tf.data.Dataset` yielding inputs or
    `(inputs, labels)`, or a list of batches; at most `max_batches` are used. Each batch is
    checked against the model's input shape (a `UsageError` names what is wrong). Every
    range starts from 0 and grows; upstream tensors are already fake-quantized when a
    downstream range sees them, as in the converted model.
    """
    if not isinstance(model, tf.keras.Model):
        raise errors.UsageError(f"calibrate needs a Keras model, got {one_line(repr(model), 80)}.")
    owners = fake_quant_owners(model)
    if not owners:
        raise errors.UsageError(
            f"{model.name} has no fake-quant layers to calibrate; make its int8 QAT "
            "counterpart first: ienet_tf.int8.qat_model(model)."
        )
    ranges = [r for layer in owners for r in layer.fake_quant_ranges().values()]
    saved = [(float(low.numpy()), float(high.numpy())) for low, high in ranges]
    for low, high in ranges:
        low.assign(0.0)
        high.assign(0.0)
    for layer in owners:
        layer.calibrating = True
    used = 0
    try:
        for batch in _batches(model, data, max_batches):
            model(batch, training=False)
            used += 1
    except BaseException:
        for (low, high), (old_low, old_high) in zip(ranges, saved, strict=True):
            low.assign(old_low)
            high.assign(old_high)
        raise
    finally:
        for layer in owners:
            layer.calibrating = False
    return used
