"""Late-training stability in a short budget: why IE-Net collapsed (the gradient scale
along the IEE schedule, the last epochs replayed under each learning-rate schedule) and
why a final model can fail in inference mode alone (its BatchNorm statistics), and how
far IE-BC's branches have moved apart.

    nice -n 10 .venv/bin/python benchmarks/stability.py gradients [--run RUN] [--batches 16]
    nice -n 10 .venv/bin/python benchmarks/stability.py replay [--run RUN] [--arms ...]
    nice -n 10 .venv/bin/python benchmarks/stability.py batchnorm --runs RUN [RUN ...]
    nice -n 10 .venv/bin/python benchmarks/stability.py branches --runs RUN [RUN ...]
    nice -n 10 .venv/bin/python benchmarks/stability.py qsweep --runs RUN [RUN ...]

Both start from a trained run (default: benchmarks/fixtures/first_budget_ienet_k2, the
checkpoint of the first campaign budget's IE-Net chosen on validation: the end of epoch 5
of 8, published until the current budget's runs replaced it) and write their section of
benchmarks/results/stability.json (`--output`), with the provenance block.

- `gradients`: `ienet_tf.inspection.gradient_norms` on `--batches` training batches at
  every `q` of `--q`: the training gradient's L2 norm, in total and per parameter group
  (only the surrogate gradient depends on `q`; the forward pass does not). Next to it, the
  learning rate the campaign budget (`benchmarks/campaign.py`, `BUDGET`) applies where its
  per-step IEE schedule reaches that `q`, per epoch (the release's LR stepping) and per
  step (`train.lr_per_step`), and the products lr x |g|: the size of an SGD step.
- `replay`: the run's checkpoint trained on for its config's remaining epochs (from the
  epoch after the checkpoint's) once per arm, each arm a set of config overrides (default:
  the first budget's per-epoch LR; `train.lr_per_step=true`; and that with
  `train.clip_norm=5`, the campaign budget's), with the same per-step IEE schedule and
  data order. Recorded per epoch: train and validation top-1, the largest |threshold|,
  |lambda| and BatchNorm gamma; at the end the test top-1. The optimizer starts fresh (the
  checkpoint has no momentum), so the replay shows the mechanism, not the original run's
  exact trajectory.

- `batchnorm`: each run's final model evaluated on the validation and test splits four
  ways: with its moving BatchNorm statistics (what inference uses); with every batch's own
  statistics (a training-mode pass, a diagnostic that lets test batches set the
  statistics, never a result); and after `ienet_tf.train.reestimate_batch_norm` on
  `--batches` batches of the training split, un-augmented ("train_eval") or augmented as
  in training. With them, `inspection.binarization_disagreement` per binary conv on the
  first `--images` validation images: the share of binary codes that differ between the
  training-mode and the inference-mode pass. Runs measured before with the same settings
  keep their rows (each with the commit and date it was measured at): give the runs a
  campaign has just finished.

- `qsweep`: each run's final model, `inspection.gradient_norms` at each `--q` (default 1,
  3, 10) on its first `--batches` training batches: which parameter groups' gradients grow
  as q sharpens. The IEE weight estimator scales only the kernels' gradients; IE-Net's
  activation estimator (max(q, 1)) scales everything upstream of a binary activation.
  Incremental like `batchnorm`.
- `branches`: each run's final model, `inspection.branch_diversity` of its IE-BC layers
  (K >= 2) on the first `--images` validation images: the share of binary codes where
  branch k differs from branch 1, the mean |beta_k - beta_1| and |lambda_k|. Incremental
  like `batchnorm`.

`--smoke` runs each on a two-epoch digits run of the demo config (trained here first if
missing; its arms train a third epoch), into runs/bench-smoke/stability.json unless
`--output` says otherwise: the harness and the schema in seconds, for CI.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

if __package__ in (None, ""):  # run as a script: make `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import tensorflow as tf

from benchmarks.common import (
    RESULTS,
    load,
    merge_result,
    provenance_lines,
    result_section,
    run_script,
    set_tf_threads,
    table,
)

if TYPE_CHECKING:
    from ienet_tf.config import ModelConfig
    from ienet_tf.models.variants import Variant

ROOT = Path(__file__).resolve().parents[1]
OUTPUT = RESULTS / "stability.json"
DEFAULT_RUN = ROOT / "benchmarks" / "fixtures" / "first_budget_ienet_k2"
DEFAULT_Q = (0.1, 0.3, 1.0, 1.78, 3.0, 4.2, 7.5, 10.0)
#: `qsweep`: where IE-Net's activation estimator starts to sharpen (max(q, 1)), and beyond.
QSWEEP_Q = (1.0, 3.0, 10.0)
DEFAULT_ARMS = (
    "per-epoch LR=train.lr_per_step=false",
    "per-step LR=train.lr_per_step=true",
    "per-step LR + clip 5=train.lr_per_step=true,train.clip_norm=5.0",
)
SMOKE_ARMS = (
    "per-epoch LR=train.epochs=3",
    "per-step LR + clip=train.epochs=3,train.lr_per_step=true,train.clip_norm=1.0",
)
SMOKE_DIR = ROOT / "runs" / "bench-smoke"
SMOKE_RUN = SMOKE_DIR / "stability-run"


# ----------------------------------------------------------------------------- gradients


def _schedule_position(q: float, t_min: float, t_max: float) -> float:
    """The fraction of the IEE schedule at which `q` is reached (clamped to [0, 1])."""
    return min(max((math.log10(q) - t_min) / (t_max - t_min), 0.0), 1.0)


def _gradient_rows(run: Path, batches: int, q_values: Sequence[float]):
    """The run's config and `inspection.gradient_norms` of its final model at `q_values`
    on its first `batches` training batches (the same batches every time)."""
    from ienet_tf import inspection
    from ienet_tf.train import load_datasets, load_run

    config, model = load_run(run, "final")
    tf.keras.utils.set_random_seed(config.train.seed)
    data = list(load_datasets(config, ("train",))["train"].take(batches))
    return config, len(data), inspection.gradient_norms(model, data, q_values)


def qsweep_run(run: Path, batches: int, q_values: Sequence[float]) -> dict:
    """The `qsweep` row of `run`: its final model's gradient norms along `q`."""
    config, used, rows = _gradient_rows(run, batches, q_values)
    for row in rows:
        print(f"{run.name} q={row['q']:<6g} |g|={row['global']:.3g}", flush=True)
    return {
        **_identity(run, config),
        "activation_estimator": config.model.layer.get("input_quantizer"),
        "batches": used,
        "rows": rows,
    }


