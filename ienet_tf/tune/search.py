"""`ienet tune`: a resumable keras-tuner search, its results table and the best config.

The output directory (`ienet_tf.runs.Search`, written by one process at a time) holds
the resolved config, keras-tuner's state (rerunning continues the search and never redoes
a finished trial), `trials.csv`/`.md` (one row per trial: hyperparameters, objective, wall
time, cost) and `best_config.yaml` (the best completed trial as an `ienet train` config).

The objective is measured on `tune.validation_examples` examples held out from the
training split (disjoint from the examples trained on), never on the test set.
"""

from __future__ import annotations

import csv
import io
import json
import math
import time
from pathlib import Path

import tensorflow as tf

from ienet_tf import config as config_lib
from ienet_tf import data, errors, extras
from ienet_tf.cost import model_cost
from ienet_tf.io import write_atomically
from ienet_tf.runs import Search
from ienet_tf.train import load_datasets
from ienet_tf.train.trainer import fit_verbose
from ienet_tf.tune.hypermodel import IENetHyperModel, held_out, trial_config

kt = extras.require("keras_tuner")

__all__ = ["COLUMNS", "run_search", "validation_split"]

COLUMNS = (
    "trial",
    "status",
    "k",
    "t_min",
    "t_max",
    "learning_rate",
    "objective",
    "wall_time_s",
    "binary_ops",
    "flops",
)
_TUNERS = {
    "random": kt.RandomSearch,
    "bayesian": kt.BayesianOptimization,
    "hyperband": kt.Hyperband,
}
_WALL_TIME = "wall_time.json"


def _timed(tuner_class: type) -> type:
    """The tuner class, recording each trial's wall time in its trial directory."""

    class TimedTuner(tuner_class):
        def run_trial(self, trial, *args, **kwargs):
            start = time.perf_counter()
            results = super().run_trial(trial, *args, **kwargs)
            elapsed = {"wall_time_s": time.perf_counter() - start}
            write_atomically(
                Path(self.get_trial_dir(trial.trial_id)) / _WALL_TIME, json.dumps(elapsed)
            )
            return results

    return TimedTuner


def _make_tuner(config: config_lib.TuneFileConfig, directory: Path) -> kt.Tuner:
    tune = config.tune
    direction = "max" if tune.objective == "val_accuracy" else "min"
    common = {
        "hypermodel": IENetHyperModel(config),
        "objective": kt.Objective(tune.objective, direction),
        "executions_per_trial": tune.executions_per_trial,
        "seed": tune.seed,
        "directory": str(directory),
        "project_name": "search",
        "overwrite": False,  # reload the search state: a rerun resumes
    }
    if tune.tuner == "hyperband":
        return _timed(kt.Hyperband)(max_epochs=config.train.epochs, **common)
    return _timed(_TUNERS[tune.tuner])(max_trials=tune.max_trials, **common)


def validation_split(config: config_lib.TuneFileConfig) -> tuple[tf.data.Dataset, tf.data.Dataset]:
    """(train, validation) of a search: the training examples after the held-out ones, and
    the held-out ones (`tune.validation_examples`, or `data.validation_examples`), never the
    test split. What `ienet tune` searches on, for `tuner.search(train,
    validation_data=validation)` from Python."""
    held = held_out(config)
    size = data.info(config.data.name).train_size
    if size is not None and held + (config.data.subset or 1) > size:
        raise errors.ConfigError(
            f"tune.validation_examples: {held} held-out examples"
            + (f" + data.subset {config.data.subset}" if config.data.subset else "")
            + f" exceed the {size} examples of {config.data.name}'s training split; lower it."
        )
    trial = config.replace(data=config.data.replace(validation_examples=held))
    pipelines = load_datasets(trial, ("train", "validation"))
    return pipelines["train"], pipelines["validation"]


def _check_config(config: config_lib.TuneFileConfig, search: Search) -> None:
    """Record the config of a new search, or check that it continues the one there."""
    previous = search.config()
    if previous is not None:
        before, now = config_lib.to_dict(previous), config_lib.to_dict(config)
        # A larger trial budget continues the same search; anything else is another search.
        before["tune"].pop("max_trials"), now["tune"].pop("max_trials")
        if before != now:
            raise errors.RunError(
                f"{search.path} holds a search with a different config; use another --output, "
                "or the same config (only tune.max_trials may grow) to resume it."
            )
    write_atomically(search.config_path, config_lib.dump(config))


