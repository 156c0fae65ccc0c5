"""The optional parts of the install: which extra brings which package.

A quantizer or layer user needs TensorFlow, larq and LCE only (`pip install ienet-tf[cpu]`);
the data loaders, the report's figures and the search bring theirs with an extra:

| extra    | packages                                  | for                              |
|----------|-------------------------------------------|----------------------------------|
| `data`   | scikit-learn, tensorflow-datasets         | the digits, CIFAR-10, ImageNet   |
| `report` | matplotlib                                | `ienet report`, `report.figures` |
| `tune`   | keras-tuner                               | `ienet tune`, `ienet_tf.tune`    |

```python
kt = extras.require("keras_tuner")  # the module, or a MissingExtraError naming the extra
```
"""

from __future__ import annotations

import importlib
from types import ModuleType

from ienet_tf.errors import MissingExtraError

__all__ = ["EXTRAS", "require"]

#: The module a package is imported as -> (its PyPI name, the extra that installs it).
EXTRAS = {
    "sklearn": ("scikit-learn", "data"),
    "tensorflow_datasets": ("tensorflow-datasets", "data"),
    "matplotlib": ("matplotlib", "report"),
    "keras_tuner": ("keras-tuner", "tune"),
}


def require(module: str) -> ModuleType:
    """`import module` (a key of `EXTRAS`, or one of its submodules), or a one-line
    `MissingExtraError` that says which extra installs it."""
    package, extra = EXTRAS[module.split(".")[0]]
    try:
        return importlib.import_module(module)
    except ImportError as error:
        if error.name is None or error.name.split(".")[0] != module.split(".")[0]:
            raise  # the package is there but broken: a real error, with its traceback
        raise MissingExtraError(
            f"{module} is not installed: `pip install 'ienet-tf[{extra}]'` brings {package}."
        ) from None
