"""Keras callbacks for IE-Net training."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

import tensorflow as tf

from ienet_tf import inspection
from ienet_tf.batch_norm import batch_norm_layers, reestimate_batch_norm
from ienet_tf.checks import is_positive_int
from ienet_tf.errors import UsageError
from ienet_tf.inspection import iee_quantizers
from ienet_tf.quantizers import IEESign
from ienet_tf.registration import register
from ienet_tf.schedule import DEFAULT_T_MAX, DEFAULT_T_MIN, iee_q, validate_schedule

__all__ = [
    "BatchNormReestimation",
    "BinaryStatsLogger",
    "IEESchedule",
    "PerStepLearningRate",
    "iee_quantizers",
]


@register
class IEESchedule(tf.keras.callbacks.Callback):
    """Sets the sharpness `q` of every IEE quantizer in the model, per epoch or per step.

    Per epoch (the default, the release's): before 0-based epoch `e` of `epochs`,
    `q = 10^(t_min + (t_max - t_min) * e / epochs)`. Per step (`steps_per_epoch=N`): before
    step `s = e * N + b` (batch `b` of epoch `e`) of `S = epochs * N`,
    `q = 10^(t_min + (t_max - t_min) * s / S)`, so a short budget still anneals `q`
    smoothly instead of in `epochs` jumps (see `ienet_tf.schedule.iee_q`).

    Keras passes the real epoch index to `on_epoch_begin`, so a run resumed at epoch `e`
    (`BackupAndRestore`, `initial_epoch=e`, `ienet train`) trains with epoch `e`'s (or step
    `e * N`'s) `q`. The `q` of the epoch's last step is added to the epoch logs as `iee_q`
    (progress bar, CSV, TensorBoard).

    ```python
    model.fit(ds, epochs=E, callbacks=[IEESchedule(epochs=E)])
    model.fit(ds, epochs=E, callbacks=[IEESchedule(epochs=E, steps_per_epoch=len(ds))])
    ```

    # Arguments
        epochs: length of the schedule, normally the `epochs` given to `fit`.
        t_min: `log10(q)` at the first epoch (paper: -2).
        t_max: `log10(q)` the schedule approaches at the end (paper: 1).
        steps_per_epoch: update `q` before every training step of an epoch of this many
            steps; `None` (default) updates it once per epoch.
        verbose: print the new `q` at the start of each epoch.
    """

    def __init__(
        self,
        epochs: int,
        t_min: float = DEFAULT_T_MIN,
        t_max: float = DEFAULT_T_MAX,
        steps_per_epoch: int | None = None,
        verbose: int = 0,
    ):
        super().__init__()
        validate_schedule(epochs, t_min, t_max)
        if steps_per_epoch is not None and not is_positive_int(steps_per_epoch):
            raise ValueError(
                f"`steps_per_epoch` must be a positive integer or None, got {steps_per_epoch!r}."
            )
        self.epochs = epochs
        self.t_min = float(t_min)
        self.t_max = float(t_max)
        self.steps_per_epoch = None if steps_per_epoch is None else int(steps_per_epoch)
        self.verbose = verbose
        self._epoch = 0
        self._q: float | None = None

    def q_at(self, epoch: int, step: int = 0) -> float:
        """`q` at batch `step` of 0-based `epoch` (`step` counts only per step)."""
        if self.steps_per_epoch is None:
            return iee_q(epoch, self.epochs, self.t_min, self.t_max)
        n = self.steps_per_epoch
        # Past the end of an epoch (a data set longer than declared) q keeps growing, and
        # iee_q clamps it at 10^t_max past the end of the schedule.
        return iee_q(epoch * n + step, self.epochs * n, self.t_min, self.t_max)

    def _assign(self, q: float) -> None:
        self._q = q
        for quantizer in iee_quantizers(self.model):
            quantizer.q.assign(q)

    def on_train_begin(self, logs=None):
        if not any(True for _ in iee_quantizers(self.model)):
            tf.get_logger().warning(
                "IEESchedule: the model has no IEE quantizer, the callback does nothing."
            )
        fit_epochs = (self.params or {}).get("epochs")
        if fit_epochs is not None and fit_epochs < self.epochs:
            # q would stop short of 10^t_max: a schedule made for another budget.
            last = self.q_at(fit_epochs - 1, (self.steps_per_epoch or 1) - 1)
            tf.get_logger().warning(
                f"IEESchedule(epochs={self.epochs}) in a fit of {fit_epochs} epochs: q ends at "
                f"{last:.3g}, not 10^{self.t_max:g}; give IEESchedule the fit's epochs."
            )

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch
        self._assign(self.q_at(epoch))
        if self.verbose:
            print(f"\nEpoch {epoch + 1}: IEESchedule sets q = {self._q:.4g}")

    def on_train_batch_begin(self, batch, logs=None):
        if self.steps_per_epoch is not None and batch > 0:  # batch 0: set by on_epoch_begin
            self._assign(self.q_at(self._epoch, batch))

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None and self._q is not None:
            logs["iee_q"] = self._q

    def get_config(self):
        return {
            "epochs": self.epochs,
            "t_min": self.t_min,
            "t_max": self.t_max,
            "steps_per_epoch": self.steps_per_epoch,
            "verbose": self.verbose,
        }


class PerStepLearningRate(tf.keras.callbacks.Callback):
    """Sets the optimizer's learning rate before every training step to
    `schedule(epoch, step)` (0-based epoch, batch index within it): Keras'
    `LearningRateScheduler` at the granularity of `IEESchedule(steps_per_epoch=N)`.

    Like `LearningRateScheduler` it uses the real epoch index, so a run resumed at epoch
    `e` continues the schedule there, and it adds the learning rate of the epoch's last
    step to the epoch logs as `lr`.

    ```python
    n = len(ds)
    lr = PerStepLearningRate(lambda e, b: 0.05 * (1 + math.cos(math.pi * (e * n + b) / (E * n))))
    model.fit(ds, epochs=E, callbacks=[lr, IEESchedule(E, steps_per_epoch=n)])
    ```

    # Arguments
        schedule: a function of `(epoch, step)` returning the learning rate (a float).
    """

    def __init__(self, schedule: Callable[[int, int], float]):
        super().__init__()
        self.schedule = schedule
        self._epoch = 0
        self._lr: float | None = None

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_begin(self, batch, logs=None):
        self._lr = float(self.schedule(self._epoch, batch))
        tf.keras.backend.set_value(self.model.optimizer.learning_rate, self._lr)

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None and self._lr is not None:
            logs["lr"] = self._lr


class BatchNormReestimation(tf.keras.callbacks.Callback):
    r"""Before every evaluation pass (`fit`'s validation at the end of each epoch, or an
    `evaluate(..., callbacks=[...])`), sets every trainable BatchNorm's moving statistics to
    the mean of its batch statistics over `batches` (`reestimate_batch_norm`):

    \[ \mu = \frac{1}{N} \sum_n \mu_n, \qquad \sigma^2 = \frac{1}{N} \sum_n \sigma_n^2 \]

    So the validation metrics, and what a checkpoint callback or keras-tuner saves at the
    end of a validated epoch, belong to the network as it is rather than to moving averages
    taken while its weights (and binary codes) were changing. The gradient steps are
    unaffected (training-mode passes normalize with their own batch's statistics); the
    moving averages restart from the re-estimated values after each pass. Each pass costs
    `len(batches)` forward passes in training mode.

    `batches` must be iterable again at every pass (a `tf.data.Dataset`, a list, not an
    iterator); use un-augmented training images, never the validation split it is scored
    on.

    ```python
    plain = ienet_tf.train.reestimation_batches(config, 100)  # or any un-augmented batches
    model.fit(train, validation_data=val, epochs=8, callbacks=[BatchNormReestimation(plain)])
    ```

    # Arguments
        batches: batches of images, or of `(images, labels)` pairs.
    """

    def __init__(self, batches: Iterable):
        super().__init__()
        if isinstance(batches, Iterator):
            raise UsageError(
                "BatchNormReestimation: `batches` is an iterator, empty after the first "
                "pass; give a tf.data.Dataset or a list."
            )
        self.batches = batches
        self.batches_used = 0  # by the last pass

    def on_train_begin(self, logs=None):
        if not batch_norm_layers(self.model):  # now, not after the first epoch
            raise UsageError(
                f"BatchNormReestimation: {self.model.name} has no BatchNormalization layer."
            )

    def on_test_begin(self, logs=None):
        self.batches_used = reestimate_batch_norm(self.model, self.batches)


@register
class BinaryStatsLogger(tf.keras.callbacks.Callback):
    """Writes IEE and binary-kernel statistics to TensorBoard at the end of every `every`-th
    epoch (step = the 0-based epoch, as Keras' TensorBoard callback):

    - `iee/q`, `iee/r`: the sharpness `q` of the model's IEE quantizers during the epoch
      (the weight quantizer's when there is one; `IEESchedule` gives all the same `q`) and
      `r = max(1/q, 1)`; absent when the model has no IEE quantizer;
    - `binary_entropy/<layer>`: `inspection.binary_weight_entropy` of each binary layer's
      binarized kernel, in bits;
    - `flip_ratio/<layer>`: `inspection.flip_ratio`, the fraction of that kernel's signs
      that changed since the previous logged epoch (or since the start of `fit`).

    Cheap: numpy on the kernels only, no data passes.

    ```python
    model.fit(ds, epochs=E, callbacks=[IEESchedule(E), BinaryStatsLogger("runs/x/tensorboard")])
    ```

    # Arguments
        log_dir: TensorBoard log directory (the scalars go to its root).
        every: log every `every` epochs (a positive integer).
    """

    def __init__(self, log_dir: str, every: int = 1):
        super().__init__()
        if not is_positive_int(every):
            raise ValueError(f"`every` must be a positive integer, got {every!r}.")
        self.log_dir = str(log_dir)
        self.every = every
        self._writer = None
        self._previous: dict[str, object] = {}

    def _binary_kernels(self) -> dict:
        return {
            layer.name: inspection.binary_kernel(layer)
            for layer in inspection.binary_kernel_layers(self.model)
        }

    def on_train_begin(self, logs=None):
        self._writer = tf.summary.create_file_writer(self.log_dir)
        self._previous = self._binary_kernels()

    def on_epoch_end(self, epoch, logs=None):
        if (epoch + 1) % self.every:
            return
        found = list(iee_quantizers(self.model))
        weight_quantizers = [q for q in found if isinstance(q, IEESign)]
        kernels = self._binary_kernels()
        with self._writer.as_default(step=epoch):
            if found:
                quantizer = (weight_quantizers or found)[0]
                tf.summary.scalar("iee/q", float(quantizer.q.numpy()))
                tf.summary.scalar("iee/r", float(quantizer.r.numpy()))
            for name, binary in kernels.items():
                entropy = inspection.binary_weight_entropy(binary)
                tf.summary.scalar(f"binary_entropy/{name}", entropy)
                if name in self._previous:
                    flips = inspection.flip_ratio(self._previous[name], binary)
                    tf.summary.scalar(f"flip_ratio/{name}", flips)
        self._writer.flush()
        self._previous = kernels

    def on_train_end(self, logs=None):
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def get_config(self):
        return {"log_dir": self.log_dir, "every": self.every}
