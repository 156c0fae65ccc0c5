"""What the ARM tests (test_arm.py, test_cpp_example.py) share: building the aarch64 LCE
runtime and the C++ example with the repository's make targets (cached: minutes once, then
a no-op), skipping, saying why, only where a tool or the sources are missing."""

import shutil
import subprocess
from pathlib import Path

import pytest

from ienet_tf.export import arm

ROOT = Path(__file__).resolve().parents[2]
# The Makefiles' own lines for what is missing here; any other failure fails the test.
MISSING = ("not found", "no Eigen in")


def make(target: str) -> None:
    """`make TARGET` at the top level; skip where the Makefile says a tool or the sources
    are missing, fail (with make's last lines) on anything else."""
    for tool in ("make", "qemu-aarch64-static"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed ({arm.INSTALL_COMMAND})")
    built = subprocess.run(
        ["make", "-s", "--no-print-directory", "-C", str(ROOT), target],
        capture_output=True,
        text=True,
        check=False,
    )
    if built.returncode != 0:
        lines = [line for line in built.stderr.splitlines() if line.strip()]
        lines += [line for line in built.stdout.splitlines() if line.strip()]
        missing = [ln for ln in lines if ln.startswith("arm-") and any(m in ln for m in MISSING)]
        if missing:
            pytest.skip(f"`make {target}` cannot build here: {missing[0]}")
        pytest.fail(f"make {target} failed:\n" + "\n".join(lines[-20:]))


@pytest.fixture(scope="session")
def runtime() -> arm.Runtime:
    """The built runtime (`make arm-runtime`; concurrent builds wait on the cache's lock)."""
    make("arm-runtime")
    return arm.find_runtime()


@pytest.fixture(scope="session")
def arm_make():
    """`make` above, for tests that build another ARM target (the C++ example)."""
    return make
