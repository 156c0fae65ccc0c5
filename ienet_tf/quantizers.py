r"""IE-Net quantizers: the information-enhanced estimator (IEE) for weights and activations.

Both quantizers binarize with larq's `lq.math.sign` (sign(0) = +1) in the forward pass,
which is exactly what the Larq Compute Engine converter matches. Only the backward pass
differs from larq's built-in quantizers: it is the derivative of the IEE surrogate

\\[
F(x) = \begin{cases}
  r \left(\sqrt{3} q x - \operatorname{sign}(x) \tfrac{3}{4} q^2 x^2\right)
    & |x| < \tfrac{2\sqrt{3}}{3q} \\\
  r \operatorname{sign}(x) & \text{otherwise}
\end{cases}
\qquad
\frac{\partial F}{\partial x} = r \max\left(0, \sqrt{3} q - \tfrac{3}{2} q^2 |x|\right)
\\]

whose sharpness `q` follows a per-epoch schedule (`ienet_tf.callbacks.IEESchedule`). Early
in training (`q = 0.01`, `r = 100`) the gradient is about `sqrt(3)` almost everywhere; late
(`q ~ 10`, `r = 1`) it is a tall, narrow spike around 0 that approximates `d sign/dx`.

```python
import larq as lq
from ienet_tf import quantizers

layer = lq.layers.QuantConv2D(
    64, 3, input_quantizer="iee_act_sign", kernel_quantizer="iee_sign", use_bias=False
)
```
"""

from __future__ import annotations

import math

import larq as lq
import tensorflow as tf

from ienet_tf.compat import BaseQuantizer, skip_inapplicable_starved_weights_warnings
from ienet_tf.registration import register
from ienet_tf.schedule import DEFAULT_T_MIN

__all__ = [
    "IEEActivationSign",
    "IEEQuantizer",
    "IEESign",
    "get_input_quantizer",
    "get_kernel_quantizer",
    "iee_derivative",
    "iee_sign",
    "scaled_iee_sign",
    "standardize",
]

# larq's per-layer "starved weights" warning does not apply to standardized IEE weights.
skip_inapplicable_starved_weights_warnings()

SQRT3 = math.sqrt(3.0)
#: Added to the variance before the square root, as in the release (`var + 1e-5`).
STD_EPSILON = 1e-5


def iee_derivative(x: tf.Tensor, q: tf.Tensor, r: tf.Tensor | float) -> tf.Tensor:
    """The IEE surrogate derivative `r * max(0, sqrt(3) q - 1.5 q^2 |x|)`.

    A Python `r == 1` (the activation estimator) skips the multiplication: multiplying by
    1 is exact, so the values are the same and one pass over the tensor is saved.
    """
    derivative = tf.nn.relu(SQRT3 * q - 1.5 * tf.square(q) * tf.abs(x))
    if isinstance(r, (int, float)) and r == 1:
        return derivative
    return r * derivative


def iee_sign(x: tf.Tensor, q: tf.Tensor | float, r: tf.Tensor | float) -> tf.Tensor:
    """`lq.math.sign(x)` in the forward pass, `dy * iee_derivative(x, q, r)` backward.

    `q` and `r` are treated as constants: no gradient flows to them.
    """
    q = tf.cast(q, x.dtype)
    if not (isinstance(r, (int, float)) and r == 1):  # see `iee_derivative`
        r = tf.cast(r, x.dtype)

    @tf.custom_gradient
    def _call(x):
        def grad(dy):
            return dy * iee_derivative(x, q, r)

        return lq.math.sign(x), grad

    return _call(x)


def _centered_and_scale(x: tf.Tensor, axes: list[int]):
    """`x - mean`, `1 / sqrt(var + 1e-5)` (unbiased variance) over `axes`, and the
    variance's divisor `max(n - 1, 1)`, of a float32 `x` (callers cast once: in float16 a
    count above 65504, one 32x32x128 activation, and a sum of squares overflow; measured:
    NaN losses under `mixed_float16`)."""
    mean = tf.reduce_mean(x, axis=axes, keepdims=True)
    centered = x - mean
    count = tf.cast(tf.reduce_prod(tf.gather(tf.shape(x), axes)), tf.float32)
    divisor = tf.maximum(count - 1.0, 1.0)
    variance = tf.reduce_sum(tf.square(centered), axis=axes, keepdims=True) / divisor
    return centered, tf.math.rsqrt(variance + STD_EPSILON), divisor


def standardize(x: tf.Tensor, axes: list[int], center: bool = True) -> tf.Tensor:
    """`(x - mean) / sqrt(var + 1e-5)` over `axes`, with the unbiased variance, computed
    in float32 and returned in `x`'s dtype.

    Gradients flow through the mean and the standard deviation. With `center=False` the
    mean is still used for the variance but not subtracted from `x` (the release's
    per-sample activation scaling).
    """
    x32 = tf.cast(x, tf.float32)
    centered, scale, _ = _centered_and_scale(x32, axes)
    return tf.cast((centered if center else x32) * scale, x.dtype)


