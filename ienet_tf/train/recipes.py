"""The training recipes of the IE-Net paper and its release: optimizer, LR, weight decay."""

from __future__ import annotations

import math

import tensorflow as tf

from ienet_tf.config import TrainConfig

__all__ = ["add_weight_decay", "learning_rate_at", "make_optimizer", "make_strategy"]


def learning_rate_at(epoch: int, train: TrainConfig) -> float:
    """Per-epoch learning rate: linear warm-up over `warmup_epochs` (epoch e gets
    lr * (e + 1) / warmup), then cosine annealing to 0 over the remaining epochs, as
    PyTorch's CosineAnnealingLR stepped once per epoch."""
    base, warmup = train.learning_rate, train.warmup_epochs
    if epoch < warmup:
        return base * (epoch + 1) / warmup
    if train.lr_schedule == "constant":
        return base
    progress = (epoch - warmup) / (train.epochs - warmup)
    return 0.5 * base * (1.0 + math.cos(math.pi * progress))


def make_optimizer(train: TrainConfig) -> tf.keras.optimizers.Optimizer:
    """SGD with momentum (the papers) or Adam; the learning rate is set per epoch by a
    `LearningRateScheduler`, weight decay is a loss term (see `add_weight_decay`)."""
    if train.optimizer == "adam":
        return tf.keras.optimizers.Adam(train.learning_rate)
    return tf.keras.optimizers.SGD(train.learning_rate, momentum=train.momentum)


def _decayed(variable: tf.Variable, scope: str) -> bool:
    if scope == "all":
        return variable.trainable
    name = variable.name.split("/")[-1].split(":")[0]
    return variable.trainable and name in ("kernel", "alpha")


def add_weight_decay(model: tf.keras.Model, weight_decay: float, scope: str) -> int:
    """Add PyTorch-style (coupled) weight decay: `0.5 * wd * sum ||v||^2` over the chosen
    variables, so `wd * v` joins the gradient before momentum. `scope="all"` decays every
    trainable parameter (CIFAR recipe); `"kernels_and_alpha"` only conv/dense kernels and
    the IE-BC scaling factors (ImageNet recipe). Returns the number of decayed variables."""
    if weight_decay <= 0:
        return 0
    decayed = [v for v in model.trainable_variables if _decayed(v, scope)]

    def l2_term():
        return 0.5 * weight_decay * tf.add_n([tf.reduce_sum(tf.square(v)) for v in decayed])

    model.add_loss(l2_term)
    return len(decayed)


def make_strategy(name: str) -> tf.distribute.Strategy:
    """The `tf.distribute` strategy for `train.strategy`."""
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multi_worker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    if name == "tpu":
        try:
            resolver = tf.distribute.cluster_resolver.TPUClusterResolver()
            tf.config.experimental_connect_to_cluster(resolver)
            tf.tpu.experimental.initialize_tpu_system(resolver)
        except (ValueError, tf.errors.OpError) as error:
            raise ValueError(f"train.strategy 'tpu': no TPU could be reached ({error}).") from None
        return tf.distribute.TPUStrategy(resolver)
    return tf.distribute.get_strategy()
