"""Executed aarch64 instructions per inference on LCE's ARM kernels, counted under qemu.

    nice .venv/bin/python benchmarks/arm_instructions.py [--resnet18-size 224] [--count 2]
        [--models resnet20 resnet18] [--mode default] [--output PATH] [--smoke]

How it counts: every model is converted (`ienet_tf.export.convert`) and run by
`ienet-lce-runner`, the static aarch64 TFLite 2.10 + LCE 0.16 build of `make arm-runtime`,
under `qemu-aarch64-static -d in_asm,exec,nochain` (Debian's static qemu 7.2 has no TCG
plugins). qemu runs guest code in translated blocks (TBs): `in_asm` prints each TB once,
when it is translated, with its instructions; `exec` prints a line for every execution of
a TB, and `nochain` stops TBs jumping into each other unlogged. Instructions executed = the
sum over TB executions of that TB's instruction count. The log (0.3 to tens of GB) is never
stored: it streams through a pipe into `TraceCounter`. One model (ResNet-20 IE-Net K=2; the
smoke mode's IE-Net) is counted again under `-singlestep` (one instruction per TB, so every
executed instruction is a log line), an independent count the TB arithmetic must match, and
at `--count` 1, 2 and 3 (each extra invoke must add one invoke's count): `cross_checks`.

Per inference: the runner invokes the interpreter `--count` times on the same input (one
seeded random normal image). The trace is cut at every execution of the TB at the entry of
`tflite::Interpreter::Invoke()` and of the TB at its return address in `main` (the
instruction after main's `bl`, found with objdump), so model loading, tensor allocation and
the runner's file I/O fall outside every invoke. The first invoke does one-time work (LCE
packs its binary filters then, TFLite's ruy prepares its caches); the figure reported is
the last invoke's, the first one's is recorded beside it.

Per category: a TB is attributed to the function containing its first instruction (`nm -n
-S -C` of the static binary), and a function to the first of `CATEGORIES` whose pattern its
demangled name matches (`category`): the rules are written against the namespaces of the
sources (LCE's `compute_engine::`, TFLite's `tflite::ops::builtin::<op>`, ruy, Eigen, libc).
Each model's top functions are kept in the result, so the grouping can be checked.

Not latency: qemu counts instructions, not time. There are no caches, no memory stalls, no
pipeline or issue-width effects; a NEON `fmla` on four floats and a scalar `add` count one
each, and so does a load that would miss every cache. The ARM anchor printed beside the
counts is LCE's published one (`ANCHOR`), not measured here.

Writes benchmarks/results/arm_instructions.json (`--smoke`: a tiny convnet, fp and IE-Net
K=2, to runs/bench-smoke/arm_instructions.json, never to benchmarks/results).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

if __package__ in (None, ""):  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np

from benchmarks.common import (
    RESULTS,
    SMOKE_DIR,
    duration,
    provenance_lines,
    result_section,
    run_script,
    table,
    write_result,
)
from ienet_tf.export import arm, arm_trace
from ienet_tf.export.arm_trace import (  # the tracing, shared with `ienet verify-arm --trace`
    CATEGORIES,
    CATEGORY_NAMES,
    SHORT,
    Symbols,
    Trace,
    grouped,
    kept,
)

OUTPUT = RESULTS / "arm_instructions.json"
COMMAND = "python benchmarks/arm_instructions.py"
#: The published ARM figure printed beside the counts (not measured here).
ANCHOR = (
    "LCE 0.16.0's README (its single-threaded table, also in the wheel's METADATA): QuickNet "
    "(63.3% top-1 on ImageNet), 45.0 ms per inference on a Raspberry Pi 4B at 1.5 GHz "
    "(BCM2711), 1 thread. QuickNet is another network (LCE's own, not measured here), so "
    "it says how fast LCE's ARM kernels are on a device, not what any count below costs"
)
NOT_LATENCY = (
    "Instruction counts are not latency: qemu executes every instruction alike, with no "
    "caches, no memory stalls and no pipeline or issue-width effects, so a 16-byte NEON "
    "`fmla` and a scalar `add` count one each, and so does a load that would miss every cache."
)
#: ResNet-20 on Fashion-MNIST's shape; the variants and K of the issue.
RESNET20_SHAPE = (28, 28, 1)
VARIANTS = (("fp", None), ("bireal", None), *(("ienet", k) for k in (1, 2, 3, 4)))
TOP_FUNCTIONS = 12


def trace_run(
    runtime: arm.Runtime,
    model: Path,
    count: int = 2,
    mode: str = "default",
    singlestep: bool = False,
    symbols: Symbols | None = None,
    timeout: float = 7200,
) -> Trace:
    """Run `model` `count` times on one seeded random image under qemu's trace and count
    (`arm_trace.trace_run`)."""
    tensor = arm._run(runtime, model, ["--info"])["inputs"][0]
    image = np.random.default_rng(0).normal(size=(1, *tensor["shape"][1:])).astype(np.float32)
    inputs = arm._encode(np.repeat(image, count, 0), tensor)
    found = arm_trace.trace_run(
        runtime, model, inputs, count, mode, singlestep, symbols=symbols, timeout=timeout
    )
    return found


# ------------------------------------------------------------------------------ models


def label(variant: str, k: int | None) -> str:
    return variant if k is None else f"{variant} K={k}"


def convert(name: str, variant: str, k: int | None, shape: tuple[int, int, int]) -> tuple:
    """`name` as `variant` (compat "lce", weights made to look trained), converted with
    LCE: the flatbuffer and its op histogram."""
    import tensorflow as tf

    from ienet_tf import export, models
    from ienet_tf.models.testing import as_if_trained

    tf.keras.utils.set_random_seed(0)
    model = models.build(name, variant, k=k, input_shape=shape)
    model = as_if_trained(getattr(model, "classifier", model))
    try:
        return export.convert(model)
    finally:
        tf.keras.backend.clear_session()


def measure(
    runtime: arm.Runtime,
    symbols: Symbols,
    name: str,
    variant: str,
    k: int | None,
    shape: tuple[int, int, int],
    count: int,
    mode: str,
    work: Path,
) -> dict:
    """One model: converted, traced, its last invoke's instructions per category."""
    row = {"model": name, "variant": variant, "k": k, "label": label(variant, k)}
    row["input_shape"] = list(shape)
    start = time.perf_counter()
    try:
        flatbuffer, histogram = convert(name, variant, k, shape)
        path = work / f"{name}_{variant}_{k}.tflite"
        path.write_bytes(flatbuffer)
        convert_seconds = time.perf_counter() - start
        found = trace_run(runtime, path, count=count, mode=mode, symbols=symbols)
    except Exception as error:  # recorded, not fatal: the table shows what failed
        return {**row, "error": f"{type(error).__name__}: {error}"}
    last, first = found.invokes[-1], found.invokes[0]
    functions = kept(last["functions"], last["instructions"])
    return {
        **row,
        "ops": histogram,
        "tflite_bytes": len(flatbuffer),
        "instructions": last["instructions"],
        "tb_executions": last["tb_executions"],
        "categories": grouped(functions),
        "invokes": [invoke["instructions"] for invoke in found.invokes],
        "first_invoke_categories": grouped(first["functions"]),
        "outside_invokes": found.outside_instructions,
        "functions": functions,
        "trace": {
            "wall_seconds": found.wall_seconds,
            "convert_seconds": convert_seconds,
            "log_bytes": found.log_bytes,
            "tb_translations": found.tb_translations,
            "runner_mean_ms_under_trace": found.runner.get("mean_ms"),
        },
        "error": None,
    }


