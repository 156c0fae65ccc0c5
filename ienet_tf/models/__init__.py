"""Model factories (larq-zoo style): `models.build("resnet20", variant="ienet", k=2)`."""

from ienet_tf.models.blocks import PadChannels, hard_tanh
from ienet_tf.models.registry import ModelSpec, available, build, spec
from ienet_tf.models.variants import (
    COMPATS,
    MODIFIERS,
    VARIANTS,
    LayerOptionError,
    Variant,
    check_layer_options,
    get_variant,
    parse_variant,
)

__all__ = [
    "COMPATS",
    "MODIFIERS",
    "VARIANTS",
    "LayerOptionError",
    "ModelSpec",
    "PadChannels",
    "Variant",
    "available",
    "build",
    "check_layer_options",
    "get_variant",
    "hard_tanh",
    "parse_variant",
    "spec",
]
