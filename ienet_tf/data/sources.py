"""Where the examples come from: each function returns the raw examples of one split as a
`Source` (a `tf.data.Dataset` of `(image, label)` plus how to read it), nothing downloaded.

tensorflow-datasets is imported only when a tfds data set is loaded.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from pathlib import Path

import numpy as np
import tensorflow as tf

from ienet_tf import extras
from ienet_tf.data import idx
from ienet_tf.data.catalog import DatasetInfo
from ienet_tf.errors import DataError

__all__ = [
    "DIGITS_MAX_VALUE",
    "IMAGENET_MANUAL_FILES",
    "Source",
    "cifar10",
    "digits",
    "digits_arrays",
    "digits_info",
    "fashion_mnist",
    "imagenet2012",
]

DIGITS_MAX_VALUE = 16.0
IMAGENET_MANUAL_FILES = ("ILSVRC2012_img_train.tar", "ILSVRC2012_img_val.tar")
_CIFAR10_HOW = (
    "let tensorflow-datasets download it (`--set data.download=true`; download=True in "
    "Python), or prepare it once with network access: `tfds build cifar10 --data_dir DIR`, "
    "then `--set data.data_dir=DIR` (data_dir=DIR in Python)"
)
_IMAGENET_HOW = (
    "download ILSVRC2012_img_train.tar and ILSVRC2012_img_val.tar from "
    "https://image-net.org/download-images (registration needed), put both in one directory "
    "and point data.manual_dir at it (`--set data.manual_dir=DIR`; manual_dir= in Python): "
    "tfds then prepares them into data.data_dir once, offline"
)


@dataclasses.dataclass(frozen=True)
class Source:
    """The raw examples of one split.

    `dataset` yields `(image, label int64)`: images are uint8 HWC, or encoded JPEG strings when
    `encoded`. `max_value` is the pixel value that means white. `cacheable`: the decoded split
    fits in memory.
    """

    dataset: tf.data.Dataset
    max_value: float
    cacheable: bool
    encoded: bool = False


def _from_arrays(images: np.ndarray, labels: np.ndarray, max_value: float, subset) -> Source:
    images, labels = images[:subset], labels[:subset].astype(np.int64)
    dataset = tf.data.Dataset.from_tensor_slices((images, labels))
    return Source(dataset, max_value, cacheable=True)


@functools.lru_cache(maxsize=1)
def digits_arrays() -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """scikit-learn's 1,797 8x8 digits (values 0..16, shipped in its wheel) split 80/20,
    stratified, `random_state=0`: `((x_train, y_train), (x_test, y_test))`, images uint8
    (N, 8, 8, 1), labels int64."""
    datasets = extras.require("sklearn.datasets")
    model_selection = extras.require("sklearn.model_selection")

    images, labels = datasets.load_digits(return_X_y=True)
    images = images.reshape(-1, 8, 8, 1).astype(np.uint8)
    x_train, x_test, y_train, y_test = model_selection.train_test_split(
        images, labels.astype(np.int64), test_size=0.2, stratify=labels, random_state=0
    )
    return (x_train, y_train), (x_test, y_test)


def digits(split: str, subset: int | None = None) -> Source:
    """The `digits_arrays` split ("train" or "test")."""
    train, test = digits_arrays()
    images, labels = train if split == "train" else test
    return _from_arrays(images, labels, DIGITS_MAX_VALUE, subset)


@functools.lru_cache(maxsize=1)
def digits_info() -> DatasetInfo:
    """The digits' `DatasetInfo`: its statistics come from the training split itself."""
    (x_train, _), (x_test, _) = digits_arrays()
    scaled = x_train.astype("float64") / DIGITS_MAX_VALUE
    return DatasetInfo(
        name="digits",
        num_classes=10,
        input_shape=(8, 8, 1),
        train_size=len(x_train),
        test_size=len(x_test),
        mean=tuple(float(m) for m in scaled.mean(axis=(0, 1, 2))),
        std=tuple(float(s) for s in scaled.std(axis=(0, 1, 2))),
    )


def fashion_mnist(
    split: str,
    data_dir: str | os.PathLike | None = None,
    subset: int | None = None,
    download: bool = False,
) -> Source:
    """Fashion-MNIST from the IDX files in `data_dir` (default: the Debian package's
    `/usr/share/datasets/fashion-mnist`).

    If the directory holds none of the IDX files, tfds's `fashion_mnist` is used if it is already
    prepared there (for `data_dir=None`: in tfds's default directory), or downloaded with
    `download=True`; otherwise `DataError`.
    """
    directory = Path(data_dir) if data_dir is not None else idx.FASHION_MNIST_DIR
    stems = [stem for pair in idx.FASHION_MNIST_FILES.values() for stem in pair]
    if any(idx.find_file(directory, stem) for stem in stems):
        images, labels = idx.load_fashion_mnist(directory, split)
        return _from_arrays(images[..., None], labels, 255.0, subset)
    try:
        dataset = _tfds_split(
            "fashion_mnist", split, data_dir, idx.FASHION_MNIST_FIX, download=download
        )
    except DataError as error:
        raise DataError(f"No Fashion-MNIST IDX files in {directory}. {error}") from None
    return _take(Source(dataset, 255.0, cacheable=True), subset)


