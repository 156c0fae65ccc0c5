"""The Fashion-MNIST campaign: the IE-Net paper's Table 3 at a real budget, resumable.

    nice -n 10 .venv/bin/python benchmarks/campaign.py [--threads 1] [--only NAME ...]
        [--list] [--summarize] [--smoke]

Every run trains `configs/fashion_mnist_resnet20_<base variant>.yaml` with the same
budget (`BUDGET`): the whole training split less a 5,000-image validation split held out
of it, ResNet-20 at 28x28, batch 128, SGD with the cosine learning rate and the IEE
schedule both set per step, the gradient clipped to a global norm (`clip_norm`), `epochs`
epochs. (The first budget, `e8_b128_v5000`, stepped the learning rate per epoch; its IE-Net
collapsed in the last epochs: benchmarks/stability.py and docs/results.md show why; its
results are kept in benchmarks/results/campaign-e8_b128_v5000/.) The validation split
picks `best.keras`; the test split is used for nothing but the reported numbers (the
final model's top-1 and the best-on-validation model's top-1).

The runs, in order (`jobs()`): Table 3 — fp, bireal, rsign, iebc (K=2), iee, ienet (K=2)
and ienet with `model.compat: release` — for seed 0, then seed 1, then seed 2 (so that
seed-paired differences exist as early as possible); then ienet+el and ienet+ir2net, and
the K sweep of ienet (K = 1..4), with 2 seeds each; last the probes (`PROBES`): a Table-3
run with overrides that test one explanation of a result (`ienet_k2_approx`: IE-Net with
iee's ApproxSign activation estimator; `ienet_k2_apart`: IE-Net whose IE-BC branches start
apart), 2 seeds each.

One run at a time (`--workers N`: N at a time, in order), each in its own process
(`--threads` TF threads), into `runs/campaign/<budget id>/<run>/` (an `ienet train` run
directory: an interrupted run resumes at its first uncommitted epoch). A finished run
writes `benchmarks/results/campaign/<run>.json` (its row, per-epoch history and
provenance); a run with such a file is never trained again. A job whose config does not
validate (a feature not built yet) is reported and skipped, and so is a run that another
process is training (its directory is locked), so two campaigns can share the runs.
`benchmarks/results/campaign.json` is regenerated from the per-run files (and the progress
of unfinished runs) after every run, and by `--summarize`.

`--smoke` runs the same harness on the embedded digits data (two variants, one epoch)
into runs/bench-smoke/campaign/: seconds, for CI.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if __package__ in (None, ""):  # run as a script: make `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import (
    RESULTS,
    load,
    mean_std,
    provenance,
    provenance_lines,
    result_section,
    run_script,
    set_tf_threads,
    t_interval,
    table,
    write_result,
)

if TYPE_CHECKING:
    from ienet_tf.report.figures import KPoint

ROOT = Path(__file__).resolve().parents[1]

TABLE3 = (
    ("fp", None, None),
    ("bireal", None, None),
    ("rsign", None, None),
    ("iebc", 2, None),
    ("iee", None, None),
    ("ienet", 2, None),
    ("ienet", 2, "release"),
)
TABLE3_SEEDS = (0, 1, 2)
EXTRAS = (("ienet+el", None, None), ("ienet+ir2net", None, None))
K_SWEEP = (1, 2, 3, 4)
EXTRA_SEEDS = (0, 1)
#: Probes: a Table-3 run with config overrides that test one explanation of a result,
#: trained after everything else (or at once with `--only`). name -> (what, overrides).
PROBES = {
    # ienet differs from iee in its convolution (IE-BC) AND its activation estimator (the
    # release's IEE one, sharpening to q_a = 10); this ienet has iee's ApproxSign.
    "approx": (
        "the activations' backward pass is ApproxSign (iee's) instead of the IEE estimator",
        ("model.layer.input_quantizer=approx_sign",),
    ),
    # The release starts IE-BC's thresholds at 0 and lambda_2 near 0: after 8 epochs the
    # second branch differs from the first in ~2% of the codes (stability.py branches).
    "apart": (
        "IE-BC's branches start apart: thresholds at -0.5 and +0.5, lambda_2 at 1",
        (
            "model.layer.thresholds_initializer="
            "{class_name: SpreadThresholds, config: {width: 0.5}}",
            "model.layer.lambdas_initializer={class_name: Constant, config: {value: 1.0}}",
        ),
    ),
}
PROBE_JOBS = (("ienet", 2, None, "approx"), ("ienet", 2, None, "apart"))
#: What docs/results.md reports, declared here once and written into campaign.json: the
#: groups in order (group, label, K, the paper's CIFAR-10 Table 3 top-1 for orientation),
#: the seed-paired differences (first - second) and the groups whose last epochs it shows
#: (the IEE estimator's, where the schedule sharpens q).
GROUPS = (
    ("fp", "fp", "-", "92.1"),
    ("bireal", "bireal", "-", "85.74 ± 0.19"),
    ("rsign", "rsign", "-", "86.88 ± 0.27"),
    ("iebc_k2", "iebc", "2", "88.34 ± 0.15"),
    ("iee", "iee", "-", "86.47 ± 0.09"),
    ("ienet_k2", "ienet", "2", "88.54 ± 0.14"),
    ("ienet_k2_release", "ienet (compat release)", "2", "88.54 ± 0.14"),
    ("ienet_el", "ienet+el", "2", None),
    ("ienet_ir2net", "ienet+ir2net", "2", None),
    ("ienet_k1", "ienet (K sweep)", "1", None),
    ("ienet_k3", "ienet (K sweep)", "3", None),
    ("ienet_k4", "ienet (K sweep)", "4", None),
    ("ienet_k2_approx", "ienet, ApproxSign activations (probe)", "2", None),
    ("ienet_k2_apart", "ienet, branches started apart (probe)", "2", None),
)
PAIRS = (
    ("ienet_k2", "bireal"),
    ("iee", "bireal"),
    ("ienet_k2", "iee"),
    ("ienet_k2_approx", "iee"),
    ("ienet_k2", "ienet_k2_approx"),
    ("ienet_k2_apart", "ienet_k2"),
)
LAST_EPOCH_GROUPS = ("iee", "ienet_k2", "ienet_k2_release", "ienet_k2_approx", "ienet_k2_apart")
PROBE_SEEDS = (0, 1)


@dataclasses.dataclass(frozen=True)
class Budget:
    """What every run of the campaign shares."""

    epochs: int = 8
    batch_size: int = 128
    validation_examples: int = 5000
    subset: int | None = None  # None: the whole training split less the validation split
    test_subset: int | None = None  # None: all 10,000 test images
    per_step_schedule: bool = True
    # The learning rate per step too: with a per-step q and a per-epoch LR, the first
    # budget's IE-Net reached its sharp q (gradients ~200x larger) at an unannealed LR and
    # collapsed (benchmarks/stability.py, docs/results.md).
    lr_per_step: bool = True
    # ... and clipped: the replay of the collapsed epochs stays stable with clip 1 or 5; 5
    # binds only in the first ~5 steps (|g| ~100 at init, ~1 after 20 steps) and at large q.
    clip_norm: float | None = 5.0
    config_template: str = "configs/fashion_mnist_resnet20_{base}.yaml"

    @property
    def name(self) -> str:
        """Data set and model of the runs, from the config template (`fashion_mnist_resnet20`)."""
        return Path(self.config_template).stem.replace("_{base}", "").removesuffix("_ienet")

    @property
    def id(self) -> str:
        parts = [f"e{self.epochs}", f"b{self.batch_size}", f"v{self.validation_examples}"]
        if self.subset:
            parts.append(f"n{self.subset}")
        if self.lr_per_step:
            parts.append("lrstep")
        if self.clip_norm:
            parts.append(f"clip{self.clip_norm:g}")
        return "_".join(parts)

    def overrides(self, job: Job) -> list[str]:
        items = [
            f"model.variant={job.variant}",
            f"train.epochs={self.epochs}",
            f"train.batch_size={self.batch_size}",
            f"train.seed={job.seed}",
            f"data.validation_examples={self.validation_examples}",
            f"iee.per_step={str(self.per_step_schedule).lower()}",
            f"train.lr_per_step={str(self.lr_per_step).lower()}",
            f"train.clip_norm={'null' if self.clip_norm is None else self.clip_norm}",
        ]
        if self.subset is not None:
            items.append(f"data.subset={self.subset}")
        if self.test_subset is not None:
            items.append(f"data.test_subset={self.test_subset}")
        items.append(f"model.k={'null' if job.k is None else job.k}")  # null: the default
        if job.compat is not None:
            items.append(f"model.compat={job.compat}")
        if job.probe is not None:
            items += PROBES[job.probe][1]
        return items


BUDGET = Budget()
SMOKE_BUDGET = Budget(
    epochs=1,
    batch_size=32,
    validation_examples=32,
    subset=64,
    test_subset=64,
    config_template="configs/digits_convnet_ienet.yaml",
)
SMOKE_JOBS = (("bireal", None, None), ("ienet", 2, None))
SMOKE_DIR = ROOT / "runs" / "bench-smoke" / "campaign"


@dataclasses.dataclass(frozen=True)
class Job:
    """One training run of the campaign."""

    variant: str
    k: int | None
    compat: str | None
    seed: int
    probe: str | None = None  # a key of PROBES: its overrides apply on top of the budget's

    @property
    def name(self) -> str:
        k = f"_k{self.k}" if self.k is not None else ""
        compat = f"_{self.compat}" if self.compat else ""
        probe = f"_{self.probe}" if self.probe else ""
        return f"{self.variant.replace('+', '_')}{k}{compat}{probe}_s{self.seed}"

    @property
    def group(self) -> str:
        """The table cell of the run: variant, K and compat without the seed."""
        return self.name.rsplit("_s", 1)[0]


def jobs(smoke: bool = False) -> list[Job]:
    """Every run of the campaign, in the order it trains them."""
    if smoke:
        return [Job(v, k, c, 0) for v, k, c in SMOKE_JOBS]
    table3 = [Job(v, k, c, seed) for seed in TABLE3_SEEDS for v, k, c in TABLE3]
    extras = [Job(v, k, c, seed) for seed in EXTRA_SEEDS for v, k, c in EXTRAS]
    sweep = [Job("ienet", k, None, seed) for seed in EXTRA_SEEDS for k in K_SWEEP]
    probes = [Job(v, k, c, seed, probe) for seed in PROBE_SEEDS for v, k, c, probe in PROBE_JOBS]
    seen = {job.name for job in table3}
    return table3 + extras + [job for job in sweep if job.name not in seen] + probes


def template_path(config_template: str, base: str) -> Path:
    """The config file a budget's `config_template` gives base variant `base` (`ienet`)."""
    return ROOT / config_template.format(base=base)


