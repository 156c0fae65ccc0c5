"""The ablation variants of the IE-Net paper (Table 3) and the convolution each one uses.

| variant | weights                     | activations           | thresholds | K   |
|---------|-----------------------------|-----------------------|------------|-----|
| fp      | full precision `Conv2D`     | full precision        | -          | -   |
| bireal  | sign, clip-STE, alpha       | ApproxSign            | no         | 1   |
| rsign   | sign, clip-STE, alpha       | ApproxSign            | learnable  | 1   |
| iebc    | sign, clip-STE, alpha       | ApproxSign            | learnable  | >=2 |
| iee     | IEE (balanced, standardized)| ApproxSign            | no         | 1   |
| ienet   | IEE                         | IEE estimator         | learnable  | >=2 |

The clip-STE variants clip their latent weights to [-1, 1] (larq's `weight_clip`), as
larq-zoo does for Bi-Real Net: without it weights outside the STE window never move again.
IEE standardizes the weights, so it needs no clip.
"""

from __future__ import annotations

import dataclasses
import numbers

import tensorflow as tf

from ienet_tf.layers import IEBinaryConv2D

__all__ = ["VARIANTS", "Variant", "get_variant"]


@dataclasses.dataclass(frozen=True)
class Variant:
    """How one ablation variant builds its binary convolutions."""

    name: str
    binary: bool = True
    kernel_quantizer: str = "ste_sign"
    activation_estimator: str = "approx_sign"
    learnable_thresholds: bool = False
    multi_branch: bool = False  # K >= 2 allowed (and the default is 2)
    kernel_constraint: str | None = "weight_clip"
    k: int = 1
    lambda_mode: str = "channel"

    def conv(self, filters: int, kernel_size: int, strides: int = 1, name: str | None = None):
        """The variant's convolution (binary IE-BC, or float for `fp`), 'same' padding."""
        if not self.binary:
            return tf.keras.layers.Conv2D(
                filters, kernel_size, strides, padding="same", use_bias=False, name=name
            )
        return IEBinaryConv2D(
            filters,
            kernel_size,
            k=self.k,
            strides=strides,
            kernel_quantizer=self.kernel_quantizer,
            activation_estimator=self.activation_estimator,
            learnable_thresholds=self.learnable_thresholds,
            lambda_mode=self.lambda_mode,
            kernel_constraint=self.kernel_constraint,
            name=name,
        )


VARIANTS: dict[str, Variant] = {
    "fp": Variant("fp", binary=False, kernel_constraint=None),
    "bireal": Variant("bireal"),
    "rsign": Variant("rsign", learnable_thresholds=True),
    "iebc": Variant("iebc", learnable_thresholds=True, multi_branch=True, k=2),
    "iee": Variant("iee", kernel_quantizer="iee_sign", kernel_constraint=None),
    "ienet": Variant(
        "ienet",
        kernel_quantizer="iee_sign",
        activation_estimator="iee",
        learnable_thresholds=True,
        multi_branch=True,
        kernel_constraint=None,
        k=2,
    ),
}


def get_variant(name: str, k: int | None = None, lambda_mode: str = "channel") -> Variant:
    """The variant `name` with its K (default 2 for `iebc`/`ienet`, 1 otherwise)."""
    if name not in VARIANTS:
        raise ValueError(f"Unknown `variant` {name!r}; allowed: {sorted(VARIANTS)}.")
    variant = VARIANTS[name]
    if k is None:
        k = variant.k
    if not isinstance(k, numbers.Integral) or isinstance(k, bool) or k < 1:
        raise ValueError(f"`k` must be an integer >= 1, got {k!r}.")
    if k != 1 and not variant.multi_branch:
        raise ValueError(
            f"`k`={k} needs a multi-branch variant ('iebc' or 'ienet'); "
            f"variant {name!r} has one branch (k=1)."
        )
    return dataclasses.replace(variant, k=int(k), lambda_mode=lambda_mode)
