"""`load`: a batched, prefetched `tf.data` pipeline of normalised images and int64 labels."""

from __future__ import annotations

import os

import tensorflow as tf

from ienet_tf.checks import is_int
from ienet_tf.data import augment
from ienet_tf.data.catalog import check_split
from ienet_tf.data.registry import SourceOptions, record

__all__ = ["load"]

# Shuffle buffers: a whole in-memory split (the largest, Fashion-MNIST's, has 60,000 images), or
# 10,000 JPEG-encoded ImageNet images (~1.1 GB) after tfds has shuffled the files.
_IN_MEMORY_BUFFER = 60_000
_ENCODED_BUFFER = 10_000


def _check_int(name: str, value, minimum: int | None) -> None:
    if not is_int(value):
        raise ValueError(f"`{name}` must be an integer, got {value!r}.")
    if minimum is not None and value < minimum:
        raise ValueError(f"`{name}` must be at least {minimum}, got {value!r}.")


def load(
    name: str,
    split: str,
    *,
    batch_size: int,
    training: bool,
    data_dir: str | os.PathLike | None = None,
    manual_dir: str | os.PathLike | None = None,
    subset: int | None = None,
    skip: int = 0,
    seed: int = 0,
    drop_remainder: bool = False,
    download: bool = False,
) -> tf.data.Dataset:
    """Batches `(images, labels)` of data set `name` (one of `available()`).

    Images are float32 NHWC, normalised per channel with `info(name).mean/std`; labels are int64
    of shape (batch,). `split` is "train" or "test" ("validation" = "test": tfds "validation" for
    ImageNet, the test split otherwise). `training=True` shuffles (seeded, reshuffled each epoch)
    and augments with fresh seeded randomness each epoch; `training=False` is deterministic and
    does not augment. `skip=S, subset=N` keeps examples S .. S+N-1 (before shuffling), so
    one split can give disjoint training and validation parts.

    `data_dir`: the Fashion-MNIST IDX directory, or the tfds data directory (default: tfds's).
    `manual_dir`: where ImageNet's tar files are, to prepare it once. `download=True` lets
    tensorflow-datasets download CIFAR-10 (or Fashion-MNIST without local IDX files) when it is
    not prepared yet. Otherwise nothing is downloaded: missing or corrupt data raises
    `DataError` saying how to get it.

    The same `seed` (under the same TF global seed) gives the same stream. The pipeline
    carries the split it reads as `ienet_split`.
    """
    entry = record(name)
    split = check_split(split)
    _check_int("batch_size", batch_size, 1)
    _check_int("seed", seed, None)
    if subset is not None:
        _check_int("subset", subset, 1)
    _check_int("skip", skip, 0)
    spec = entry.dataset_info()

    end = None if subset is None else skip + subset
    options = SourceOptions(data_dir, manual_dir, end, training and end is None, seed, download)
    source = entry.source(split, options)
    dataset = source.dataset.skip(skip) if skip else source.dataset
    if source.cacheable:
        dataset = dataset.cache()
    if training:
        buffer = _IN_MEMORY_BUFFER if source.cacheable else _ENCODED_BUFFER
        dataset = dataset.shuffle(buffer, seed=seed, reshuffle_each_iteration=True)

    train_transform, eval_transform = entry.train_transform, entry.eval_transform

    def decode(image):
        if source.encoded:
            image = tf.io.decode_image(
                image, channels=spec.input_shape[-1], expand_animations=False
            )
        return augment.to_float(image, source.max_value)

    def finish(image, label):
        image = augment.normalize(image, spec.mean, spec.std)
        return tf.ensure_shape(image, spec.input_shape), label

    if training:
        seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)
        dataset = tf.data.Dataset.zip((dataset, seeds)).map(
            lambda example, pair: finish(train_transform(decode(example[0]), pair), example[1]),
            num_parallel_calls=tf.data.AUTOTUNE,
        )
    else:
        dataset = dataset.map(
            lambda image, label: finish(eval_transform(decode(image)), label),
            num_parallel_calls=tf.data.AUTOTUNE,
        )
    dataset = dataset.batch(batch_size, drop_remainder=drop_remainder).prefetch(tf.data.AUTOTUNE)
    # Which split it is (the test split under either name): a search warns on it.
    dataset.ienet_split = "test" if split in ("test", "validation") else split
    return dataset
