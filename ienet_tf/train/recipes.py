"""The training recipes of the IE-Net paper and its release: optimizer, LR, weight decay."""

from __future__ import annotations

import logging
import math

import tensorflow as tf

from ienet_tf.callbacks import PerStepLearningRate
from ienet_tf.config import TrainConfig
from ienet_tf.errors import UsageError
from ienet_tf.io import one_line
from ienet_tf.models.blocks import PROJECTION_SUFFIX
from ienet_tf.torch_form import TorchSGD
from ienet_tf.train import distribution

logger = logging.getLogger(__name__)

__all__ = [
    "add_weight_decay",
    "decayed_variables",
    "learning_rate_at",
    "learning_rate_callback",
    "make_optimizer",
    "make_strategy",
]


def learning_rate_at(
    epoch: int, train: TrainConfig, step: int = 0, steps_per_epoch: int = 1
) -> float:
    """The learning rate of batch `step` of 0-based `epoch`, as the IE-Net release steps
    PyTorch's schedulers, counted in units of `1 / steps_per_epoch` epochs.

    Per epoch (`steps_per_epoch=1`, the release's): without warm-up (CIFAR), cosine
    annealing to 0 over the epochs, `lr_e = lr / 2 * (1 + cos(pi * e / E))`, PyTorch's
    `CosineAnnealingLR` stepped once per epoch. With `W` warm-up epochs (ImageNet, W = 5):
    `lr * (e + 1) / W` for `e < W`, then the cosine over the last `E - W + 1` epochs
    counted from the last warm-up epoch, `lr / 2 * (1 + cos(pi * (e - W + 1) / (E - W +
    1)))`, which is the release's `CosineAnnealingLR(T_max=E - 4)` stepped from epoch 4 on.

    Per step (`steps_per_epoch=N`, config `train.lr_per_step`): the same formulas over
    step `s = e * N + step` of `E * N`, with `W * N` warm-up steps. The per-epoch LR is
    constant within an epoch, so with a per-step IEE schedule on a short budget `q` would
    reach its sharp end (whose gradients are two orders of magnitude larger) at the last
    epoch's learning rate instead of at a learning rate annealed towards 0 (see
    docs/results.md, "the campaign's IE-Net collapse").
    """
    n = steps_per_epoch
    base, warmup = train.learning_rate, train.warmup_epochs * n
    s = epoch * n + step
    if s < warmup:
        return base * (s + 1) / warmup
    if train.lr_schedule == "constant":
        return base
    start = max(warmup - 1, 0)
    progress = min((s - start) / (train.epochs * n - start), 1.0)
    return 0.5 * base * (1.0 + math.cos(math.pi * progress))


def learning_rate_callback(
    train: TrainConfig, steps_per_epoch: int | None
) -> tf.keras.callbacks.Callback:
    """The callback that applies `learning_rate_at`: Keras' `LearningRateScheduler` once
    per epoch, or with `train.lr_per_step` a `PerStepLearningRate` over `steps_per_epoch`
    steps (required then)."""
    if not train.lr_per_step:
        return tf.keras.callbacks.LearningRateScheduler(
            lambda epoch: learning_rate_at(epoch, train)
        )
    if steps_per_epoch is None:
        raise ValueError("train.lr_per_step needs the number of steps per epoch.")
    return PerStepLearningRate(
        lambda epoch, step: learning_rate_at(epoch, train, step, steps_per_epoch)
    )


def make_optimizer(train: TrainConfig) -> tf.keras.optimizers.Optimizer:
    """SGD with momentum in PyTorch's form (`"sgd"`, the release's; `torch_form.TorchSGD`),
    Keras' SGD (`"keras_sgd"`) or Adam; the learning rate is set by
    `learning_rate_callback`, weight decay is a loss term (see `add_weight_decay`); with
    `train.clip_norm` the gradient (weight decay included) is clipped to that global norm.
    Under `mixed_float16` it is wrapped in Keras' `LossScaleOptimizer` (dynamic loss
    scaling; the gradients are unscaled before clipping and the update)."""
    clip = {"global_clipnorm": train.clip_norm}
    if train.optimizer == "adam":
        optimizer = tf.keras.optimizers.Adam(train.learning_rate, **clip)
    elif train.optimizer == "keras_sgd":
        optimizer = tf.keras.optimizers.SGD(train.learning_rate, momentum=train.momentum, **clip)
    else:
        optimizer = TorchSGD(train.learning_rate, momentum=train.momentum, **clip)
    if train.mixed_precision == "mixed_float16":
        return tf.keras.mixed_precision.LossScaleOptimizer(optimizer)
    return optimizer