def make_config(job: Job, budget: Budget):
    """The validated config of `job` (a `ConfigError` if the library cannot build it)."""
    from ienet_tf import config as config_lib

    template = template_path(budget.config_template, job.variant.split("+")[0])
    return config_lib.load(template, budget.overrides(job))


# ----------------------------------------------------------------------------- one run


def run_job(job: Job, budget: Budget, work_dir: Path, results_dir: Path, threads: int) -> dict:
    """Train (or resume) `job`, evaluate it and write its result file; returns the row."""
    set_tf_threads(threads)
    from ienet_tf.train import train

    config = make_config(job, budget)
    metrics = train(config, work_dir / job.name, verbose=0)
    from ienet_tf.runs import Run

    history = Run(work_dir / job.name).history()
    row = {
        **_job_fields(job),
        "complete": True,
        "epochs": metrics["epochs"],
        "train_examples": metrics["train_examples"],
        "validation_examples": metrics["validation_examples"],
        "test_top1": metrics["test_accuracy"],
        "test_top1_best_val": metrics["test_accuracy_best_val"],
        "val_top1_best": metrics["val_accuracy_best"],
        "best_epoch": metrics["best_epoch"],
        "train_time_s": metrics["wall_time_s"],
        "threads": threads,
        "history": [
            {key: row[key] for key in ("epoch", "loss", "accuracy", "val_accuracy") if key in row}
            for row in history
        ],
    }
    write_result(results_dir / f"{job.name}.json", {"budget": dataclasses.asdict(budget), **row})
    return row