def scaled_iee_sign(x: tf.Tensor, q: tf.Tensor | float, axes: list[int]) -> tf.Tensor:
    r"""`lq.math.sign(x~)` with `x~ = x / sqrt(var(x) + 1e-5)` over `axes`, and the IEE
    gradient (`r = 1`) at `x~` chained through that scaling: the training path of
    `IEEActivationSign`, as one custom gradient.

    It equals `iee_sign(standardize(x, axes, center=False), q, 1.0)` in value and (up to
    rounding) in gradient, but the backward pass is the closed form instead of autodiff
    through the mean, square, sum and rsqrt, which on activations costs several passes
    over the tensor. With `s = (v + eps)^{-1/2}`, `v = sum_j c_j^2 / d`, `c = x - mean(x)`,
    `d = max(n - 1, 1)` and `g = dL/dx~ = dy * IEE'(x~)`:

    \\[
    \frac{\partial L}{\partial x_i} = g_i s + \Big(\sum_j g_j x_j\Big)
        \frac{\partial s}{\partial x_i} = g_i s - \Big(\sum_j g_j x_j\Big)
        \frac{s^3}{d} c_i
    \\]

    (the mean's own derivative drops out because `sum_j c_j = 0`). `q` is a constant.
    The statistics and the sums over `axes` are float32 under every dtype policy (see
    `_centered_and_scale`); the result and the gradient have `x`'s dtype.
    """
    q = tf.cast(q, tf.float32)

    @tf.custom_gradient
    def _call(x):
        x32 = tf.cast(x, tf.float32)
        centered, scale, divisor = _centered_and_scale(x32, axes)
        scaled = x32 * scale

        def grad(dy):
            g = tf.cast(dy, tf.float32) * iee_derivative(scaled, q, 1.0)
            gx = tf.reduce_sum(g * x32, axis=axes, keepdims=True)
            dx = g * scale - (gx * scale * tf.square(scale) / divisor) * centered
            return tf.cast(dx, x.dtype)

        return tf.cast(lq.math.sign(scaled), x.dtype), grad

    return _call(x)


class IEEQuantizer(BaseQuantizer):
    """Base class of the quantizers driven by the IEE schedule.

    Holds the schedule value `q` as a non-trainable scalar `tf.Variable`, which
    `IEESchedule` assigns at the start of every epoch and which is saved with the model.

    # Arguments
        q: initial sharpness, `10^T_min = 0.01` by default (the schedule's first epoch).
            Without an `IEESchedule` callback `q` stays at this value.
    """

    precision = 1

    def __init__(self, q: float = 10.0**DEFAULT_T_MIN, **kwargs):
        q = float(q)
        if not q > 0 or not math.isfinite(q):
            raise ValueError(f"`q` must be a positive finite number, got {q!r}.")
        super().__init__(**kwargs)
        with tf.name_scope(self.name):  # unique weight names, e.g. for HDF5 weights
            self.q = self.add_weight(
                name="q",
                shape=(),
                dtype=tf.float32,
                initializer=tf.keras.initializers.Constant(q),
                trainable=False,
            )

    @property
    def non_trainable_weights(self):
        # larq's base hides every non-trainable weight (its metrics' state); `q` is model
        # state that must be saved with the weights, so it is exposed.
        return [self.q]

    @property
    def r(self) -> tf.Tensor:
        """The gradient scale `max(1/q, 1)` derived from the current `q`."""
        return tf.maximum(1.0 / tf.convert_to_tensor(self.q), 1.0)

    def get_config(self):
        return {**super().get_config(), "q": float(tf.keras.backend.get_value(self.q))}


@register(alias="iee_sign")
class IEESign(IEEQuantizer):
    r"""Binary weight quantizer with balance + standardize and the IEE gradient.

    Per output channel (the last axis; mean and variance over all other axes):

    \\[
    \hat{W} = \frac{W - \operatorname{mean}(W)}{\sqrt{\operatorname{var}(W) + 10^{-5}}},
    \qquad B_W = \operatorname{sign}(\hat{W}),
    \qquad \frac{\partial L}{\partial \hat{W}} = \frac{\partial L}{\partial B_W}
        \, r \max\left(0, \sqrt{3} q - \tfrac{3}{2} q^2 |\hat{W}|\right)
    \\]

    with `r = max(1/q, 1)` and the unbiased variance (as in the release). Gradients flow
    through the mean and standard deviation. The output is exactly +-1 per element; the
    per-channel scaling factor belongs to the layer (`IEBinaryConv2D.alpha`), after the
    convolution, where the LCE converter fuses it.

    The release trains these latent weights unclipped (`kernel_constraint=None`). larq
    warns of "starved weights" for a binary weight quantizer without a constraint, but
    standardization rescales the weights before the sign, so their magnitude cannot starve
    the gradient: with `standardize=True` the warning does not apply and is not logged
    (`starves_without_constraint`; `kernel_constraint="weight_clip"` adds the clip anyway).

    # Arguments
        standardize: balance and standardize before the sign (the IE-Net default). With
            `False`, the IEE gradient is applied to the raw latent weights.
        q: initial sharpness of the estimator (see `IEEQuantizer`).
        metrics: larq metrics, e.g. `["flip_ratio"]`.

    # References
        - [IE-Net: Information-Enhanced Binary Neural Networks for Accurate
          Classification](https://doi.org/10.3390/electronics11060937)
    """

    def __init__(self, standardize: bool = True, **kwargs):
        self.standardize = bool(standardize)
        super().__init__(**kwargs)

    @property
    def starves_without_constraint(self) -> bool:
        """Whether unconstrained latent weights can starve (larq's warning applies): only
        without standardization."""
        return not self.standardize

    def call(self, inputs):
        latent = inputs
        if self.standardize:
            latent = standardize(latent, axes=list(range(inputs.shape.rank - 1)))
        q = tf.convert_to_tensor(self.q)
        outputs = iee_sign(latent, q, tf.maximum(1.0 / q, 1.0))
        return super().call(outputs)

    def get_config(self):
        return {**super().get_config(), "standardize": self.standardize}


