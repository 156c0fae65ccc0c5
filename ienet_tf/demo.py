"""The embedded end-to-end demo: train a small IE-Net on scikit-learn's digits, export it.

Runs offline in a couple of minutes on 2 CPU cores: `model.fit` with `IEESchedule`, test
accuracy, LCE conversion with the op histogram checked, interpreter-vs-Keras parity, and
the `.tflite` size.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
from pathlib import Path

import numpy as np
import tensorflow as tf

from ienet_tf import callbacks, export, layers

__all__ = ["DemoResult", "digits_convnet", "load_digits", "run_demo"]


def load_digits(seed: int = 0, test_fraction: float = 0.2):
    """scikit-learn's 1,797 8x8 digits (shipped in its wheel): a stratified split,
    NHWC float32 standardised with the training set's mean and std."""
    from sklearn.datasets import load_digits as sklearn_digits
    from sklearn.model_selection import train_test_split

    images, labels = sklearn_digits(return_X_y=True)
    images = images.reshape(-1, 8, 8, 1).astype(np.float32)
    x_train, x_test, y_train, y_test = train_test_split(
        images, labels, test_size=test_fraction, stratify=labels, random_state=seed
    )
    mean, std = x_train.mean(), x_train.std()
    return ((x_train - mean) / std, y_train), ((x_test - mean) / std, y_test)


def digits_convnet(k: int = 2, num_classes: int = 10) -> tf.keras.Model:
    """A small IE-Net for 8x8 inputs: float stem, three IE-BC layers, float head."""
    inputs = tf.keras.Input((8, 8, 1))
    x = tf.keras.layers.Conv2D(32, 3, padding="same", use_bias=False)(inputs)
    x = tf.keras.layers.BatchNormalization()(x)
    for filters, strides in ((64, 1), (64, 2), (128, 1)):
        x = layers.IEBinaryConv2D(filters, 3, k=k, strides=strides)(x)
        x = tf.keras.layers.BatchNormalization()(x)
    x = tf.keras.layers.GlobalAveragePooling2D()(x)
    outputs = tf.keras.layers.Dense(num_classes)(x)
    return tf.keras.Model(inputs, outputs, name=f"digits_ienet_k{k}")


@dataclasses.dataclass(frozen=True)
class DemoResult:
    test_accuracy: float
    op_histogram: dict[str, int]
    parity: export.Parity
    tflite_path: Path
    tflite_bytes: int


def _write_atomically(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def run_demo(
    output_dir: Path,
    epochs: int = 40,
    k: int = 2,
    batch_size: int = 64,
    seed: int = 0,
    parity_tolerance: float = 1e-3,
    verbose: int = 2,
) -> DemoResult:
    tf.keras.utils.set_random_seed(seed)
    (x_train, y_train), (x_test, y_test) = load_digits(seed)
    model = digits_convnet(k)
    steps = epochs * int(np.ceil(len(x_train) / batch_size))
    model.compile(
        optimizer=tf.keras.optimizers.Adam(tf.keras.optimizers.schedules.CosineDecay(1e-2, steps)),
        loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    model.fit(
        x_train,
        y_train,
        batch_size=batch_size,
        epochs=epochs,
        callbacks=[callbacks.IEESchedule(epochs=epochs)],
        verbose=verbose,
    )
    _, accuracy = model.evaluate(x_test, y_test, verbose=0)

    flatbuffer, histogram = export.convert(model)
    agreement = export.parity(model, flatbuffer, x_test)
    if agreement.max_abs_diff > parity_tolerance:
        raise export.ExportError(
            f"LCE interpreter and Keras disagree: max |diff| {agreement.max_abs_diff:.3g} "
            f"> {parity_tolerance:g} on {agreement.num_inputs} test images."
        )
    path = Path(output_dir) / "digits_ienet.tflite"
    _write_atomically(path, flatbuffer)
    return DemoResult(float(accuracy), histogram, agreement, path, len(flatbuffer))
