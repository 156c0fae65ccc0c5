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

`compat` picks how the layers are padded and initialised (`COMPATS`):

- `"lce"` (default), for deployment: binary inputs are padded with +1 (LCE's fast
  "same-one" path), TensorFlow's "same" split at stride 2, Glorot-uniform kernels.
- `"release"`: the authors' PyTorch release exactly: binary inputs padded with 0,
  PyTorch's symmetric padding at stride 2 (also for the float 7x7/2 stem and 3x3/2
  max-pool), PyTorch's default initialisation (CIFAR) or Kaiming-normal kernels with alpha
  from the default init (ImageNet), and a conv bias where the release has one.
"""

from __future__ import annotations

import dataclasses
import math

import tensorflow as tf

from ienet_tf import initializers
from ienet_tf.checks import is_positive_int
from ienet_tf.elastic_link import ElasticLink
from ienet_tf.layers import IEBinaryConv2D
from ienet_tf.quantizers import ACTIVATION_ESTIMATORS

MODIFIERS = ("el", "ir2net")
#: How layers are padded and initialised: for LCE deployment, or as the authors' release.
COMPATS = ("lce", "release")
#: The release's kernel initialisation per network family: PyTorch's default (CIFAR), or
#: Kaiming-normal kernels with alpha from the default init (ImageNet).
RELEASE_INITS = ("torch_default", "kaiming_normal")

__all__ = [
    "COMPATS",
    "MODIFIERS",
    "RELEASE_INITS",
    "VARIANTS",
    "Variant",
    "get_variant",
    "parse_variant",
]


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
    compat: str = "lce"
    release_init: str = "torch_default"
    # IE-BC's initialisation: 0 and None are the release's (every threshold 0, lambda_k
    # from U[0, 0.001)); see `get_variant`.
    threshold_spread: float = 0.0
    lambda_init: float | None = None

    @property
    def release(self) -> bool:
        """Whether layers are padded and initialised as in the authors' release."""
        return self.compat == "release"

    def conv(
        self,
        filters: int,
        kernel_size: int,
        strides: int = 1,
        name: str = "conv",
        *,
        single_branch: bool = False,
        use_bias: bool = False,
    ):
        """The variant's convolution (binary IE-BC, or float for `fp`), 'same' padding:
        a callable `x -> y`; with `el`, `y = conv(x) + ElasticLink(x)`.

        `single_branch`: one branch without thresholds (K = 1), the release's binary
        shortcut convolutions. `use_bias`: a conv bias before the scales (the release's
        CIFAR ResNet-18 and VGG-Small).
        """

        def conv(x: tf.Tensor) -> tf.Tensor:
            if not self.binary:
                return self.float_conv(filters, kernel_size, strides, name, use_bias)(x)
            k = 1 if single_branch else self.k
            fan_in = kernel_size * kernel_size * int(x.shape[-1])
            layer = IEBinaryConv2D(
                filters,
                kernel_size,
                k=k,
                strides=strides,
                pad_values=0.0 if self.release else 1.0,
                symmetric_padding=self.release,
                use_bias=use_bias,
                bias_in_branches=use_bias,
                kernel_quantizer=self.kernel_quantizer,
                activation_estimator=self.activation_estimator,
                learnable_thresholds=self.learnable_thresholds and not single_branch,
                thresholds_initializer=(
                    initializers.SpreadThresholds(self.threshold_spread)
                    if self.threshold_spread
                    else "zeros"
                ),
                lambda_mode=self.lambda_mode,
                lambdas_initializer=(
                    None
                    if self.lambda_init is None
                    else tf.keras.initializers.Constant(self.lambda_init)
                ),
                kernel_constraint=self.kernel_constraint,
                kernel_initializer=self.kernel_initializer(),
                bias_initializer=self.bias_initializer(fan_in),
                alpha_initializer=self.alpha_initializer(fan_in),
                name=name,
            )
            return layer(x)

        if not self.elastic_link:
            return conv

        def conv_with_link(x: tf.Tensor) -> tf.Tensor:
            link = ElasticLink(filters, strides, name=f"{name}_el")(x)
            return tf.keras.layers.Add(name=f"{name}_el_add")([conv(x), link])

        return conv_with_link

    def float_conv(
        self, filters: int, kernel_size: int, strides: int = 1, name: str = "conv", use_bias=False
    ):
        """A full-precision conv with 'same' padding (PyTorch's symmetric padding under
        `compat="release"`): a callable `x -> y`."""

        def conv(x: tf.Tensor) -> tf.Tensor:
            padding = "same"
            if self.release and strides > 1 and kernel_size > 1:
                x = tf.keras.layers.ZeroPadding2D((kernel_size - 1) // 2, name=f"{name}_pad")(x)
                padding = "valid"
            fan_in = kernel_size * kernel_size * int(x.shape[-1])
            return tf.keras.layers.Conv2D(
                filters,
                kernel_size,
                strides,
                padding=padding,
                use_bias=use_bias,
                kernel_initializer=self.kernel_initializer(),
                bias_initializer=self.bias_initializer(fan_in),
                name=name,
            )(x)

        return conv

    def dense(self, units: int, name: str = "logits"):
        """The full-precision classifier (PyTorch's `Linear` init under release)."""

        def dense(x: tf.Tensor) -> tf.Tensor:
            kernel, bias = "glorot_uniform", "zeros"
            if self.release:
                kernel = initializers.torch_default()
                bias = initializers.torch_default_bias(int(x.shape[-1]))
            return tf.keras.layers.Dense(
                units, kernel_initializer=kernel, bias_initializer=bias, name=name
            )(x)

        return dense

    def kernel_initializer(self):
        if not self.release:
            return "glorot_uniform"
        if self.release_init == "kaiming_normal":
            return initializers.kaiming_normal()
        return initializers.torch_default()

    def bias_initializer(self, fan_in: int):
        return initializers.torch_default_bias(fan_in) if self.release else "zeros"

    def alpha_initializer(self, fan_in: int):
        # ImageNet release: alpha is the mean |w| of the default init, taken before the
        # kernel is redrawn (None: of the layer's own initial kernel).
        if self.release and self.release_init == "kaiming_normal":
            return initializers.MeanAbsTorchDefault(fan_in)
        return None


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


#: The largest `threshold_spread`: the papers' networks binarize hardtanh outputs, in
#: [-1, 1], where a threshold beyond 1 gives a branch of constant codes.
MAX_THRESHOLD_SPREAD = 1.0


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _check_branch_init(threshold_spread, lambda_init, single_branch: str | None) -> None:
    """The IE-BC initialisation options of `get_variant`; `single_branch` names the
    variant when it has K = 1 (nothing to initialise)."""
    if not (_is_number(threshold_spread) and 0 <= threshold_spread <= MAX_THRESHOLD_SPREAD):
        raise ValueError(
            f"`threshold_spread` must be a number in [0, {MAX_THRESHOLD_SPREAD:g}] (hardtanh "
            f"activations lie in [-1, 1]), got {threshold_spread!r}."
        )
    if lambda_init is not None and not _is_number(lambda_init):
        raise ValueError(f"`lambda_init` must be a finite number or None, got {lambda_init!r}.")
    if single_branch and (threshold_spread or lambda_init is not None):
        raise ValueError(
            "`threshold_spread` and `lambda_init` initialise IE-BC's branches and "
            f"{single_branch!r} with K=1 has one: use 'iebc' or 'ienet' with K >= 2."
        )


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


def get_variant(
    name: str,
    k: int | None = None,
    lambda_mode: str = "channel",
    compat: str = "lce",
    release_init: str = "torch_default",
    activation_estimator: str | None = None,
    threshold_spread: float = 0.0,
    lambda_init: float | None = None,
) -> Variant:
    """The variant `name` (a base variant, optionally `+el` / `+ir2net`) with its K
    (default 2 for `iebc`/`ienet`, 1 otherwise) and `compat` (see `COMPATS`).

    `activation_estimator` replaces the variant's backward pass of the activation sign
    (one of `quantizers.ACTIVATION_ESTIMATORS`; None: the variant's own, the table above):
    an ablation the paper's Table 3 does not separate, since `ienet` differs from `iee` in
    both its convolution (IE-BC) and its activation estimator (the release's IEE one).

    `threshold_spread` w > 0 starts IE-BC's K thresholds evenly spaced in [-w, w]
    (`initializers.SpreadThresholds`) and `lambda_init` every lambda_k (k >= 2) at that
    constant, instead of the release's 0 and U[0, 0.001), under which the K branches start
    as one branch (multi-branch variants with K >= 2 only).
    """
    if compat not in COMPATS:
        raise ValueError(f"Unknown `compat` {compat!r}; allowed: {list(COMPATS)}.")
    base, modifiers = parse_variant(name)
    variant = VARIANTS[base]
    if activation_estimator is not None:
        if activation_estimator not in ACTIVATION_ESTIMATORS:
            raise ValueError(
                f"Unknown `activation_estimator` {activation_estimator!r}; allowed: "
                f"{list(ACTIVATION_ESTIMATORS)} (or None: the variant's own)."
            )
        if not variant.binary:
            raise ValueError(
                f"`activation_estimator` needs a binary variant; {base!r} binarizes nothing."
            )
        variant = dataclasses.replace(variant, activation_estimator=activation_estimator)
    if k is None:
        k = variant.k
    if not is_positive_int(k):
        raise ValueError(f"`k` must be an integer >= 1, got {k!r}.")
    if k != 1 and not variant.multi_branch:
        raise ValueError(
            f"`k`={k} needs a multi-branch variant ('iebc' or 'ienet'); "
            f"variant {base!r} has one branch (k=1)."
        )
    _check_branch_init(threshold_spread, lambda_init, base if k == 1 else None)
    return dataclasses.replace(
        variant,
        name=name,
        k=int(k),
        lambda_mode=lambda_mode,
        elastic_link="el" in modifiers,
        ir2net="ir2net" in modifiers,
        compat=compat,
        release_init=release_init,
        threshold_spread=float(threshold_spread),
        lambda_init=None if lambda_init is None else float(lambda_init),
    )
