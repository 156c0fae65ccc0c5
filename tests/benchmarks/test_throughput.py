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
    "policy",
    "speed_vs_float32",
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
    command += ["--policies", "float32,mixed_bfloat16"]
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
    assert [(row["variant"], row["k"], row["jit_compile"], row["policy"]) for row in rows] == [
        ("bireal", 1, False, "float32"),
        ("bireal", 1, False, "mixed_bfloat16"),
        ("ienet", 1, False, "float32"),
        ("ienet", 1, False, "mixed_bfloat16"),
    ]
    assert result["settings"]["policies"] == ["float32", "mixed_bfloat16"]
    for row in rows:
        assert set(row) == ROW_FIELDS
        assert row["error"] is None
        assert row["images_per_s"] > 0
        assert row["step_ms"] == pytest.approx(128 / row["images_per_s"] * 1e3)
        assert len(row["window_ms"]) == result["settings"]["windows"]
    assert rows[0]["speed_vs_bireal"] == rows[1]["speed_vs_bireal"] == pytest.approx(1.0)
    assert rows[2]["speed_vs_bireal"] == pytest.approx(
        rows[2]["images_per_s"] / rows[0]["images_per_s"]
    )
    assert rows[3]["speed_vs_float32"] == pytest.approx(
        rows[3]["images_per_s"] / rows[2]["images_per_s"]
    )
    assert rows[0]["speed_vs_float32"] == pytest.approx(1.0)