def _job_fields(job: Job) -> dict:
    from ienet_tf.models import get_variant

    k = job.k if job.k is not None else get_variant(job.variant).k
    return {
        "run": job.name,
        "group": job.group,
        "variant": job.variant,
        "k": k,
        "compat": job.compat or "default",
        "probe": job.probe,
        "seed": job.seed,
    }


# ----------------------------------------------------------------------------- the campaign


def finished(job: Job, budget: Budget, results_dir: Path) -> dict | None:
    """The result of `job` under `budget` if it has one."""
    path = results_dir / f"{job.name}.json"
    if not path.exists():
        return None
    result = json.loads(path.read_text())
    return result if result.get("budget") == dataclasses.asdict(budget) else None


def _progress(job: Job, work_dir: Path) -> dict:
    """The row of a run that has not finished: its committed epochs so far."""
    from ienet_tf.runs import Run

    try:
        history = Run(work_dir / job.name).history()
    except Exception:  # an unreadable directory is simply not started
        history = []
    return {
        **_job_fields(job),
        "complete": False,
        "epochs_done": len(history),
        "test_top1": None,
        "test_top1_best_val": None,
        "val_top1_best": max((row["val_accuracy"] for row in history), default=None),
    }


def reporting() -> dict:
    """What docs/results.md reports of a campaign (`GROUPS`, `PAIRS`, `LAST_EPOCH_GROUPS`),
    as campaign.json holds it."""
    return {
        "groups": [
            {"group": group, "label": label, "k": k, "paper_cifar10": paper}
            for group, label, k, paper in GROUPS
        ],
        "pairs": [list(pair) for pair in PAIRS],
        "last_epoch_groups": list(LAST_EPOCH_GROUPS),
    }


