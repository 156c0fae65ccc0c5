"""`ienet train` / `ienet evaluate`: one config, one run directory (`ienet_tf.runs.Run`).

Training is a transaction on the run directory. Config, data and model are checked before
the first file is written; the directory is locked for the whole run; every epoch is
committed atomically (training checkpoint, `last`/`best` models, history, best score);
killing a run at any moment (even `kill -9`) and rerunning the same command continues at
the first uncommitted epoch with that epoch's learning rate and IEE `q`, with the best
model and score of the epochs before. Rerunning a finished run does nothing.

Model selection: with `data.validation_examples: N`, the first N training examples are
held out, the per-epoch monitor and `best.keras` use them, and the run reports the test
top-1 of the final model and of the best-on-validation model. Without it the test split is
monitored, as the papers' releases do (`best_test_accuracy` is then a best-on-test number).
"""

from __future__ import annotations

import contextlib
import logging
import math
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import tensorflow as tf

from ienet_tf import callbacks, data, errors, ir2net, models, precision
from ienet_tf import config as config_lib
from ienet_tf.batch_norm import batch_norm_layers, reestimate_batch_norm
from ienet_tf.errors import RunError, UsageError
from ienet_tf.io import one_line
from ienet_tf.runs import MODEL_FILES, STATE_VERSION, Run, config_changes, training_part
from ienet_tf.train import distribution, recipes

logger = logging.getLogger(__name__)

__all__ = [
    "build_model",
    "compile_model",
    "data_options",
    "evaluate",
    "iee_schedule",
    "load_datasets",
    "load_run",
    "model_input_shape",
    "start_from_weights",
    "steps_per_epoch",
    "test_images",
    "train",
    "train_examples",
    "training_model",
]


def model_input_shape(config: config_lib.Config) -> tuple[int, int, int]:
    """The input shape the config's model is built at: its data set's (a `model.input_shape`
    that disagrees is a `ConfigError`)."""
    shape = tuple(data.info(config.data.name).input_shape)
    if config.model.input_shape is not None and tuple(config.model.input_shape) != shape:
        raise errors.ConfigError(
            f"model.input_shape {list(config.model.input_shape)} does not match what "
            f"data set {config.data.name!r} yields ({list(shape)}); remove it or change it."
        )
    return shape


def build_model(config: config_lib.Config) -> tf.keras.Model:
    """The config's classifier at its data set's input shape and number of classes, its
    layers computing under `train.mixed_precision`."""
    with precision.policy(config.train.mixed_precision):
        return models.build(
            config.model.name,
            variant=config.model.variant,
            k=config.model.k,
            num_classes=data.info(config.data.name).num_classes,
            input_shape=model_input_shape(config),
            recovery_ratio=config.model.recovery_ratio,
            compat=config.model.compat,
            **config.model.layer,
        )


def training_model(config: config_lib.Config, classifier: tf.keras.Model) -> tf.keras.Model:
    """What `fit` trains: the classifier, or, for `+ir2net` variants, the classifier wrapped
    for IR²Net's information restriction (two passes per step, the second on the input
    erased where the first paid little attention)."""
    if "ir2net" not in models.parse_variant(config.model.variant)[1]:
        return classifier
    return ir2net.InformationRestriction.wrap(
        classifier, config.model.erase_threshold, attention_norm=config.model.attention_norm
    )


def _metrics(config: config_lib.Config) -> list:
    metrics = ["accuracy"]
    if config.data.name == "imagenet2012":
        metrics.append(tf.keras.metrics.SparseTopKCategoricalAccuracy(5, name="top5"))
    return metrics


