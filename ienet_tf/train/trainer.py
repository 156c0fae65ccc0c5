"""`ienet train` / `ienet evaluate`: one config, one output directory.

The output directory holds everything a run needs to continue or be judged:

    config.yaml            the resolved config (a rerun must match it)
    backup/                BackupAndRestore state (deleted by Keras when training ends)
    checkpoints/best.keras best test accuracy so far;  checkpoints/last.keras  last epoch
    tensorboard/           TensorBoard logs;           history.csv  per-epoch metrics
    model.keras            the final model;            metrics.json final metrics

Killing a run (even `kill -9`) and rerunning the same command continues at the interrupted
epoch with that epoch's learning rate and IEE `q`. Rerunning a finished run does nothing.
"""

from __future__ import annotations

import csv
import json
import os
import time
from pathlib import Path

import tensorflow as tf

from ienet_tf import callbacks, data, models
from ienet_tf import config as config_lib
from ienet_tf.io import write_atomically
from ienet_tf.train import recipes

__all__ = [
    "TrainingError",
    "build_model",
    "compile_model",
    "data_options",
    "evaluate",
    "load_datasets",
    "load_run",
    "train",
]


class TrainingError(RuntimeError):
    """A run that cannot go on (diverged, or an output directory of another run)."""


def _input_shape(config: config_lib.Config) -> tuple[int, int, int]:
    shape = tuple(data.info(config.data.name).input_shape)
    if config.model.input_shape is not None and tuple(config.model.input_shape) != shape:
        raise config_lib.ConfigError(
            f"model.input_shape {list(config.model.input_shape)} does not match what "
            f"data set {config.data.name!r} yields ({list(shape)}); remove it or change it."
        )
    return shape


def build_model(config: config_lib.Config) -> tf.keras.Model:
    """The config's model at its data set's input shape and number of classes."""
    return models.build(
        config.model.name,
        variant=config.model.variant,
        k=config.model.k,
        num_classes=data.info(config.data.name).num_classes,
        input_shape=_input_shape(config),
        recovery_ratio=config.model.recovery_ratio,
        erase_threshold=config.model.erase_threshold,
    )


def _metrics(config: config_lib.Config) -> list:
    metrics = ["accuracy"]
    if config.data.name == "imagenet2012":
        metrics.append(tf.keras.metrics.SparseTopKCategoricalAccuracy(5, name="top5"))
    return metrics


def compile_model(model: tf.keras.Model, config: config_lib.Config) -> None:
    """Compile with the config's optimizer, cross-entropy on logits and its metrics."""
    model.compile(
        optimizer=recipes.make_optimizer(config.train),
        loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=_metrics(config),
    )


def data_options(config: config_lib.Config) -> dict:
    """The `data.load` keyword arguments that every split of a config shares."""
    d = config.data
    return {
        "data_dir": d.data_dir,
        "manual_dir": d.manual_dir,
        "seed": config.train.seed,
        "download": d.download,
        "batch_size": config.train.batch_size,
    }


def load_datasets(config: config_lib.Config, splits=("train", "test")) -> dict:
    """The batched train and/or test pipelines of a config ("test" is ImageNet's validation
    split, its labelled held-out set)."""
    d = config.data
    return {
        split: data.load(
            d.name,
            split,
            training=split == "train",
            subset=d.subset if split == "train" else d.test_subset,
            **data_options(config),
        )
        for split in splits
    }


def _save_model_atomically(model: tf.keras.Model, path: Path) -> None:
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    model.save(tmp)
    os.replace(tmp, path)


def _prepare_output_dir(config: config_lib.Config, output_dir: Path) -> bool:
    """Create the directory or check it holds this config. True if the run is finished."""
    output_dir.mkdir(parents=True, exist_ok=True)
    saved = output_dir / "config.yaml"
    if saved.exists():
        previous = config_lib.load(saved)
        if previous != config:
            old, new = config_lib.to_dict(previous), config_lib.to_dict(config)
            diffs = [
                f"{section}.{key}: {old[section][key]!r} -> {new[section][key]!r}"
                for section in new
                for key in new[section]
                if old[section][key] != new[section][key]
            ]
            raise TrainingError(
                f"{output_dir} holds a run with a different config ({'; '.join(diffs)}); "
                "use another --output-dir, or the same config to resume it."
            )
        metrics = output_dir / "metrics.json"
        return metrics.exists() and json.loads(metrics.read_text()).get("completed", False)
    write_atomically(saved, config_lib.dump(config))
    return False


class _StopOnNaN(tf.keras.callbacks.TerminateOnNaN):
    """Keras' TerminateOnNaN, remembering that it fired."""

    fired = False

    def on_batch_end(self, batch, logs=None):
        super().on_batch_end(batch, logs)
        self.fired = self.fired or bool(self.model.stop_training)