def summarize(budget: Budget, work_dir: Path, results_dir: Path, output: Path, all_jobs) -> dict:
    """Regenerate campaign.json from the per-run result files."""
    rows = []
    for job in all_jobs:
        result = finished(job, budget, results_dir)
        if result is None:
            rows.append(_progress(job, work_dir))
        else:
            rows.append({k: v for k, v in result.items() if k not in ("provenance", "budget")})
    done = [row for row in rows if row["complete"]]
    payload = {
        "benchmark": "campaign",
        "data": "fashion_mnist" if budget is BUDGET else "digits (smoke)",
        "model": "resnet20" if budget is BUDGET else "convnet (smoke)",
        "budget": {
            **dataclasses.asdict(budget),
            "id": budget.id,
            "table3_seeds": list(TABLE3_SEEDS),
            "extra_seeds": list(EXTRA_SEEDS),
            "probe_seeds": list(PROBE_SEEDS),
            "probes": {
                name: {"what": what, "overrides": list(overrides)}
                for name, (what, overrides) in PROBES.items()
            },
            "optimizer": "SGD momentum 0.9, lr 0.1, cosine per "
            + ("step" if budget.lr_per_step else "epoch")
            + ", weight decay 1e-4 (all)"
            + (f", gradient clipped to norm {budget.clip_norm:g}" if budget.clip_norm else ""),
        },
        **reporting(),
        "complete_runs": len(done),
        "total_runs": len(rows),
        "machine_time_s": sum(row["train_time_s"] for row in done),
        "runs": rows,
    }
    write_result(output, payload)
    return payload


# ----------------------------------------------------------------------------- docs/results.md

#: The command that writes campaign.json (the "not run yet" line names it).
COMMAND = "make campaign"
#: The first budget's results (per-epoch learning rate), kept beside the current ones.
FIRST_BUDGET_DIR = "campaign-e8_b128_v5000"
#: How many of the last epochs `last_epoch_rows` shows.
LAST_EPOCHS = 4
#: The columns of `table3_rows`.
TABLE3_HEADER = (
    "variant",
    "K",
    "runs",
    "test top-1 % (final)",
    "min-max",
    "test top-1 % (best on val)",
    "val top-1 % (best)",
    "CIFAR-10 paper (orientation)",
)
#: The models of a run that `paired_rows` compares: its key in campaign.json, its label.
PAIRED_MODELS = (("test_top1", "final"), ("test_top1_best_val", "best on val"))
PAIRED_HEADER = ("difference", "model", "seeds", "mean", "95% interval", "per seed")


def table3_rows(runs: Sequence[dict], groups: Sequence[dict]) -> list[list[str]]:
    """One row per group (campaign.json's `groups`, in order) that has runs: its complete
    runs' test top-1 (final, best on validation: mean ± std over the seeds) and the paper's
    CIFAR-10 number beside it."""
    rows = []
    for entry in groups:
        group, label, k = entry["group"], entry["label"], entry["k"]
        members = [run for run in runs if run["group"] == group]
        done = [run for run in members if run["complete"]]
        if not members:
            continue
        pending = len(members) - len(done)
        status = f"{len(done)}/{len(members)}" + (f" (+{pending} pending)" if pending else "")
        cifar = entry["paper_cifar10"] or "-"
        if not done:
            rows.append([label, k, status, "pending", "-", "pending", "pending", cifar])
            continue
        final = [run["test_top1"] for run in done]
        best = [run["test_top1_best_val"] for run in done]
        val = [run["val_top1_best"] for run in done]
        spread = f"{min(final) * 100:.2f}-{max(final) * 100:.2f}"
        rows.append(
            [label, k, status, mean_std(final), spread, mean_std(best), mean_std(val), cifar]
        )
    return rows


def paired_rows(runs: Sequence[dict], pairs: Sequence[Sequence[str]]) -> list[list[str]]:
    """Seed-paired differences of the test top-1 of the final and of the best-on-validation
    models, in percentage points, with a 95% t-interval over the seeds both runs have."""
    rows = []
    for first, second in pairs:
        for key, model in PAIRED_MODELS:
            done = {(run["group"], run["seed"]): run[key] for run in runs if run["complete"]}
            seeds = sorted(s for g, s in done if g == first and (second, s) in done)
            diffs = [(done[first, s] - done[second, s]) * 100 for s in seeds]
            label = f"{first} - {second}"
            if not diffs:
                rows.append([label, model, 0, "pending", "-", "-"])
                continue
            mean = statistics.fmean(diffs)
            interval = "n = 1: no interval"
            if len(diffs) > 1:
                low, high = t_interval(diffs)
                interval = f"[{low:+.2f}, {high:+.2f}]"
            per_seed = ", ".join(f"s{s}: {d:+.2f}" for s, d in zip(seeds, diffs, strict=True))
            rows.append([label, model, len(diffs), f"{mean:+.2f}", interval, per_seed])
    return rows


