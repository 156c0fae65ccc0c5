"""Mixed precision: Keras dtype policies for training, float32 networks for export.

Under `"mixed_float16"` or `"mixed_bfloat16"` every layer computes in 16 bits and keeps its
variables in float32 (Keras' mixed precision; `Model.compile` adds float16's loss scaling).
The networks' logits are float32 under every policy (`Variant.dense`), so the softmax and
the loss are. LCE's converter refuses mixed-precision models, so an export first rebuilds
the network in float32 with the same weights (`float32_model`).

```python
from ienet_tf import models, precision

with precision.policy("mixed_float16"):
    model = models.build("resnet20", "ienet")  # its layers compute in float16
deployable = precision.float32_model(model)  # the same weights, float32 throughout
```
"""

from __future__ import annotations

import contextlib
import typing
from collections.abc import Iterator

import tensorflow as tf

from ienet_tf.config import DTypePolicy

__all__ = ["POLICIES", "compute_dtypes", "float32_model", "is_mixed", "policy"]

#: The dtype policies a config may train under (`train.mixed_precision`).
POLICIES: tuple[str, ...] = typing.get_args(DTypePolicy)


@contextlib.contextmanager
def policy(name: str) -> Iterator[None]:
    """Keras' global dtype policy is `name` (one of `POLICIES`) for the block: layers built
    inside compute in its dtype for the rest of their lives. The previous policy is
    restored afterwards."""
    if name not in POLICIES:
        raise ValueError(f"Unknown dtype policy {name!r}; allowed: {list(POLICIES)}.")
    previous = tf.keras.mixed_precision.global_policy()
    tf.keras.mixed_precision.set_global_policy(name)
    try:
        yield
    finally:
        tf.keras.mixed_precision.set_global_policy(previous)


def _layers(model: tf.keras.Model) -> list[tf.keras.layers.Layer]:
    return [module for module in model.submodules if isinstance(module, tf.keras.layers.Layer)]


def compute_dtypes(model: tf.keras.Model) -> set[str]:
    """The compute dtypes of `model`'s layers (nested models included)."""
    return {layer.compute_dtype for layer in [model, *_layers(model)] if layer.compute_dtype}


def is_mixed(model: tf.keras.Model) -> bool:
    """Whether any layer of `model` computes in a dtype other than float32."""
    return compute_dtypes(model) != {"float32"}


def _float32_config(node):
    """`node` (a Keras model config) with every layer's dtype policy float32."""
    if isinstance(node, dict):
        return {
            key: "float32" if key == "dtype" and _is_policy(value) else _float32_config(value)
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [_float32_config(value) for value in node]
    return node


def _is_policy(value) -> bool:
    if isinstance(value, str):
        return value in POLICIES
    return isinstance(value, dict) and value.get("class_name") in ("Policy", "DTypePolicy")


def float32_model(model: tf.keras.Model) -> tf.keras.Model:
    """`model` itself if it computes in float32 throughout; else the same network rebuilt
    from its config with every layer in float32, and `model`'s weights copied in (the
    variables are float32 under a mixed policy, so the copy is exact)."""
    if not is_mixed(model):
        return model
    config = _float32_config(model.get_config())
    with policy("float32"):
        twin = model.__class__.from_config(config)
    twin.set_weights(model.get_weights())
    return twin
