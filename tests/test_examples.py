"""Every script in examples/ runs as written (on the embedded digits) and does what it says."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

#: What each example must print: the evidence it did its job, not just that it exited 0.
EXPECTED = {
    "own_model.py": ["test accuracy:", "'LceBconv2d': 4", "top1_agreement=1.0"],
    "larq_layers.py": ["larq + IEE, test accuracy:", "reloaded, test accuracy:", "FP MACs"],
    "tune_search.py": ["best trial: K="],
}


def test_every_example_is_checked():
    assert sorted(path.name for path in EXAMPLES.glob("*.py")) == sorted(EXPECTED)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_example_runs_as_written(name, tmp_path):
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / name)],
        cwd=tmp_path,  # what an example writes (model.tflite, ...) stays in the test's folder
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "OMP_NUM_THREADS": "1"},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    for expected in EXPECTED[name]:
        assert expected in done.stdout, done.stdout[-2000:]
    if name == "own_model.py":
        assert (tmp_path / "model.tflite").is_file() and (tmp_path / "model.tflite.json").is_file()
