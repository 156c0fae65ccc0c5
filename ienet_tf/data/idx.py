"""A reader for IDX files, the format of MNIST and Fashion-MNIST (plain or gzipped).

An IDX file is a 4-byte magic number `0x00 0x00 <type> <ndim>`, `ndim` big-endian uint32
dimensions, then the values in C order, big-endian. Fashion-MNIST images are `0x00000803`
(uint8, 3 dims: N x 28 x 28) and labels `0x00000801` (uint8, 1 dim: N).
"""

from __future__ import annotations

import gzip
import os
import struct
import zlib
from pathlib import Path

import numpy as np

from ienet_tf.errors import DataError
from ienet_tf.io import read_bytes

__all__ = [
    "FASHION_MNIST_DIR",
    "FASHION_MNIST_FILES",
    "IMAGES_MAGIC",
    "LABELS_MAGIC",
    "find_file",
    "load_fashion_mnist",
    "read_idx",
    "read_images",
    "read_labels",
]

IMAGES_MAGIC = 0x00000803
LABELS_MAGIC = 0x00000801

# The Debian package `dataset-fashion-mnist` installs the four gzipped files here.
FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
FASHION_MNIST_FIX = (
    "install the Debian package (`sudo apt-get install dataset-fashion-mnist`, files in "
    f"{FASHION_MNIST_DIR}/) or point data.data_dir (`--set data.data_dir=DIR`; data_dir= in "
    "Python) to a directory with "
    "train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte and "
    "t10k-labels-idx1-ubyte (each plain or .gz)"
)

# IDX type byte -> big-endian numpy dtype.
_DTYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_GZIP_MAGIC = b"\x1f\x8b"


def _read_bytes(path: Path) -> bytes:
    raw = read_bytes(path, "IDX file", DataError)
    if raw[:2] != _GZIP_MAGIC:
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as error:
        raise DataError(f"IDX file {path} is a corrupt or truncated gzip file: {error}.") from None


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """The array stored in the IDX file `path` (gzip is detected from the content).

    Raises `DataError` naming the file if it is missing, has a bad magic number, or its size
    does not match its dimensions (truncated or trailing bytes).
    """
    return _parse(Path(path))[1]


def _parse(path: Path) -> tuple[int, np.ndarray]:
    raw = _read_bytes(path)
    if len(raw) < 4:
        raise DataError(f"IDX file {path} is truncated: {len(raw)} bytes, no 4-byte magic number.")
    magic = struct.unpack(">I", raw[:4])[0]
    zeros, type_code, ndim = raw[:2], raw[2], raw[3]
    if zeros != b"\x00\x00" or type_code not in _DTYPES or ndim == 0:
        raise DataError(
            f"IDX file {path} has a bad magic number 0x{magic:08x} (expected 0x0000TTNN with a "
            "known type TT and NN > 0 dimensions); it is not an IDX file or it is corrupt."
        )
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"IDX file {path} is truncated inside its header ({len(raw)} bytes).")
    shape = struct.unpack(f">{ndim}I", raw[4:header])
    dtype = _DTYPES[type_code]
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    actual = len(raw) - header
    if actual != expected:
        problem = "truncated" if actual < expected else "longer than its header says"
        raise DataError(
            f"IDX file {path} is {problem}: dimensions {shape} need {expected} bytes of data, "
            f"found {actual}."
        )
    array = np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape)
    return magic, array.astype(dtype.newbyteorder("="))


def _read_typed(path: str | os.PathLike, magic: int, what: str) -> np.ndarray:
    found, array = _parse(Path(path))
    if found != magic:
        raise DataError(
            f"IDX file {path} has magic number 0x{found:08x}; {what} need 0x{magic:08x}."
        )
    return array


def read_images(path: str | os.PathLike) -> np.ndarray:
    """uint8 images (N, H, W) from an IDX file with magic 0x00000803."""
    return _read_typed(path, IMAGES_MAGIC, "images")


def read_labels(path: str | os.PathLike) -> np.ndarray:
    """uint8 labels (N,) from an IDX file with magic 0x00000801."""
    return _read_typed(path, LABELS_MAGIC, "labels")


def find_file(directory: str | os.PathLike, stem: str) -> Path | None:
    """`directory/stem` if it exists, else `directory/stem.gz`, else `None`."""
    for name in (stem, f"{stem}.gz"):
        candidate = Path(directory) / name
        if candidate.is_file():
            return candidate
    return None


def load_fashion_mnist(
    directory: str | os.PathLike, split: str, num_classes: int = 10
) -> tuple[np.ndarray, np.ndarray]:
    """Fashion-MNIST `split` ("train" or "test") from the IDX files in `directory`:
    uint8 images (N, 28, 28) and int64 labels (N,).

    Raises `DataError` naming the file if one is missing or corrupt, if the image and label
    counts differ, if the images are not 28x28 or if a label is not below `num_classes`.
    """
    paths = []
    for stem in FASHION_MNIST_FILES[split]:
        path = find_file(directory, stem)
        if path is None:
            raise DataError(
                f"Fashion-MNIST file {Path(directory) / stem}(.gz) does not exist; "
                f"{FASHION_MNIST_FIX}."
            )
        paths.append(path)
    images_path, labels_path = paths
    try:
        images, labels = read_images(images_path), read_labels(labels_path)
        _check_fashion_mnist(images, labels, images_path, labels_path, num_classes)
    except DataError as error:
        raise DataError(f"{error} To get intact files: {FASHION_MNIST_FIX}.") from None
    return images, labels.astype(np.int64)


def _check_fashion_mnist(images, labels, images_path, labels_path, num_classes) -> None:
    if images.shape[1:] != (28, 28):
        raise DataError(
            f"IDX file {images_path} holds images of size {images.shape[1:]}, "
            "Fashion-MNIST images are 28x28."
        )
    if len(labels) != len(images):
        raise DataError(
            f"IDX files disagree: {labels_path} has {len(labels)} labels but "
            f"{images_path} has {len(images)} images."
        )
    if len(labels) and labels.max() >= num_classes:
        raise DataError(
            f"IDX file {labels_path} has label {int(labels.max())}; Fashion-MNIST labels are "
            f"0..{num_classes - 1}."
        )
