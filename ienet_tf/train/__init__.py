"""Training and evaluation of configs (`ienet train`, `ienet evaluate`)."""

from ienet_tf.train.recipes import (
    add_weight_decay,
    decayed_variables,
    learning_rate_at,
    make_optimizer,
    make_strategy,
)
from ienet_tf.train.trainer import (
    TrainingError,
    build_model,
    compile_model,
    data_options,
    evaluate,
    iee_schedule,
    load_datasets,
    load_run,
    model_input_shape,
    start_from_weights,
    steps_per_epoch,
    test_images,
    train,
    train_examples,
    training_model,
)

__all__ = [
    "TrainingError",
    "add_weight_decay",
    "build_model",
    "compile_model",
    "decayed_variables",
    "data_options",
    "evaluate",
    "iee_schedule",
    "learning_rate_at",
    "load_datasets",
    "load_run",
    "make_optimizer",
    "make_strategy",
    "model_input_shape",
    "start_from_weights",
    "steps_per_epoch",
    "test_images",
    "train",
    "train_examples",
    "training_model",
]
