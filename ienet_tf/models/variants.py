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
import difflib
import inspect
from collections.abc import Mapping
from typing import Any

import larq as lq
import tensorflow as tf

from ienet_tf import initializers
from ienet_tf.checks import is_positive_int
from ienet_tf.elastic_link import ElasticLink
from ienet_tf.layers import IEBinaryConv2D

MODIFIERS = ("el", "ir2net")
#: How layers are padded and initialised: for LCE deployment, or as the authors' release.
COMPATS = ("lce", "release")
#: The release's kernel initialisation per network family: PyTorch's default (CIFAR), or
#: Kaiming-normal kernels with alpha from the default init (ImageNet).
RELEASE_INITS = ("torch_default", "kaiming_normal")

__all__ = [
    "COMPATS",
    "MODIFIERS",
    "NETWORK_ARGUMENTS",
    "RELEASE_INITS",
    "VARIANTS",
    "LayerOptionError",
    "Variant",
    "check_layer_options",
    "get_variant",
    "parse_variant",
]


@dataclasses.dataclass(frozen=True)
class Variant:
    """How one ablation variant builds its binary convolutions."""

    name: str
    binary: bool = True
    kernel_quantizer: str = "ste_sign"
    input_quantizer: str = "approx_sign"
    learnable_thresholds: bool = False
    multi_branch: bool = False  # K >= 2 allowed (and the default is 2)
    kernel_constraint: str | None = "weight_clip"
    k: int = 1
    lambda_mode: str = "channel"
    elastic_link: bool = False
    ir2net: bool = False
    compat: str = "lce"
    release_init: str = "torch_default"
    # Keyword arguments of `IEBinaryConv2D` over the variant's own (`get_variant`).
    layer_options: Mapping[str, Any] = dataclasses.field(default_factory=dict, hash=False)

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
            fan_in = kernel_size * kernel_size * int(x.shape[-1])
            options = self.layer_options
            if single_branch:  # the release's K = 1 shortcuts: no branches to set up
                options = {
                    key: value
                    for key, value in options.items()
                    if key not in IEBinaryConv2D.BRANCH_OPTIONS
                }
            arguments = {**self.layer_arguments(fan_in, single_branch, use_bias), **options}
            layer = IEBinaryConv2D(filters, kernel_size, strides=strides, name=name, **arguments)
            return layer(x)

        if not self.elastic_link:
            return conv

        def conv_with_link(x: tf.Tensor) -> tf.Tensor:
            link = ElasticLink(filters, strides, name=f"{name}_el")(x)
            return tf.keras.layers.Add(name=f"{name}_el_add")([conv(x), link])

        return conv_with_link

    def layer_arguments(self, fan_in: int, single_branch: bool, use_bias: bool) -> dict:
        """The variant's own keyword arguments of its `IEBinaryConv2D` layers (what
        `layer_options` override)."""
        return {
            "k": 1 if single_branch else self.k,
            "pad_values": 0.0 if self.release else 1.0,
            "symmetric_padding": self.release,
            "use_bias": use_bias,
            "bias_in_branches": use_bias,
            "kernel_quantizer": self.kernel_quantizer,
            "input_quantizer": self.input_quantizer,
            "learnable_thresholds": self.learnable_thresholds and not single_branch,
            "lambda_mode": self.lambda_mode,
            "kernel_constraint": self.kernel_constraint,
            "kernel_initializer": self.kernel_initializer(),
            "bias_initializer": self.bias_initializer(fan_in),
            "alpha_initializer": self.alpha_initializer(fan_in),
        }

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
            # float32 logits under every dtype policy: the softmax and the loss lose
            # precision in 16 bits (Keras' advice for mixed precision).
            return tf.keras.layers.Dense(
                units, kernel_initializer=kernel, bias_initializer=bias, name=name, dtype="float32"
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
        input_quantizer="iee_act_sign",
        learnable_thresholds=True,
        multi_branch=True,
        kernel_constraint=None,
        k=2,
    ),
}


#: The `IEBinaryConv2D` arguments that the network sets per layer, not the options.
NETWORK_ARGUMENTS = ("filters", "kernel_size", "strides", "name", "k")