def cifar10(
    split: str,
    data_dir: str | os.PathLike | None = None,
    subset: int | None = None,
    download: bool = False,
) -> Source:
    """CIFAR-10 from tfds, prepared in `data_dir` (downloaded only with `download=True`).
    Read in file order: the pipeline caches it and shuffles it whole."""
    dataset = _tfds_split("cifar10", split, data_dir, _CIFAR10_HOW, download=download)
    return _take(Source(dataset, 255.0, cacheable=True), subset)


def imagenet2012(
    split: str,
    data_dir: str | os.PathLike | None = None,
    manual_dir: str | os.PathLike | None = None,
    subset: int | None = None,
    shuffle_files: bool = False,
    seed: int = 0,
) -> Source:
    """ImageNet 2012 from tfds; "test" is tfds's "validation" split (the labelled 50,000).

    If it is not prepared in `data_dir` and `manual_dir` is given, tfds prepares it from the two
    tar files in `manual_dir` (offline; hours and ~150 GB). Images stay JPEG-encoded (so a
    shuffle buffer holds compressed images) and are decoded by the pipeline.
    """
    tfds = extras.require("tensorflow_datasets")

    if manual_dir is not None:
        builder = tfds.builder("imagenet2012", data_dir=_str(data_dir))
        if not tf.io.gfile.exists(builder.data_dir):
            missing = [f for f in IMAGENET_MANUAL_FILES if not (Path(manual_dir) / f).is_file()]
            if missing:
                raise DataError(
                    f"ImageNet 2012 is not prepared in {builder.data_dir} and manual_dir "
                    f"{manual_dir} lacks {', '.join(missing)} (tfds expects "
                    f"{' and '.join(IMAGENET_MANUAL_FILES)} there); {_IMAGENET_HOW}."
                )
            builder.download_and_prepare(
                download_config=tfds.download.DownloadConfig(manual_dir=os.fspath(manual_dir))
            )
    tfds_split = "train" if split == "train" else "validation"
    dataset = _tfds_split(
        "imagenet2012",
        tfds_split,
        data_dir,
        _IMAGENET_HOW,
        shuffle_files,
        seed,
        decoders={"image": tfds.decode.SkipDecoding()},
    )
    return _take(Source(dataset, 255.0, cacheable=False, encoded=True), subset)


def _str(path: str | os.PathLike | None) -> str | None:
    return None if path is None else os.fspath(path)


def _take(source: Source, subset: int | None) -> Source:
    if subset is None:
        return source
    return dataclasses.replace(source, dataset=source.dataset.take(subset))


def _tfds_split(
    name: str,
    split: str,
    data_dir: str | os.PathLike | None,
    how: str,
    shuffle_files: bool = False,
    seed: int = 0,
    decoders=None,
    download: bool = False,
) -> tf.data.Dataset:
    """`(image, label)` of tfds data set `name`, prepared in `data_dir` (with `download=True`,
    tfds downloads and prepares it first if it is not there yet)."""
    tfds = extras.require("tensorflow_datasets")

    builder = tfds.builder(name, data_dir=_str(data_dir))
    if download and not _prepared(builder):
        _require_network(name)
        builder.download_and_prepare()
    try:
        return builder.as_dataset(
            split=split,
            as_supervised=True,
            shuffle_files=shuffle_files,
            decoders=decoders,
            # We cache (or not) ourselves; a fixed seed makes the file order reproducible.
            read_config=tfds.ReadConfig(shuffle_seed=seed, try_autocache=False),
        )
    except AssertionError as error:  # tfds's "could not find data in ..."
        if "could not find data" not in str(error):
            raise
        raise DataError(
            f"The tfds data set {name!r} is not prepared in {builder.data_dir}; {how}."
        ) from None


#: Where tensorflow-datasets downloads each data set from (host, port).
_DOWNLOAD_HOSTS = {
    "cifar10": ("www.cs.toronto.edu", 443),
    "fashion_mnist": ("fashion-mnist.s3-website.eu-central-1.amazonaws.com", 80),
}
_NETWORK_TIMEOUT_S = 5.0


def _prepared(builder) -> bool:
    return tf.io.gfile.exists(os.path.join(builder.data_dir, "dataset_info.json"))


def _require_network(name: str) -> None:
    """A `DataError` within seconds when the host a download needs cannot be reached
    (tfds itself retries for minutes, and leaves an incomplete folder behind)."""
    import socket

    host, port = _DOWNLOAD_HOSTS.get(name, (None, None))
    if host is None:
        return
    try:
        socket.create_connection((host, port), timeout=_NETWORK_TIMEOUT_S).close()
    except OSError as error:
        reason = getattr(error, "strerror", None) or type(error).__name__
        raise DataError(
            f"cannot download {name}: {host} cannot be reached from here ({reason}); nothing "
            f"was downloaded. Prepare it once where there is network (`tfds build {name} "
            "--data_dir DIR`), copy DIR here and pass `--set data.data_dir=DIR`."
        ) from None
