"""The model registry: `build(name, variant, k, num_classes, input_shape)`."""

from __future__ import annotations

import dataclasses
import numbers
from collections.abc import Callable

import tensorflow as tf

from ienet_tf.models import cifar, imagenet, tiny
from ienet_tf.models.variants import VARIANTS, get_variant

__all__ = ["ModelSpec", "available", "build", "spec"]


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    name: str
    family: str  # "cifar", "imagenet" or "tiny"
    factory: Callable
    num_classes: int
    input_shape: tuple[int, int, int]
    min_size: int  # smallest spatial input size the downsampling allows
    lambda_mode: str = "channel"  # the release's lambda shape for this network


_MODELS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec("resnet20", "cifar", cifar.resnet20, 10, (32, 32, 3), 4),
        ModelSpec("resnet18_cifar", "cifar", cifar.resnet18_cifar, 10, (32, 32, 3), 8, "scalar"),
        ModelSpec("vgg_small", "cifar", cifar.vgg_small, 10, (32, 32, 3), 8, "scalar"),
        ModelSpec("resnet18", "imagenet", imagenet.resnet18, 1000, (224, 224, 3), 32),
        ModelSpec("resnet34", "imagenet", imagenet.resnet34, 1000, (224, 224, 3), 32),
        ModelSpec("convnet", "tiny", tiny.convnet, 10, (8, 8, 1), 2),
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
) -> tf.keras.Model:
    """Build model `name` as ablation `variant` (see `ienet_tf.models.variants`).

    `k` is the number of IE-BC branches (default 2 for `iebc`/`ienet`, 1 otherwise);
    `num_classes` and `input_shape` default to the family's data set (CIFAR-10 or ImageNet).
    """
    model = spec(name)
    if variant not in VARIANTS:
        raise ValueError(f"Unknown `variant` {variant!r}; allowed: {sorted(VARIANTS)}.")
    conv_variant = get_variant(variant, k, lambda_mode=model.lambda_mode)
    num_classes = model.num_classes if num_classes is None else num_classes
    if not isinstance(num_classes, numbers.Integral) or num_classes < 2:
        raise ValueError(f"`num_classes` must be an integer >= 2, got {num_classes!r}.")
    shape = _check_input_shape(model, model.input_shape if input_shape is None else input_shape)
    inputs = tf.keras.Input(shape, name="image")
    outputs = model.factory(inputs, conv_variant, int(num_classes))
    suffix = f"{variant}_k{conv_variant.k}" if conv_variant.multi_branch else variant
    return tf.keras.Model(inputs, outputs, name=f"{name}_{suffix}")
