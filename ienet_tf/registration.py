"""How ienet-tf registers its custom Keras objects: one decorator, `register`.

Every public quantizer, layer, initializer, callback, activation and optimizer is
registered under the package prefix, `"ienet_tf>IEBinaryConv2D"` (Keras'
`register_keras_serializable(package="ienet_tf")`), which is the `registered_name` a
model saved now carries. It is also registered under its bare name, `"IEBinaryConv2D"`
(what `larq.utils.register_keras_custom_object` did before), so that

- files saved by earlier versions, whose `registered_name` is bare, still load, and
- string identifiers keep working in plain larq layers (`kernel_quantizer="IEESign"`,
  and the aliases, `kernel_quantizer="iee_sign"`): larq resolves a string through Keras'
  legacy deserialization, which looks names up among the global custom objects.

A file saved now also loads in earlier versions: they find the class under its bare
`class_name` and, failing the registered name, import its `module`.

What loading without `import ienet_tf` gives (Keras 2.15; `tests/test_registration.py`
pins it):

- an H5 model (`model.save("m.h5")`) names the package: `Unknown layer:
  'ienet_tf>IEBinaryConv2D'`;
- a `.keras` file cannot: Keras deserializes a layer (and larq a layer's quantizer) with
  their own objects as `module_objects`, and an unregistered object comes back as the
  string of its bare class name, never looked up under its registered name nor imported
  from its module, which fails where it is called (`'str' object is not callable`, or
  larq's "`quantizer` must be `callable` or `None`"). Only a config whose `class_name` is
  the registered name and whose `module` is null makes Keras name it ("Cannot deserialize
  object of type `ienet_tf>IEBinaryConv2D`"), which earlier versions could not load and
  which would stop Keras importing a top-level object's module (an
  `ienet_tf.ir2net.InformationRestriction` file loads without `import ienet_tf` today);
- a top-level ienet-tf object loads: Keras imports its module, and with it the package.

Only public Keras API is used here (private larq / Keras behaviour goes through
`ienet_tf.compat`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar, overload

import tensorflow as tf

__all__ = ["PACKAGE", "register", "registered"]

#: The package prefix of every registered name: `"ienet_tf>" + name`.
PACKAGE = "ienet_tf"

T = TypeVar("T")


@overload
def register(obj: T) -> T: ...
@overload
def register(*, alias: str) -> Callable[[T], T]: ...
def register(obj=None, *, alias: str | None = None):
    """Register a class (with `get_config`) or a function under `"ienet_tf>" + its name`
    and under its bare name; `alias` adds a string identifier (`"iee_sign"`).

    ```python
    @register
    class SpatialPad(tf.keras.layers.Layer): ...

    @register(alias="iee_sign")
    class IEESign(IEEQuantizer): ...
    ```
    """

    def decorator(target: T) -> T:
        tf.keras.saving.register_keras_serializable(package=PACKAGE)(target)
        custom_objects = tf.keras.utils.get_custom_objects()
        custom_objects[target.__name__] = target
        if alias is not None:
            custom_objects[alias] = target
        return target

    return decorator if obj is None else decorator(obj)


def registered() -> dict[str, object]:
    """The objects registered under the package prefix so far, by registered name (what
    `import ienet_tf` registers, and `ienet_tf.int8` once imported)."""
    prefix = PACKAGE + ">"
    return {
        name: obj
        for name, obj in tf.keras.utils.get_custom_objects().items()
        if name.startswith(prefix)
    }