def with_ratios(rows: list[dict]) -> list[dict]:
    """Each row's instructions over the float model's of the same network and input."""
    floats = {
        (row["model"], tuple(row["input_shape"])): row["instructions"]
        for row in rows
        if row["variant"] == "fp" and not row.get("error")
    }
    for row in rows:
        base = floats.get((row["model"], tuple(row["input_shape"])))
        ok = base and not row.get("error")
        row["ratio_to_fp"] = row["instructions"] / base if ok else None
    return rows


def cross_checks(runtime: arm.Runtime, symbols: Symbols, model: Path) -> dict:
    """The counting checked against what does not use TB sizes: the same run under
    `-singlestep` (one instruction per TB), and the whole run's count at `--count` 1, 2, 3
    (each extra invoke adds one invoke's instructions plus one sample's I/O)."""
    runs = {count: trace_run(runtime, model, count=count, symbols=symbols) for count in (1, 2, 3)}
    single = trace_run(runtime, model, count=2, symbols=symbols, singlestep=True)

    def whole(trace: Trace) -> int:
        return trace.outside_instructions + sum(i["instructions"] for i in trace.invokes)

    differ = {}
    for index, invoke in enumerate(runs[2].invokes):
        other = single.invokes[index]["functions"]
        for name in sorted(set(invoke["functions"]) | set(other)):
            pair = [invoke["functions"].get(name, 0), other.get(name, 0)]
            if pair[0] != pair[1]:
                differ.setdefault(name, []).append([index + 1, *pair])
    return {
        "model": model.name,
        "differing_functions": differ,
        "tb_count_invokes": [i["instructions"] for i in runs[2].invokes],
        "singlestep_invokes": [i["instructions"] for i in single.invokes],
        "singlestep_tb_executions": [i["tb_executions"] for i in single.invokes],
        "whole_run": {str(count): whole(trace) for count, trace in runs.items()},
        "last_invoke": {
            str(count): trace.invokes[-1]["instructions"] for count, trace in runs.items()
        },
        "wall_seconds_tb": runs[2].wall_seconds,
        "wall_seconds_singlestep": single.wall_seconds,
    }