@register(alias="iee_act_sign")
class IEEActivationSign(IEEQuantizer):
    r"""Binary activation quantizer with the release's IEE activation estimator.

    Forward `sign(x)`. Backward, with `q_a = max(q, 1)` and `r_a = 1`:

    \\[
    \frac{\partial L}{\partial \tilde{x}} = \frac{\partial L}{\partial b}
        \max\left(0, \sqrt{3} q_a - \tfrac{3}{2} q_a^2 |\tilde{x}|\right),
    \qquad \tilde{x} = \frac{x}{\sqrt{\operatorname{var}(x) + 10^{-5}}}
    \\]

    where during training the variance is per sample over (H, W, C) (unbiased) and the
    division is part of the graph (its gradient is kept). At inference there is no
    division: the sign is unchanged by it, and the converted model sees a plain sign.

    # Arguments
        normalize: divide by the per-sample standard deviation in training (release
            default). With `False`, the estimator's x-axis is the raw input.
        q: initial sharpness (see `IEEQuantizer`); the schedule drives it like the
            weights', and the activation estimator uses `max(q, 1)`.
        metrics: larq metrics, e.g. `["flip_ratio"]`.
    """

    def __init__(self, normalize: bool = True, **kwargs):
        self.normalize = bool(normalize)
        super().__init__(**kwargs)

    def call(self, inputs, training=None):
        q_a = tf.maximum(tf.convert_to_tensor(self.q), 1.0)
        if self.normalize and inputs.shape.rank > 1:
            axes = list(range(1, inputs.shape.rank))
            outputs = tf.__internal__.smart_cond.smart_cond(
                False if training is None else training,
                lambda: scaled_iee_sign(inputs, q_a, axes),
                lambda: iee_sign(inputs, q_a, 1.0),
            )
        else:
            outputs = iee_sign(inputs, q_a, 1.0)
        return super().call(outputs)

    def get_config(self):
        return {**super().get_config(), "normalize": self.normalize}


def _binary_quantizer(identifier, argument: str, get) -> lq.quantizers.Quantizer:
    """`identifier` (a name larq registers, a serialized quantizer or an instance)
    resolved by larq's own `get`, refused unless it is a binary quantizer."""
    example = "e.g. 'ste_sign', 'approx_sign', 'iee_sign', 'iee_act_sign'"
    try:
        quantizer = get(identifier) if isinstance(identifier, (str, dict)) else identifier
    except ValueError:
        raise ValueError(
            f"Unknown `{argument}` {identifier!r}: not a quantizer larq knows ({example})."
        ) from None
    except TypeError as error:  # a known class whose constructor needs arguments
        raise ValueError(
            f"`{argument}` {identifier!r}: larq cannot build it from its name "
            f"({str(error).splitlines()[-1].strip()}); pass an instance ({example})."
        ) from None
    if not isinstance(quantizer, lq.quantizers.Quantizer) or quantizer.precision != 1:
        raise ValueError(
            f"`{argument}` must be a binary larq quantizer (precision 1; {example}), "
            f"got {identifier!r}."
        )
    return quantizer


def get_kernel_quantizer(identifier) -> lq.quantizers.Quantizer:
    """The binary kernel quantizer `identifier` names: any binary quantizer larq registers
    (`"iee_sign"`, `"ste_sign"`, `"magnitude_aware_sign"`, ...; larq's
    `get_kernel_quantizer`), a serialized one or an instance."""
    return _binary_quantizer(identifier, "kernel_quantizer", lq.quantizers.get_kernel_quantizer)


def get_input_quantizer(identifier) -> lq.quantizers.Quantizer:
    """The binary input quantizer `identifier` names: any binary quantizer larq registers
    (`"iee_act_sign"`, `"approx_sign"`, `"ste_sign"`, ...; larq's `get`), a serialized one
    or an instance."""
    return _binary_quantizer(identifier, "input_quantizer", lq.quantizers.get)
