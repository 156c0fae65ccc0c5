"""Every benchmark in one go (what `make bench` / `make bench-smoke` run), then docs/results.md.

    .venv/bin/python benchmarks/run_all.py [--with-export]
    .venv/bin/python benchmarks/run_all.py --smoke --results-dir DIR --docs DIR

Runs the padding-cost benchmark, the training throughput (`--label after`), the cost and
size tables (and, with `--with-export`, the ~10-minute export benchmark; without it its
existing results file is rendered as it is; the Fashion-MNIST campaign runs on its own,
`make campaign`), times each step and writes `bench_run.json` (steps,
their exit status and wall time, the total) before generating the docs from the results
directory. A failing step does not stop the others; the exit status is 1 if any failed.
`--smoke` runs the smoke mode of each benchmark into `--results-dir` (a minute or two).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.common import (
    RESULTS,
    duration,
    provenance_lines,
    result_section,
    run_script,
    table,
    write_result,
)

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
#: The steps, their exit status and wall time, and the total, of the last run.
BENCH_RUN = "bench_run.json"


def _script(name: str, *args: str) -> list[str]:
    """A benchmark command, run from the repository root (paths relative to it)."""
    return [sys.executable, f"benchmarks/{name}", *args]


def _relative(path: Path) -> Path:
    path = path.resolve()
    return path.relative_to(ROOT) if path.is_relative_to(ROOT) else path


def steps(smoke: bool, results_dir: Path, with_export: bool) -> list[list[str]]:
    """The benchmark commands, in order."""
    if smoke:
        return [
            _script(
                "campaign.py",
                "--smoke",
                "--work-dir",
                str(results_dir / "runs" / "campaign"),
                "--results-dir",
                str(results_dir / "campaign"),
                "--output",
                str(results_dir / "campaign.json"),
            ),
            _script("padding.py", "--smoke", "--output", str(results_dir / "padding.json")),
            _script(
                "throughput.py", "--smoke", "--output", str(results_dir / "throughput_smoke.json")
            ),
            _script("cost_tables.py", "--smoke", "--output-dir", str(results_dir)),
        ]
    commands = [
        _script("padding.py", "--output", str(results_dir / "padding.json")),
        _script(
            "throughput.py",
            "--label",
            "after",
            "--output",
            str(results_dir / "throughput_after.json"),
        ),
        _script("cost_tables.py", "--output-dir", str(results_dir)),
    ]
    if with_export:
        commands.append(_script("export_bench.py"))
    return commands


def _display(command: Sequence[str]) -> str:
    return " ".join("python" if part == sys.executable else part for part in command)


def run_steps(commands: Sequence[Sequence[str]]) -> list[dict]:
    done = []
    for command in commands:
        print(f"\n=== {_display(command)}", flush=True)
        start = time.perf_counter()
        status = subprocess.run(list(command), cwd=ROOT, check=False).returncode
        seconds = time.perf_counter() - start
        done.append(
            {
                "command": _display(command),
                "seconds": seconds,
                "status": "ok" if status == 0 else f"failed ({status})",
            }
        )
        print(f"=== {done[-1]['status']} in {seconds / 60:.1f} min", flush=True)
    return done


def step_rows(result: dict) -> list[tuple[str, str, str]]:
    """Per step of bench_run.json: its command, wall time and exit status."""
    return [
        (f"`{step['command']}`", duration(step["seconds"]), step.get("status", ""))
        for step in result.get("steps", [])
    ]


@result_section(BENCH_RUN, "## `make bench`", "make bench")
def section(result: dict) -> list[str]:
    """The last `make bench`: its total wall time and each step's."""
    rows = step_rows(result)
    return [
        f"Total wall time: **{duration(result.get('wall_seconds', 0))}**.",
        "",
        *(table(("step", "wall time", "status"), rows) if rows else []),
        *provenance_lines(result),
    ]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="the smoke mode of each benchmark")
    parser.add_argument("--with-export", action="store_true", help="also export_bench.py")
    parser.add_argument("--results-dir", type=Path, help="default benchmarks/results/")
    parser.add_argument("--docs", type=Path, help="docs directory (default docs/)")
    args = parser.parse_args(argv)
    if args.smoke and args.results_dir is None:
        parser.error("--smoke needs --results-dir (smoke results never go to benchmarks/results)")
    results_dir = _relative(args.results_dir or RESULTS)
    docs = _relative(args.docs or ROOT / "docs")
    start = time.perf_counter()
    done = run_steps(steps(args.smoke, results_dir, args.with_export))
    wall = time.perf_counter() - start
    write_result(
        ROOT / results_dir / BENCH_RUN,
        {"benchmark": "bench_run", "smoke": args.smoke, "wall_seconds": wall, "steps": done},
    )
    docs_command = _script(
        "make_docs.py", "--results-dir", str(results_dir), "--output", str(docs / "results.md")
    )
    failed = [step for step in done if step["status"] != "ok"]
    status = subprocess.run(docs_command, cwd=ROOT, check=False).returncode
    print(f"\nbenchmarks: {wall / 60:.1f} min in all; {len(failed)} step(s) failed")
    for step in failed:
        print(f"  {step['command']}: {step['status']}", file=sys.stderr)
    return 1 if failed or status else 0


if __name__ == "__main__":
    run_script(main)
