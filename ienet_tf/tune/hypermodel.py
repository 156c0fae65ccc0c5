"""The keras-tuner `HyperModel` of `ienet tune`: K, the IEE schedule range, the learning rate."""

from __future__ import annotations

import warnings
from collections.abc import Callable

import tensorflow as tf

from ienet_tf import callbacks, compat, extras
from ienet_tf.config import Config, TuneFileConfig
from ienet_tf.train import (
    add_weight_decay,
    build_model,
    compile_model,
    learning_rate_callback,
    reestimation_batches,
    steps_per_epoch,
    training_model,
)

kt = extras.require("keras_tuner")

__all__ = ["IENetHyperModel", "held_out", "trial_config"]


def held_out(config: Config) -> int:
    """How many training examples a search holds out for its objective:
    `data.validation_examples`, else `tune.validation_examples`."""
    tune = getattr(config, "tune", None)
    return config.data.validation_examples or (tune.validation_examples if tune else 0)


def trial_config(base: Config, values: dict) -> Config:
    """The training config of one trial: `base` with the trial's K, T range and lr, and the
    search's held-out examples as its validation split (so that `ienet train` on it trains
    on exactly the examples the trial trained on).

    `values` are keras-tuner hyperparameter values: `k`, `t_center`, `t_width` and, when
    searched, `learning_rate`; `t_min = t_center - t_width/2`, `t_max = t_center + t_width/2`.
    """
    half = values["t_width"] / 2.0
    train = base.train
    if "learning_rate" in values:
        train = train.replace(learning_rate=float(values["learning_rate"]))
    return Config(
        model=base.model.replace(k=int(values["k"])),
        data=base.data.replace(validation_examples=held_out(base) or None),
        train=train,
        iee=base.iee.replace(t_min=values["t_center"] - half, t_max=values["t_center"] + half),
    )


class IENetHyperModel(kt.HyperModel):
    """Builds the config's model for a trial's K and learning rate, and trains it with the
    trial's IEE schedule (`IEESchedule` over the epochs keras-tuner asks for).

    A trial's score is its best epoch's validation metric; with
    `train.bn_reestimation_batches: N`, every epoch is validated with BatchNorm statistics
    re-estimated on N un-augmented training batches (`callbacks.BatchNormReestimation`),
    the statistics `ienet train` gives its final model. Validate on
    `tune.validation_split(config)`; a search given the test split warns (its best trial
    would be chosen on the numbers it reports).

    `build(trial_config)` builds a trial's network instead of the registry's (a user's own
    model with IEE quantizers, say): it is given the trial's `Config` (K in `model.k`).

    ```python
    train, validation = tune.validation_split(config)
    tuner = kt.RandomSearch(IENetHyperModel(config, build=my_network), "val_accuracy", 10)
    tuner.search(train, validation_data=validation, epochs=config.train.epochs)
    ```
    """

    def __init__(
        self, config: TuneFileConfig, build: Callable[[Config], tf.keras.Model] | None = None
    ):
        super().__init__(name=f"{config.model.name}_{config.model.variant}")
        self.config = config
        self.builder = build or build_model

    def _values(self, hp: kt.HyperParameters) -> dict:
        tune = self.config.tune
        values = {
            "k": hp.Int("k", tune.k[0], tune.k[1]),
            "t_center": hp.Float("t_center", *tune.t_center),
            "t_width": hp.Float("t_width", *tune.t_width),
        }
        if tune.learning_rate is not None:
            values["learning_rate"] = hp.Float("learning_rate", *tune.learning_rate, sampling="log")
        return values

    def trial_config(self, hp: kt.HyperParameters) -> Config:
        return trial_config(self.config, self._values(hp))

    def build(self, hp: kt.HyperParameters) -> tf.keras.Model:
        # Each trial builds a new model: free the previous ones' graphs (see
        # `compat.forget_custom_gradients`), or a long search keeps every trial's kernels.
        tf.keras.backend.clear_session()
        compat.forget_custom_gradients()
        config = self.trial_config(hp)
        model = training_model(config, self.builder(config))
        add_weight_decay(model, config.train.weight_decay, config.train.weight_decay_on)
        compile_model(model, config)
        return model

    def fit(self, hp: kt.HyperParameters, model: tf.keras.Model, *args, **kwargs):
        config = self.trial_config(hp)
        epochs = kwargs.get("epochs", config.train.epochs)
        warmup = min(config.train.warmup_epochs, epochs - 1)
        train = config.train.replace(epochs=epochs, warmup_epochs=warmup)
        steps = None
        if (config.iee.per_step or train.lr_per_step) and args:
            steps = steps_per_epoch(args[0])
        schedule = [
            callbacks.IEESchedule(
                epochs, config.iee.t_min, config.iee.t_max, steps if config.iee.per_step else None
            ),
            learning_rate_callback(train, steps),
        ]
        if config.train.bn_reestimation_batches:
            # Every validation pass sees re-estimated statistics, so the trial's score, the
            # checkpoint keras-tuner keeps and Hyperband's promotions agree with each other.
            batches = reestimation_batches(config, config.train.bn_reestimation_batches)
            schedule.insert(0, callbacks.BatchNormReestimation(batches))
        if getattr(kwargs.get("validation_data"), "ienet_split", None) == "test":
            warnings.warn(
                "IENetHyperModel: the search validates on the test split, so its best trial is "
                "chosen on the test numbers; validate on tune.validation_split(config).",
                stacklevel=2,
            )
        kwargs["callbacks"] = [*kwargs.get("callbacks", []), *schedule]
        return model.fit(*args, **kwargs)
