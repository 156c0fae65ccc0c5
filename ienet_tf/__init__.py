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

import importlib as _importlib
import os as _os
import sys as _sys

# TensorFlow's C++ start-up lines are noise for a library user; set before TF is imported
# (an explicit TF_CPP_MIN_LOG_LEVEL wins).
_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

__version__ = "0.2.0"

#: The submodules that define registered Keras objects, imported with the package.
_REGISTERING = (
    "callbacks",
    "compat",
    "elastic_link",
    "initializers",
    "int8",
    "ir2net",
    "layers",
    "models",
    "quantizers",
    "schedule",
)
#: Every public submodule, imported on first access (`ienet_tf.export.to_tflite`).
_SUBMODULES = (
    *_REGISTERING,
    "batch_norm",
    "config",
    "cost",
    "data",
    "errors",
    "export",
    "inspection",
    "int8",
    "interop",
    "io",
    "precision",
    "report",
    "runs",
    "torch_form",
    "train",
    "tune",
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
        _importlib.import_module(f"{__name__}.{name}")


def __getattr__(name: str):
    if name in _SUBMODULES:
        return _importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_SUBMODULES} - {"_importlib", "_os", "_sys"})


def _is_the_command() -> bool:
    """`ienet ...` or `python -m ienet_tf ...`: the command defers TensorFlow until one of
    its sub-commands needs it (`ienet --help` stays fast)."""
    if _os.path.basename(_sys.argv[0] if _sys.argv else "") == "ienet":
        return True
    argv = list(getattr(_sys, "orig_argv", ()))
    return "-m" in argv and argv[argv.index("-m") + 1 : argv.index("-m") + 2] == [__name__]


if not _is_the_command():
    register_all()
