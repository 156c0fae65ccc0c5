"""What each data set is: `DatasetInfo`, the names `load` accepts, and `DataError`."""

from __future__ import annotations

import dataclasses
import functools

from ienet_tf import errors

__all__ = [
    "SPLITS",
    "DataError",
    "DatasetInfo",
    "available",
    "check_name",
    "check_split",
    "info",
]

# "validation" is a synonym for "test": the held-out split (tfds "validation" for ImageNet,
# the test split for the others).
SPLITS = ("train", "test", "validation")


# A data set that is missing or corrupt (see `ienet_tf.errors.DataError`).
DataError = errors.DataError


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    """A data set as `load` yields it.

    `input_shape` is (H, W, C) of the images the pipeline yields; `mean` and `std` are the
    per-channel statistics (of pixels scaled to [0, 1]) used for normalisation. `train_size` and
    `test_size` are the sizes of the full splits (`None` if unknown).
    """

    name: str
    num_classes: int
    input_shape: tuple[int, int, int]
    train_size: int | None
    test_size: int | None
    mean: tuple[float, ...]
    std: tuple[float, ...]


_STATIC = {
    "cifar10": DatasetInfo(
        name="cifar10",
        num_classes=10,
        input_shape=(32, 32, 3),
        train_size=50_000,
        test_size=10_000,
        mean=(0.4914, 0.4822, 0.4465),
        std=(0.2470, 0.2435, 0.2616),
    ),
    "fashion_mnist": DatasetInfo(
        name="fashion_mnist",
        num_classes=10,
        input_shape=(28, 28, 1),
        train_size=60_000,
        test_size=10_000,
        mean=(0.2860,),
        std=(0.3530,),
    ),
    "imagenet2012": DatasetInfo(
        name="imagenet2012",
        num_classes=1000,
        input_shape=(224, 224, 3),
        train_size=1_281_167,
        test_size=50_000,  # the tfds "validation" split, the usual ImageNet test set
        mean=(0.485, 0.456, 0.406),
        std=(0.229, 0.224, 0.225),
    ),
}


def available() -> tuple[str, ...]:
    """The names `load` and `info` accept, sorted."""
    return tuple(sorted((*_STATIC, "digits")))


def check_name(name: str) -> str:
    """Return `name` if it is a known data set, else raise `ValueError` listing the known ones."""
    if name not in available():
        raise ValueError(f"Unknown data set {name!r}; available: {', '.join(available())}.")
    return name


def check_split(split: str) -> str:
    """Map `split` to "train" or "test" ("validation" means "test"), else raise `ValueError`."""
    if split not in SPLITS:
        raise ValueError(
            f"Unknown split {split!r}; allowed: {', '.join(map(repr, SPLITS))} "
            "('validation' is the held-out split, the same as 'test')."
        )
    return "train" if split == "train" else "test"


def info(name: str) -> DatasetInfo:
    """The `DatasetInfo` of data set `name` (one of `available()`)."""
    check_name(name)
    if name == "digits":
        return _digits_info()
    return _STATIC[name]


@functools.lru_cache(maxsize=1)
def _digits_info() -> DatasetInfo:
    # The statistics come from the training split, so they need the split itself.
    from ienet_tf.data import sources

    (x_train, _), (x_test, _) = sources.digits_arrays()
    scaled = x_train.astype("float64") / sources.DIGITS_MAX_VALUE
    return DatasetInfo(
        name="digits",
        num_classes=10,
        input_shape=(8, 8, 1),
        train_size=len(x_train),
        test_size=len(x_test),
        mean=tuple(float(m) for m in scaled.mean(axis=(0, 1, 2))),
        std=tuple(float(s) for s in scaled.std(axis=(0, 1, 2))),
    )