def gradients(run: Path, batches: int, q_values: Sequence[float], budget) -> dict:
    from ienet_tf.config import TrainConfig
    from ienet_tf.train import learning_rate_at

    config, used, rows = _gradient_rows(run, batches, q_values)
    steps = 1000  # fine enough a grid for the per-step learning rate
    base = TrainConfig(epochs=budget.epochs, learning_rate=config.train.learning_rate)
    per_step = base.replace(lr_per_step=True)
    for row in rows:
        f = _schedule_position(row["q"], config.iee.t_min, config.iee.t_max)
        epoch = min(int(f * budget.epochs), budget.epochs - 1)
        step = min(int(f * budget.epochs * steps), budget.epochs * steps - 1)
        row["schedule_fraction"] = f
        row["lr_per_epoch"] = learning_rate_at(epoch, base)
        row["lr_per_step"] = learning_rate_at(step // steps, per_step, step % steps, steps)
        row["step_per_epoch_lr"] = row["lr_per_epoch"] * row["global"]
        row["step_per_step_lr"] = row["lr_per_step"] * row["global"]
        print(
            f"q={row['q']:<6g} |g|={row['global']:.3g}  lr x |g|: per epoch "
            f"{row['step_per_epoch_lr']:.2g}, per step {row['step_per_step_lr']:.2g}",
            flush=True,
        )
    return {
        "run": os.path.relpath(run, ROOT),
        "batches": used,
        "batch_size": config.train.batch_size,
        "budget_epochs": budget.epochs,
        "t_min": config.iee.t_min,
        "t_max": config.iee.t_max,
        "rows": rows,
    }


# ----------------------------------------------------------------------------- replay


def _parse_arm(text: str) -> tuple[str, list[str]]:
    label, _, overrides = text.partition("=")
    if not overrides:
        raise SystemExit(f"--arms: expected LABEL=KEY=VALUE[,KEY=VALUE], got {text!r}")
    return label, overrides.split(",")


class _Extremes(tf.keras.callbacks.Callback):
    """Per epoch: the largest |threshold|, |lambda| of the IE-BC layers and |gamma| of BN."""

    def __init__(self):
        super().__init__()
        self.rows: list[dict] = []

    def on_epoch_end(self, epoch, logs=None):
        from ienet_tf import inspection
        from ienet_tf.train import batch_norm_layers

        def largest(arrays):
            return max((float(np.max(np.abs(a))) for a in arrays), default=0.0)

        binary = inspection.binary_kernel_layers(self.model)
        bns = batch_norm_layers(self.model)
        self.rows.append(
            {
                "epoch": epoch,
                "accuracy": float(logs["accuracy"]),
                "val_accuracy": float(logs["val_accuracy"]),
                "lr": float(logs.get("lr", float("nan"))),
                "iee_q": float(logs.get("iee_q", float("nan"))),
                "max_abs_threshold": largest(
                    layer.thresholds.numpy()
                    for layer in binary
                    if getattr(layer, "thresholds", None) is not None
                ),
                "max_abs_lambda": largest(
                    layer.lambdas.numpy()
                    for layer in binary
                    if getattr(layer, "lambdas", None) is not None
                ),
                "max_abs_bn_gamma": largest(layer.gamma.numpy() for layer in bns),
            }
        )
        print(json.dumps(self.rows[-1]), flush=True)


def replay_arm(run: Path, overrides: list[str]) -> dict:
    """Train the run's final checkpoint on for its config's remaining epochs with
    `overrides` applied to its config."""
    from ienet_tf import config as config_lib
    from ienet_tf.runs import Run
    from ienet_tf.train import (
        add_weight_decay,
        compile_model,
        iee_schedule,
        learning_rate_callback,
        load_datasets,
        steps_per_epoch,
    )

    source = Run(run)
    metrics = source.metrics()
    # A published run's model is the checkpoint chosen on validation; a run's, its last.
    start = metrics["best_epoch"] + 1 if "published_from" in metrics else metrics["epochs"]
    config = config_lib.from_dict(
        config_lib.apply_overrides(config_lib.to_dict(source.config()), overrides)
    )
    tf.keras.utils.set_random_seed(config.train.seed)
    datasets = load_datasets(config, ("train", "validation", "test"))
    steps = steps_per_epoch(datasets["train"])
    model = source.model("final")
    add_weight_decay(model, config.train.weight_decay, config.train.weight_decay_on)
    compile_model(model, config)
    extremes = _Extremes()
    began = time.perf_counter()
    model.fit(
        datasets["train"],
        validation_data=datasets["validation"],
        epochs=config.train.epochs,
        initial_epoch=start,
        callbacks=[
            iee_schedule(config, steps),
            learning_rate_callback(config.train, steps),
            extremes,
        ],
        verbose=0,
    )
    test = model.evaluate(datasets["test"], verbose=0, return_dict=True)
    return {
        "overrides": overrides,
        "from_epoch": start,
        "epochs": extremes.rows,
        "test_top1": float(test["accuracy"]),
        "seconds": time.perf_counter() - began,
    }


def replay(run: Path, arms: Sequence[str]) -> dict:
    results = []
    for text in arms:
        label, overrides = _parse_arm(text)
        print(f"arm {label}: {overrides}", flush=True)
        results.append({"arm": label, **replay_arm(run, overrides)})
    return {"run": os.path.relpath(run, ROOT), "arms": results}


# ----------------------------------------------------------------------------- batchnorm


def _top1(model: tf.keras.Model, forward, dataset) -> float:
    """Top-1 of `forward` (a call of `model`) on `dataset`; `model`'s moving statistics are
    restored afterwards (a training-mode forward updates them)."""
    from ienet_tf.inspection import state_restored

    correct = total = 0
    with state_restored(model):
        for x, y in dataset:
            predicted = tf.argmax(forward(x), axis=-1, output_type=tf.int64)
            correct += int(tf.reduce_sum(tf.cast(predicted == tf.cast(y, tf.int64), tf.int32)))
            total += int(tf.shape(y)[0])
    return correct / total


def _identity(run: Path, config) -> dict:
    """What a row of an incremental section says about its run."""
    return {
        "run": run.name,
        "variant": config.model.variant,
        "k": config.model.k,
        "compat": config.model.compat,
        "seed": config.train.seed,
    }


def _first_images(dataset, images: int) -> np.ndarray:
    """The first `images` images of a batched `(x, y)` dataset."""
    return np.concatenate([x.numpy() for x, _ in dataset.unbatch().batch(images).take(1)])


def batchnorm_run(run: Path, batches: int, images: int) -> dict:
    """The final model of `run`: top-1 under each source of BatchNorm statistics, and the
    train- vs inference-mode disagreement of its binary codes."""
    from ienet_tf import inspection
    from ienet_tf.train import load_datasets, load_run, reestimate_batch_norm

    config, model = load_run(run, "final")
    began = time.perf_counter()
    tf.keras.utils.set_random_seed(config.train.seed)
    data = load_datasets(config, ("train", "train_eval", "validation", "test"))
    probe = _first_images(data["validation"], images)

    forwards = {
        training: tf.function(
            lambda x, training=training: model(x, training=training), reduce_retracing=True
        )
        for training in (False, True)  # True: every batch normalized with its own statistics
    }

    def scores(training: bool = False) -> dict:
        return {
            split: _top1(model, forwards[training], data[split]) for split in ("validation", "test")
        }

    result = {
        **_identity(run, config),
        "batches": batches,
        "disagreement_images": int(probe.shape[0]),
        # A float model has no binary codes to compare.
        "disagreement": (
            inspection.binarization_disagreement(model, probe)
            if inspection.binary_kernel_layers(model)
            else []
        ),
        "top1": {"moving": scores(), "batch": scores(training=True)},
    }
    for source, key in (("train_eval", "reestimated_plain"), ("train", "reestimated_augmented")):
        used = reestimate_batch_norm(model, data[source].take(batches))
        result["top1"][key] = scores()
        result[f"{key}_batches"] = used
    result["seconds"] = time.perf_counter() - began
    print(json.dumps({k: result[k] for k in ("run", "variant", "top1")}), flush=True)
    return result


def batchnorm(runs: Sequence[Path], batches: int, images: int) -> list[dict]:
    """The `batchnorm` rows of `runs` (each given once), stamped with this commit and date."""
    return stamped(
        runs,
        lambda run: batchnorm_run(run, batches, images),
        {"batches": batches, "images": images},
    )


def branches_run(run: Path, images: int) -> dict:
    """The final model of `run`: `inspection.branch_diversity` of its IE-BC layers on the
    first `images` validation images."""
    from ienet_tf import inspection
    from ienet_tf.train import load_datasets, load_run

    config, model = load_run(run, "final")
    probe = _first_images(load_datasets(config, ("validation",))["validation"], images)
    result = {
        **_identity(run, config),
        "images": int(probe.shape[0]),
        "layers": inspection.branch_diversity(model, probe),
    }
    print(json.dumps({k: result[k] for k in ("run", "variant", "k")}), flush=True)
    return result


def needs_branches(name: str, model: ModelConfig, variant: Variant) -> str | None:
    """Why run `name` has nothing for `branches` to measure (None: it has IE-BC, K >= 2)."""
    if variant.k < 2:
        return (
            f"{name} (variant {model.variant}, K={variant.k}) has no IE-BC branches to "
            "compare: give iebc or ienet runs with K >= 2."
        )
    return None


def needs_iee(name: str, model: ModelConfig, variant: Variant) -> str | None:
    """Why run `name` has nothing for `qsweep` to measure (None: it has an IEE quantizer)."""
    estimator = variant.layer_options.get("input_quantizer", variant.input_quantizer)
    if variant.kernel_quantizer != "iee_sign" and estimator != "iee_act_sign":
        return (
            f"{name} (variant {model.variant}) has no IEE quantizer, so q changes nothing: "
            "give iee or ienet runs."
        )
    return None


def check_runs(
    runs: Sequence[Path], requirement: Callable[[str, ModelConfig, Variant], str | None]
) -> None:
    """Refuse, before measuring anything, the first run `requirement` (`needs_branches`,
    `needs_iee`) finds nothing to measure in, with its reason."""
    from ienet_tf.errors import UsageError
    from ienet_tf.models.variants import get_variant
    from ienet_tf.runs import Run

    for run in runs:
        model = Run(run).config().model
        variant = get_variant(model.variant, model.k, layer_options=model.layer)
        problem = requirement(Path(run).name, model, variant)
        if problem:
            raise UsageError(problem)


def stamped(runs: Sequence[Path], measure, settings: dict) -> list[dict]:
    """`measure(run)` for each of `runs` (each once), stamped with this commit and date and
    the settings: the rows of an incremental section (`merge_rows`)."""
    from benchmarks.common import provenance

    stamp = {key: provenance()[key] for key in ("commit", "date")}
    unique = list(dict.fromkeys(Path(run) for run in runs))
    return [
        {"budget": run.parent.name, **measure(run), "settings": settings, "measured": stamp}
        for run in unique
    ]


def merge_rows(rows: list[dict], before: dict | None) -> dict:
    """An incremental section (`batchnorm`, `branches`, `qsweep`): `rows` plus the rows of the
    section `before` (the file's) for other runs measured with the same settings, so runs
    can be added as a campaign finishes them; rows measured with other settings are
    dropped, with a message."""
    settings = rows[0]["settings"]
    fresh = {(row["budget"], row["run"]) for row in rows}
    kept = []
    for row in (before or {}).get("runs", []):
        # the first rows of this section carry neither settings nor budget nor stamp
        own = row.get("settings") or {
            "batches": row["batches"],
            "images": row["disagreement_images"],
        }
        budget = row.get("budget", next((b for b, n in fresh if n == row["run"]), None))
        if (budget, row["run"]) in fresh:
            continue  # measured again
        if own != settings:
            print(f"dropping the row of {row['run']}: measured with {own}, not {settings}")
            continue
        earlier = before.get("provenance", {})
        kept.append({"measured": {k: earlier.get(k) for k in ("commit", "date")}, **row})
    return {"runs": sorted(kept + rows, key=lambda row: (row["run"], row.get("budget") or ""))}


# ----------------------------------------------------------------------------- docs/results.md

#: The commands that write stability.json (the "not run yet" line names them).
COMMAND = (
    "python benchmarks/stability.py gradients; python benchmarks/stability.py replay; "
    "python benchmarks/stability.py batchnorm --runs RUN ..."
)
#: The BatchNorm statistics `batchnorm` evaluates with: its key in a row's `top1`, a label.
BATCHNORM_SOURCES = (
    ("moving", "moving (inference)"),
    ("reestimated_plain", "re-estimated, plain train"),
    ("reestimated_augmented", "re-estimated, augmented train"),
    ("batch", "each batch's own (diagnostic)"),
)


def gradient_rows(result: dict) -> tuple[list[str], list[list[str]]]:
    """The parameter groups `gradients` measured, and per q a row: q, its place in the
    schedule, |g| in total and per group, the learning rate and the SGD step lr x |g| with
    the rate stepped per epoch, then per step."""
    from ienet_tf.inspection import GRADIENT_GROUPS

    groups = [g for g in GRADIENT_GROUPS if any(g in row["groups"] for row in result["rows"])]
    rows = [
        [
            f"{row['q']:g}",
            f"{row['schedule_fraction']:.2f}",
            f"{row['global']:.3g}",
            *(f"{row['groups'].get(g, 0):.2g}" for g in groups),
            f"{row['lr_per_epoch']:.2g}",
            f"{row['step_per_epoch_lr']:.2g}",
            f"{row['lr_per_step']:.2g}",
            f"{row['step_per_step_lr']:.2g}",
        ]
        for row in result["rows"]
    ]
    return groups, rows


def _gradient_lines(result: dict | None) -> list[str]:
    """The `gradients` table with what it shows; nothing without the section."""
    if not result:
        return []
    groups, rows = gradient_rows(result)
    header = ["q", "schedule", r"\|g\|", *groups]
    header += ["lr/epoch", r"lr x \|g\|", "lr/step", r"lr x \|g\|"]
    return [
        f"Training-gradient L2 norm of `{result['run']}` at each IEE sharpness q (mean over "
        f"{result['batches']} training batches of {result['batch_size']}; only the surrogate "
        "gradient depends on q), per parameter group, and the size of an SGD step "
        f"lr x |g| where the {result['budget_epochs']}-epoch budget's per-step schedule "
        "reaches q, with the learning rate stepped per epoch (the release's) or per step:",
        "",
        *table(header, rows),
    ]


def replay_rows(result: dict) -> list[list]:
    """Per arm of `replay`, a row per epoch (q at its end, train and validation top-1 %,
    the largest |threshold|, |lambda| and BN gamma), then its test top-1."""
    rows: list[list] = []
    for arm in result["arms"]:
        for epoch in arm["epochs"]:
            rows.append(
                [
                    arm["arm"],
                    epoch["epoch"],
                    f"{epoch['iee_q']:.3g}",
                    f"{epoch['accuracy'] * 100:.2f}",
                    f"{epoch['val_accuracy'] * 100:.2f}",
                    f"{epoch['max_abs_threshold']:.3g}",
                    f"{epoch['max_abs_lambda']:.3g}",
                    f"{epoch['max_abs_bn_gamma']:.3g}",
                ]
            )
        rows.append([arm["arm"], "test", "", "", f"{arm['test_top1'] * 100:.2f}", "", "", ""])
    return rows


def _replay_lines(result: dict | None) -> list[str]:
    """The `replay` table with what it shows; nothing without the section."""
    if not result:
        return []
    header = ["arm", "epoch", "q (end)", "train", "val"]
    header += [r"max \|threshold\|", r"max \|lambda\|", r"max \|BN gamma\|"]
    return [
        f"The checkpoint of `{result['run']}` trained on for the budget's last epochs, "
        "once per learning-rate arm (same per-step IEE schedule, data order and fresh "
        "momentum; top-1 % at each epoch's end; the largest |threshold|, |lambda| and BN "
        "gamma of the network):",
        "",
        *table(header, replay_rows(result)),
    ]


def section_runs(result: dict | None) -> tuple[list[dict], Callable[[dict], str]]:
    """The rows of an incremental section ([] without one) and their labels:
    `run -> its campaign name` ("ienet_k2_release_s0": variant, K, compat, probe and seed,
    whatever the row recorded), with the budget when the rows span several."""
    runs = (result or {}).get("runs", [])
    budgets = {run.get("budget") for run in runs}

    def label_of(run: dict) -> str:
        budget = f" ({run.get('budget') or 'budget unrecorded'})" if len(budgets) > 1 else ""
        return f"{run['run']}{budget}"

    return runs, label_of


def measured_line(rows: Sequence[dict]) -> list[str]:
    """Where rows added by different invocations were measured (each row records its own
    commit and date), oldest first; nothing when one invocation measured them all."""
    stamps = {}
    for row in rows:
        measured = row.get("measured") or {}
        stamps.setdefault(measured.get("commit") or "unknown", measured.get("date") or "")
    if len(stamps) < 2:
        return []
    order = sorted(stamps, key=lambda commit: stamps[commit])
    dates = sorted(date for date in stamps.values() if date)
    span = f"; {dates[0][:10]} to {dates[-1][:10]}" if dates else ""
    return [
        f"Rows measured by several invocations (commits {', '.join(c[:10] for c in order)}"
        f"{span}): each row's commit and date are in stability.json.",
        "",
    ]


def batchnorm_rows(result: dict | None) -> list[list[str]]:
    """Per final model of `batchnorm` and source of BatchNorm statistics
    (`BATCHNORM_SOURCES`), its validation and test top-1 %."""
    runs, label_of = section_runs(result)
    return [
        [
            label_of(run),
            label,
            f"{run['top1'][key]['validation'] * 100:.2f}",
            f"{run['top1'][key]['test'] * 100:.2f}",
        ]
        for run in runs
        for key, label in BATCHNORM_SOURCES
    ]


def disagreement_rows(result: dict | None) -> tuple[list[int], list[list[str]]]:
    """The binary convs shown (first, a third, two thirds, last of the deepest model) and,
    per final model with binary codes, the % of codes that differ between its training-
    and inference-mode passes at each."""
    runs, label_of = section_runs(result)
    binary_runs = [run for run in runs if run["disagreement"]]  # a float model has no codes
    depth = max((len(run["disagreement"]) for run in binary_runs), default=1)
    marks = sorted({0, depth // 3, 2 * depth // 3, depth - 1})
    rows = []
    for run in binary_runs:
        layers = run["disagreement"]
        rows.append(
            [
                label_of(run),
                *(
                    f"{layers[i]['disagreement'] * 100:.1f} ({layers[i]['layer']})"
                    if i < len(layers)
                    else ""
                    for i in marks
                ),
            ]
        )
    return marks, rows


def batchnorm_lines(result: dict | None) -> list[str]:
    """The final models' top-1 per source of BatchNorm statistics, and the share of binary
    codes that differ between training- and inference-mode passes, by depth."""
    runs, _ = section_runs(result)
    if not runs:
        return []
    marks, code_rows = disagreement_rows(result)
    return [
        "### BatchNorm statistics of the final models",
        "",
        "Each final model's top-1 (%) on the validation and test splits with the BatchNorm "
        "statistics it was saved with (what inference uses), re-estimated "
        "(`ienet_tf.train.reestimate_batch_norm`, the plain mean of the batch statistics "
        f"over {runs[0]['batches']} training batches, un-augmented or augmented as in "
        "training), and normalizing every evaluated batch with its own statistics (a "
        "diagnostic: the evaluated batches set the statistics, so it is not a result):",
        "",
        *table(["run", "BatchNorm statistics", "validation", "test"], batchnorm_rows(result)),
        f"Binary codes that differ between the training-mode and the inference-mode pass of "
        f"the first {runs[0]['disagreement_images']} validation images (%, "
        "`inspection.binarization_disagreement`), from the first binary conv to the last:",
        "",
        *table(["run", *(f"binary conv {i + 1}" for i in marks)], code_rows),
        *measured_line(runs),
    ]


def branch_rows(result: dict | None) -> list[list[str]]:
    """Per final model of `branches`, how far branch 2 of its IE-BC layers is from branch 1:
    the % of codes that differ (mean over the layers; the first, middle and last layer),
    the mean |lambda_2| and the mean |beta_2 - beta_1|."""
    runs, label_of = section_runs(result)
    rows = []
    for run in runs:
        # branch 2 of every layer (a K > 2 run has more rows per layer in stability.json)
        layers = [row for row in run["layers"] if row["branch"] == 2]
        rows.append(
            [
                label_of(run),
                f"{statistics.fmean(r['differ'] for r in layers) * 100:.1f}",
                *(
                    f"{layers[i]['differ'] * 100:.1f} ({layers[i]['layer']})"
                    for i in (0, len(layers) // 2, len(layers) - 1)
                ),
                f"{statistics.fmean(r['lambda'] for r in layers):.3f}",
                f"{statistics.fmean(r['threshold_gap'] for r in layers):.3f}",
            ]
        )
    return rows


def branches_lines(result: dict | None) -> list[str]:
    """How far IE-BC's second branch has moved from the first in the final models
    (`branch_rows`); nothing without the section."""
    runs, _ = section_runs(result)
    if not runs:
        return []
    header = ["run", "differ % (mean)", "first IE-BC", "middle", "last"]
    header += [r"mean \|lambda_2\|", r"mean \|beta_2 - beta_1\|"]
    return [
        "### IE-BC's branches in the final models",
        "",
        "How different the second branch of every IE-BC layer is from the first "
        "(`inspection.branch_diversity`, inference mode, the first "
        f"{runs[0]['images']} validation images): the share of binary input codes where "
        "sign(x + beta_2) differs from sign(x + beta_1) (%; the mean over the layers, and "
        "the first, middle and last layer), the mean |lambda_2| (branch 1 has weight 1) "
        "and the mean |beta_2 - beta_1|. With the release's initialisation (every beta 0, "
        "lambda_2 from U[0, 0.001)) the two branches start as one:",
        "",
        *table(header, branch_rows(result)),
        *measured_line(runs),
    ]


def qsweep_rows(result: dict | None) -> tuple[list[str], list[list[str]]]:
    """The parameter groups shown and, per final model of `qsweep` and q, |g| in total and
    per group ("-" where a model has no such group)."""
    from ienet_tf.inspection import GRADIENT_GROUPS

    runs, label_of = section_runs(result)
    groups = [
        group
        for group in GRADIENT_GROUPS
        if group != "alpha"  # ~1e-5 next to the others: noise for the argument
        and any(group in row["groups"] for run in runs for row in run["rows"])
    ]
    rows = [
        [
            label_of(run),
            f"{row['q']:g}",
            f"{row['global']:.3g}",
            *(f"{row['groups'][g]:.2g}" if g in row["groups"] else "-" for g in groups),
        ]
        for run in runs
        for row in run["rows"]
    ]
    return groups, rows


def qsweep_lines(result: dict | None) -> list[str]:
    """The final models' gradient norm per parameter group along q (`qsweep_rows`);
    nothing without the section."""
    runs, _ = section_runs(result)
    if not runs:
        return []
    groups, rows = qsweep_rows(result)
    return [
        "### Gradient scale of the final models along q",
        "",
        "The training gradient's L2 norm of each final model with every IEE quantizer set "
        f"to q (`inspection.gradient_norms`, mean over the first {runs[0]['batches']} "
        "training batches; the forward pass does not depend on q), in total and per "
        "parameter group. The IEE weight estimator scales only the binary kernels' own "
        "gradients; IE-Net's activation estimator (max(q, 1)) scales the gradient of "
        "everything upstream of each binary activation, so it compounds over the depth:",
        "",
        *table(["run", "q", r"\|g\|", *groups], rows),
        *measured_line(runs),
    ]


def reestimation_note(result: dict | None, points: float = 2.0) -> list[str]:
    """A line naming the final models of stability.json's `batchnorm` section whose test
    top-1 moves by more than `points` when their BatchNorm statistics are re-estimated on
    un-augmented training images (shown under the campaign's Table 3)."""
    runs = ((result or {}).get("batchnorm") or {}).get("runs", [])
    moved = [
        (
            run["run"],
            run["top1"]["moving"]["test"] * 100,
            run["top1"]["reestimated_plain"]["test"] * 100,
        )
        for run in runs
    ]
    moved = [(name, a, b) for name, a, b in moved if abs(b - a) > points]
    if not moved:
        return []
    items = "; ".join(f"{name} {a:.2f} -> {b:.2f}" for name, a, b in moved)
    return [
        f"The table reports the saved models. Final models whose test top-1 moves by more than "
        f"{points:g} points when their BatchNorm statistics are re-estimated on un-augmented "
        f'training images: {items} (see "BatchNorm statistics of the final models" under '
        "Late-training stability).",
        "",
    ]


@result_section(OUTPUT.name, "## Late-training stability", COMMAND)
def section(result: dict, results_dir: Path) -> list[str]:
    """Why the first budget's IE-Net collapsed (the gradient scale along the IEE schedule and
    the replayed last epochs, beside the first budget's results in `results_dir`), the
    final models' BatchNorm statistics, branches and gradient scale along q, and the
    campaign's last epochs."""
    from benchmarks import campaign

    return [
        "### Why the first campaign budget's IE-Net collapsed",
        "",
        *campaign.first_budget_lines(results_dir),
        *_gradient_lines(result.get("gradients")),
        *_replay_lines(result.get("replay")),
        *batchnorm_lines(result.get("batchnorm")),
        *branches_lines(result.get("branches")),
        *qsweep_lines(result.get("qsweep")),
        *campaign.last_epochs_lines(load(results_dir / "campaign.json")),
        *provenance_lines(result),
    ]


# ----------------------------------------------------------------------------- CLI


def _smoke_run() -> Path:
    """A two-epoch digits run (the demo config) to replay from, trained once."""
    from ienet_tf import config as config_lib
    from ienet_tf.train import train

    config = config_lib.load(
        ROOT / "configs" / "digits_convnet_ienet.yaml",
        ["train.epochs=2", "data.subset=128", "data.validation_examples=64", "iee.per_step=true"],
    )
    train(config, SMOKE_RUN, verbose=0)
    return SMOKE_RUN


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    grad = commands.add_parser("gradients", help="gradient norm vs q")
    grad.add_argument("--batches", type=int, default=16)
    grad.add_argument("--q", type=float, nargs="+", default=list(DEFAULT_Q))
    rep = commands.add_parser("replay", help="the last epochs again, per LR schedule")
    rep.add_argument(
        "--arms", nargs="+", default=list(DEFAULT_ARMS), help="LABEL=KEY=VALUE[,KEY=VALUE]"
    )
    bn = commands.add_parser("batchnorm", help="a final model's BatchNorm statistics")
    bn.add_argument("--runs", type=Path, nargs="+", help="run directories (e.g. a campaign's)")
    bn.add_argument("--batches", type=int, default=100, help="training batches to re-estimate on")
    bn.add_argument("--images", type=int, default=512, help="validation images to compare codes")
    qs = commands.add_parser("qsweep", help="final models' gradient norm vs q")
    qs.add_argument("--runs", type=Path, nargs="+", help="run directories with IEE quantizers")
    qs.add_argument("--batches", type=int, default=4, help="training batches per q")
    qs.add_argument("--q", type=float, nargs="+", default=list(QSWEEP_Q))
    br = commands.add_parser("branches", help="how different the IE-BC branches are")
    br.add_argument("--runs", type=Path, nargs="+", help="run directories with IE-BC (K >= 2)")
    br.add_argument("--images", type=int, default=512, help="validation images to compare codes")
    for sub in (grad, rep):
        sub.add_argument("--run", type=Path, default=DEFAULT_RUN)
    for sub in (grad, rep, bn, br, qs):
        sub.add_argument("--output", type=Path, help=f"default {os.path.relpath(OUTPUT, ROOT)}")
        sub.add_argument("--threads", type=int, default=1, help="TF threads (0: TF's default)")
        sub.add_argument("--smoke", action="store_true", help="digits, seconds (CI)")
    args = parser.parse_args(argv)
    set_tf_threads(args.threads)
    from benchmarks.campaign import BUDGET, SMOKE_BUDGET

    output = args.output or (SMOKE_DIR / "stability.json" if args.smoke else OUTPUT)
    if args.command in ("batchnorm", "branches", "qsweep"):
        if not args.smoke and not args.runs:
            parser.error(f"{args.command}: give --runs RUN [RUN ...] (or --smoke)")
        runs = [_smoke_run()] if args.smoke else args.runs
        if args.command == "batchnorm":
            batches, images = (2, 32) if args.smoke else (args.batches, args.images)
            rows = batchnorm(runs, batches, images)
        elif args.command == "branches":
            check_runs(runs, needs_branches)
            images = 32 if args.smoke else args.images
            rows = stamped(runs, lambda run: branches_run(run, images), {"images": images})
        else:
            check_runs(runs, needs_iee)
            batches, q_values = (1, args.q[:2]) if args.smoke else (args.batches, args.q)
            settings = {"batches": batches, "q": q_values}
            rows = stamped(runs, lambda run: qsweep_run(run, batches, q_values), settings)
        # read after measuring (minutes): rows another invocation wrote meanwhile are kept
        before = json.loads(output.read_text()).get(args.command) if output.is_file() else None
        merge_result(output, args.command, merge_rows(rows, before))
        print(f"wrote {output}")
        return 0
    run = _smoke_run() if args.smoke else args.run
    if args.command == "gradients":
        budget = SMOKE_BUDGET if args.smoke else BUDGET
        q_values = args.q[:3] if args.smoke else args.q
        payload = gradients(run, 1 if args.smoke else args.batches, q_values, budget)
    else:
        # The smoke run is complete at its 2 epochs: its arms train one epoch more.
        arms = SMOKE_ARMS if args.smoke else args.arms
        payload = replay(run, arms)
    merge_result(output, args.command, payload)
    print(f"wrote {output}")
    return 0


if __name__ == "__main__":
    run_script(main)
