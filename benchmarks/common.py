"""What every benchmark result file records, and how it is written.

Each result file is one JSON object whose `provenance` block says how to rerun it: the
command, the git commit (and whether the tree was dirty), the date, the machine (CPU
model, cores) and the package versions. `docs/results.md` is generated from these files:
each benchmark renders its own section with the helpers at the end of this module
(`result_section`, `table`, `provenance_lines`...), and `make_docs.py` lays them out.
"""

from __future__ import annotations

import datetime
import functools
import json
import os
import platform
import statistics
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NoReturn

from ienet_tf import models
from ienet_tf.export import stack_versions
from ienet_tf.io import write_atomically

RESULTS = Path(__file__).parent / "results"
RESULTS_PATH = "benchmarks/results"  # the same, as a git pathspec from the repository root
#: Tracked paths that benchmarks and make_docs write: changes there leave a tree clean.
GENERATED_PATHS = (RESULTS_PATH, "docs/results.md", "docs/figures")
ROOT = Path(__file__).resolve().parents[1]
#: Where the smoke modes write (never benchmarks/results).
SMOKE_DIR = ROOT / "runs" / "bench-smoke"
#: The paper's Table-3 variants and IE-Net with each of its modules: the one list every
#: benchmark uses, taken from the model registry.
VARIANTS = (*models.VARIANTS, *(f"ienet+{modifier}" for modifier in models.MODIFIERS))


def _git(*args: str) -> str:
    done = subprocess.run(["git", *args], capture_output=True, text=True, check=False)
    return done.stdout.strip()


def _cpu_model() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def portable_command(argv: list[str]) -> str:
    """`argv` as a command line that names no path of this machine: paths inside the
    repository relative to it, other absolute paths as `<name>` placeholders."""
    words = []
    for word in argv:
        if word.startswith("/"):
            path = Path(word).resolve()
            word = str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else f"<{path.name}>"
        words.append(word)
    return " ".join(words)


def provenance() -> dict:
    """The command, commit, date, machine and versions of the running benchmark."""
    return {
        "command": portable_command([Path(sys.executable).name, *sys.argv]),
        "commit": _git("rev-parse", "HEAD"),
        # Uncommitted changes to tracked files other than results and the pages rendered
        # from them (a campaign running beside a benchmark rewrites campaign.json, and
        # make_docs the results page; neither changes what is measured).
        "dirty": bool(
            _git(
                "status",
                "--porcelain",
                "--untracked-files=no",
                "--",
                ".",
                *(":!" + path for path in GENERATED_PATHS),
            )
        ),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": {
            "cpu": _cpu_model(),
            "cores": os.cpu_count(),
            "arch": platform.machine(),
            "python": platform.python_version(),
        },
        "versions": stack_versions(),
    }


def write_result(path: Path, payload: dict) -> Path:
    """Write `{"provenance": ..., **payload}` as JSON, atomically (no half-written file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps({"provenance": provenance(), **payload}, indent=2) + "\n"
    write_atomically(path, text)
    return path


def merge_result(path: Path, section: str, payload: dict) -> Path:
    """Write `payload` as `section` of the result file `path` with its own provenance
    block, keeping the file's other sections. The file's top-level block is the latest
    writer's; a section written before sections carried their own keeps the top-level block
    the file had then, marked `"inherited": true`: that writer's command, commit and date,
    which need not be this section's."""
    found = {}
    if path.is_file():
        found = json.loads(path.read_text())
        earlier = found.pop("provenance", None)
        for value in found.values():
            if earlier and isinstance(value, dict) and "provenance" not in value:
                value["provenance"] = {**earlier, "inherited": True}
    found[section] = {**payload, "provenance": provenance()}
    return write_result(path, found)


def set_tf_threads(count: int) -> None:
    """Limit TensorFlow to `count` intra- and inter-op threads (0: TF's default)."""
    if count > 0:
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(count)
        tf.config.threading.set_inter_op_parallelism_threads(count)


