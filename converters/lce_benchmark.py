#!/usr/bin/env python3
"""Time an exported model on an ARM device with LCE's `lce_benchmark_model`.

Runs the benchmark binary on this machine (e.g. on the Raspberry Pi itself) or on an
Android phone over `adb`, and prints the result as JSON with the same fields as
`ienet bench --json`, so device and x86 numbers land in one table.

    # on a 64-bit Raspberry Pi OS, next to the binary and the model
    python3 lce_benchmark.py model.tflite --binary ./lce_benchmark_model --threads 1
    # an Android phone over adb (the binary and model are pushed to /data/local/tmp)
    python3 lce_benchmark.py model.tflite --binary lce_benchmark_model --adb
    # parse a log saved earlier
    python3 lce_benchmark.py model.tflite --parse benchmark.log

Binary + int8 models (`ienet export --int8`) need nothing special: with float I/O they
take float input like any export, and with int8 I/O `lce_benchmark_model` fills the int8
input tensor with random int8 data itself.

Standard library only: it runs on a device without TensorFlow.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shlex
import subprocess
import sys

# The fields of `ienet_tf.export.bench.BenchResult`.
FIELDS = (
    "model",
    "tool",
    "machine",
    "threads",
    "runs",
    "median_ms",
    "mean_ms",
    "min_ms",
    "max_ms",
    "std_ms",
    "size_bytes",
    "reference_bconv",
)
_STATS = re.compile(
    r"count=(\d+)\s.*?min=([\d.]+)\s+max=([\d.]+)\s+avg=([\d.]+)\s+std=([\d.]+)"
    r"(?:.*?median=([\d.]+))?"
)
_THREADS = re.compile(r"(?:Num threads|num_threads):\s*\[?(\d+)\]?")
_DEVICE_DIR = "/data/local/tmp"


class BenchmarkOutputError(ValueError):
    """The tool's output has no timing statistics (it failed, or is not benchmark output)."""


def parse_output(text: str, model: str, size_bytes: int, machine: str, threads: int) -> dict:
    """The timing of the measured runs in `lce_benchmark_model` / TFLite `benchmark_model`
    output: the last `count=... min=... max=... avg=... std=...` line (the first is the
    warm-up), in microseconds; `median=` is read when the tool prints it (TFLite >= 2.x)."""
    matches = _STATS.findall(text)
    if not matches:
        tail = "\n".join(text.strip().splitlines()[-5:])
        raise BenchmarkOutputError(f"no timing statistics in the benchmark output:\n{tail}")
    count, low, high, mean, std, median = matches[-1]
    found_threads = _THREADS.search(text)
    return {
        "model": model,
        "tool": "lce_benchmark_model",
        "machine": machine,
        "threads": int(found_threads.group(1)) if found_threads else threads,
        "runs": int(count),
        "median_ms": float(median) / 1e3 if median else None,
        "mean_ms": float(mean) / 1e3,
        "min_ms": float(low) / 1e3,
        "max_ms": float(high) / 1e3,
        "std_ms": float(std) / 1e3,
        "size_bytes": size_bytes,
        "reference_bconv": "use_reference_bconv: [1]" in text,
    }


def _run(command: list[str]) -> str:
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise SystemExit(
            f"error: `{shlex.join(command)}` exited {result.returncode}:\n"
            f"{(result.stderr or result.stdout).strip()[-2000:]}"
        )
    return result.stdout + result.stderr


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", help="the .tflite file (from `ienet export`)")
    parser.add_argument(
        "--binary",
        default="lce_benchmark_model",
        help="path of lce_benchmark_model (on the device with --adb)",
    )
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--adb", action="store_true", help="run on an Android device")
    parser.add_argument("--serial", help="adb device serial")
    parser.add_argument("--parse", metavar="LOG", help="parse a saved log instead of running")
    args = parser.parse_args(argv)

    if not os.path.isfile(args.model):
        print(f"error: no such model file: {args.model}", file=sys.stderr)
        return 2
    size = os.path.getsize(args.model)
    name = os.path.basename(args.model)
    flags = [f"--num_threads={args.threads}", f"--num_runs={args.runs}"]
    if args.parse:
        with open(args.parse) as log:
            text, machine = log.read(), "recorded log"
    elif args.adb:
        adb = ["adb", *(["-s", args.serial] if args.serial else [])]
        _run([*adb, "push", args.model, f"{_DEVICE_DIR}/{name}"])
        binary = args.binary if args.binary.startswith("/") else f"{_DEVICE_DIR}/{args.binary}"
        text = _run([*adb, "shell", binary, f"--graph={_DEVICE_DIR}/{name}", *flags])
        machine = _run([*adb, "shell", "getprop", "ro.product.model"]).strip() + " (Android)"
    else:
        text = _run([args.binary, f"--graph={args.model}", *flags])
        machine = f"{platform.machine()} {platform.node()}"
    try:
        result = parse_output(text, name, size, machine, args.threads)
    except BenchmarkOutputError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
