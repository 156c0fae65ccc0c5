"""What every benchmark result file records, and how it is written.

Each result file is one JSON object whose `provenance` block says how to rerun it: the
command, the git commit (and whether the tree was dirty), the date, the machine (CPU
model, cores) and the package versions. `docs/results.md` is generated from these files.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import subprocess
import sys
from collections.abc import Callable
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
