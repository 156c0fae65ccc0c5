"""The package behaves like one (issue 29, friction 6): `ienet --version`, lazy access to
every submodule, no stray names, and `python -m ienet_tf` as light as `ienet`."""

import os
import subprocess
import sys

import ienet_tf
from ienet_tf.cli import main


def test_version(capsys):
    try:
        main(["--version"])
    except SystemExit as done:
        assert done.code == 0
    assert capsys.readouterr().out.strip() == f"ienet-tf {ienet_tf.__version__}"


def test_every_submodule_is_reachable_as_an_attribute_and_nothing_stray_is():
    assert ienet_tf.export.to_tflite.__name__ == "to_tflite"
    assert ienet_tf.runs.Run.__name__ == "Run"
    for name in ienet_tf._SUBMODULES:
        assert getattr(ienet_tf, name).__name__ == f"ienet_tf.{name}"
        assert name in dir(ienet_tf)
    for stray in ("os", "sys", "importlib"):
        assert not hasattr(ienet_tf, stray) and stray not in dir(ienet_tf)


def test_python_dash_m_defers_tensorflow_like_the_ienet_command():
    """`python -m ienet_tf --help` imports no TensorFlow (what made it take 3.6 s)."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "ienet_tf", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    assert done.returncode == 0 and "usage: ienet" in done.stdout
    imported = [line.split("|")[-1].strip() for line in done.stderr.splitlines() if "|" in line]
    assert "ienet_tf" in imported and "tensorflow" not in imported


def test_required_options_show_as_required_and_the_error_names_the_command(capsys):
    try:
        main(["evaluate"])
    except SystemExit as done:
        assert done.code == 2
    err = capsys.readouterr().err
    assert "usage: ienet evaluate [-h] (--run DIR | --model FILE)" in err
    assert "ienet evaluate: error: one of the arguments --run --model is required" in err
