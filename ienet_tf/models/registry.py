"""The model registry: `build(name, variant, k, num_classes, input_shape)`.

`variant` is a base variant (`ienet_tf.models.variants`) with optional modifiers:
`"ienet+el"` gives every binary conv an Elastic-Link; `"ienet+ir2net"` adds IR²Net's
information recovery head. `build` always returns the plain classifier (models know nothing
of training, as in larq-zoo); information restriction, IR²Net's training half, wraps it:
`ienet_tf.ir2net.InformationRestriction.wrap(model)` (what `ienet train` does for
`+ir2net`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import tensorflow as tf

from ienet_tf.checks import is_int, is_positive_int
from ienet_tf.errors import UsageError
from ienet_tf.models import bottleneck, cifar, imagenet, tiny
from ienet_tf.models.blocks import Trunk, pooled_head
from ienet_tf.models.recovery import information_recovery
from ienet_tf.models.variants import get_variant

__all__ = ["ModelSpec", "available", "build", "spec"]


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """One registered network: its factory, defaults and the release's conventions."""

    name: str
    family: str  # "cifar", "imagenet" or "tiny": the release's init and recovery activation
    factory: Callable[..., Trunk]
    num_classes: int
    input_shape: tuple[int, int, int]
    min_size: int  # smallest spatial input size the downsampling allows
    lambda_mode: str = "channel"  # the release's lambda shape for this network
    head: Callable[..., tf.Tensor] = pooled_head
    # The IR²Net release's recovery head: the Ghost ratio of its CIFAR networks (4, 20, 32),
    # the full head (1) of its best ImageNet model (IR2Net-A); 4 where it has none.
    recovery_ratio: int = 4

    @property
    def release_init(self) -> str:
        """How the release initialises this family's kernels (`compat="release"`)."""
        return "kaiming_normal" if self.family == "imagenet" else "torch_default"

    @property
    def recovery_activation(self) -> str:
        """The activation of the release's Ghost recovery head for this family."""
        return "prelu" if self.family == "imagenet" else "hardtanh"


def _pool_dense(x: tf.Tensor, num_classes: int, variant) -> tf.Tensor:
    return pooled_head(x, num_classes, variant, bn=False)


_CIFAR = {"family": "cifar", "num_classes": 10, "input_shape": (32, 32, 3)}
_IMAGENET = {
    "family": "imagenet",
    "num_classes": 1000,
    "input_shape": (224, 224, 3),
    "min_size": 32,
}
_MODELS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec(name="resnet20", factory=cifar.resnet20, min_size=4, **_CIFAR),
        ModelSpec(
            name="resnet18_cifar",
            factory=cifar.resnet18_cifar,
            min_size=8,
            lambda_mode="scalar",
            recovery_ratio=20,
            **_CIFAR,
        ),
        ModelSpec(
            name="vgg_small",
            factory=cifar.vgg_small,
            min_size=8,
            lambda_mode="scalar",
            head=cifar.flatten_head,
            recovery_ratio=32,
            **_CIFAR,
        ),
        ModelSpec(name="resnet26_cifar", factory=bottleneck.resnet26_cifar, min_size=8, **_CIFAR),
        ModelSpec(name="resnet18", factory=imagenet.resnet18, recovery_ratio=1, **_IMAGENET),
        ModelSpec(name="resnet34", factory=imagenet.resnet34, recovery_ratio=1, **_IMAGENET),
        ModelSpec(name="resnet26", factory=bottleneck.resnet26, **_IMAGENET),
        ModelSpec(
            name="convnet",
            family="tiny",
            factory=tiny.convnet,
            num_classes=10,
            input_shape=(8, 8, 1),
            min_size=2,
            head=_pool_dense,
        ),
    )
}


def available() -> tuple[str, ...]:
    """The registered model names."""
    return tuple(_MODELS)


def spec(name: str) -> ModelSpec:
    if name not in _MODELS:
        raise ValueError(f"Unknown model {name!r}; available: {list(_MODELS)}.")
    return _MODELS[name]


def _check_input_shape(model: ModelSpec, input_shape) -> tuple[int, int, int]:
    shape = tuple(input_shape)
    if len(shape) != 3 or not all(is_positive_int(d) for d in shape):
        raise UsageError(f"`input_shape` must be (height, width, channels), got {input_shape!r}.")
    if min(shape[:2]) < model.min_size:
        raise UsageError(  # a ValueError too; the CLI shows it as one line
            f"`input_shape` {shape} is too small for {model.name}: it downsamples to below "
            f"one pixel; use at least {model.min_size}x{model.min_size}."
        )
    return shape


def build(
    name: str,
    /,
    variant: str = "ienet",
    k: int | None = None,
    num_classes: int | None = None,
    input_shape: tuple[int, int, int] | None = None,
    *,
    recovery_ratio: int | None = None,
    compat: str = "lce",
    **layer_options: Any,
) -> tf.keras.Model:
    """Build model `name` as ablation `variant` (see `ienet_tf.models.variants`).

    `k` is the number of IE-BC branches (default 2 for `iebc`/`ienet`, 1 otherwise);
    `num_classes` and `input_shape` default to the family's data set (CIFAR-10 or ImageNet).
    With `+ir2net`: `recovery_ratio` picks the information recovery head (1 = full, r >= 2
    = Ghost-style with ratio r; default: the release's for this network, `spec(name)`); the
    restriction's settings configure training: `ienet_tf.ir2net.InformationRestriction.wrap`.
    `compat="release"` builds the network exactly as the authors' PyTorch release does
    (padding and initialisation, see `ienet_tf.models.variants`); the default `"lce"` is
    the deployment form (same-one padding, LCE's fast path). `layer_options` are keyword
    arguments of every IE-BC layer, over the variant's (`get_variant`), e.g.
    `input_quantizer="approx_sign"` or `thresholds_initializer=SpreadThresholds(0.5)`.
    """
    model = spec(name)
    conv_variant = get_variant(
        variant,
        k,
        model.lambda_mode,
        compat=compat,
        release_init=model.release_init,
        layer_options=layer_options,
    )
    num_classes = model.num_classes if num_classes is None else num_classes
    if not is_int(num_classes, 2):
        raise ValueError(f"`num_classes` must be an integer >= 2, got {num_classes!r}.")
    shape = _check_input_shape(model, model.input_shape if input_shape is None else input_shape)
    inputs = tf.keras.Input(shape, name="image")
    trunk = model.factory(inputs, conv_variant)
    features = trunk.features
    if conv_variant.ir2net:
        features = information_recovery(
            features,
            list(trunk.shallow),
            model.recovery_ratio if recovery_ratio is None else recovery_ratio,
            model.recovery_activation,
        )
    outputs = model.head(features, int(num_classes), conv_variant)
    suffix = variant.replace("+", "_")
    if conv_variant.multi_branch:
        base, *modifiers = variant.split("+")
        suffix = "_".join([base, f"k{conv_variant.k}", *modifiers])
    if conv_variant.release:
        suffix += "_release"
    return tf.keras.Model(inputs, outputs, name=f"{name}_{suffix}")