def run_script(main: Callable[[], object], interrupted: str = "interrupted") -> NoReturn:
    """Run a benchmark script's `main()` and exit: an int it returns is the exit status,
    anything else (a result path) is printed. A user error (`IENetError`: a missing run
    directory, a bad option) is one line on stderr and exit 2, Ctrl-C one line and exit
    130; a bug keeps its traceback."""
    from ienet_tf.errors import IENetError

    name = Path(sys.argv[0]).name
    try:
        result = main()
    except IENetError as error:
        print(f"{name}: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    except KeyboardInterrupt:
        print(f"{name}: {interrupted}", file=sys.stderr)
        raise SystemExit(130) from None
    if isinstance(result, int):
        raise SystemExit(result)
    if result is not None:
        print(result)
    raise SystemExit(0)


# ----------------------------------------------------------------------------- rendering
# What every benchmark's `section` (its part of docs/results.md) draws with.


def load(path: Path) -> dict | None:
    """A result file, or None when it is missing or unreadable."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _recorded_provenance(result: dict) -> dict:
    """The provenance block a result recorded (older files keep its keys at the top level)."""
    return result.get("provenance") or {
        key: result[key]
        for key in ("command", "commit", "date", "machine", "versions")
        if key in result
    }


def provenance_lines(result: dict) -> list[str]:
    """The file's provenance, or, for a file of sections with their own (`merge_result`),
    each section's."""
    sections = {
        name: value["provenance"]
        for name, value in result.items()
        if name != "provenance" and isinstance(value, dict) and "provenance" in value
    }
    if not sections:
        return _provenance_block(result)
    lines = []
    for name, prov in sections.items():
        note = (
            " (inherited: the file's block from before sections carried their own, i.e. "
            "its last writer's command, commit and date, which need not be this section's)"
            if prov.get("inherited")
            else ""
        )
        lines += [f"Section `{name}`{note}:", "", *_provenance_block({"provenance": prov})]
    return lines


def _provenance_block(result: dict) -> list[str]:
    """The command, commit, date, machine, versions (and wall time) as a markdown list."""
    prov = _recorded_provenance(result)
    machine = prov.get("machine", {})
    versions = ", ".join(f"{name} {v}" for name, v in prov.get("versions", {}).items())
    commit = str(prov.get("commit", "?"))[:10] + (
        " (uncommitted changes)" if prov.get("dirty") else ""
    )
    lines = [
        f"- command: `{portable_command(str(prov.get('command', '?')).split(' '))}`",
        f"- commit {commit}, {prov.get('date', '?')}",
        f"- machine: {machine.get('cpu', '?')}, {machine.get('cores', '?')} cores, "
        f"{machine.get('arch', '')}"
        + (f" (Python {machine['python']})" if machine.get("python") else ""),
        f"- versions: {versions or '?'}",
    ]
    wall = result.get("wall_seconds")
    if wall is not None:
        lines.append(f"- wall time: {duration(wall)}")
    return [*lines, ""]


def duration(seconds: float) -> str:
    """Seconds below 90 s, minutes above."""
    return f"{seconds / 60:.1f} min" if seconds >= 90 else f"{seconds:.0f} s"


def table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> list[str]:
    """A markdown table (tabulate's GitHub format; cells are printed as given)."""
    from tabulate import tabulate

    return [tabulate(rows, header, tablefmt="github", disable_numparse=True), ""]


def num(value: float | None, digits: int = 3) -> str:
    """`value` to `digits` significant digits; "-" for a missing one."""
    return "-" if value is None else f"{value:.{digits}g}"


def mean_std(values: Sequence[float]) -> str:
    """Fractions as "mean ± std" in percent (the mean alone for one value)."""
    text = f"{statistics.fmean(values) * 100:.2f}"
    return text + (f" ± {statistics.stdev(values) * 100:.2f}" if len(values) > 1 else "")


def t_interval(values: Sequence[float], level: float = 0.95) -> tuple[float, float]:
    """The two-sided t-interval of the mean of `values` (two or more) at `level`."""
    from scipy import stats

    mean = statistics.fmean(values)
    t = stats.t.ppf((1 + level) / 2, len(values) - 1)
    half = t * statistics.stdev(values) / len(values) ** 0.5
    return mean - half, mean + half


def errors(rows: Sequence[dict], label: Callable[[dict], str]) -> list[str]:
    """A "Failed:" list of the rows that recorded an error; nothing when none did."""
    failed = [row for row in rows if row.get("error")]
    if not failed:
        return []
    return ["Failed:", "", *[f"- {label(row)}: {row['error']}" for row in failed], ""]


def not_run(path: Path, command: str) -> list[str]:
    """The line a section shows when `path`, which `command` writes, is missing."""
    return [f"_Not run yet_: no `{path.name}`; `{command}` writes it.", ""]


def result_section(
    file: str, heading: str, command: str
) -> Callable[[Callable[..., list[str]]], Callable[..., str]]:
    """A results-page section drawn from the result file `file`: the heading, then the
    body's lines, or a "not run yet" line naming the `command` that writes the file. The
    section takes the results directory and the body's other arguments and returns markdown;
    the body gets the parsed result and those arguments (and stays callable as
    `section.__wrapped__`)."""

    def decorate(body: Callable[..., list[str]]) -> Callable[..., str]:
        @functools.wraps(body)
        def render(results_dir: Path, *args: object, **kwargs: object) -> str:
            path = results_dir / file
            result = load(path)
            lines = [heading, ""]
            if result is None:
                lines += not_run(path, command)
            else:
                lines += body(result, *args, **kwargs)
            return "\n".join(lines)

        return render

    return decorate