def _rows(tuner: kt.Tuner, config: config_lib.TuneFileConfig) -> list[dict]:
    rows = []
    for trial_id, trial in sorted(tuner.oracle.trials.items()):
        values = trial.hyperparameters.values
        if not {"k", "t_center", "t_width"} <= set(values):
            continue
        trial_cfg = trial_config(config, values)
        timing = Path(tuner.get_trial_dir(trial_id)) / _WALL_TIME
        tf.keras.backend.clear_session()
        cost = model_cost(tuner.hypermodel.build(trial.hyperparameters))
        rows.append(
            {
                "trial": trial_id,
                # a completed trial without a finite score diverged: never a result
                "status": "DIVERGED"
                if trial.status == "COMPLETED" and not _finite(trial.score)
                else trial.status,
                "k": trial_cfg.model.k,
                "t_min": trial_cfg.iee.t_min,
                "t_max": trial_cfg.iee.t_max,
                "learning_rate": trial_cfg.train.learning_rate,
                "objective": trial.score,
                "wall_time_s": json.loads(timing.read_text())["wall_time_s"]
                if timing.exists()
                else None,
                "binary_ops": cost.binary_ops,
                "flops": cost.flops,
            }
        )
    return rows


def _write_tables(rows: list[dict], objective: str, search: Search) -> None:
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_atomically(search.trials_csv, text.getvalue())

    def cell(value):
        if value is None:
            return "-"
        return f"{value:.4g}" if isinstance(value, float) else str(value)

    from tabulate import tabulate

    header = [objective if c == "objective" else c for c in COLUMNS]
    cells = [[cell(row[c]) for c in COLUMNS] for row in rows]
    table = tabulate(cells, header, tablefmt="github", disable_numparse=True)
    write_atomically(search.trials_markdown, table + "\n")


def _finite(score) -> bool:
    return score is not None and math.isfinite(score)


def _best_completed(tuner: kt.Tuner, objective: str):
    """The best COMPLETED trial with a finite score (never a failed or diverged one), or
    None."""
    done = [
        trial
        for trial in tuner.oracle.trials.values()
        if trial.status == "COMPLETED" and _finite(trial.score)
    ]
    if not done:
        return None
    sign = 1 if objective == "val_accuracy" else -1
    return max(done, key=lambda trial: sign * trial.score)


def run_search(
    config: config_lib.TuneFileConfig, output_dir: str | Path, verbose: int | str = "auto"
) -> dict:
    """Run (or resume) the search; write the tables and the best config. Returns a summary."""
    search = Search(output_dir)
    search.refuse_foreign()  # a user's folder, a file: before the data is even read
    train, validation = validation_split(config)  # data errors before anything is written
    with search.claim():
        _check_config(config, search)
        tf.keras.utils.set_random_seed(config.train.seed)
        tuner = _make_tuner(config, search.tuner_dir)
        tuner.search(
            train,
            validation_data=validation,
            epochs=config.train.epochs,
            verbose=fit_verbose(verbose),
        )
        rows = _rows(tuner, config)
        _write_tables(rows, config.tune.objective, search)
        best = _best_completed(tuner, config.tune.objective)
        if best is None:
            failed = [row["trial"] for row in rows if row["status"] != "COMPLETED"]
            raise errors.RunError(
                f"no trial of the search in {search.path} completed with a finite objective "
                f"({len(failed)} failed or diverged: "
                f"trials {', '.join(failed[:5]) or 'none'}); see their logs in "
                f"{search.tuner_dir} (no best_config.yaml was written)."
            )
        best_config = trial_config(config, best.hyperparameters.values)
        write_atomically(
            search.best_config_path,
            "# The best trial of `ienet tune`; train it with `ienet train`.\n"
            + config_lib.dump(config_lib.validate(best_config)),
        )
    return {
        "output_dir": str(search.path),
        "trials": len(rows),
        "best": {
            "k": best_config.model.k,
            "t_min": best_config.iee.t_min,
            "t_max": best_config.iee.t_max,
            "learning_rate": best_config.train.learning_rate,
        },
    }