# ------------------------------------------------------------------------------ page

HEADER = ["model", "input", "variant", "instructions / inference", "ratio to fp", "first invoke"]


def _millions(value: int) -> str:
    return f"{value / 1e6:,.2f} M"


def _rows(result: dict) -> list[dict]:
    return [row for row in result["rows"] if not row.get("error")]


def total_rows(result: dict) -> list[list[str]]:
    return [
        [
            row["model"],
            "x".join(str(d) for d in row["input_shape"]),
            row["label"],
            _millions(row["instructions"]),
            "-" if row["ratio_to_fp"] is None else f"{row['ratio_to_fp']:.3f}",
            _millions(row["invokes"][0]),
        ]
        for row in _rows(result)
    ]


def shown_categories(result: dict) -> list[str]:
    """The categories with instructions in some row (an all-zero column is left out)."""
    return [name for name in CATEGORY_NAMES if any(r["categories"][name] for r in _rows(result))]


def category_rows(result: dict) -> list[list[str]]:
    rows = []
    for row in _rows(result):
        found, total = row["categories"], row["instructions"]
        cells = [f"{found[name] / 1e6:,.2f} ({found[name] / total:.0%})"
                 for name in shown_categories(result)]  # fmt: skip
        rows.append([row["model"], row["label"], *cells])
    return rows


def _checks_lines(checks: dict | None) -> list[str]:
    if not checks:
        return []
    whole = checks["whole_run"]
    differ = sorted(checks.get("differing_functions", {}))
    why = (
        " The two counts differ only in "
        + ", ".join(f"`{name}`" for name in differ)
        + ": ruy re-resolves its tuning when a wall-clock timer expires, so the slower "
        "single-step run takes that path more often."
        if differ and all(name.startswith("ruy::") for name in differ)
        else ""
    )
    steps = [whole[str(c + 1)] - whole[str(c)] for c in (1, 2)]
    return [
        f"Checks of the counting on `{checks['model']}` (not using the TB sizes): under "
        f"`-singlestep` (one instruction per TB) its invokes count "
        f"{', '.join(f'{n:,}' for n in checks['singlestep_invokes'])} instructions, against "
        f"{', '.join(f'{n:,}' for n in checks['tb_count_invokes'])} from the TB sizes; the "
        f"whole run (loading included) grows by {steps[0]:,} and {steps[1]:,} instructions "
        f"from `--count` 1 to 2 to 3, where one invoke counts "
        f"{checks['last_invoke']['3']:,} (the rest is one sample's file I/O).{why}",
        "",
    ]


@result_section("arm_instructions.json", "## aarch64 instructions per inference (qemu count)",
                COMMAND)  # fmt: skip
def section(result: dict) -> list[str]:
    """Executed aarch64 instructions per inference, per category, and ratios to fp."""
    setup = result["setup"]
    failed = [row for row in result["rows"] if row.get("error")]
    slowest = max((r["trace"]["wall_seconds"] for r in _rows(result)), default=0)
    return [
        "Executed aarch64 instructions of one inference (1 thread, LCE's "
        f"`{setup['mode']}` kernels) of `ienet-lce-runner` (TFLite 2.10 + LCE 0.16, "
        "`make arm-runtime`), counted from qemu's translated-block trace "
        "(`qemu-aarch64-static -d in_asm,exec,nochain`: the sum over executed blocks of their "
        "instruction counts), between the entry of `Interpreter::Invoke()` and its return, "
        f"for the last of {setup['count']} invokes on one seeded random image; the first "
        "invoke (LCE packs its filters then) is shown beside it. Weights are random, made to "
        'look trained (`as_if_trained`, compat "lce"). '
        + ("**Smoke run (tiny models).** " if result.get("smoke") else ""),
        "",
        f"**{NOT_LATENCY}** The published ARM anchor: {ANCHOR}. No ARM device timed these "
        "models here.",
        "",
        *table(HEADER, total_rows(result)),
        "Per category, millions of instructions (share of the inference). A category "
        "gathers the functions whose demangled names match its rule (`CATEGORIES` in "
        "`ienet_tf/export/arm_trace.py`): bconv = LCE's BGEMM kernels, its bitpacked "
        "im2col and output transform; bitpack = `LceQuantize`; float conv/FC = TFLite's "
        "im2col and ruy's float kernels; elementwise = ADD, ADD_N, MUL, PRELU, ...; runtime "
        "= the interpreter, ruy's front end shared by float and binary GEMMs, the C++ library. "
        "There are no call stacks: a function's instructions count where the function is, "
        "so libc's memcpy and memset count as libc whichever op called them (im2col, "
        "packing, padding), and a kernel inlined into its caller counts with the caller.",
        "",
        *table(
            [
                "model",
                "variant",
                *(SHORT[CATEGORY_NAMES.index(n)] for n in shown_categories(result)),
            ],
            category_rows(result),
        ),
        *_checks_lines(result.get("checks")),
        *(
            ["Failed:", "", *[f"- {r['model']} {r['label']}: {r['error']}" for r in failed], ""]
            if failed
            else []
        ),
        f"Each traced run (conversion excluded) took up to {duration(slowest)} here; the "
        f"whole benchmark {duration(result['wall_seconds'])}.",
        "",
        *provenance_lines(result),
    ]