def k_sweep(runs: Sequence[dict]) -> list[KPoint]:
    """The K sweep figure's points: the test error of the complete plain
    IE-Net runs (default compat, no probe) per K, mean and min-max over the seeds."""
    from ienet_tf.report import figures

    errors: dict[int, list[float]] = {}
    for run in runs:
        plain = run["variant"] == "ienet" and run["compat"] == "default" and not run.get("probe")
        if run["complete"] and plain:
            errors.setdefault(run["k"], []).append(1.0 - run["test_top1"])
    return [
        figures.KPoint(k, sum(e) / len(e), min(e), max(e), len(e))
        for k, e in sorted(errors.items())
    ]


def curves(result: dict) -> dict[str, list[list[float]]]:
    """The accuracy-vs-epoch figure's curves: per group label (campaign.json's order), the
    validation top-1 history of each complete run that recorded one."""
    done = [run for run in result["runs"] if run["complete"]]
    found = {}
    for entry in result["groups"]:
        histories = [
            [row["val_accuracy"] for row in run["history"]]
            for run in done
            if run["group"] == entry["group"] and run.get("history")
        ]
        if histories:
            found[entry["label"]] = histories
    return found


def _budget_lines(result: dict) -> list[str]:
    """What the runs shared, and how many have finished."""
    budget = result["budget"]
    done = [run for run in result["runs"] if run["complete"]]
    if not done:
        return [f"Budget `{budget['id']}`: no run complete yet.", ""]
    test = f"the first {budget['test_subset']:,}" if budget.get("test_subset") else "all 10,000"
    return [
        f"Budget (`{budget['id']}`): {budget['epochs']} epochs, batch {budget['batch_size']}, "
        f"the whole training split less {budget['validation_examples']:,} validation images "
        f"({done[0]['train_examples']:,} trained on), per-step IEE schedule, "
        f"{budget['optimizer']}; `best.keras` chosen on the validation split, top-1 on "
        f"{test} test images. {result['complete_runs']} of {result['total_runs']} runs "
        f"complete; machine time of the complete runs "
        f"{result['machine_time_s'] / 3600:.1f} h.",
        "",
    ]


def _probe_lines(budget: dict) -> list[str]:
    """The probes and the overrides each adds; nothing without probes."""
    probes = budget.get("probes") or {}
    if not probes:
        return []
    return [
        "Probes (a Table-3 run with overrides that test one explanation, "
        f"{len(budget.get('probe_seeds', [])) or 'its'} seeds): "
        + "; ".join(
            f"`{name}`: {probe['what']} (`{', '.join(probe['overrides'])}`)"
            for name, probe in probes.items()
        )
        + ".",
        "",
    ]


@result_section(
    "campaign.json",
    "## Campaign: Fashion-MNIST, ResNet-20, the paper's Table 3 at a real budget",
    COMMAND,
)
def section(result: dict, figures_dir: Path, output: Path, notes: Sequence[str] = ()) -> list[str]:
    """The Fashion-MNIST campaign: Table 3 at a real budget, paired differences, the K sweep
    and accuracy-vs-epoch curves (drawn into `figures_dir`, linked relative to the page
    `output`). `notes`: lines other benchmarks add under Table 3 (stability's pointer to
    the final models whose accuracy hinges on their BatchNorm statistics)."""
    from ienet_tf.report import figures

    runs = result["runs"]
    lines = [
        *_budget_lines(result),
        *table(TABLE3_HEADER, table3_rows(runs, result["groups"])),
        *_probe_lines(result["budget"]),
        *notes,
        "Seed-paired differences of the test top-1 of the final and of the best-on-validation "
        "models (percentage points; 95% t-interval over the seeds both runs have):",
        "",
        *table(PAIRED_HEADER, paired_rows(runs, result["pairs"])),
    ]
    points = k_sweep(runs)
    if points:
        figure = figures.plot_k_sweep(
            points, figures_dir / "campaign_k_sweep.png", "IE-Net: test error vs K"
        )
        lines += [f"![K sweep]({os.path.relpath(figure, output.parent)})", ""]
    found = curves(result)
    if found:
        figure = figures.accuracy_curves(
            found, figures_dir / "campaign_curves.png", "validation top-1 (%)"
        )
        lines += [
            "Validation top-1 after every epoch (mean over seeds, shaded min-max):",
            "",
            f"![accuracy vs epoch]({os.path.relpath(figure, output.parent)})",
            "",
        ]
    return [*lines, *provenance_lines(result)]


