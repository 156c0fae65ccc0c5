import subprocess
import sys

import pytest

from ienet_tf import export
from ienet_tf.cli import main


@pytest.mark.slow
def test_demo_trains_above_chance_exports_and_checks_parity(tmp_path, capsys):
    assert main(["demo", "--output-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    accuracy = float(out.split("test accuracy:")[1].split("%")[0])
    assert accuracy >= 80.0
    assert "'LceBconv2d': 6" in out and "LceDequantize" not in out
    tflite = tmp_path / "digits_ienet.tflite"
    assert tflite.stat().st_size > 0
    assert f"({tflite.stat().st_size:,} bytes)" in out
    assert list(tmp_path.iterdir()) == [tflite]


def test_demo_failed_parity_is_one_error_line_and_leaves_no_file(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(export, "parity", lambda *args: export.Parity(0.5, 0.9, num_inputs=360))
    assert main(["demo", "--epochs", "1", "--output-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("ienet demo: error: LCE interpreter and Keras disagree")
    assert "Traceback" not in err
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("argv", [["demo", "--epochs", "0"], ["demo", "--k", "two"], ["nope"]])
def test_bad_arguments_exit_2_without_traceback(argv):
    result = subprocess.run(
        [sys.executable, "-m", "ienet_tf", *argv], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 2
    assert "usage: ienet" in result.stderr and "Traceback" not in result.stderr
