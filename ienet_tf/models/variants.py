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

Modifiers join a base variant with `+` (`"ienet+el"`, `"bireal+el+ir2net"`):

- `el`: every binary conv gets an Elastic-Link (`ienet_tf.elastic_link.ElasticLink`);
- `ir2net`: the model gets IR²Net's information recovery head and is wrapped for
  information restriction in training (`ienet_tf.ir2net`).
"""

from __future__ import annotations

import dataclasses

import tensorflow as tf

from ienet_tf.checks import is_positive_int
from ienet_tf.elastic_link import ElasticLink
from ienet_tf.layers import IEBinaryConv2D

MODIFIERS = ("el", "ir2net")

__all__ = ["MODIFIERS", "VARIANTS", "Variant", "get_variant", "parse_variant"]


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
    elastic_link: bool = False
    ir2net: bool = False

    def conv(self, filters: int, kernel_size: int, strides: int = 1, name: str = "conv"):
        """The variant's convolution (binary IE-BC, or float for `fp`), 'same' padding:
        a callable `x -> y`; with `el`, `y = conv(x) + ElasticLink(x)`."""
        conv = self._conv_layer(filters, kernel_size, strides, name)
        if not self.elastic_link:
            return conv

        def conv_with_link(x: tf.Tensor) -> tf.Tensor:
            link = ElasticLink(filters, strides, name=f"{name}_el")(x)
            return tf.keras.layers.Add(name=f"{name}_el_add")([conv(x), link])

        return conv_with_link

    def _conv_layer(self, filters: int, kernel_size: int, strides: int, name: str):
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


def parse_variant(name: str) -> tuple[str, frozenset[str]]:
    """`"ienet+el+ir2net"` -> `("ienet", {"el", "ir2net"})`, with readable errors."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"`variant` must be a non-empty string, got {name!r}.")
    base, *modifiers = name.split("+")
    if base not in VARIANTS:
        raise ValueError(f"Unknown `variant` {base!r}; allowed: {sorted(VARIANTS)}.")
    for modifier in modifiers:
        if modifier not in MODIFIERS:
            raise ValueError(
                f"Unknown variant modifier {modifier!r} in {name!r}; allowed modifiers: "
                f"{list(MODIFIERS)} (e.g. 'ienet+el', 'ienet+ir2net')."
            )
    if len(set(modifiers)) != len(modifiers):
        raise ValueError(f"Variant {name!r} repeats a modifier.")
    if "el" in modifiers and not VARIANTS[base].binary:
        raise ValueError(
            f"Variant {name!r}: Elastic-Link accompanies binary convolutions and {base!r} "
            "has none; use a binary base such as 'bireal+el' or 'ienet+el'."
        )
    return base, frozenset(modifiers)


def get_variant(name: str, k: int | None = None, lambda_mode: str = "channel") -> Variant:
    """The variant `name` (a base variant, optionally `+el` / `+ir2net`) with its K
    (default 2 for `iebc`/`ienet`, 1 otherwise)."""
    base, modifiers = parse_variant(name)
    variant = VARIANTS[base]
    if k is None:
        k = variant.k
    if not is_positive_int(k):
        raise ValueError(f"`k` must be an integer >= 1, got {k!r}.")
    if k != 1 and not variant.multi_branch:
        raise ValueError(
            f"`k`={k} needs a multi-branch variant ('iebc' or 'ienet'); "
            f"variant {base!r} has one branch (k=1)."
        )
    return dataclasses.replace(
        variant,
        name=name,
        k=int(k),
        lambda_mode=lambda_mode,
        elastic_link="el" in modifiers,
        ir2net="ir2net" in modifiers,
    )