def first_budget_lines(results_dir: Path) -> list[str]:
    """Table 3 of the first budget's complete runs (`FIRST_BUDGET_DIR`), in this campaign's
    groups (its campaign.json predates `groups`); nothing without its file."""
    earlier = load(results_dir / FIRST_BUDGET_DIR / "campaign.json")
    if not earlier:
        return []
    done = [run for run in earlier["runs"] if run["complete"]]
    return [
        f"The first budget (`{earlier['budget']['id']}`: per-step IEE schedule, "
        f"{earlier['budget']['optimizer']}), seed 0 (superseded; kept in "
        f"`benchmarks/results/{FIRST_BUDGET_DIR}/`):",
        "",
        *table(TABLE3_HEADER, table3_rows(done, reporting()["groups"])),
    ]


def schedule(budget: dict) -> tuple[float, float]:
    """The IEE schedule (t_min, t_max) the campaign's ienet config trains with; the budget
    overrides neither, so every IEE variant of the campaign shares it."""
    from ienet_tf import config as config_lib

    iee = config_lib.load(template_path(budget["config_template"], "ienet")).iee
    return iee.t_min, iee.t_max


def last_epoch_rows(result: dict) -> tuple[range, list[list]]:
    """The campaign's last `LAST_EPOCHS` epochs and, per group of `last_epoch_groups` with
    a complete run, its training loss at each (mean over the complete seeds; "" where no
    history reaches the epoch): [group, seeds, loss...]."""
    total = result["budget"]["epochs"]
    epochs = range(max(total - LAST_EPOCHS, 0), total)
    done = [run for run in result["runs"] if run["complete"] and run.get("history")]
    rows = []
    for group in result["last_epoch_groups"]:
        members = [run for run in done if run["group"] == group]
        losses: dict[int, list[float]] = {}
        for run in members:
            for row in run["history"]:
                losses.setdefault(row["epoch"], []).append(row["loss"])
        if losses:
            cells = [f"{statistics.fmean(losses[e]):.4f}" if e in losses else "" for e in epochs]
            rows.append([group, len(members), *cells])
    return epochs, rows


def last_epochs_lines(result: dict | None) -> list[str]:
    """The training loss of the IEE variants over the campaign's last epochs, where the
    schedule sharpens q (`last_epoch_rows`); nothing without a campaign or its rows."""
    if not result:
        return []
    from ienet_tf.schedule import iee_q

    epochs, rows = last_epoch_rows(result)
    if not rows:
        return []
    t_min, t_max = schedule(result["budget"])
    q_from = iee_q(epochs[0], result["budget"]["epochs"], t_min, t_max)
    return [
        "### The last epochs of the IEE variants",
        "",
        "Training loss (mean over the complete seeds) over the campaign's last epochs, where "
        f"the per-step IEE schedule (the configs' t_min {t_min:g}, t_max "
        f"{t_max:g}) raises q from {q_from:.2g} to {10**t_max:.3g}. The IEE weight estimator "
        "sharpens with q in every variant here; IE-Net's activation estimator too (with "
        "max(q, 1)), iee's and the approx probe's (ApproxSign) do not:",
        "",
        *table(["group", "seeds", *(f"epoch {e}" for e in epochs)], rows),
    ]


# ----------------------------------------------------------------------------- the ready model

PUBLISHED_GROUP = "ienet_k2"  # IE-Net, K=2, LCE-exportable (not the release-compat network)
READY_DIR = ROOT / "converters" / "ready"


def best_run(budget: Budget, results_dir: Path, all_jobs, group: str = PUBLISHED_GROUP):
    """The complete run of `group` with the best validation top-1 (never chosen on the
    test split); None when none has finished."""
    done = [
        (result["val_top1_best"], -job.seed, job)
        for job in all_jobs
        if job.group == group and (result := finished(job, budget, results_dir))
    ]
    return max(done, key=lambda entry: entry[:2])[2] if done else None


