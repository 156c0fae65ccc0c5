r"""Initializers that reproduce PyTorch's, for the `compat="release"` networks.

The IE-Net release keeps PyTorch's default initialisation in its CIFAR networks and
redraws the ImageNet conv kernels with Kaiming-normal:

| PyTorch                                   | here                                   |
|-------------------------------------------|----------------------------------------|
| `Conv2d`/`Linear` weight default           | `torch_default()`: U(±1/√fan_in)       |
| `Conv2d`/`Linear` bias default             | `torch_default_bias(fan_in)`           |
| `kaiming_normal_(w)` (fan_in, ReLU gain)   | `kaiming_normal()`: N(0, 2/fan_in)     |
| `alpha = mean|w|` of the default init      | `MeanAbsTorchDefault(fan_in)`          |

`fan_in` of a conv kernel (kh, kw, C_in, C_out) is kh·kw·C_in, of a dense kernel its
input size, as in PyTorch.

And one that is not the release's: `SpreadThresholds(width)`, IE-BC thresholds that start
apart (the release starts them all at 0, so its K branches start as one).
"""

from __future__ import annotations

import math

import tensorflow as tf

from ienet_tf.registration import register

__all__ = [
    "MeanAbsTorchDefault",
    "SpreadThresholds",
    "kaiming_normal",
    "torch_default",
    "torch_default_bias",
]


def torch_default() -> tf.keras.initializers.Initializer:
    """PyTorch's default `Conv2d`/`Linear` weight init, `kaiming_uniform_(a=√5)`:
    U(-b, b) with b = gain·√(3/fan_in), gain = √(2/(1+5)), so b = 1/√fan_in."""
    return tf.keras.initializers.VarianceScaling(1.0 / 3.0, "fan_in", "uniform")


def torch_default_bias(fan_in: int) -> tf.keras.initializers.Initializer:
    """PyTorch's default `Conv2d`/`Linear` bias init: U(±1/√fan_in) of the layer's
    kernel fan-in (a bias alone does not know it)."""
    bound = 1.0 / math.sqrt(fan_in)
    return tf.keras.initializers.RandomUniform(-bound, bound)


def kaiming_normal() -> tf.keras.initializers.Initializer:
    """`torch.nn.init.kaiming_normal_` with its defaults (fan_in, ReLU gain √2):
    N(0, 2/fan_in), not truncated (Keras' `he_normal` truncates)."""
    return tf.keras.initializers.VarianceScaling(2.0, "fan_in", "untruncated_normal")


@register
class MeanAbsTorchDefault(tf.keras.initializers.Initializer):
    """Per-output-channel mean |w| of a kernel drawn from `torch_default()`: the IE-Net
    release's alpha on ImageNet, computed from the default init before the kernel is
    redrawn. `fan_in` is the kernel's (kh·kw·C_in); the result has the requested shape
    (C_out,)."""

    def __init__(self, fan_in: int, seed: int | None = None):
        self.fan_in = int(fan_in)
        self.seed = seed

    def __call__(self, shape, dtype=None, **kwargs):
        bound = 1.0 / math.sqrt(self.fan_in)
        draws = tf.random.uniform(
            [self.fan_in, *shape], -bound, bound, dtype or tf.float32, seed=self.seed
        )
        return tf.reduce_mean(tf.abs(draws), axis=0)

    def get_config(self):
        return {"fan_in": self.fan_in, "seed": self.seed}


@register
class SpreadThresholds(tf.keras.initializers.Initializer):
    r"""IE-BC thresholds (K, C_in) evenly spaced in [-width, width], the same for every
    input channel: \(\beta_k = \text{width} \cdot (2(k-1)/(K-1) - 1)\), k = 1..K (zeros
    when K = 1).

    The release starts every threshold at 0: the K branches binarize identically until
    training moves them apart, which a short budget may not do (`inspection
    .branch_diversity`). With `width = 0.5` and K = 2 the branches start at -0.5 and +0.5
    and see different codes wherever |x| < 0.5.

    ```python
    layer = IEBinaryConv2D(64, 3, k=2, thresholds_initializer=SpreadThresholds(0.5))
    ```
    """

    def __init__(self, width: float):
        if not (isinstance(width, (int, float)) and math.isfinite(width) and 0 <= width <= 1):
            raise ValueError(
                "`width` must be a number in [0, 1] (the networks binarize hardtanh outputs, "
                f"in [-1, 1]: a wider threshold gives a branch of constant codes), got {width!r}."
            )
        self.width = float(width)

    def __call__(self, shape, dtype=None, **kwargs):
        if len(shape) != 2:
            raise ValueError(f"thresholds have shape (K, C_in), got {tuple(shape)}.")
        k, channels = int(shape[0]), int(shape[1])
        levels = tf.linspace(-self.width, self.width, k) if k > 1 else tf.zeros([1])
        return tf.cast(tf.tile(levels[:, None], [1, channels]), dtype or tf.float32)

    def get_config(self):
        return {"width": self.width}
