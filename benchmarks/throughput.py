"""Training throughput of CIFAR ResNet-20 for every ablation variant, with and without XLA.

    .venv/bin/python benchmarks/throughput.py [--label before|after] [--steps N] [--windows W]
    .venv/bin/python benchmarks/throughput.py --smoke [--output PATH]
    .venv/bin/python benchmarks/throughput.py --label precision --variants ienet --k 2 \
        --jit off --policies float32,mixed_float16,mixed_bfloat16
    # on a GPU: ResNet-18 at 224, float32 vs mixed_float16
    python benchmarks/throughput.py --label precision_gpu --model resnet18 --input-size 224 \
        --variants ienet --k 2 --jit off --policies float32,mixed_float16

One row per (variant, K, jit_compile): `fp`, `bireal`, `rsign`, `iee`, and `iebc` / `ienet`
with K = 1..5, each compiled with `jit_compile=False`, and again with `True` (XLA) for the
one-branch variants and K = 1, 2 (`XLA_K`: XLA compilation costs up to ~90 s a row on CPU),
and each under every `--policies` dtype policy (`train.mixed_precision`; default float32). A
model is built with `ienet_tf.models.build("resnet20", variant, k=K, input_shape=(32, 32, 3))`
and compiled as `ienet_tf.train.trainer.compile_model` does (SGD with momentum, sparse
categorical cross-entropy on logits, accuracy). Every row is measured in the same process, so
the ratios compare like with like.

The data is SYNTHETIC: one random batch of 128 images (32x32x3) and labels, kept in memory
and fed again every step with `model.train_on_batch`. That measures the model's training
step alone (forward, backward, SGD update), not an input pipeline; the speed of a training
step does not depend on the pixel values.

Timing: `--warmup` steps first (the first one traces and, with XLA, compiles), then
`--windows` timed windows of `--steps` steps each; the row reports the median window.

Result file (`benchmarks/results/throughput_<label>.json`; `--smoke` writes
`throughput_smoke.json` or `--output`, never a real result), one JSON object:

    provenance     command, commit, dirty flag, date, machine, versions (benchmarks/common.py)
    settings       model, batch_size, input_shape, warmup, steps, windows, synthetic_data
    note           free text (`--note`), e.g. where the measured code came from
    load           1-minute load average before and after the run (other work on the
                   machine slows every row; the ratios are more robust than images/s)
    rows           a list of rows, one per (variant, k, jit_compile):
        variant          "fp", "bireal", "rsign", "iebc", "iee" or "ienet"
        k                number of IE-BC branches (1 for the one-branch variants, null for fp)
        jit_compile      XLA on (true) or off (false)
        policy           the Keras dtype policy (`train.mixed_precision`)
        speed_vs_float32 images_per_s / images_per_s of the same row under float32
        images_per_s     batch_size / median step time (null if the row failed)
        step_ms          median step time in milliseconds (null if the row failed)
        window_ms        every timed window's mean step time in milliseconds
        speed_vs_bireal  images_per_s / images_per_s of `bireal` with the same jit_compile
                         (> 1: faster than Bi-Real; < 1: slower; null if either failed)
        cpu_ms           median CPU time per step of this process, all threads (ms)
        window_cpu_ms    every timed window's CPU time per step (ms)
        cpu_speed_vs_bireal  cpu_ms of `bireal` / cpu_ms of the row: like speed_vs_bireal
                         but by CPU time, which other processes on the machine disturb
                         much less than wall time (they take cores away, not work)
        first_step_s     seconds of the first step (tracing + compilation)
        other_cpu_cores  per window, CPU cores that other processes kept busy (from
                         /proc/stat; ~0 on a quiet machine)
        retried_windows  windows measured again because other processes were busy
        waited_for_quiet_s  seconds spent waiting for other processes to finish
        load_avg         1-minute load average when the row finished
        error            null, or the error message if building/compiling/training failed
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import tensorflow as tf

from ienet_tf import config as config_lib
from ienet_tf import precision
from ienet_tf.train import build_model, compile_model

if __package__ in (None, ""):  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.common import (
    RESULTS,
    load,
    not_run,
    num,
    provenance_lines,
    run_script,
    table,
    write_result,
)

MODEL = "resnet20"
INPUT_SHAPE = (32, 32, 3)
BATCH_SIZE = 128
NUM_CLASSES = 10
MULTI_BRANCH = ("iebc", "ienet")
#: The order of the rows: the paper's ablation order, then the K sweep of the IE-BC variants.
VARIANT_ORDER = ("fp", "bireal", "rsign", "iebc", "iee", "ienet")
SMOKE_CONFIGS = (("bireal", None), ("ienet", 1))
#: A timed window is measured again (up to `--retries` times) when other processes kept
#: more than this many CPU cores busy during it: with 2 cores a concurrent test run halves
#: the throughput and would make a row meaningless.
MAX_OTHER_CORES = 0.25
# With XLA on, only these K of iebc / ienet (compilation alone takes up to ~90 s a row here).
XLA_K = (1, 2)


def configs(k_values=range(1, 6)) -> list[tuple[str, int | None]]:
    """(variant, k) for every row: the one-branch variants once, iebc/ienet for each K."""
    rows: list[tuple[str, int | None]] = []
    for variant in VARIANT_ORDER:
        if variant in MULTI_BRANCH:
            rows.extend((variant, k) for k in k_values)
        else:
            rows.append((variant, None))
    return rows


def synthetic_batch(input_shape=INPUT_SHAPE, seed: int = 0) -> tuple[tf.Tensor, tf.Tensor]:
    """One fixed batch of normal(0, 1) images and uniform labels."""
    rng = np.random.default_rng(seed)
    images = rng.normal(size=(BATCH_SIZE, *input_shape)).astype(np.float32)
    labels = rng.integers(0, NUM_CLASSES, size=(BATCH_SIZE,)).astype(np.int32)
    return tf.constant(images), tf.constant(labels)


def compiled_model(
    variant: str,
    k: int | None,
    jit_compile: bool,
    policy: str = "float32",
    model: str = MODEL,
    input_shape=INPUT_SHAPE,
) -> tf.keras.Model:
    """`model` (ResNet-20) of `variant` for 10 classes, built and compiled by the trainer's
    own `build_model` / `compile_model` (the configs' SGD + momentum) under `policy`."""
    config = config_lib.from_dict(
        {
            "model": {
                "name": model,
                "variant": variant,
                "k": k,
                "input_shape": list(input_shape),
            },
            "data": {"name": "cifar10"},
            "train": {
                "batch_size": BATCH_SIZE,
                "learning_rate": 0.1,
                "momentum": 0.9,
                "mixed_precision": policy,
            },
        }
    )
    model = build_model(config)
    compile_model(model, config, jit_compile=jit_compile)
    return model


def _busy_seconds() -> float | None:
    """CPU seconds all processes have spent busy since boot (Linux `/proc/stat`)."""
    try:
        with open("/proc/stat") as stat:
            fields = [int(v) for v in stat.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def _own_seconds() -> float:
    times = os.times()
    return times.user + times.system


def wait_until_quiet(max_wait_s: float, sample_s: float = 1.0) -> float:
    """Sleep until other processes keep fewer than `MAX_OTHER_CORES` busy over a
    `sample_s` sample, or `max_wait_s` has passed; returns the seconds waited."""
    start = time.perf_counter()
    while time.perf_counter() - start < max_wait_s:
        busy, own = _busy_seconds(), _own_seconds()
        if busy is None:
            break
        time.sleep(sample_s)
        other = (_busy_seconds() - busy) - (_own_seconds() - own)
        if other / sample_s <= MAX_OTHER_CORES:
            break
    return time.perf_counter() - start


def timed_window(model: tf.keras.Model, batch, steps: int) -> tuple[float, float, float | None]:
    """Mean wall time and CPU time (ms, all threads of this process) per step over `steps`
    steps, and the CPU cores other processes kept busy meanwhile (None where `/proc/stat`
    is not available)."""
    images, labels = batch
    busy, own, start = _busy_seconds(), _own_seconds(), time.perf_counter()
    for _ in range(steps):
        # train_on_batch returns the logs as numbers, so each step has finished.
        model.train_on_batch(images, labels)
    wall, cpu = time.perf_counter() - start, _own_seconds() - own
    other = None
    if busy is not None:
        other = max((_busy_seconds() - busy) - cpu, 0.0) / wall
    return wall / steps * 1e3, cpu / steps * 1e3, other


def time_steps(model: tf.keras.Model, batch, args) -> dict:
    """Warm up, then `args.windows` windows of `args.steps` steps; a window disturbed by
    other processes (see `MAX_OTHER_CORES`) is measured again up to `args.retries` times."""
    images, labels = batch
    start = time.perf_counter()
    model.train_on_batch(images, labels)  # traces (and compiles with XLA)
    first_step_s = time.perf_counter() - start
    for _ in range(max(args.warmup - 1, 0)):
        model.train_on_batch(images, labels)
    window_ms, cpu_ms, other_cores, retried = [], [], [], 0
    waited = wait_until_quiet(args.max_wait)  # `--max-wait` is the row's whole budget
    while len(window_ms) < args.windows:
        ms, cpu, other = timed_window(model, batch, args.steps)
        if other is not None and other > MAX_OTHER_CORES and retried < args.retries:
            retried += 1
            waited += wait_until_quiet(max(args.max_wait - waited, 0.0))
            continue
        window_ms.append(ms)
        cpu_ms.append(cpu)
        other_cores.append(other)
    return {
        "first_step_s": first_step_s,
        "window_ms": window_ms,
        "window_cpu_ms": cpu_ms,
        "other_cpu_cores": other_cores,
        "retried_windows": retried,
        "waited_for_quiet_s": waited,
    }


def measure(
    variant: str, k: int | None, jit_compile: bool, batch, args, policy: str = "float32"
) -> dict:
    """One row; a failure (e.g. XLA cannot compile an op) is recorded, not raised."""
    row = {
        "variant": variant,
        "k": None if variant == "fp" else (k or 1),
        "jit_compile": jit_compile,
        "policy": policy,
        "speed_vs_float32": None,
        "images_per_s": None,
        "step_ms": None,
        "window_ms": [],
        "speed_vs_bireal": None,
        "cpu_ms": None,
        "window_cpu_ms": [],
        "cpu_speed_vs_bireal": None,
        "first_step_s": None,
        "other_cpu_cores": [],
        "retried_windows": 0,
        "waited_for_quiet_s": 0.0,
        "load_avg": None,
        "error": None,
    }
    tf.keras.backend.clear_session()
    tf.keras.utils.set_random_seed(0)
    try:
        model = compiled_model(
            variant, k, jit_compile, policy, args.model, (args.input_size, args.input_size, 3)
        )
        row.update(time_steps(model, batch, args))
    except Exception as error:  # any failure is a result of this row, not of the run
        row["error"] = f"{type(error).__name__}: {str(error)[:2000]}"
    else:
        row["step_ms"] = statistics.median(row["window_ms"])
        row["images_per_s"] = BATCH_SIZE / (row["step_ms"] / 1e3)
        row["cpu_ms"] = statistics.median(row["window_cpu_ms"])
    row["load_avg"] = os.getloadavg()[0]
    return row


def add_ratios(rows: list[dict]) -> None:
    """`speed_vs_bireal` = images/s of the row / images/s of bireal (same jit_compile and
    policy); `cpu_speed_vs_bireal` = CPU time per step of bireal / that of the row;
    `speed_vs_float32` = images/s of the row / images/s of its float32 twin."""
    for row in rows:
        if row["images_per_s"] is None:
            continue
        bireal = next(
            (
                r
                for r in rows
                if r["variant"] == "bireal"
                and (r["jit_compile"], r.get("policy")) == (row["jit_compile"], row.get("policy"))
                and r["images_per_s"] is not None
            ),
            None,
        )
        if bireal is not None:
            row["speed_vs_bireal"] = row["images_per_s"] / bireal["images_per_s"]
            row["cpu_speed_vs_bireal"] = bireal["cpu_ms"] / row["cpu_ms"]
        float32 = next(
            (
                r
                for r in rows
                if (r["variant"], r["k"], r["jit_compile"], r.get("policy"))
                == (row["variant"], row["k"], row["jit_compile"], "float32")
                and r["images_per_s"] is not None
            ),
            None,
        )
        if float32 is not None:
            row["speed_vs_float32"] = row["images_per_s"] / float32["images_per_s"]


def format_row(row: dict) -> str:
    k = "-" if row["k"] is None else row["k"]
    xla = "xla" if row["jit_compile"] else "   "
    if row.get("policy", "float32") != "float32":
        xla += f" {row['policy']}"
    if row["error"]:
        return f"{row['variant']:>7} k={k} {xla}: ERROR {row['error'][:120]}"
    ratio = row["speed_vs_bireal"]
    ratio_text = "" if ratio is None else f"  x{ratio:.2f} (cpu x{row['cpu_speed_vs_bireal']:.2f})"
    return (
        f"{row['variant']:>7} k={k} {xla}: {row['images_per_s']:7.1f} img/s "
        f"{row['step_ms']:8.1f} ms/step {row['cpu_ms']:8.1f} cpu-ms/step "
        f"(first step {row['first_step_s']:.1f} s, other cores "
        f"{max((c or 0.0) for c in row['other_cpu_cores']):.2f}){ratio_text}"
    )


# ----------------------------------------------------------------------------- docs/results.md

#: The command that writes the throughput result (the "not run yet" line names it).
COMMAND = "python benchmarks/throughput.py --label after"
HEADER = (
    "variant",
    "K",
    "XLA",
    "dtype policy",
    "images/s",
    "ms/step",
    "speed vs float32",
    "speed vs bireal",
    "CPU ms/step",
    "CPU speed vs bireal",
    "error",
)
BEFORE_AFTER_HEADER = (
    "variant",
    "K",
    "XLA",
    "before CPU ms/step",
    "after CPU ms/step",
    "speed-up (before / after)",
    "before CPU speed vs bireal",
    "after CPU speed vs bireal",
)


def result_paths(results_dir: Path) -> list[Path]:
    """The throughput files to show: before, after, then the others by name; the smoke
    file only where nothing else ran (make bench-smoke)."""
    order = {"throughput_before": 0, "throughput_after": 1}
    paths = sorted(
        results_dir.glob("throughput_*.json"), key=lambda p: (order.get(p.stem, 2), p.stem)
    )
    real = [path for path in paths if path.stem != "throughput_smoke"]
    return real or paths


def table_rows(result: dict) -> list[tuple]:
    """A table row per measured row of a throughput file (`HEADER`)."""
    return [
        (
            row.get("variant"),
            row.get("k") or "-",
            "on" if row.get("jit_compile") else "off",
            row.get("policy", "float32"),
            num(row.get("images_per_s"), 4),
            num(row.get("step_ms"), 4),
            num(row.get("speed_vs_float32"), 3),
            num(row.get("speed_vs_bireal"), 3),
            num(row.get("cpu_ms"), 4),
            num(row.get("cpu_speed_vs_bireal"), 3),
            row.get("error") or "",
        )
        for row in result.get("rows", [])
    ]


def before_after_rows(before: dict, after: dict) -> list[tuple]:
    """Per row of `after` that `before` measured too (variant, K, XLA) with CPU times in
    both: the CPU ms/step before and after, the speed-up and the CPU speed vs bireal."""

    def key(row: dict) -> tuple:
        return row.get("variant"), row.get("k"), bool(row.get("jit_compile"))

    old = {key(r): r for r in before.get("rows", []) if not r.get("error")}
    found = []
    for row in after.get("rows", []):
        was = old.get(key(row), {})
        if was.get("cpu_ms") and row.get("cpu_ms"):
            found.append(
                (
                    row["variant"],
                    row.get("k") or "-",
                    "on" if key(row)[2] else "off",
                    num(was["cpu_ms"], 4),
                    num(row["cpu_ms"], 4),
                    f"{was['cpu_ms'] / row['cpu_ms']:.2f}x",
                    num(was.get("cpu_speed_vs_bireal"), 3),
                    num(row.get("cpu_speed_vs_bireal"), 3),
                )
            )
    return found


def _file_lines(path: Path) -> list[str]:
    """One throughput file's subsection: its settings, rows and provenance."""
    result = load(path)
    lines = [f"### {path.stem.removeprefix('throughput_')}", ""]
    if result is None:
        return [*lines, f"_Unreadable_: `{path.name}`.", ""]
    settings = result.get("settings", {})
    return [
        *lines,
        f"{settings.get('model', 'resnet20')} at {settings.get('input_shape')}, batch "
        f"{settings.get('batch_size')}, on {settings.get('device', 'CPU')}.",
        "",
        *table(HEADER, table_rows(result)),
        *provenance_lines(result),
    ]


def _before_after_lines(results_dir: Path) -> list[str]:
    """The after-vs-before table; nothing unless both files share rows with CPU times."""
    before = load(results_dir / "throughput_before.json")
    after = load(results_dir / "throughput_after.json")
    found = before_after_rows(before, after) if before and after else []
    if not found:
        return []
    return [
        "### after vs before",
        "",
        "By CPU time per step (all threads of the process): other work on a shared machine "
        "takes cores away from a run but adds little to its CPU time, so these ratios are "
        "steadier than wall-clock images/s.",
        "",
        *table(BEFORE_AFTER_HEADER, found),
    ]


def section(results_dir: Path) -> str:
    """The training-throughput section of docs/results.md: every throughput file of
    `results_dir` (`result_paths`), then after vs before."""
    lines = ["## Training throughput", ""]
    paths = result_paths(results_dir)
    if not paths:
        lines += not_run(results_dir / "throughput_after.json", COMMAND)
    else:
        lines += [line for path in paths for line in _file_lines(path)]
        lines += _before_after_lines(results_dir)
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--label", default="before", help="throughput_<label>.json")
    parser.add_argument("--smoke", action="store_true", help="2 variants, few steps")
    parser.add_argument("--output", type=Path, default=None, help="result file path")
    parser.add_argument("--steps", type=int, default=None, help="steps per timed window")
    parser.add_argument("--windows", type=int, default=None, help="timed windows (median)")
    parser.add_argument("--warmup", type=int, default=None, help="steps before timing")
    parser.add_argument("--note", default=None, help="free text stored with the result")
    parser.add_argument("--retries", type=int, default=None, help="re-timed disturbed windows")
    parser.add_argument("--max-wait", type=float, default=None, help="s to wait for quiet")
    parser.add_argument("--variants", default=None, help="comma list, e.g. bireal,ienet")
    parser.add_argument(
        "--jit", choices=("both", "off", "on"), default="both", help="XLA rows to measure"
    )
    parser.add_argument(
        "--policies", default="float32", help="comma list of dtype policies (mixed precision)"
    )
    parser.add_argument("--k", type=int, nargs="+", default=None, help="K of iebc / ienet")
    parser.add_argument("--model", default=MODEL, help="a registry model (default resnet20)")
    parser.add_argument("--input-size", type=int, default=INPUT_SHAPE[0], help="image side")
    args = parser.parse_args(argv)
    args.policies = args.policies.split(",")
    for policy in args.policies:
        if policy not in precision.POLICIES:
            parser.error(f"--policies: {policy!r} is not one of {list(precision.POLICIES)}")
    defaults = (1, 1, 1) if args.smoke else (1, 3, 2)
    for name, default in zip(("steps", "windows", "warmup"), defaults, strict=True):
        if getattr(args, name) is None:
            setattr(args, name, default)
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be >= 1")
    if args.retries is None:
        args.retries = 0 if args.smoke else 6
    if args.max_wait is None:
        args.max_wait = 0.0 if args.smoke else 60.0
    if args.output is None:
        name = "smoke" if args.smoke else args.label
        args.output = RESULTS / f"throughput_{name}.json"
    return args


def main(argv: list[str] | None = None) -> Path:
    args = parse_args(argv)
    input_shape = (args.input_size, args.input_size, 3)
    batch = synthetic_batch(input_shape)
    jit_values = {"both": (False, True), "off": (False,), "on": (True,)}[args.jit]
    run_configs = list(SMOKE_CONFIGS) if args.smoke else configs(args.k or range(1, 6))
    if args.variants:
        wanted = args.variants.split(",")
        run_configs = [(variant, k) for variant, k in run_configs if variant in wanted]
    load_before = os.getloadavg()[0]
    rows = []
    for jit_compile in jit_values:
        for variant, k in run_configs:
            if jit_compile and not args.smoke and k is not None and k not in XLA_K:
                continue  # XLA compiles for ~1 min a row on CPU: K = 1, 2 show the effect
            for policy in args.policies:
                rows.append(measure(variant, k, jit_compile, batch, args, policy))
                add_ratios(rows)
                print(format_row(rows[-1]), flush=True)
    payload = {
        "settings": {
            "model": args.model,
            "batch_size": BATCH_SIZE,
            "input_shape": list(input_shape),
            "policies": args.policies,
            "device": "GPU" if tf.config.list_physical_devices("GPU") else "CPU",
            "warmup": args.warmup,
            "steps": args.steps,
            "windows": args.windows,
            "max_other_cpu_cores": MAX_OTHER_CORES,
            "synthetic_data": True,
            "smoke": args.smoke,
        },
        "load": {"before": load_before, "after": os.getloadavg()[0]},
        "note": args.note,
        "rows": rows,
    }
    path = write_result(args.output, payload)
    print(f"wrote {path}", file=sys.stderr)
    return path


if __name__ == "__main__":
    run_script(main)