def publish(budget: Budget, work_dir: Path, results_dir: Path, destination: Path, all_jobs):
    """Publish the best complete `PUBLISHED_GROUP` run at `destination`: its checkpoint
    chosen on validation as a self-contained run (`Run.publish(..., which="best")`), the
    verified LCE `.tflite` with its sidecar, and a README with its numbers. Returns the
    published `Run`."""
    from ienet_tf.export import to_tflite
    from ienet_tf.runs import Run
    from ienet_tf.train import test_images

    job = best_run(budget, results_dir, all_jobs)
    if job is None:
        raise SystemExit(f"--publish: no complete {PUBLISHED_GROUP} run yet; see --list")
    result = finished(job, budget, results_dir)

    def export(staged: Run) -> None:
        config = staged.config()
        images = test_images(config, 64)
        source = {
            "campaign_run": job.name,
            "budget": budget.id,
            "selected_by": f"best validation top-1 of the complete {PUBLISHED_GROUP} runs",
            "parity_inputs": f"first {len(images)} {config.data.name} test images",
        }
        exported = to_tflite(staged.model(), staged.path / "model.tflite", images, source=source)
        readme = READY_README.format(
            name=destination.name,
            run=job.name,
            budget=budget.id,
            test=result["test_top1_best_val"] * 100,
            epoch=result["best_epoch"],
            val=result["val_top1_best"] * 100,
            keras=staged.model_path("final").stat().st_size,
            tflite=exported.size_bytes,
            ops=exported.op_histogram,
        )
        (staged.path / "README.md").write_text(readme)

    # The checkpoint chosen on validation, not the final model: a run whose last epochs
    # collapse (seen: ienet_k2_s0) still publishes what validation picked.
    return Run(work_dir / job.name).publish(destination, finish=export, which="best")


READY_README = """# {name}

IE-Net (K=2) ResNet-20 on Fashion-MNIST (28x28), the campaign run `{run}` (budget
`{budget}`), chosen as the complete IE-Net K=2 run with the best validation top-1. Its
checkpoint with the best validation top-1 (epoch {epoch}, validation {val:.2f}%) is the
model here: test top-1 {test:.2f}%. Written by `python benchmarks/campaign.py --publish`;
do not edit.

- `model.keras` ({keras:,} bytes): that checkpoint, weights only. This directory is an
  `ienet train` run: `ienet evaluate --run DIR`, `ienet export --run DIR --output X.tflite`,
  `ienet report --run DIR` read it.
- `model.tflite` ({tflite:,} bytes) and `model.tflite.json`: the LCE conversion, verified
  (op check, parity against the Keras model). Ops: {ops}.
  `ienet bench --model DIR/model.tflite`, or see converters/ for ARM devices.
- `config.yaml`, `metrics.json`: the run's config and metrics (`test_accuracy`: this model's).
"""


# The exit code of a worker whose run directory another process holds (a second campaign
# on the other core, say): that run is skipped, not failed.
BUSY = 3


def _worker_command(job: Job, args: argparse.Namespace) -> list[str]:
    command = [sys.executable, str(Path(__file__).resolve()), "--worker", job.name]
    command += ["--threads", str(args.threads), "--work-dir", str(args.work_dir)]
    command += ["--results-dir", str(args.results_dir)]
    return command + (["--smoke"] if args.smoke else [])


class _Workers:
    """The worker processes running now, so that an interrupted campaign stops them (the
    runs resume at their epoch next time) and starts no more."""

    def __init__(self):
        self._lock = threading.Lock()
        self._running: set[subprocess.Popen] = set()
        self.stopping = False

    def run(self, command: list[str], log, env: dict) -> int | None:
        """The worker's exit code; None if the campaign is stopping."""
        with self._lock:
            if self.stopping:
                return None
            child = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
            self._running.add(child)
        try:
            code = child.wait()
        finally:
            with self._lock:
                self._running.discard(child)
        return None if self.stopping else code

    def stop(self) -> None:
        with self._lock:
            self.stopping = True
            for child in self._running:
                child.terminate()


def _train(job: Job, prefix: str, args, budget: Budget, workers: _Workers) -> bool:
    """Train `job` in a worker process unless it is finished, cannot be built yet or another
    process holds it; print one line about it. False if it failed."""
    if finished(job, budget, args.results_dir):
        print(f"{prefix}: finished before", flush=True)
        return True
    try:
        make_config(job, budget)
    except ValueError as error:  # ConfigError: the library cannot build this run yet
        print(f"{prefix}: skipped, its config does not validate: {error}", flush=True)
        return True
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2")}
    log_path = args.work_dir / "logs" / f"{job.name}.log"
    start = time.perf_counter()
    with log_path.open("a") as log:
        code = workers.run(_worker_command(job, args), log, env)
    seconds = time.perf_counter() - start
    if code is None:
        print(f"{prefix}: interrupted (resumes at its epoch next time)", flush=True)
        return True
    if code == BUSY:
        print(f"{prefix}: skipped, another process is training it", flush=True)
        return True
    result = finished(job, budget, args.results_dir)
    if code == 0 and result:
        print(
            f"{prefix}: test top-1 {result['test_top1']:.4f} (best-on-val "
            f"{result['test_top1_best_val']:.4f}), {seconds / 60:.1f} min",
            flush=True,
        )
        return True
    print(f"{prefix}: FAILED (exit {code}); log {log_path}", flush=True)
    return False


