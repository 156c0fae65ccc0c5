"""One record per data set: what it is, where its examples come from, how they are
transformed. `load` reads everything about a data set from its record; a new data set is one
more `DatasetRecord` in `RECORDS`.

| name | from | training augmentation (evaluation) |
|---|---|---|
| `digits` | scikit-learn's 8x8 digits, stratified 80/20 | none (shuffle only) |
| `fashion_mnist` | IDX files (`dataset-fashion-mnist`) or tfds | pad 2, crop 28, flip |
| `cifar10` | tfds, prepared in `data_dir` | pad 4, crop 32, flip |
| `imagenet2012` | tfds, from `manual_dir` | resized crop 224 (resize 256, crop 224) |
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable

import tensorflow as tf

from ienet_tf.data import augment, sources
from ienet_tf.data.catalog import DatasetInfo

__all__ = ["RECORDS", "DatasetRecord", "SourceOptions", "available", "info", "record"]


@dataclasses.dataclass(frozen=True)
class SourceOptions:
    """Where and how to read a split: `end` keeps the first `end` examples (None: all)."""

    data_dir: str | os.PathLike | None = None
    manual_dir: str | os.PathLike | None = None
    end: int | None = None
    shuffle_files: bool = False
    seed: int = 0
    download: bool = False


@dataclasses.dataclass(frozen=True)
class DatasetRecord:
    """A data set: its `info` (or a function computing it), `source(split, options)` giving
    the raw examples of "train" or "test", `train_transform(image, seed)` (random, from a
    stateless seed) and `eval_transform(image)`, both on one float image in [0, 1]."""

    info: DatasetInfo | Callable[[], DatasetInfo]
    source: Callable[[str, SourceOptions], sources.Source]
    train_transform: Callable[[tf.Tensor, tf.Tensor], tf.Tensor]
    eval_transform: Callable[[tf.Tensor], tf.Tensor] = tf.identity

    def dataset_info(self) -> DatasetInfo:
        return self.info() if callable(self.info) else self.info


def _crop_flip(pad: int, size: int):
    def transform(image, seed):
        return augment.random_crop_flip(image, pad, size, seed)

    return transform


def _imagenet_train(image, seed):
    crop_seed, flip_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    return augment.random_flip(augment.random_resized_crop(image, 224, seed=crop_seed), flip_seed)


RECORDS: dict[str, DatasetRecord] = {
    "cifar10": DatasetRecord(
        info=DatasetInfo(
            name="cifar10",
            num_classes=10,
            input_shape=(32, 32, 3),
            train_size=50_000,
            test_size=10_000,
            mean=(0.4914, 0.4822, 0.4465),
            std=(0.2470, 0.2435, 0.2616),
        ),
        source=lambda split, o: sources.cifar10(split, o.data_dir, o.end, o.download),
        train_transform=_crop_flip(4, 32),
    ),
    "digits": DatasetRecord(
        info=sources.digits_info,
        source=lambda split, o: sources.digits(split, o.end),
        train_transform=lambda image, seed: image,  # 8x8 is too small to augment
    ),
    "fashion_mnist": DatasetRecord(
        info=DatasetInfo(
            name="fashion_mnist",
            num_classes=10,
            input_shape=(28, 28, 1),
            train_size=60_000,
            test_size=10_000,
            mean=(0.2860,),
            std=(0.3530,),
        ),
        source=lambda split, o: sources.fashion_mnist(split, o.data_dir, o.end, o.download),
        train_transform=_crop_flip(2, 28),
    ),
    "imagenet2012": DatasetRecord(
        info=DatasetInfo(
            name="imagenet2012",
            num_classes=1000,
            input_shape=(224, 224, 3),
            train_size=1_281_167,
            test_size=50_000,  # the tfds "validation" split, the usual ImageNet test set
            mean=(0.485, 0.456, 0.406),
            std=(0.229, 0.224, 0.225),
        ),
        source=lambda split, o: sources.imagenet2012(
            split, o.data_dir, o.manual_dir, o.end, o.shuffle_files, o.seed
        ),
        train_transform=_imagenet_train,
        eval_transform=augment.center_crop_resize,
    ),
}


def available() -> tuple[str, ...]:
    """The names `load` and `info` accept, sorted."""
    return tuple(sorted(RECORDS))


def record(name: str) -> DatasetRecord:
    """The record of data set `name`, else `ValueError` listing the known ones."""
    if name not in RECORDS:
        raise ValueError(f"Unknown data set {name!r}; available: {', '.join(available())}.")
    return RECORDS[name]


def info(name: str) -> DatasetInfo:
    """The `DatasetInfo` of data set `name` (one of `available()`)."""
    return record(name).dataset_info()
