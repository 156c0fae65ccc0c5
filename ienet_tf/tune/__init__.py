"""Hyperparameter search over K and the IEE schedule range with keras-tuner (`ienet tune`)."""

from ienet_tf.tune.hypermodel import IENetHyperModel, trial_config
from ienet_tf.tune.search import COLUMNS, run_search, validation_split

__all__ = ["COLUMNS", "IENetHyperModel", "run_search", "trial_config", "validation_split"]
