"""The training-throughput benchmark's smoke mode runs and writes the documented schema."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "throughput.py"
ROW_FIELDS = {
    "variant",
    "k",
    "jit_compile",
    "images_per_s",
    "step_ms",
    "window_ms",
    "cpu_ms",
    "window_cpu_ms",
    "cpu_speed_vs_bireal",
    "speed_vs_bireal",
    "first_step_s",
    "other_cpu_cores",
    "retried_windows",
    "waited_for_quiet_s",
    "load_avg",
    "error",
}


@pytest.mark.slow
def test_smoke_mode_writes_the_documented_schema(tmp_path):
    output = tmp_path / "throughput.json"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    command = [sys.executable, str(SCRIPT), "--smoke", "--jit", "off", "--output", str(output)]
    done = subprocess.run(
        command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(output.read_text())

    provenance = result["provenance"]
    assert {"command", "commit", "dirty", "date", "machine", "versions"} <= set(provenance)
    assert "--smoke" in provenance["command"]
    assert result["settings"]["synthetic_data"] is True
    assert result["settings"]["batch_size"] == 128

    rows = result["rows"]
    assert [(row["variant"], row["k"], row["jit_compile"]) for row in rows] == [
        ("bireal", 1, False),
        ("ienet", 1, False),
    ]
    for row in rows:
        assert set(row) == ROW_FIELDS
        assert row["error"] is None
        assert row["images_per_s"] > 0
        assert row["step_ms"] == pytest.approx(128 / row["images_per_s"] * 1e3)
        assert len(row["window_ms"]) == result["settings"]["windows"]
    assert rows[0]["speed_vs_bireal"] == pytest.approx(1.0)
    assert rows[1]["speed_vs_bireal"] == pytest.approx(
        rows[1]["images_per_s"] / rows[0]["images_per_s"]
    )
