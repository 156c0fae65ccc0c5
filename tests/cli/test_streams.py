"""stdout carries the result, stderr the progress (issue 29, friction 1): with `--json` a
command's stdout is one JSON object a pipe can read, and Keras' progress goes to stderr as
one line per epoch when stderr is not a terminal (no '\\r' / '\\b' redraws in a log)."""

import json
import os
import subprocess
import sys

import pytest

SMALL = ["--set", "data.subset=96", "--set", "data.test_subset=64", "--set", "train.batch_size=32"]


def _ienet(*argv, timeout=300):
    return subprocess.run(
        [sys.executable, "-m", "ienet_tf", *map(str, argv)],
        capture_output=True,  # pipes: neither stream is a terminal
        text=True,
        timeout=timeout,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )


def _assert_log_friendly(stderr: str, epochs: int) -> None:
    assert "\r" not in stderr and "\b" not in stderr, stderr[-500:]
    assert sum(" - loss: " in line for line in stderr.splitlines()) >= epochs  # one per epoch


@pytest.mark.slow
def test_train_json_is_the_whole_of_stdout_and_progress_is_on_stderr(tmp_path):
    argv = ["train", "--config", "configs/digits_convnet_ienet.yaml", "--run", tmp_path / "run"]
    argv += [*SMALL, "--set", "train.epochs=2"]
    done = _ienet(*argv, "--json")
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout)  # nothing else on stdout
    assert result["completed"] and result["output_dir"] == str(tmp_path / "run")
    _assert_log_friendly(done.stderr, 2)
    again = _ienet(*argv)  # without --json: one summary line
    assert again.returncode == 0
    (line,) = again.stdout.strip().splitlines()
    assert "already complete" in line and "test top-1" in line


@pytest.mark.slow
def test_tune_json_is_the_whole_of_stdout(tmp_path):
    argv = ["tune", "--config", "configs/tune_digits.yaml", "--output", tmp_path / "search"]
    argv += [*SMALL, "--set", "tune.max_trials=1", "--set", "train.epochs=1", "--json"]
    done = _ienet(*argv)
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads(done.stdout)
    assert summary["trials"] == 1 and set(summary["best"]) >= {"k", "t_min", "t_max"}
    _assert_log_friendly(done.stderr, 1)


def test_evaluate_says_what_it_does_on_stderr(tiny_run, capsys):
    from ienet_tf.cli import main

    assert main(["evaluate", "--run", str(tiny_run)]) == 0
    captured = capsys.readouterr()
    assert captured.err.startswith("ienet evaluate: evaluating the final model of")
    assert captured.out.count("\n") == 1 and "top-1" in captured.out