_CONV_AND_FC_WEIGHTS = ("kernel", "depthwise_kernel", "alpha", "bias")


def _weight_name(variable: tf.Variable) -> str:
    return variable.name.split("/")[-1].split(":")[0]


def _conv_and_fc(model: tf.keras.Model) -> set[str]:
    """Names of the variables the ImageNet release decays: every convolution's kernel,
    alpha and bias except the real-valued 1x1 downsampling projections, and the
    classifier's kernel and bias (the release decays parameters whose name contains 'conv'
    or 'fc'); not BatchNorm, thresholds, lambdas or Elastic-Link gammas."""
    names = set()
    for layer in model.submodules:
        if isinstance(layer, (tf.keras.layers.Conv2D, tf.keras.layers.Dense)):
            if layer.name.endswith(PROJECTION_SUFFIX):
                continue
            for weight in layer.trainable_weights:
                if _weight_name(weight) in _CONV_AND_FC_WEIGHTS:
                    names.add(weight.name)
    return names


def decayed_variables(model: tf.keras.Model, scope: str) -> list[tf.Variable]:
    """The trainable variables weight decay applies to under `scope` (see
    `config.WEIGHT_DECAY_SCOPES`)."""
    if scope == "all":
        return list(model.trainable_variables)
    if scope == "conv_and_fc":
        names = _conv_and_fc(model)
        return [v for v in model.trainable_variables if v.name in names]
    return [v for v in model.trainable_variables if _weight_name(v) in ("kernel", "alpha")]


def add_weight_decay(model: tf.keras.Model, weight_decay: float, scope: str) -> int:
    """Add PyTorch-style (coupled) weight decay: `0.5 * wd * sum ||v||^2` over the chosen
    variables, so `wd * v` joins the gradient before momentum. `scope="all"` decays every
    trainable parameter (CIFAR recipe); `"conv_and_fc"` the convolutions and classifier
    as the ImageNet release does (see `decayed_variables`); `"kernels_and_alpha"` every
    conv/dense kernel and alpha. Returns the number of decayed variables."""
    if weight_decay <= 0:
        return 0
    decayed = decayed_variables(model, scope)

    def l2_term():
        return 0.5 * weight_decay * tf.add_n([tf.reduce_sum(tf.square(v)) for v in decayed])

    model.add_loss(l2_term)
    return len(decayed)


def make_strategy(name: str) -> tf.distribute.Strategy:
    """The `tf.distribute` strategy for `train.strategy`. `multi_worker` reads the cluster
    from the `TF_CONFIG` environment variable and must be made before any other TensorFlow
    op of the process (`train` makes it first). A strategy that finds a single replica
    where several were meant says so in one line on stderr (the `ienet_tf` logger)."""
    if name == "mirrored":
        strategy = tf.distribute.MirroredStrategy()
        if strategy.num_replicas_in_sync == 1:
            logger.warning("mirrored strategy found 1 device: training on one replica")
        return strategy
    if name == "multi_worker":
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
        if distribution.worker(strategy) is None:
            logger.warning(
                "multi_worker strategy found no cluster of several workers in TF_CONFIG: "
                f"training as one worker on {strategy.num_replicas_in_sync} replica(s)"
            )
        return strategy
    if name == "tpu":
        try:
            resolver = tf.distribute.cluster_resolver.TPUClusterResolver()
            tf.config.experimental_connect_to_cluster(resolver)
            tf.tpu.experimental.initialize_tpu_system(resolver)
        except (ValueError, tf.errors.OpError) as error:
            raise UsageError(
                f"train.strategy 'tpu': no TPU could be reached ({one_line(error, 160)}); run "
                "on a TPU host, or choose another train.strategy."
            ) from None
        return tf.distribute.TPUStrategy(resolver)
    return tf.distribute.get_strategy()
