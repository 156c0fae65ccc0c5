"""ienet-tf: information-enhanced binary neural networks (IE-Net) for TensorFlow / Larq.

```python
from ienet_tf import callbacks, layers, quantizers
from ienet_tf.ir2net import InformationRestriction  # IR²Net training wrapper
```

Importing the package registers every custom Keras object (quantizers, layers, model
blocks), so `tf.keras.models.load_model` reads saved ienet-tf models after `import ienet_tf`.
The `ienet` command is the exception: it imports TensorFlow only when a command needs it
(`ienet --help` stays fast), and its commands register what they load.
"""

import importlib
import os
import sys

# TensorFlow's C++ start-up lines are noise for a library user; set before TF is imported
# (an explicit TF_CPP_MIN_LOG_LEVEL wins).
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

__version__ = "0.2.0"

#: The submodules that define registered Keras objects, imported with the package.
_REGISTERING = (
    "callbacks",
    "compat",
    "elastic_link",
    "initializers",
    "ir2net",
    "layers",
    "models",
    "quantizers",
    "schedule",
)

__all__ = [
    "__version__",
    "callbacks",
    "elastic_link",
    "ir2net",
    "layers",
    "models",
    "quantizers",
    "register_all",
    "schedule",
]


def register_all() -> None:
    """Import every module that registers custom Keras objects (what `import ienet_tf`
    does outside the `ienet` command)."""
    for name in _REGISTERING:
        importlib.import_module(f"{__name__}.{name}")


def __getattr__(name: str):
    if name in _REGISTERING:  # reached only under the `ienet` command, which imports lazily
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# The `ienet` console script (and only it) defers TensorFlow until a command needs it.
if os.path.basename(sys.argv[0] if sys.argv else "") != "ienet":
    register_all()
