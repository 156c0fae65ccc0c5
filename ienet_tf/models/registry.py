"""The model registry: `build(name, variant, k, num_classes, input_shape)`.

`variant` is a base variant (`ienet_tf.models.variants`) with optional modifiers:
`"ienet+el"` gives every binary conv an Elastic-Link; `"ienet+ir2net"` adds IR²Net's
information recovery head and returns the model wrapped for information restriction
(`ienet_tf.ir2net.InformationRestriction`: train it with `model.fit`, deploy
`model.classifier`).
"""

from __future__ import annotations

import dataclasses
import numbers
from collections.abc import Callable

import tensorflow as tf

from ienet_tf import ir2net
from ienet_tf.models import bottleneck, cifar, imagenet, tiny
from ienet_tf.models.blocks import Trunk, pooled_head
from ienet_tf.models.recovery import information_recovery
from ienet_tf.models.variants import get_variant

__all__ = ["ModelSpec", "available", "build", "spec"]


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    name: str
    family: str  # "cifar", "imagenet" or "tiny"
    factory: Callable[..., Trunk]
    num_classes: int
    input_shape: tuple[int, int, int]
    min_size: int  # smallest spatial input size the downsampling allows
    lambda_mode: str = "channel"  # the release's lambda shape for this network
    head: Callable[[tf.Tensor, int], tf.Tensor] = pooled_head


def _pool_dense(x: tf.Tensor, num_classes: int) -> tf.Tensor:
    return pooled_head(x, num_classes, bn=False)


_MODELS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec("resnet20", "cifar", cifar.resnet20, 10, (32, 32, 3), 4),
        ModelSpec("resnet18_cifar", "cifar", cifar.resnet18_cifar, 10, (32, 32, 3), 8, "scalar"),
        ModelSpec(
            "vgg_small", "cifar", cifar.vgg_small, 10, (32, 32, 3), 8, "scalar", cifar.flatten_head
        ),
        ModelSpec("resnet26_cifar", "cifar", bottleneck.resnet26_cifar, 10, (32, 32, 3), 8),
        ModelSpec("resnet18", "imagenet", imagenet.resnet18, 1000, (224, 224, 3), 32),
        ModelSpec("resnet34", "imagenet", imagenet.resnet34, 1000, (224, 224, 3), 32),
        ModelSpec("resnet26", "imagenet", bottleneck.resnet26, 1000, (224, 224, 3), 32),
        ModelSpec("convnet", "tiny", tiny.convnet, 10, (8, 8, 1), 2, head=_pool_dense),
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
    if len(shape) != 3 or not all(
        isinstance(d, numbers.Integral) and not isinstance(d, bool) and d > 0 for d in shape
    ):
        raise ValueError(f"`input_shape` must be (height, width, channels), got {input_shape!r}.")
    if min(shape[:2]) < model.min_size:
        raise ValueError(
            f"`input_shape` {shape} is too small for {model.name}: it downsamples to below "
            f"one pixel; use at least {model.min_size}x{model.min_size}."
        )
    return shape


def build(
    name: str,
    variant: str = "ienet",
    k: int | None = None,
    num_classes: int | None = None,
    input_shape: tuple[int, int, int] | None = None,
    *,
    recovery_ratio: int = 1,
    erase_threshold: float = ir2net.DEFAULT_ERASE_THRESHOLD,
) -> tf.keras.Model:
    """Build model `name` as ablation `variant` (see `ienet_tf.models.variants`).

    `k` is the number of IE-BC branches (default 2 for `iebc`/`ienet`, 1 otherwise);
    `num_classes` and `input_shape` default to the family's data set (CIFAR-10 or ImageNet).
    With `+ir2net`: `recovery_ratio` picks the information recovery head (1 = full, r >= 2
    = Ghost-style with ratio r) and `erase_threshold` the restriction's tau.
    """
    model = spec(name)
    conv_variant = get_variant(variant, k, lambda_mode=model.lambda_mode)
    num_classes = model.num_classes if num_classes is None else num_classes
    if not isinstance(num_classes, numbers.Integral) or num_classes < 2:
        raise ValueError(f"`num_classes` must be an integer >= 2, got {num_classes!r}.")
    shape = _check_input_shape(model, model.input_shape if input_shape is None else input_shape)
    inputs = tf.keras.Input(shape, name="image")
    trunk = model.factory(inputs, conv_variant)
    features = trunk.features
    if conv_variant.ir2net:
        features = information_recovery(features, list(trunk.shallow), recovery_ratio)
    outputs = model.head(features, int(num_classes))
    suffix = variant.replace("+", "_")
    if conv_variant.multi_branch:
        base, *modifiers = variant.split("+")
        suffix = "_".join([base, f"k{conv_variant.k}", *modifiers])
    classifier = tf.keras.Model(inputs, outputs, name=f"{name}_{suffix}")
    if not conv_variant.ir2net:
        return classifier
    feature_layer = trunk.features.node.layer.name
    return ir2net.InformationRestriction(classifier, feature_layer, erase_threshold)
