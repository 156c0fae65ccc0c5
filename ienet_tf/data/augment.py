"""Preprocessing and augmentation of one image (HWC, float32 in [0, 1]) at a time.

The random functions take a stateless `seed` (an int32/int64 tensor of shape [2]): the same seed
gives the same output. `data.load` draws a fresh seed per example and per epoch. Without a seed
one is drawn from the global TF random state.

The ImageNet transforms follow torchvision, which the IE-Net release uses:
`RandomResizedCrop(224, scale=(0.08, 1.25))` + `RandomHorizontalFlip()` for training and
`Resize(256)` + `CenterCrop(224)` for evaluation. Resizing is bilinear with antialiasing, close to
(not bit-identical with) PIL's.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import tensorflow as tf

__all__ = [
    "center_crop",
    "center_crop_resize",
    "crop_window",
    "normalize",
    "random_crop_flip",
    "random_flip",
    "random_resized_crop",
    "resize_shorter",
    "sample_crop_window",
    "to_float",
]

# torchvision's RandomResizedCrop tries this many (area, aspect ratio) draws before falling
# back to a centre crop.
CROP_ATTEMPTS = 10


def _seed(seed) -> tf.Tensor:
    if seed is None:
        return tf.random.uniform([2], maxval=2**31 - 1, dtype=tf.int32)
    return tf.convert_to_tensor(seed)


def to_float(image, max_value: float = 255.0) -> tf.Tensor:
    """`image` as float32 scaled so that `max_value` maps to 1."""
    return tf.cast(image, tf.float32) / max_value


def normalize(image, mean: Sequence[float], std: Sequence[float]) -> tf.Tensor:
    """`(image - mean) / std` per channel (the last axis)."""
    mean = tf.constant(mean, tf.float32)
    std = tf.constant(std, tf.float32)
    return (tf.convert_to_tensor(image, tf.float32) - mean) / std


def random_flip(image, seed=None) -> tf.Tensor:
    """Mirror `image` left-right with probability 1/2."""
    return tf.image.stateless_random_flip_left_right(image, _seed(seed))


def random_crop_flip(image, pad: int, size: int, seed=None) -> tf.Tensor:
    """The CIFAR-style augmentation: a random `size` x `size` window of `image` zero-padded by
    `pad` on every side, mirrored left-right with probability 1/2."""
    crop_seed, flip_seed = tf.unstack(tf.random.experimental.stateless_split(_seed(seed), 2))
    image = tf.convert_to_tensor(image)
    padded = tf.pad(image, [[pad, pad], [pad, pad], [0, 0]])
    channels = image.shape[-1] if image.shape[-1] is not None else tf.shape(image)[-1]
    cropped = tf.image.stateless_random_crop(padded, [size, size, channels], crop_seed)
    return random_flip(cropped, flip_seed)


def crop_window(
    height,
    width,
    uniforms,
    scale: tuple[float, float] = (0.08, 1.25),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
) -> tf.Tensor:
    """torchvision's `RandomResizedCrop.get_params` with its random draws given.

    `uniforms` is a float tensor (attempts, 4) of U[0, 1) draws: the area fraction, the log aspect
    ratio, and the top and left position of each attempt. An attempt draws a crop of area
    `U(scale) * height * width` and aspect ratio (w/h) log-uniform in `ratio`, rounded to pixels;
    the first one that fits in the image wins (a crop larger than the image, as `scale` above 1
    can draw, is rejected, not clipped). If none fits: the largest centre crop whose aspect
    ratio is within `ratio`. Returns int32 `[top, left, crop_height, crop_width]`.
    """
    height = tf.cast(height, tf.float64)
    width = tf.cast(width, tf.float64)
    u = tf.cast(uniforms, tf.float64)
    lo_ratio, hi_ratio = min(ratio), max(ratio)
    target_area = height * width * (scale[0] + (scale[1] - scale[0]) * u[:, 0])
    log_lo, log_hi = math.log(lo_ratio), math.log(hi_ratio)
    aspect = tf.exp(log_lo + (log_hi - log_lo) * u[:, 1])
    w = tf.round(tf.sqrt(target_area * aspect))
    h = tf.round(tf.sqrt(target_area / aspect))
    fits = (w > 0) & (w <= width) & (h > 0) & (h <= height)
    top = tf.minimum(tf.floor(u[:, 2] * (height - h + 1)), height - h)
    left = tf.minimum(tf.floor(u[:, 3] * (width - w + 1)), width - w)
    attempts = tf.stack([top, left, h, w], axis=1)
    first = tf.argmax(tf.cast(fits, tf.int32))  # the first that fits (0 if none)

    in_ratio = width / height
    fallback_w = tf.where(in_ratio > hi_ratio, tf.round(height * hi_ratio), width)
    fallback_h = tf.where(in_ratio < lo_ratio, tf.round(width / lo_ratio), height)
    fallback = tf.stack(
        [
            tf.floor((height - fallback_h) / 2),
            tf.floor((width - fallback_w) / 2),
            fallback_h,
            fallback_w,
        ]
    )
    window = tf.where(tf.reduce_any(fits), attempts[first], fallback)
    return tf.cast(window, tf.int32)


def sample_crop_window(
    height,
    width,
    seed=None,
    scale: tuple[float, float] = (0.08, 1.25),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
) -> tf.Tensor:
    """A random `crop_window` (int32 `[top, left, crop_height, crop_width]`) from `seed`."""
    uniforms = tf.random.stateless_uniform([CROP_ATTEMPTS, 4], _seed(seed), dtype=tf.float64)
    return crop_window(height, width, uniforms, scale, ratio)


def random_resized_crop(
    image,
    size: int = 224,
    scale: tuple[float, float] = (0.08, 1.25),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
    seed=None,
) -> tf.Tensor:
    """A random crop of `image` (see `crop_window`) resized to `size` x `size`."""
    image = tf.convert_to_tensor(image)
    shape = tf.shape(image)
    top, left, crop_h, crop_w = tf.unstack(
        sample_crop_window(shape[0], shape[1], seed, scale, ratio)
    )
    crop = image[top : top + crop_h, left : left + crop_w]
    resized = tf.image.resize(crop, [size, size], method="bilinear", antialias=True)
    return tf.ensure_shape(resized, [size, size, *image.shape[2:]])


def resize_shorter(image, size: int = 256) -> tf.Tensor:
    """Resize `image` so that its shorter side is `size`, keeping the aspect ratio (the longer side
    is truncated to an integer, as torchvision's `Resize(size)` does)."""
    image = tf.convert_to_tensor(image)
    shape = tf.cast(tf.shape(image)[:2], tf.float64)
    height, width = shape[0], shape[1]
    target = tf.constant(size, tf.float64)
    new_h = tf.where(height <= width, target, tf.floor(size * height / width))
    new_w = tf.where(height <= width, tf.floor(size * width / height), target)
    return tf.image.resize(
        image, tf.cast(tf.stack([new_h, new_w]), tf.int32), method="bilinear", antialias=True
    )


def center_crop(image, size: int) -> tf.Tensor:
    """The central `size` x `size` window of `image` (offsets rounded as torchvision's
    `CenterCrop`: `round((H - size) / 2)`, halves to even)."""
    image = tf.convert_to_tensor(image)
    shape = tf.cast(tf.shape(image)[:2], tf.float64)
    top = tf.cast(tf.round((shape[0] - size) / 2), tf.int32)
    left = tf.cast(tf.round((shape[1] - size) / 2), tf.int32)
    crop = image[top : top + size, left : left + size]
    return tf.ensure_shape(crop, [size, size, *image.shape[2:]])


def center_crop_resize(image, resize: int = 256, crop: int = 224) -> tf.Tensor:
    """The ImageNet evaluation transform: shorter side to `resize`, then the central `crop`."""
    return center_crop(resize_shorter(image, resize), crop)