# ------------------------------------------------------------------------------ main


def regroup(path: Path) -> Path:
    """Recompute the categories of a result file from its functions (after a rule change)."""
    result = json.loads(path.read_text())
    for row in _rows(result):
        row["categories"] = grouped(row["functions"])
    result["categories"] = list(CATEGORY_NAMES)
    result["rules"] = dict(CATEGORIES)
    result.update(method=__doc__.split("\n\n", 2)[2], not_latency=NOT_LATENCY, anchor=ANCHOR)
    from ienet_tf.io import write_atomically

    write_atomically(path, json.dumps(result, indent=2) + "\n")
    return path


def main(argv: Sequence[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--models", nargs="+", default=["resnet20", "resnet18"],
                        choices=["resnet20", "resnet18"])  # fmt: skip
    parser.add_argument("--resnet18-size", type=int, default=224, help="ResNet-18's input")
    parser.add_argument("--count", type=int, default=2, help="invokes per traced run (>= 2)")
    parser.add_argument("--mode", default="default", choices=arm.MODES)
    parser.add_argument("--runtime", help="an arm-runtime build folder (default: make's)")
    parser.add_argument("--no-checks", action="store_true", help="skip the cross-checks")
    parser.add_argument("--regroup", action="store_true", help="recompute an output's categories")
    parser.add_argument("--output", type=Path, default=None, help="result file path")
    parser.add_argument("--smoke", action="store_true", help="a tiny convnet, fp and ienet K=2")
    args = parser.parse_args(argv)
    default = SMOKE_DIR if args.smoke else RESULTS
    output = (args.output or default / OUTPUT.name).resolve()
    if args.smoke and RESULTS.resolve() in output.parents:
        parser.error("--smoke never writes to benchmarks/results")
    if args.regroup:
        return regroup(output)
    if args.count < 2:
        parser.error("--count must be at least 2 (the first invoke does one-time work)")
    start = time.perf_counter()
    runtime = arm.find_runtime(args.runtime)
    symbols = Symbols.of(runtime.aarch64)
    if args.smoke:
        grid = [("convnet", variant, k, (8, 8, 1)) for variant, k in (("fp", None), ("ienet", 2))]
    else:
        shapes = {"resnet20": RESNET20_SHAPE, "resnet18": (args.resnet18_size,) * 2 + (3,)}
        grid = [(m, variant, k, shapes[m]) for m in args.models for variant, k in VARIANTS]
    rows = []
    with tempfile.TemporaryDirectory(prefix="ienet-arm-instructions-") as folder:
        work = Path(folder)
        for name, variant, k, shape in grid:
            row = measure(runtime, symbols, name, variant, k, shape, args.count, args.mode, work)
            rows.append(row)
            text = row["error"] or (
                f"{row['instructions']:,} instructions ({row['tb_executions']:,} TBs), traced in "
                f"{row['trace']['wall_seconds']:.0f} s"
            )
            print(f"{name:>9} {'x'.join(map(str, shape)):>9} {row['label']:>9}: {text}", flush=True)
        checks = None
        if not args.no_checks:
            name, variant, k, shape = (
                grid[-1] if args.smoke else ("resnet20", "ienet", 2, RESNET20_SHAPE)
            )
            path = work / f"{name}_{variant}_{k}.tflite"
            if path.is_file():
                checks = cross_checks(runtime, symbols, path)
    setup = {"count": args.count, "mode": args.mode, "threads": 1, "input": "seeded random normal"}
    payload = {
        "smoke": args.smoke,
        "setup": setup,
        "method": __doc__.split("\n\n", 2)[2],
        "not_latency": NOT_LATENCY,
        "anchor": ANCHOR,
        "categories": list(CATEGORY_NAMES),
        "rules": dict(CATEGORIES),
        "rows": with_ratios(rows),
        "checks": checks,
        "wall_seconds": time.perf_counter() - start,
    }
    return write_result(output, payload)


if __name__ == "__main__":
    run_script(main)
