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

from benchmarks.common import RESULTS, merge_result, run_script, set_tf_threads

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
