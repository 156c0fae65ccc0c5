"""Make an untrained model look trained, for export, parity and latency checks.

Fresh IE-BC layers have all thresholds at 0 (their branches are identical and the converter
merges them) and the ImageNet models start their conv BatchNorms at gamma = 1e-8 (their
outputs are ~0, so any parity check passes trivially). Neither is what a deployed model
looks like.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from ienet_tf.layers import IEBinaryConv2D

__all__ = ["as_if_trained"]


def as_if_trained(model: tf.keras.Model, seed: int = 0) -> tf.keras.Model:
    """Spread thresholds N(0, 0.3), lambdas U(0.2, 1), BN gamma U(0.5, 1.5), moving mean
    N(0, 0.1) and moving variance U(0.5, 2), in place; returns `model`."""
    rng = np.random.default_rng(seed)
    for layer in model.submodules:
        if isinstance(layer, IEBinaryConv2D):
            if layer.thresholds is not None:
                layer.thresholds.assign(rng.normal(0, 0.3, layer.thresholds.shape))
            if layer.lambdas is not None:
                layer.lambdas.assign(rng.uniform(0.2, 1.0, layer.lambdas.shape))
        if isinstance(layer, tf.keras.layers.BatchNormalization):
            layer.gamma.assign(rng.uniform(0.5, 1.5, layer.gamma.shape))
            layer.moving_mean.assign(rng.normal(0, 0.1, layer.moving_mean.shape))
            layer.moving_variance.assign(rng.uniform(0.5, 2.0, layer.moving_variance.shape))
    return model
