"""Search K and the IEE schedule range with keras-tuner, from Python, on your own network.

`IENetHyperModel` samples K and T_min/T_max per trial and trains each trial with its own
`IEESchedule`; `build=` makes it build your network instead of a registry model. The search
validates on examples held out of the training split (`tune.validation_split`), never on
the test split. Runs as written on the embedded digits in about a minute:
`python examples/tune_search.py`.
"""

import tempfile

import keras_tuner as kt
import tensorflow as tf

from ienet_tf import config, layers, tune


def my_network(trial: config.Config) -> tf.keras.Model:
    """A trial's network: K comes from the trial's config (`model.k`)."""
    x = tf.keras.Input((8, 8, 1))
    y = tf.keras.layers.Conv2D(16, 3, padding="same")(x)
    y = tf.keras.layers.BatchNormalization()(y)
    y = layers.IEBinaryConv2D(32, 3, k=trial.model.k)(y)
    y = tf.keras.layers.BatchNormalization()(y)
    y = tf.keras.layers.GlobalAveragePooling2D()(y)
    return tf.keras.Model(x, tf.keras.layers.Dense(10)(y))


# The search space and the training recipe: a bundled config, two small changes.
search = config.load("tune_digits", ["tune.max_trials=3", "train.epochs=4"], config.TuneFileConfig)
train, validation = tune.validation_split(search)

tuner = kt.RandomSearch(
    tune.IENetHyperModel(search, build=my_network),
    objective="val_accuracy",
    max_trials=search.tune.max_trials,
    directory=tempfile.mkdtemp(),
    seed=0,
)
tuner.search(train, validation_data=validation, epochs=search.train.epochs, verbose=0)
best = tuner.get_best_hyperparameters()[0].values
chosen = tune.trial_config(search, best)  # a complete config, as `ienet tune` writes it
print(f"best trial: K={chosen.model.k}, T_min={chosen.iee.t_min:.2f}, T_max={chosen.iee.t_max:.2f}")
