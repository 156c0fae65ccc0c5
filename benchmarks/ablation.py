"""Real-data ablation (the IE-Net paper's Table 3 and Fig. 7) on Fashion-MNIST, ResNet-20.

    .venv/bin/python benchmarks/ablation.py [--epochs 5] [--subset 2048] [--seeds 3]
        [--k-seeds 1] [--jobs 2] [--threads 1] [--estimate] [--smoke]

Every variant of `VARIANTS` (fp, bireal, rsign, iebc, iee, ienet, ienet+el, ienet+ir2net)
trains with the same recipe and budget (`configs/fashion_mnist_resnet20_<base>.yaml`, SGD +
cosine, the IEE schedule compressed to `--epochs` because `IEESchedule` spans
`train.epochs`) on the first `--subset` training images, for `--seeds` seeds; then `iebc` for
K = 1..5 (`--ks`, `--k-seeds` seeds; K = 2 is the Table-3 `iebc` run itself). Each run is one
`ienet_tf.train.train` call in its own process (`--jobs` at a time, `--threads` TF threads
each) into `<work-dir>/<variant>_k<K>_s<seed>/`. The trainer's per-epoch validation uses the
first `--monitor-test` test images (monitoring only, nothing is selected on it); the
reported top-1 is the final model on the full 10,000-image test split. An interrupted
ablation continues where it stopped: finished runs are not trained again, an interrupted run
resumes at its epoch (`BackupAndRestore`).

Writes benchmarks/results/ablation.json: per-run rows (variant, k, seed, test top-1, epochs,
subset, seconds) and mean / std (sample, n-1) / n per variant and per K, with the provenance
block of `common.write_result`. `--smoke` trains two variants and two K for one step each
into runs/bench-smoke/ (never the real results). `--estimate` times a few training steps of
every (variant, K) under the same `--jobs`/`--threads` and prints the expected wall time of
the whole ablation for the chosen budget, without training.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

from common import RESULTS, write_result

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"
BASE_VARIANTS = ("fp", "bireal", "rsign", "iebc", "iee", "ienet")
MODIFIED_VARIANTS = ("ienet+el", "ienet+ir2net")
# Table 3's columns and the IE-Net extensions: the one list every benchmark uses.
VARIANTS = (*BASE_VARIANTS, *MODIFIED_VARIANTS)
K_SWEEP_VARIANT = "iebc"
FULL_TEST = 10_000  # Fashion-MNIST's test split

# The default budget, calibrated on 2 x86 cores (Xeon 2.3 GHz, shared with other work):
# measured with 2 runs at a time x 1 TF thread (about twice the images/s of 1 run x 2
# threads), `--estimate` gives ~50 min for the 36 runs under load, ~40 min on a quiet
# machine. A faster training step or more cores: raise --subset / --epochs (see --estimate).
DEFAULTS = {
    "epochs": 5,
    "subset": 2048,
    "seeds": 3,
    "k_seeds": 1,  # K = 2 has the 3 Table-3 seeds; one more run per other K fits the hour
    "ks": (1, 2, 3, 4, 5),
    "jobs": 2,
    "threads": 1,
    "monitor_test": 500,
}
SMOKE = {
    "epochs": 1,
    "subset": 128,
    "seeds": 1,
    "k_seeds": 1,
    "ks": (1, 2),
    "variants": ("iebc",),
    "monitor_test": 128,
    "test_subset": 256,
}
SMOKE_DIR = ROOT / "runs" / "bench-smoke"


@dataclasses.dataclass(frozen=True)
class Job:
    """One training run of the ablation."""

    variant: str
    k: int | None  # None: the variant's default (2 for iebc/ienet, 1 otherwise)
    seed: int

    @property
    def name(self) -> str:
        k = self.k if self.k is not None else default_k(self.variant)
        return f"{self.variant.replace('+', '_')}_k{k}_s{self.seed}"


@dataclasses.dataclass(frozen=True)
class Budget:
    """What every run of one ablation shares."""

    epochs: int
    subset: int
    monitor_test: int
    test_subset: int | None  # None: the full test split

    def overrides(self, job: Job) -> list[str]:
        items = [
            f"model.variant={job.variant}",
            f"data.subset={self.subset}",
            f"data.test_subset={self.monitor_test}",
            f"train.epochs={self.epochs}",
            f"train.seed={job.seed}",
        ]
        return items + ([f"model.k={job.k}"] if job.k is not None else [])


def default_k(variant: str) -> int:
    """The K a variant trains with when none is given (2 for the multi-branch ones)."""
    from ienet_tf.models import get_variant

    return get_variant(variant).k


def jobs_for(variants: Sequence[str], seeds: int, ks: Sequence[int], k_seeds: int) -> list[Job]:
    """Table-3 runs, then the K-sweep runs that are not Table-3 runs already."""
    jobs = [Job(variant, None, seed) for variant in variants for seed in range(seeds)]
    seen = {job.name for job in jobs}
    for k in ks:
        for seed in range(k_seeds):
            job = Job(K_SWEEP_VARIANT, None if k == default_k(K_SWEEP_VARIANT) else k, seed)
            if job.name not in seen:
                seen.add(job.name)
                jobs.append(job)
    return jobs


def make_config(job: Job, budget: Budget):
    """The validated config of `job`: its base variant's Fashion-MNIST config + the budget."""
    from ienet_tf import config as config_lib

    base = job.variant.split("+")[0]
    return config_lib.load(CONFIGS / f"fashion_mnist_resnet20_{base}.yaml", budget.overrides(job))