class LayerOptionError(ValueError):
    """Layer options that `IEBinaryConv2D` refuses: `option` names the one at fault
    (None when the message is about all of them)."""

    def __init__(self, message: str, option: str | None = None):
        super().__init__(message)
        self.option = option


def _layer_arguments() -> set[str]:
    """The keyword arguments `IEBinaryConv2D` takes (its own, QuantConv2D's, Layer's)."""
    names = set(inspect.signature(IEBinaryConv2D.__init__).parameters)
    names |= set(inspect.signature(lq.layers.QuantConv2D.__init__).parameters)
    return (names | {"dtype", "trainable", "dynamic", "name"}) - {"self", "kwargs"}


def check_layer_options(variant: Variant, options: Mapping[str, Any]) -> None:
    """Raise `LayerOptionError` unless `IEBinaryConv2D` accepts `options` over the
    variant's own arguments. The layer validates them (its constructor); this only says
    which option its error is about, and refuses what the network sets itself and
    options that set up what the variant's layers do not have (thresholds, lambda_2..K)."""
    if not options:
        return
    base = variant.name.split("+")[0]
    if not variant.binary:
        raise LayerOptionError(
            f"{base!r} has no IE-BC layers to take options {sorted(options)}; use a binary variant."
        )
    accepted = _layer_arguments()
    for key in options:
        if key in NETWORK_ARGUMENTS:
            where = "`model.k` / `build(k=...)`" if key == "k" else "the network, per layer"
            raise LayerOptionError(f"`{key}` is set by {where}, not a layer option.", key)
        if key not in accepted:
            close = difflib.get_close_matches(key, sorted(accepted), n=1)
            raise LayerOptionError(
                f"IEBinaryConv2D has no argument `{key}`"
                + (f"; did you mean {close[0]!r}?" if close else f"; it takes {sorted(accepted)}."),
                key,
            )
        if variant.k == 1 and key in IEBinaryConv2D.LAMBDA_OPTIONS:
            raise LayerOptionError(
                f"`{key}` sets up lambda_2..lambda_K of IE-BC's branches and {base!r} with "
                "K=1 has one branch: use 'iebc' or 'ienet' with K >= 2.",
                key,
            )
        if not variant.learnable_thresholds and key in IEBinaryConv2D.THRESHOLD_OPTIONS:
            raise LayerOptionError(
                f"`{key}` sets up the learnable thresholds and {base!r} has none: use "
                "'rsign', 'iebc' or 'ienet'.",
                key,
            )
    own = variant.layer_arguments(9, False, False)
    try:
        IEBinaryConv2D(4, 3, **{**own, **options})
    except (TypeError, ValueError) as error:
        # The option at fault: the first the layer refuses alone (None: only together).
        at_fault = None
        for key, value in options.items():
            try:
                IEBinaryConv2D(4, 3, **{**own, key: value})
            except (TypeError, ValueError):
                at_fault = key
                break
        raise LayerOptionError(str(error), at_fault) from None


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
    layer_options: Mapping[str, Any] | None = None,
) -> Variant:
    """The variant `name` (a base variant, optionally `+el` / `+ir2net`) with its K
    (default 2 for `iebc`/`ienet`, 1 otherwise) and `compat` (see `COMPATS`).

    `layer_options` are keyword arguments of every `IEBinaryConv2D` the variant builds,
    over the variant's own (`Variant.layer_arguments`), checked by the layer
    (`check_layer_options`): `input_quantizer="approx_sign"` is IE-Net with iee's
    activation estimator (an ablation Table 3 does not separate),
    `thresholds_initializer=initializers.SpreadThresholds(0.5)` and
    `lambdas_initializer=tf.keras.initializers.Constant(1.0)` start the branches apart (the
    release starts every threshold at 0 and lambda_k in U[0, 0.001): one branch at first).
    """
    if compat not in COMPATS:
        raise ValueError(f"Unknown `compat` {compat!r}; allowed: {list(COMPATS)}.")
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
    variant = dataclasses.replace(
        variant,
        name=name,
        k=int(k),
        lambda_mode=lambda_mode,
        elastic_link="el" in modifiers,
        ir2net="ir2net" in modifiers,
        compat=compat,
        release_init=release_init,
        layer_options=dict(layer_options or {}),
    )
    check_layer_options(variant, variant.layer_options)
    return variant