def compile_model(
    model: tf.keras.Model, config: config_lib.Config, jit_compile: bool = False
) -> None:
    """Compile with the config's optimizer, cross-entropy on logits and its metrics
    (`jit_compile`: XLA, which measured slower on CPU; see benchmarks/throughput.py)."""
    model.compile(
        optimizer=recipes.make_optimizer(config.train),
        loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=_metrics(config),
        jit_compile=jit_compile,
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
    """The batched pipelines of a config's splits: "train" (the examples after the
    held-out validation split, shuffled and augmented), "train_eval" (the same examples,
    in order and not augmented: BatchNorm re-estimation, training-set accuracy),
    "validation" (the first `data.validation_examples` training examples, not augmented)
    and "test" (ImageNet's validation split, its labelled held-out set)."""
    d = config.data
    held_out = d.validation_examples or 0
    options = data_options(config)
    pipelines = {}
    for split in splits:
        if split in ("train", "train_eval"):
            pipelines[split] = data.load(
                d.name,
                "train",
                training=split == "train",
                skip=held_out,
                subset=d.subset,
                **options,
            )
        elif split == "validation":
            if not held_out:
                raise errors.ConfigError(
                    "data.validation_examples: the config holds out no validation split; set "
                    "it, e.g. --set data.validation_examples=5000."
                )
            pipelines[split] = data.load(
                d.name, "train", training=False, subset=held_out, **options
            )
        else:
            pipelines[split] = data.load(
                d.name, "test", training=False, subset=d.test_subset, **options
            )
    return pipelines


def train_examples(config: config_lib.Config) -> int | None:
    """How many examples a config trains on (the training split less the held-out
    validation examples, cut to `data.subset`); None if the split's size is unknown."""
    size = data.info(config.data.name).train_size
    if size is None:
        return config.data.subset
    size -= config.data.validation_examples or 0
    return size if config.data.subset is None else min(size, config.data.subset)


def steps_per_epoch(dataset: tf.data.Dataset) -> int:
    """The number of batches of a finite `tf.data` pipeline."""
    steps = int(dataset.cardinality())
    if steps < 0:  # unknown: count once (the pipelines of `data.load` know theirs)
        steps = int(dataset.reduce(0, lambda count, _: count + 1))
    return steps


def iee_schedule(config: config_lib.Config, steps: int | None) -> callbacks.IEESchedule:
    """The config's `IEESchedule`: per epoch, or per step over `steps` steps per epoch."""
    return callbacks.IEESchedule(
        config.train.epochs,
        config.iee.t_min,
        config.iee.t_max,
        steps_per_epoch=steps if config.iee.per_step else None,
    )


def _check_directory(run: Run, config: config_lib.Config) -> None:
    """A directory of another config is refused once it has trained an epoch (the config
    it was trained with is recorded in state.json; config.yaml is its copy, restored from
    a matching `config` if missing or edited); before that it holds nothing to lose and
    takes the new config. The `export` section may change."""
    state = run.state()
    if state is None and not run.is_complete():
        return
    recorded = (state or {}).get("config")
    source = "recorded in state.json"
    if recorded is None:  # a run of a version that did not record it
        source = "in its config.yaml"
        recorded = training_part(config_lib.load(run.config_path)) if run.exists() else None
    new = training_part(config)
    if recorded is None or recorded == new:
        return
    changes = "; ".join(config_changes(recorded, new))
    raise RunError(
        f"{run.path} holds a run with a different config ({changes}); use another --run, or "
        f"the config it was trained with ({source}) to resume it."
    )


def _restore_models(run: Run, model: tf.keras.Model, state: dict) -> None:
    """Rewrite the committed models that a user deleted or damaged and that the restored
    training checkpoint (the last committed epoch) still holds: `last`, and `best` when the
    best epoch is the last. Anything else cannot be rebuilt and says so."""
    damaged = [which for which in run.damaged() if which in ("last", "best")]
    if not damaged:
        return
    best = state.get("best") or {}
    if "best" in damaged and best.get("epoch") != state["epochs_done"] - 1:
        raise RunError(
            f"{run.model_path('best')} is missing or damaged, and only it held the weights of "
            f"epoch {best.get('epoch')}, the best; restore it from a copy, or train into a "
            "new --run."
        )
    deployable = ir2net.inference_model(model)
    pending = {which: run.write_pending(which, deployable.save) for which in damaged}
    restored = run.commit(state, pending)["artefacts"]
    metrics = run.metrics()
    if metrics is not None:  # a complete run's record names them too
        run.commit({**metrics, "artefacts": restored}, {}, final=True)


def _read_checkpoint(run: Run, checkpoint: tf.train.Checkpoint, state: dict) -> None:
    path = run.resume_dir / str(state.get("resume")) / "checkpoint"
    try:
        checkpoint.read(str(path)).assert_consumed()
    except Exception as error:  # any way a cut or edited checkpoint fails to read
        raise RunError(
            f"{path.parent} (the resume checkpoint state.json names) is missing or damaged "
            f"({one_line(error, 160)}); the run cannot continue from it: train into a new "
            "--run (the models in checkpoints/ stay readable)."
        ) from None


class _StopOnNaN(tf.keras.callbacks.TerminateOnNaN):
    """Keras' TerminateOnNaN, remembering that it fired."""

    fired = False

    def on_batch_end(self, batch, logs=None):
        super().on_batch_end(batch, logs)
        self.fired = self.fired or bool(self.model.stop_training)


class _EpochCommit(tf.keras.callbacks.Callback):
    """Commits every finished epoch to the run directory: the training checkpoint, the
    `last` model, the `best` model when the monitored score improved, the history row, the
    best score and epoch, and the wall time (see `ienet_tf.runs`)."""

    def __init__(self, run: Run, checkpoint: tf.train.Checkpoint, state: dict, monitor: str):
        super().__init__()
        self.run, self.checkpoint, self.state, self.monitor = run, checkpoint, state, monitor
        self.epochs_trained = 0
        self._start = 0.0

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    diverged: int | None = None  # the first epoch with a non-finite loss or metric

    def on_epoch_end(self, epoch, logs=None):
        logs = dict(logs or {})
        if not all(math.isfinite(float(v)) for v in logs.values()):
            # Never committed, and the end of training: the trainer reports it.
            self.diverged, self.model.stop_training = epoch, True
            return
        final = self.run.write_resume(epoch, self.checkpoint.write)
        deployable = ir2net.inference_model(self.model)  # what evaluate and export read
        pending = {"last": self.run.write_pending("last", deployable.save)}
        best = self.state.get("best")
        score = float(logs[self.monitor])
        if best is None or score > best["value"]:
            pending["best"] = self.run.write_pending("best", deployable.save)
            best = {"monitor": self.monitor, "value": score, "epoch": epoch}
        elapsed = time.perf_counter() - self._start
        row = {"epoch": epoch, **{k: float(v) for k, v in logs.items()}, "time_s": elapsed}
        history = [r for r in self.state.get("history", []) if r["epoch"] < epoch] + [row]
        self.state = self.run.commit(
            {
                **self.state,
                "epochs_done": epoch + 1,
                "history": history,
                "best": best,
                "resume": final.name,
                "wall_time_s": self.state.get("wall_time_s", 0.0) + elapsed,
            },
            pending,
        )
        self.epochs_trained += 1


def fit_verbose(verbose: int | str) -> int:
    """Keras' `verbose` for progress on stderr: "auto" is a progress bar on a terminal and
    one line per epoch elsewhere (a bar rewrites its line with '\\r' and '\\b': in a log
    file, thousands of them)."""
    if verbose == "auto":
        return 1 if sys.stderr.isatty() else 2
    return int(verbose)


def _evaluate(model: tf.keras.Model, dataset, config: config_lib.Config | None) -> dict:
    """Keras' results (`accuracy`, and `top5` on ImageNet) of `model` on `dataset`."""
    model.compile(
        loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"] if config is None else _metrics(config),
    )
    return model.evaluate(dataset, verbose=0, return_dict=True)


#: The strategy class each `train.strategy` name makes (a strategy passed to `train`
#: that is not one is worth a warning).
_STRATEGY_CLASSES = {
    "mirrored": tf.distribute.MirroredStrategy,
    "multi_worker": tf.distribute.MultiWorkerMirroredStrategy,
    "tpu": tf.distribute.TPUStrategy,
}


def _strategy(
    config: config_lib.Config, strategy: tf.distribute.Strategy | None
) -> tf.distribute.Strategy:
    """The strategy to train under: the one given, else the one `train.strategy` names."""
    if strategy is None:
        return recipes.make_strategy(config.train.strategy)
    if not isinstance(strategy, tf.distribute.Strategy):
        raise ValueError(f"strategy must be a tf.distribute.Strategy, got {strategy!r}.")
    named = config.train.strategy
    if named != "default" and not isinstance(strategy, _STRATEGY_CLASSES[named]):
        logger.warning(
            f"train(strategy={type(strategy).__name__}) overrides train.strategy {named!r}"
        )
    return strategy


def train(
    config: config_lib.Config,
    output_dir: str | Path,
    verbose: int | str = "auto",
    strategy: tf.distribute.Strategy | None = None,
) -> dict:
    """Train `config` into `output_dir` (resuming it if interrupted); returns the metrics.

    Nothing is written before the config, the data and the model are known to be good.

    `strategy`: the `tf.distribute` strategy to train under; it wins over
    `train.strategy` (one that names another kind is warned about), and how the run
    trained is recorded either way (`replicas` and `distribution` in the metrics, see
    `distribution.describe`). A `MultiWorkerMirroredStrategy` must be made before any
    other TensorFlow op of the process, so make it first (without one, `train` makes the
    config's first). In a cluster every worker calls `train` with the same config and
    `output_dir`: the chief writes it, the others train a private temporary copy (see
    `ienet_tf.train.distribution` and docs/distributed.md).
    """
    # First: a MultiWorkerMirroredStrategy cannot be made after any other TensorFlow op.
    strategy = _strategy(config, strategy)
    run = Run(output_dir)
    run.refuse_foreign()  # a user's folder, a file: before the data is even read
    here = distribution.worker(strategy)
    if here is None:
        return _train(config, run, strategy, verbose)
    try:
        with contextlib.ExitStack() as stack:
            work = run if here.chief else stack.enter_context(distribution.private_copy(run, here))
            distribution.agree(strategy, config_lib.dump(config), work)
            return _train(config, work, strategy, verbose)
    except Exception as error:
        lost = distribution.lost_worker(error, here, run.path)
        if lost is None:
            raise
        raise lost from None


def _train(config: config_lib.Config, run: Run, strategy, verbose) -> dict:
    """`train` on the directory this process writes, under `strategy`."""
    if run.is_intact():
        _check_directory(run, config)
        if _int8_done(run, config):
            return run.metrics()
        return _int8_only(run, config, strategy, verbose)
    _check_directory(run, config)
    examples = train_examples(config)
    if examples is not None and config.train.batch_size > examples:
        warnings.warn(  # bounded by the data, but surely not what was meant
            f"train.batch_size {config.train.batch_size} is larger than the {examples} "
            f"training examples: every epoch is one step on a batch of {examples}.",
            stacklevel=3,
        )
    tf.keras.utils.set_random_seed(config.train.seed)
    monitor_split = "validation" if config.data.validation_examples else "test"
    splits = ("train", "validation", "test") if monitor_split == "validation" else ("train", "test")
    datasets = load_datasets(config, splits)  # DataError before anything is written
    steps = steps_per_epoch(datasets["train"])
    with strategy.scope():
        model = training_model(config, build_model(config))
        recipes.add_weight_decay(model, config.train.weight_decay, config.train.weight_decay_on)
        compile_model(model, config)
        model.optimizer.build(model.trainable_variables)
    checkpoint = tf.train.Checkpoint(model=model, optimizer=model.optimizer)

    with run.claim():
        _check_directory(run, config)  # again, now that no one else writes it
        if run.is_intact():  # another process finished it meanwhile
            return run.metrics()
        run.recover()
        state = run.state()
        if state is None:
            state = {"version": STATE_VERSION, "epochs_done": 0, "history": []}
        else:
            _read_checkpoint(run, checkpoint, state)
            _restore_models(run, model, state)
            state = run.state()
        state["config"] = training_part(config)
        state["distribution"] = distribution.describe(strategy)  # this invocation's
        run.write_config(config)  # the copy of the record (restored if deleted or edited)
        if run.is_intact():  # what was lost is restored
            return run.metrics()
        state["invocations"] = state.get("invocations", 0) + 1
        initial_epoch = state["epochs_done"]
        train_cfg = config.train
        stop_on_nan = _StopOnNaN()
        commit = _EpochCommit(run, checkpoint, state, monitor="val_accuracy")
        fit_callbacks = [
            iee_schedule(config, steps),
            recipes.learning_rate_callback(train_cfg, steps),
            stop_on_nan,
            tf.keras.callbacks.TensorBoard(str(run.tensorboard_dir)),
        ]
        if train_cfg.log_binary_stats:
            log_dir = str(run.tensorboard_dir / "binary_stats")
            fit_callbacks.append(callbacks.BinaryStatsLogger(log_dir))
        fit_callbacks.append(commit)  # last: after the others have added lr and iee_q
        if initial_epoch < train_cfg.epochs:
            model.fit(
                datasets["train"],
                validation_data=datasets[monitor_split],
                epochs=train_cfg.epochs,
                initial_epoch=initial_epoch,
                callbacks=fit_callbacks,
                verbose=fit_verbose(verbose),
            )
        if stop_on_nan.fired or commit.diverged is not None:
            where = "" if commit.diverged is None else f" at epoch {commit.diverged}"
            raise RunError(
                f"training diverged (a NaN or infinite loss or metric{where}) in {run.path}; "
                "lower train.learning_rate (the epochs before the divergence are kept)."
            )
        return _finish(run, config, model, datasets, commit, monitor_split, strategy, verbose)


def _int8_done(run: Run, config: config_lib.Config) -> bool:
    """Whether a complete run has what `config.export` asks for."""
    return not config.export.int8 or MODEL_FILES["int8"] in run.artefacts()


def int8_learning_rate(config: config_lib.Config) -> float:
    """The QAT fine-tune's base learning rate: `export.int8_learning_rate`, or 1e-5 with
    Adam and `train.learning_rate / 100` with SGD."""
    e = config.export
    if e.int8_learning_rate:
        return e.int8_learning_rate
    return 1e-5 if e.int8_optimizer == "adam" else config.train.learning_rate / 100


def int8_fine_tune(
    config: config_lib.Config,
    model: tf.keras.Model,
    datasets: dict,
    strategy: tf.distribute.Strategy | None = None,
    verbose: int | str = 0,
) -> tuple[tf.keras.Model, dict]:
    """The int8 QAT counterpart of the trained classifier (`ienet_tf.int8.qat_model`),
    calibrated on `export.int8_calibration_batches` training batches and fine-tuned for
    `export.int8_epochs` epochs with `export.int8_optimizer` (Adam by default) and a
    cosine learning rate from `int8_learning_rate(config)` to 0 over the fine-tune's
    steps; returns it and its test metrics (calibrated and fine-tuned).

    Why Adam: folding the BatchNorm after a binary conv into its scale `alpha` gives that
    scale a gradient ~100x the other parameters' (the Fashion-MNIST IE-Net ResNet-20:
    |g_alpha| 9.5 folded, 1e-4 before), so SGD at the training recipe's LR / 100 takes it
    from 85.2% to 73% top-1 in 100 steps; Adam's per-parameter steps keep 85.4%.
    """
    from ienet_tf import int8

    e = config.export
    strategy = strategy or tf.distribute.get_strategy()
    tf.keras.utils.set_random_seed(config.train.seed)
    lr = int8_learning_rate(config)
    fine_tune = config.train.replace(
        optimizer=e.int8_optimizer,
        learning_rate=lr,
        epochs=max(e.int8_epochs, 1),
        lr_schedule="cosine",
        warmup_epochs=0,
        lr_per_step=True,
        mixed_precision="float32",  # the int8 model is a float32 network with fake quantizers
    )
    with strategy.scope():
        qat = int8.qat_model(
            precision.float32_model(model),
            datasets["train"],
            calibration_batches=e.int8_calibration_batches,
        )
        # No weight decay: the BatchNorm scales are folded into the weights.
        qat.compile(
            optimizer=recipes.make_optimizer(fine_tune),
            loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            metrics=_metrics(config),
        )
    calibrated = qat.evaluate(datasets["test"], verbose=0, return_dict=True)
    if e.int8_epochs:
        stop_on_nan = _StopOnNaN()
        qat.fit(
            datasets["train"],
            epochs=e.int8_epochs,
            verbose=fit_verbose(verbose),
            callbacks=[
                recipes.learning_rate_callback(fine_tune, steps_per_epoch(datasets["train"])),
                stop_on_nan,
            ],
        )
        if stop_on_nan.fired:
            raise RunError(
                "the int8 fine-tune diverged (NaN loss); lower export.int8_learning_rate (the "
                "trained float model is kept)."
            )
    final = qat.evaluate(datasets["test"], verbose=0, return_dict=True)
    return qat, {
        "int8_test_accuracy": float(final["accuracy"]),
        "int8_test_accuracy_calibrated": float(calibrated["accuracy"]),
        "int8_epochs": e.int8_epochs,
        "int8_optimizer": e.int8_optimizer,
        "int8_learning_rate": lr,
    }


def _int8_only(run: Run, config, strategy, verbose) -> dict:
    """A complete run given `export.int8` afterwards: only the int8 fine-tune runs."""
    datasets = load_datasets(config, ("train", "test"))
    with run.claim():
        run.recover()
        metrics = run.metrics()
        if _int8_done(run, config):
            return metrics
        start = time.perf_counter()
        qat, int8_metrics = int8_fine_tune(config, run.model("final"), datasets, strategy, verbose)
        _require_finite(int8_metrics, run)
        pending = {"int8": run.write_pending("int8", qat.save)}
        run.write_config(config)
        wall = metrics.get("wall_time_s", 0.0) + time.perf_counter() - start
        return run.commit({**metrics, **int8_metrics, "wall_time_s": wall}, pending, final=True)


def _finish(
    run: Run, config, model, datasets, commit: _EpochCommit, monitor_split, strategy, verbose
) -> dict:
    """Evaluate the final (and best-on-validation) model on the test split and commit
    `model.keras` and `metrics.json`."""
    start = time.perf_counter()
    model = ir2net.inference_model(model)  # the deployable classifier
    reestimated = {}
    if config.train.bn_reestimation_batches:
        # From the last checkpoint on every (re)run, on the same batches: a rerun after a
        # crash here gives the same statistics.
        batches = reestimation_batches(config, config.train.bn_reestimation_batches)
        used = reestimate_batch_norm(model, batches)
        reestimated = {"bn_reestimated_batches": used}
    pending = {"final": run.write_pending("final", model.save)}
    state = commit.state
    history, best = state["history"], state["best"]
    if monitor_split == "test" and not reestimated:
        # the last epoch's monitor pass IS the final model's test
        final = {key[4:]: history[-1][key] for key in history[-1] if key.startswith("val_")}
    else:
        final = _evaluate(model, datasets["test"], config)
    if monitor_split == "test":
        selection = {"best_test_accuracy": max(row["val_accuracy"] for row in history)}
    else:
        best_model = run.model("best")
        best_test = _evaluate(best_model, datasets["test"], config)
        selection = {
            "val_accuracy_best": best["value"],
            "test_accuracy_best_val": float(best_test["accuracy"]),
            **({"test_top5_best_val": float(best_test["top5"])} if "top5" in best_test else {}),
        }
    d = config.data
    metrics = {
        "completed": True,
        "model": model.name,
        "monitor": monitor_split,
        "test_accuracy": float(final["accuracy"]),
        **({"test_top5": float(final["top5"])} if "top5" in final else {}),
        "best_epoch": best["epoch"],
        **selection,
        "epochs": config.train.epochs,
        "epochs_this_invocation": commit.epochs_trained,
        "invocations": state["invocations"],
        "train_examples": train_examples(config),
        "validation_examples": d.validation_examples or 0,
        **reestimated,
        # How the invocation that finished the run trained (`replicas` for one-line
        # summaries; `distribution` for the strategy, its devices and workers).
        "replicas": state["distribution"]["replicas"],
        "distribution": state["distribution"],
    }
    if config.export.int8:
        qat, int8_metrics = int8_fine_tune(config, model, datasets, strategy, verbose)
        pending["int8"] = run.write_pending("int8", qat.save)
        metrics.update(int8_metrics)
    metrics["wall_time_s"] = state.get("wall_time_s", 0.0) + time.perf_counter() - start
    _require_finite(metrics, run)
    return run.commit(metrics, pending, final=True)


def _require_finite(metrics: dict, run: Run) -> None:
    """A NaN or infinite number is a failure, never a result: nothing is committed."""
    bad = [
        key
        for key, value in metrics.items()
        if isinstance(value, float) and not math.isfinite(value)
    ]
    if bad:
        raise RunError(
            f"the final evaluation of {run.path} gave non-finite {', '.join(bad)}; nothing was "
            "committed (the trained epochs are kept): check the data and the model, then "
            "rerun."
        )


def start_from_weights(
    config: config_lib.Config, model: tf.keras.Model, output_dir: str | Path, source: dict
) -> Run:
    """Write a new run directory whose epoch 0 starts from `model`'s weights (imported
    ones): `ienet evaluate` / `ienet export` read them as the run's `last` model and
    `ienet train` with the same config trains on from them. `source` is recorded in the
    run's state. The directory must not hold a run yet."""
    run = Run(output_dir)
    if run.exists() or run.state_path.exists():
        raise RunError(
            f"{run.path} already holds a run; import into a new --run directory (nothing was "
            "written)."
        )
    with run.claim():
        run.recover()
        pending = {"last": run.write_pending("last", model.save)}  # saved uncompiled
        compile_model(model, config)  # a fresh optimizer state: the trainer resumes both
        model.optimizer.build(model.trainable_variables)
        final = run.write_resume(
            "imported", tf.train.Checkpoint(model=model, optimizer=model.optimizer).write
        )
        run.write_config(config)
        state = {
            "version": STATE_VERSION,
            "epochs_done": 0,
            "history": [],
            "best": None,
            "resume": final.name,
            "wall_time_s": 0.0,
            "imported_from": source,
            "config": training_part(config),
        }
        run.commit(state, pending)
    return run


def test_images(config: config_lib.Config, count: int = 64):
    """The first `count` test images of a config (read to the end, so that the cached
    pipeline is complete and TensorFlow has nothing to warn about)."""
    d = config.data
    subset = count if d.test_subset is None else min(count, d.test_subset)
    small = config.replace(
        data=d.replace(test_subset=subset),
        train=config.train.replace(batch_size=subset),
    )
    batches = [images for images, _ in load_datasets(small, ("test",))["test"]]
    return np.concatenate([np.asarray(b) for b in batches])[:count]


def load_run(checkpoint_dir: str | Path, which: str = "final"):
    """The config and the saved model (`final`, `best` or `last`, its SHA-256 verified) of
    a run directory."""
    run = Run(checkpoint_dir)
    return run.config(), run.model(which)


def reestimation_batches(config, batches: int) -> tf.data.Dataset:
    """The first `batches` batches of the config's training examples (after its validation
    split), in order and un-augmented ("train_eval"): what `train.bn_reestimation_batches`
    re-estimates the BatchNorm statistics on."""
    return load_datasets(config, ("train_eval",))["train_eval"].take(batches)


def evaluate(
    checkpoint_dir: str | Path, which: str = "final", bn_reestimation_batches: int = 0
) -> dict:
    """Top-1 (and top-5 on ImageNet) of a saved run on its test split (`evaluate_model`,
    with its `bn_reestimation_batches`)."""
    config, model = load_run(checkpoint_dir, which)
    return evaluate_model(
        model,
        lambda: load_datasets(config, ("test",))["test"],
        config,
        bn_reestimation_batches,
        subject=f"the {which} model of {checkpoint_dir}",
    )


def evaluate_model(
    model: tf.keras.Model,
    dataset: tf.data.Dataset | Callable[[], tf.data.Dataset],
    config: config_lib.Config | None = None,
    bn_reestimation_batches: int = 0,
    subject: str | None = None,
) -> dict:
    """Top-1 (and top-5 on ImageNet) of a loaded model on `dataset` (batches of images and
    class indices; or a function making it, called once the arguments are checked), with
    the metrics a run of `config` is evaluated with (top-1 alone without one).

    `bn_reestimation_batches`: first set the model's BatchNorm statistics from that many
    un-augmented training batches of `config` (as `train.bn_reestimation_batches` does to a
    final model), to see how much a number owes to its moving statistics; nothing is saved.
    `subject` names the model in errors (default: its name)."""
    used = 0
    if bn_reestimation_batches:
        if config is None:
            raise UsageError(
                "bn_reestimation_batches re-estimates on a config's training split; pass the config"
            )
        if not batch_norm_layers(model):  # before any data is loaded
            raise UsageError(
                f"bn_reestimation_batches: {subject or model.name} has no BatchNorm layer (an "
                "int8 model's are folded); evaluate it without."
            )
        used = reestimate_batch_norm(model, reestimation_batches(config, bn_reestimation_batches))
    results = _evaluate(model, dataset() if callable(dataset) else dataset, config)
    return {
        "model": model.name,
        "top1": float(results["accuracy"]),
        **({"top5": float(results["top5"])} if "top5" in results else {}),
        **({"bn_reestimated_batches": used} if used else {}),
    }