def _set_threads(threads: int) -> None:
    import tensorflow as tf

    if threads > 0:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)


def _full_test_top1(run_dir: Path, config, test_subset: int | None) -> float:
    """Top-1 of the run's final model on the test split (all of it unless `test_subset`)."""
    import tensorflow as tf

    from ienet_tf.train import load_datasets, load_run

    _, model = load_run(run_dir)
    data = dataclasses.replace(config.data, test_subset=test_subset)
    test = load_datasets(dataclasses.replace(config, data=data), ("test",))["test"]
    model.compile(
        loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    return float(model.evaluate(test, verbose=0, return_dict=True)["accuracy"])


def run_one(job: Job, budget: Budget, work_dir: Path, threads: int) -> dict:
    """Train `job` (or resume it, or find it finished) and evaluate it on the test split."""
    _set_threads(threads)
    from ienet_tf.train import train

    run_dir = work_dir / job.name
    result_path = run_dir / "bench.json"
    if result_path.exists():
        previous = json.loads(result_path.read_text())
        if previous.get("budget") == dataclasses.asdict(budget):
            return previous
    config = make_config(job, budget)
    start = time.perf_counter()
    metrics = train(config, run_dir, verbose=0)
    train_s = time.perf_counter() - start
    start = time.perf_counter()
    top1 = _full_test_top1(run_dir, config, budget.test_subset)
    result = {
        "test_top1": top1,
        "monitor_top1": metrics["test_accuracy"],
        "fit_seconds": metrics["wall_time_s"],
        "train_seconds": train_s,
        "eval_seconds": time.perf_counter() - start,
        "resumed": metrics["epochs_this_invocation"] < metrics["epochs"],
        "threads": threads,
        "budget": dataclasses.asdict(budget),
    }
    result_path.write_text(json.dumps(result, indent=2) + "\n")
    return result


def time_steps(job: Job, budget: Budget, threads: int, steps: int = 6) -> dict:
    """Seconds per training step and per 128-image evaluation batch of `job`'s model."""
    _set_threads(threads)
    import tensorflow as tf

    from ienet_tf.train import build_model, compile_model, load_datasets

    config = make_config(job, budget)
    datasets = load_datasets(config)
    model = build_model(config)
    compile_model(model, config)
    train = datasets["train"].repeat()
    model.fit(train, epochs=1, steps_per_epoch=2, verbose=0)  # trace
    start = time.perf_counter()
    model.fit(train, epochs=1, steps_per_epoch=steps, verbose=0)
    step_s = (time.perf_counter() - start) / steps
    test = datasets["test"].take(4).cache()
    model.evaluate(test, verbose=0)
    start = time.perf_counter()
    model.evaluate(test, verbose=0)
    eval_s = (time.perf_counter() - start) / len(list(test))
    batch = config.train.batch_size
    tf.keras.backend.clear_session()
    return {"step_s": step_s, "eval_batch_s": eval_s * 128 / batch, "batch_size": batch}


# ----------------------------------------------------------------------------- scheduling


def _worker_command(job: Job, args: argparse.Namespace, mode: str) -> list[str]:
    command = [sys.executable, str(Path(__file__).resolve()), f"--{mode}"]
    command += ["--job", job.variant, str(job.k or 0), str(job.seed)]
    command += ["--epochs", str(args.epochs), "--subset", str(args.subset)]
    command += ["--monitor-test", str(args.monitor_test), "--threads", str(args.threads)]
    command += ["--work-dir", str(args.work_dir)]
    if args.test_subset is not None:
        command += ["--test-subset", str(args.test_subset)]
    return command


def run_pool(jobs: Sequence[Job], args: argparse.Namespace, mode: str) -> dict[str, dict]:
    """Run each job in its own process, `args.jobs` at a time; {job name: result or error}."""
    pending = list(jobs)
    running: dict[str, tuple[subprocess.Popen, Path]] = {}
    results: dict[str, dict] = {}
    log_dir = Path(args.work_dir) / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2")}
    total = len(pending)
    while pending or running:
        while pending and len(running) < args.jobs:
            job = pending.pop(0)
            out = log_dir / f"{job.name}.{mode}.json"
            out.unlink(missing_ok=True)
            log = (log_dir / f"{job.name}.{mode}.log").open("w")
            command = [*_worker_command(job, args, mode), "--result-file", str(out)]
            process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
            running[job.name] = (process, out)
        time.sleep(0.5)
        for name, (process, out) in list(running.items()):
            if process.poll() is None:
                continue
            del running[name]
            results[name] = _collect(name, process.returncode, out, log_dir, mode)
            print(f"[{len(results)}/{total}] {name}: {_describe(results[name])}", flush=True)
    return results


def _collect(name: str, returncode: int, out: Path, log_dir: Path, mode: str) -> dict:
    if returncode == 0 and out.exists():
        return json.loads(out.read_text())
    log = (log_dir / f"{name}.{mode}.log").read_text().strip().splitlines()
    last = log[-1] if log else f"exit status {returncode}"
    return {"error": f"{last} (log: {log_dir / f'{name}.{mode}.log'})"}


def _describe(result: dict) -> str:
    if "error" in result:
        return f"FAILED: {result['error']}"
    if "test_top1" in result:
        return f"top-1 {result['test_top1']:.4f} ({result['train_seconds']:.0f} s)"
    return f"{result['step_s'] * 1000:.0f} ms/step, {result['eval_batch_s'] * 1000:.0f} ms/eval"


# ----------------------------------------------------------------------------- results


def _stats(values: Iterable[float]) -> dict:
    values = list(values)
    return {
        "mean": statistics.fmean(values) if values else None,
        "std": statistics.stdev(values) if len(values) > 1 else None,
        "n": len(values),
        "min": min(values, default=None),
        "max": max(values, default=None),
    }


def _row(job: Job, result: dict, budget: Budget) -> dict:
    row = {
        "variant": job.variant,
        "k": job.k if job.k is not None else default_k(job.variant),
        "seed": job.seed,
        "run": job.name,
        "epochs": budget.epochs,
        "subset": budget.subset,
        "test_examples": budget.test_subset or FULL_TEST,
    }
    if "error" in result:
        return {**row, "test_top1": None, "error": result["error"]}
    measured = {key: value for key, value in result.items() if key != "budget"}
    return {**row, **measured, "error": None}


def aggregate(rows: Sequence[dict], variants: Sequence[str], ks: Sequence[int]) -> dict:
    """Mean/std/n of test top-1 per Table-3 variant (at its default K) and per K-sweep K."""
    ok = [row for row in rows if row["error"] is None]
    by_variant = {
        variant: _stats(
            r["test_top1"] for r in ok if r["variant"] == variant and r["k"] == default_k(variant)
        )
        for variant in variants
    }
    sweep = [row for row in ok if row["variant"] == K_SWEEP_VARIANT]
    by_k = {str(k): _stats(r["test_top1"] for r in sweep if r["k"] == k) for k in ks}
    return {"by_variant": by_variant, "k_sweep": {"variant": K_SWEEP_VARIANT, "by_k": by_k}}


def estimate(timings: dict[str, dict], jobs: Sequence[Job], budget: Budget, workers: int) -> dict:
    """Expected wall time of the ablation from measured step times (seconds)."""
    overhead_s = 20.0  # process start, data, model build and tracing, checkpoints, final save
    steps = budget.epochs * -(-budget.subset // 128)
    eval_batches = budget.epochs * -(-budget.monitor_test // 128)
    eval_batches += -(-(budget.test_subset or FULL_TEST) // 128)
    per_job = {}
    for job in jobs:
        timing = timings.get(job.name, {})
        if "step_s" not in timing:
            continue
        per_job[job.name] = (
            overhead_s + steps * timing["step_s"] + eval_batches * timing["eval_batch_s"]
        )
    total = sum(per_job.values())
    return {
        "per_run_s": per_job,
        "serial_s": total,
        "wall_s": max(total / workers, max(per_job.values(), default=0.0)),
        "workers": workers,
        "missing": [job.name for job in jobs if job.name not in per_job],
    }


# ----------------------------------------------------------------------------- CLI


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add = parser.add_argument
    add("--epochs", type=int, help=f"epochs per run (default {DEFAULTS['epochs']})")
    add("--subset", type=int, help=f"training images (default {DEFAULTS['subset']})")
    add("--seeds", type=int, help=f"seeds per Table-3 variant (default {DEFAULTS['seeds']})")
    add("--k-seeds", type=int, help=f"seeds per K-sweep K (default {DEFAULTS['k_seeds']})")
    add("--ks", type=int, nargs="*", help="K-sweep values (default 1..5; none: no sweep)")
    add("--variants", nargs="+", help=f"default: {' '.join(VARIANTS)}")
    add("--jobs", type=int, help=f"runs at a time (default {DEFAULTS['jobs']})")
    add("--threads", type=int, help=f"TF threads per run, 0 = TF's default ({DEFAULTS['threads']})")
    add("--monitor-test", type=int, help="test images of the per-epoch validation (monitoring)")
    add("--test-subset", type=int, help="evaluate on this many test images, not all 10,000")
    add("--work-dir", type=Path, help="run directories (default runs/bench/ablation/<budget>)")
    add("--output", type=Path, help="result file (default benchmarks/results/ablation.json)")
    add("--smoke", action="store_true", help="a tiny ablation into runs/bench-smoke/")
    add("--estimate", action="store_true", help="time steps, print the expected wall time")
    # A single run, in a worker process started by the pool.
    add("--run", action="store_true", help=argparse.SUPPRESS)
    add("--time", action="store_true", help=argparse.SUPPRESS)
    add("--job", nargs=3, help=argparse.SUPPRESS)
    add("--result-file", type=Path, help=argparse.SUPPRESS)
    return parser


def _resolve(args: argparse.Namespace) -> argparse.Namespace:
    """Fill unset options from the smoke or the default budget."""
    preset = {**DEFAULTS, **(SMOKE if args.smoke else {})}
    for key in ("epochs", "subset", "seeds", "k_seeds", "ks", "jobs", "threads", "monitor_test"):
        if getattr(args, key) is None:
            setattr(args, key, preset[key])
    if args.variants is None:
        args.variants = list(preset.get("variants", VARIANTS))
    if args.test_subset is None:
        args.test_subset = preset.get("test_subset")
    base = SMOKE_DIR if args.smoke else ROOT / "runs" / "bench"
    # One directory per budget: another budget trains new runs instead of clashing.
    budget_dir = f"e{args.epochs}_n{args.subset}_m{args.monitor_test}"
    args.work_dir = args.work_dir or base / "ablation" / budget_dir
    default_output = SMOKE_DIR / "results" / "ablation.json" if args.smoke else None
    args.output = args.output or default_output or RESULTS / "ablation.json"
    for key in ("epochs", "subset", "seeds", "jobs", "monitor_test"):
        if getattr(args, key) < 1:
            raise SystemExit(f"--{key.replace('_', '-')} must be >= 1, got {getattr(args, key)}")
    return args


def _budget(args: argparse.Namespace) -> Budget:
    return Budget(args.epochs, args.subset, args.monitor_test, args.test_subset)


def _worker(args: argparse.Namespace) -> int:
    variant, k, seed = args.job
    job = Job(variant, int(k) or None, int(seed))
    if args.run:
        result = run_one(job, _budget(args), args.work_dir, args.threads)
    else:
        result = time_steps(job, _budget(args), args.threads)
    args.result_file.write_text(json.dumps(result))
    return 0


def _print_table(summary: dict) -> None:
    for key, stats in [*summary["by_variant"].items(), *summary["k_sweep"]["by_k"].items()]:
        label = key if not key.isdigit() else f"{K_SWEEP_VARIANT} K={key}"
        if stats["n"]:
            std = f" ± {stats['std'] * 100:.2f}" if stats["std"] is not None else ""
            print(f"{label:>14}: {stats['mean'] * 100:.2f}{std} % (n={stats['n']})")
        else:
            print(f"{label:>14}: no finished run")


def main(argv: Sequence[str] | None = None) -> int:
    args = _resolve(_parser().parse_args(argv))
    if args.run or args.time:
        return _worker(args)
    budget = _budget(args)
    jobs = jobs_for(args.variants, args.seeds, args.ks, args.k_seeds)
    print(
        f"ablation: {len(jobs)} runs, {args.epochs} epochs x {args.subset} images, "
        f"{args.jobs} at a time x {args.threads} TF thread(s); work dir {args.work_dir}",
        flush=True,
    )
    start = time.perf_counter()
    if args.estimate:
        distinct = {(job.variant, job.k): job for job in jobs}
        timings = run_pool(list(distinct.values()), args, "time")
        by_name = {job.name: timings[distinct[(job.variant, job.k)].name] for job in jobs}
        result = estimate(by_name, jobs, budget, args.jobs)
        print(json.dumps({k: v for k, v in result.items() if k != "per_run_s"}, indent=2))
        print(f"expected wall time: {result['wall_s'] / 60:.1f} min")
        return 0
    # The costliest runs first, so the last ones to finish are short.
    order = {variant: i for i, variant in enumerate(reversed(VARIANTS))}
    jobs_sorted = sorted(jobs, key=lambda j: (order.get(j.variant, -1), -(j.k or 0)))
    results = run_pool(jobs_sorted, args, "run")
    rows = [_row(job, results[job.name], budget) for job in jobs]
    summary = aggregate(rows, args.variants, args.ks)
    payload = {
        "benchmark": "ablation",
        "data": "fashion_mnist",
        "model": "resnet20",
        "budget": {
            **dataclasses.asdict(budget),
            "test_examples": budget.test_subset or FULL_TEST,
            "seeds": args.seeds,
            "k_seeds": args.k_seeds,
            "batch_size": 128,
            "configs": "configs/fashion_mnist_resnet20_<base variant>.yaml",
        },
        "parallel": {"jobs": args.jobs, "threads_per_job": args.threads},
        "wall_seconds": time.perf_counter() - start,
        "rows": rows,
        "summary": summary,
    }
    write_result(args.output, payload)
    _print_table(summary)
    failed = [row["run"] for row in rows if row["error"]]
    print(f"wrote {args.output} ({payload['wall_seconds'] / 60:.1f} min)")
    if failed:
        print(f"{len(failed)} run(s) failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
