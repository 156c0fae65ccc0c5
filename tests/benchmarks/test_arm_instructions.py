"""The aarch64 instruction-count benchmark: its smoke mode on the real runtime under qemu
(counts checked against `-singlestep` and against `--count`), and the results-page section
it renders. The tracing it uses (`ienet_tf.export.arm_trace`, shared with `ienet verify-arm
--trace`) is tested on a synthetic qemu log in tests/export/test_arm_trace.py."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ienet_tf import errors
from ienet_tf.export import arm

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # as test_harness.py does: benchmarks/ is not a package here
    sys.path.insert(0, str(ROOT))
from benchmarks import arm_instructions as bench  # noqa: E402

SCRIPT = ROOT / "benchmarks" / "arm_instructions.py"


def test_the_section_names_its_command_before_a_run(tmp_path):
    text = bench.section(tmp_path)
    assert "_Not run yet_" in text and "benchmarks/arm_instructions.py" in text


@pytest.fixture(scope="module")
def smoke(tmp_path_factory) -> tuple[dict, Path]:
    try:
        arm.find_runtime()
    except errors.MissingToolError as error:
        pytest.skip(f"no aarch64 LCE runtime here: {error}")
    for tool in ("nm", "objdump", "readelf"):
        if shutil.which(f"aarch64-linux-gnu-{tool}") is None:
            pytest.skip(f"aarch64-linux-gnu-{tool} is not installed")
    folder = tmp_path_factory.mktemp("arm_instructions")
    output = folder / "arm_instructions.json"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--smoke", "--output", str(output)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(output.read_text()), folder


@pytest.mark.slow
def test_smoke_counts_add_up_per_category_and_invoke(smoke):
    result, _ = smoke
    assert {"command", "commit", "date", "machine", "versions"} <= set(result["provenance"])
    assert result["smoke"] is True and result["categories"] == list(bench.CATEGORY_NAMES)
    rows = {row["label"]: row for row in result["rows"]}
    assert set(rows) == {"fp", "ienet K=2"}
    for row in rows.values():
        assert row["error"] is None
        assert sum(row["categories"].values()) == row["instructions"] == row["invokes"][-1]
        assert sum(row["functions"].values()) == row["instructions"]
        assert len(row["invokes"]) == result["setup"]["count"]
        assert row["outside_invokes"] > 0  # loading is counted, outside every invoke
    fp, binary = rows["fp"], rows["ienet K=2"]
    assert fp["ratio_to_fp"] == 1.0 and binary["ratio_to_fp"] < 1
    conv = "float conv / FC GEMM (im2col, ruy float kernels)"
    bconv = "LCE binary conv (LceBconv2d)"
    assert fp["categories"][conv] > 5 * binary["categories"][conv] > 0  # the first conv is float
    assert fp["categories"][bconv] == 0 < binary["categories"][bconv]
    assert binary["ops"]["LceBconv2d"] > 0 and "LceBconv2d" not in fp["ops"]


@pytest.mark.slow
def test_smoke_counts_match_singlestep_and_grow_by_one_invoke_per_count(smoke):
    checks = smoke[0]["checks"]
    for tb, single in zip(checks["tb_count_invokes"], checks["singlestep_invokes"], strict=True):
        # One instruction per TB counts the same run without TB sizes. The only functions
        # allowed to differ are ruy's tuning resolver, which re-reads the CPU when a
        # wall-clock timer expires (more often in the slower single-step run).
        assert abs(tb - single) <= 1e-3 * single
    assert all(name.startswith("ruy::") for name in checks["differing_functions"])
    whole, invoke = checks["whole_run"], checks["last_invoke"]["3"]
    for step in (whole["2"] - whole["1"], whole["3"] - whole["2"]):
        assert invoke <= step <= 1.01 * invoke  # plus one sample's file I/O


@pytest.mark.slow
def test_smoke_section_renders_every_row(smoke):
    result, folder = smoke
    text = bench.section(folder)
    assert "## aarch64 instructions per inference" in text
    assert "not latency" in text and "45.0 ms" in text and "Raspberry Pi 4B" in text
    for row in result["rows"]:
        cells = ["convnet", "8x8x1", row["label"], bench._millions(row["instructions"])]
        assert _shows_row(text, [*cells, f"{row['ratio_to_fp']:.3f}"]), text
        bconv = row["categories"]["LCE binary conv (LceBconv2d)"] / 1e6
        assert _shows_row(text, ["convnet", row["label"], f"{bconv:,.2f}"]), text


def _shows_row(text: str, cells) -> bool:
    """Whether a markdown table in `text` has a row starting with `cells` (any padding)."""
    pattern = r"^\| " + r" +\| ".join(re.escape(str(cell)) for cell in cells) + r"[ (]"
    return re.search(pattern, text, re.MULTILINE) is not None
