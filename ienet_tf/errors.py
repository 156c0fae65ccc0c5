"""One error hierarchy for everything a user can fix (the keras-tuner pattern).

`IENetError` and its subclasses mean "your input is wrong, here is how to fix it": the CLI
prints them as one line and exits with code 2. Anything else that escapes is a bug and
keeps its traceback.

```python
from ienet_tf import errors

try:
    train(config, "runs/x")
except errors.RunLockedError as error:  # another process trains into runs/x
    print(error)
```

This module imports nothing from the package, so every module can raise these.
"""

from __future__ import annotations

__all__ = [
    "CheckpointImportError",
    "ConfigError",
    "DataError",
    "ExportError",
    "IENetError",
    "MissingExtraError",
    "MissingToolError",
    "RunError",
    "RunLockedError",
    "UsageError",
]


class IENetError(Exception):
    """Base class: an error the user can fix. The message is one line naming the problem
    and the fix."""


class ConfigError(IENetError, ValueError):
    """An invalid config: the message names the key path and what is allowed."""


class DataError(IENetError):
    """A data set that is missing or corrupt. The message names the path and how to get the
    data; the data is never silently replaced by other data."""


class RunError(IENetError):
    """A run directory that cannot be used as asked: another run's directory, an
    unfinished or damaged run, a checkpoint that fails verification."""


class RunLockedError(RunError):
    """Another live process holds the run directory."""


class UsageError(IENetError, ValueError):
    """An argument or input that cannot work (a K-sweep source without K, an output
    path that is a file, a thread count of 0): the message says what is expected."""


class ExportError(IENetError):
    """An export that failed verification (converter rules, op histogram or parity)."""


class MissingExtraError(IENetError, ImportError):
    """An optional package that is not installed: the message names the extra that brings
    it (`pip install 'ienet-tf[tune]'`)."""


class MissingToolError(IENetError):
    """A program outside Python that a command needs is not installed or not built (qemu,
    a cross-compiler, the aarch64 LCE runtime): the message names the command that
    installs or builds it (`apt-get install ...`, `make arm-runtime`)."""


class CheckpointImportError(IENetError, ValueError):
    """A foreign checkpoint that does not fit the model (missing, extra or mis-shaped
    keys) or is not a checkpoint at all."""
