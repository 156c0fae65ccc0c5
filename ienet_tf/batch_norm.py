r"""BatchNorm re-estimation: replace the moving statistics, an exponential average taken
while the weights were still changing (and on augmented images), by the statistics of the
final network on the images it will see.

\[ \mu = \frac{1}{N} \sum_{n=1}^{N} \mu_n, \qquad
   \sigma^2 = \frac{1}{N} \sum_{n=1}^{N} \sigma_n^2 \]

over N batches, where \(\mu_n, \sigma^2_n\) are the statistics that layer normalizes batch
n with in a training-mode forward pass (PyTorch's `momentum=None` cumulative average).
"""

from __future__ import annotations

from collections.abc import Iterable

import tensorflow as tf

from ienet_tf.errors import UsageError

__all__ = ["batch_norm_layers", "reestimate_batch_norm"]


def batch_norm_layers(model: tf.Module) -> list[tf.keras.layers.BatchNormalization]:
    """Every Keras BatchNormalization layer inside `model`, nested models included."""
    found = [model] if isinstance(model, tf.keras.layers.BatchNormalization) else []
    return found + [
        module
        for module in model.submodules
        if isinstance(module, tf.keras.layers.BatchNormalization)
    ]


def reestimate_batch_norm(model: tf.keras.Model, batches: Iterable) -> int:
    """Set the moving mean and variance of every trainable BatchNorm layer of `model` to
    the plain average of its batch statistics over `batches` (of images, or `(images,
    labels)` pairs), computed in training-mode forward passes in order; returns the
    number of batches used. Nothing else changes: no weight is trained.

    Layers with `trainable=False` run in inference mode under Keras and keep their
    statistics. Use un-augmented images of the training split: re-estimating on the test
    or validation split would let them choose the model.

    ```python
    plain = load_datasets(config, ("train_eval",))["train_eval"]
    reestimate_batch_norm(model, plain.take(100))
    ```
    """
    layers = batch_norm_layers(model)
    if not layers:
        raise UsageError(
            f"{model.name} has no BatchNormalization layer to re-estimate (an int8 model's "
            "are folded into its convolutions)."
        )
    momenta = [layer.momentum for layer in layers]
    count = 0
    try:
        for batch in batches:
            images = batch[0] if isinstance(batch, (tuple, list)) else batch
            # The n-th batch gets weight 1/(n+1): the first overwrites, then a running mean.
            for layer in layers:
                layer.momentum = count / (count + 1.0)
            model(images, training=True)
            count += 1
    finally:
        for layer, momentum in zip(layers, momenta, strict=True):
            layer.momentum = momentum
    if not count:
        raise UsageError("`batches` is empty: give at least one batch of training images.")
    return count
