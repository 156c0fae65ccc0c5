"""The vocabulary of the data package: `DatasetInfo` and the split names.
What each data set is lives in `ienet_tf.data.registry`."""

from __future__ import annotations

import dataclasses

__all__ = ["SPLITS", "DatasetInfo", "check_split"]

# "validation" is a synonym for "test": the held-out split (tfds "validation" for ImageNet,
# the test split for the others).
SPLITS = ("train", "test", "validation")


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


def check_split(split: str) -> str:
    """Map `split` to "train" or "test" ("validation" means "test"), else raise `ValueError`."""
    if split not in SPLITS:
        raise ValueError(
            f"Unknown split {split!r}; allowed: {', '.join(map(repr, SPLITS))} "
            "('validation' is the held-out split, the same as 'test')."
        )
    return "train" if split == "train" else "test"