def run_campaign(args: argparse.Namespace, budget: Budget, selected: Sequence[Job]) -> int:
    """Train the `selected` runs, `args.workers` at a time (each its own process), taking
    them in order; campaign.json is regenerated after each."""
    from concurrent.futures import ThreadPoolExecutor

    (args.work_dir / "logs").mkdir(parents=True, exist_ok=True)
    summary_lock = threading.Lock()
    workers = _Workers()

    def one(numbered: tuple[int, Job]) -> str | None:
        index, job = numbered
        try:
            ok = _train(job, f"[{index}/{len(selected)}] {job.name}", args, budget, workers)
            with summary_lock:  # one writer of campaign.json at a time
                summarize(budget, args.work_dir, args.results_dir, args.output, jobs(args.smoke))
        except Exception:  # a bug: shown now, not when the pool reaches this job's turn
            traceback.print_exc()
            ok = False
        return None if ok else job.name

    pool = ThreadPoolExecutor(max_workers=args.workers)
    try:
        failed = [name for name in pool.map(one, enumerate(selected, 1)) if name]
    except BaseException:  # Ctrl-C, SIGTERM as KeyboardInterrupt...: stop the workers too
        workers.stop()
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        summarize(budget, args.work_dir, args.results_dir, args.output, jobs(args.smoke))
    if failed:
        print(f"{len(failed)} run(s) failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add = parser.add_argument
    add("--threads", type=int, default=1, help="TF threads per run (0: TF's default)")
    add("--workers", type=int, default=1, help="runs trained at the same time (default 1)")
    add("--only", nargs="+", metavar="RUN", help="train only these runs (names from --list)")
    add("--list", action="store_true", help="print the runs and whether they are finished")
    add("--summarize", action="store_true", help="only regenerate campaign.json")
    add(
        "--publish",
        nargs="?",
        const=True,
        type=Path,
        metavar="DIR",
        help="publish the best complete ienet K=2 run as a ready model "
        "(default converters/ready/<data>_<model>_ienet_k2)",
    )
    add("--smoke", action="store_true", help="the harness on tiny digits runs (CI)")
    add("--work-dir", type=Path, help="run directories (default runs/campaign/<budget id>)")
    add("--results-dir", type=Path, help="per-run results (default benchmarks/results/campaign)")
    add("--output", type=Path, help="default benchmarks/results/campaign.json")
    add("--worker", metavar="RUN", help=argparse.SUPPRESS)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    budget = SMOKE_BUDGET if args.smoke else BUDGET
    base = SMOKE_DIR if args.smoke else None
    args.work_dir = args.work_dir or (base or ROOT / "runs" / "campaign") / budget.id
    args.results_dir = args.results_dir or (
        base / "results" / "campaign" if base else RESULTS / "campaign"
    )
    args.output = args.output or (
        base / "results" / "campaign.json" if base else RESULTS / "campaign.json"
    )
    if args.threads < 0:
        raise SystemExit(f"--threads must be >= 0, got {args.threads}")
    if args.workers < 1:
        raise SystemExit(f"--workers must be >= 1, got {args.workers}")
    all_jobs = jobs(args.smoke)
    by_name = {job.name: job for job in all_jobs}
    if args.worker:
        from ienet_tf.errors import RunLockedError

        try:
            run_job(by_name[args.worker], budget, args.work_dir, args.results_dir, args.threads)
        except RunLockedError as error:
            print(error, file=sys.stderr)
            return BUSY
        return 0
    if args.list:
        for job in all_jobs:
            state = "finished" if finished(job, budget, args.results_dir) else "pending"
            print(f"{job.name:<28} {state}")
        return 0
    if args.publish:
        default = (base / "ready" if base else READY_DIR) / f"{budget.name}_{PUBLISHED_GROUP}"
        destination = default if args.publish is True else args.publish
        published = publish(budget, args.work_dir, args.results_dir, destination, all_jobs)
        print(f"published {published.path}")
        return 0
    if args.summarize:
        summarize(budget, args.work_dir, args.results_dir, args.output, all_jobs)
        print(f"wrote {args.output}")
        return 0
    unknown = sorted(set(args.only or ()) - set(by_name))
    if unknown:
        raise SystemExit(f"--only: unknown run(s) {unknown}; see --list")
    selected = [job for job in all_jobs if not args.only or job.name in args.only]
    print(
        f"campaign {budget.id}: {len(selected)} runs, {args.workers} at a time x "
        f"{args.threads} TF thread(s); runs in {args.work_dir}; "
        f"provenance commit {provenance()['commit'][:10]}",
        flush=True,
    )
    return run_campaign(args, budget, selected)


if __name__ == "__main__":
    run_script(main, interrupted="interrupted; run it again to resume")