def train(config: config_lib.Config, output_dir: str | Path, verbose: int | str = "auto") -> dict:
    """Train `config` into `output_dir` (resuming it if interrupted); returns the metrics."""
    output_dir = Path(output_dir)
    if _prepare_output_dir(config, output_dir):
        return json.loads((output_dir / "metrics.json").read_text())
    tf.keras.utils.set_random_seed(config.train.seed)
    datasets = load_datasets(config)
    strategy = recipes.make_strategy(config.train.strategy)
    with strategy.scope():
        model = build_model(config)
        recipes.add_weight_decay(model, config.train.weight_decay, config.train.weight_decay_on)
        compile_model(model, config)
    (output_dir / "checkpoints").mkdir(exist_ok=True)
    stop_on_nan = _StopOnNaN()
    train_cfg = config.train
    fit_callbacks = [
        callbacks.IEESchedule(train_cfg.epochs, config.iee.t_min, config.iee.t_max),
        tf.keras.callbacks.LearningRateScheduler(
            lambda epoch: recipes.learning_rate_at(epoch, train_cfg)
        ),
        tf.keras.callbacks.BackupAndRestore(str(output_dir / "backup")),
        tf.keras.callbacks.ModelCheckpoint(
            str(output_dir / "checkpoints" / "best.keras"),
            monitor="val_accuracy",
            mode="max",
            save_best_only=True,
        ),
        tf.keras.callbacks.ModelCheckpoint(str(output_dir / "checkpoints" / "last.keras")),
        tf.keras.callbacks.TensorBoard(str(output_dir / "tensorboard")),
        tf.keras.callbacks.CSVLogger(str(output_dir / "history.csv"), append=True),
        stop_on_nan,
    ]
    if train_cfg.log_binary_stats:
        log_dir = str(output_dir / "tensorboard" / "binary_stats")
        fit_callbacks.append(callbacks.BinaryStatsLogger(log_dir))
    start = time.perf_counter()
    history = model.fit(
        datasets["train"],
        validation_data=datasets["test"],
        epochs=train_cfg.epochs,
        callbacks=fit_callbacks,
        verbose=verbose,
    )
    wall_time = time.perf_counter() - start
    if stop_on_nan.fired:
        raise TrainingError(
            f"training diverged (NaN loss) in {output_dir}; lower train.learning_rate."
        )
    # The last epoch's validation pass already evaluated the final weights on the test
    # split; a run resumed after its last epoch (0 epochs this time) evaluates again.
    results = {
        key[4:]: values[-1] for key, values in history.history.items() if key.startswith("val_")
    }
    if not results:
        results = model.evaluate(datasets["test"], verbose=0, return_dict=True)
    _save_model_atomically(model, output_dir / "model.keras")
    with (output_dir / "history.csv").open() as log:  # every epoch, across resumptions
        accuracies = [float(row["val_accuracy"]) for row in csv.DictReader(log)]
    metrics = {
        "completed": True,
        "model": model.name,
        "test_accuracy": float(results["accuracy"]),
        **({"test_top5": float(results["top5"])} if "top5" in results else {}),
        "best_test_accuracy": max(accuracies, default=float(results["accuracy"])),
        "epochs": train_cfg.epochs,
        "epochs_this_invocation": len(history.history.get("loss", [])),
        "wall_time_s": wall_time,
    }
    write_atomically(output_dir / "metrics.json", json.dumps(metrics, indent=2))
    return metrics


def load_run(checkpoint_dir: str | Path, which: str = "final"):
    """The config and the saved model (`final`, `best` or `last`) of a run directory."""
    run = Path(checkpoint_dir)
    if not (run / "config.yaml").exists():
        raise TrainingError(f"{run} is not an `ienet train` output directory (no config.yaml).")
    config = config_lib.load(run / "config.yaml")
    path = run / "model.keras" if which == "final" else run / "checkpoints" / f"{which}.keras"
    if not path.exists():
        hint = "the run has not finished" if which == "final" else "no epoch has finished"
        raise TrainingError(f"{path} does not exist ({hint}).")
    try:
        model = tf.keras.models.load_model(path, compile=False)
    except (OSError, ValueError) as error:
        raise TrainingError(f"cannot load {path}: {error}") from None
    return config, model


def evaluate(checkpoint_dir: str | Path, which: str = "final") -> dict:
    """Top-1 (and top-5 on ImageNet) of a saved run on its test split."""
    config, model = load_run(checkpoint_dir, which)
    model.compile(
        loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=_metrics(config),
    )
    results = model.evaluate(load_datasets(config, ("test",))["test"], verbose=0, return_dict=True)
    return {
        "model": model.name,
        "top1": float(results["accuracy"]),
        **({"top5": float(results["top5"])} if "top5" in results else {}),
    }
