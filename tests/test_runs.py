"""The run directory as a transaction (`ienet_tf.runs`): validation before writing, the
lock, atomic epoch commits that survive a crash at any point, the validation split."""

import math
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from ienet_tf import config as config_lib
from ienet_tf.errors import ConfigError, DataError, RunError, RunLockedError
from ienet_tf.runs import Run, sha256
from ienet_tf.train import evaluate, train

DEMO = Path("configs/digits_convnet_ienet.yaml")
BASE = ["data.subset=96", "data.test_subset=64", "train.batch_size=32"]


def _config(*overrides):
    return config_lib.load(DEMO, [*BASE, *overrides])


def _assert_consistent(run_dir: Path, epochs: int) -> dict:
    """A finished run: each epoch once in the history, every artefact as committed, no
    pending or temporary file left."""
    run = Run(run_dir)
    metrics = run.metrics()
    assert metrics["completed"]
    assert [row["epoch"] for row in run.history()] == list(range(epochs))
    assert len((run_dir / "history.csv").read_text().splitlines()) == epochs + 1
    for name, digest in run.artefacts().items():
        assert sha256(run_dir / name) == digest, name
    assert set(run.checkpoints()) == {"final", "best", "last"}  # no int8 model asked for
    leftovers = [p for p in run_dir.rglob("*") if ".pending" in p.name or ".tmp" in p.name]
    assert not leftovers, leftovers
    assert sorted(p.name for p in run.resume_dir.iterdir()) == [f"epoch-{epochs - 1:04d}"]
    total = sum(row["time_s"] for row in run.history())
    assert metrics["wall_time_s"] >= total
    return metrics


def test_validation_split_selects_best_and_reports_both_test_numbers(tmp_path):
    config = _config(
        "data.validation_examples=48",
        "train.epochs=3",
        "iee.per_step=true",
        "train.lr_per_step=true",
    )
    metrics = train(config, tmp_path, verbose=0)
    _assert_consistent(tmp_path, 3)
    history = Run(tmp_path).history()
    best = max(range(3), key=lambda e: (history[e]["val_accuracy"], -e))
    assert metrics["monitor"] == "validation" and metrics["best_epoch"] == best
    assert metrics["val_accuracy_best"] == pytest.approx(history[best]["val_accuracy"])
    assert metrics["test_accuracy_best_val"] == pytest.approx(evaluate(tmp_path, "best")["top1"])
    assert metrics["test_accuracy"] == pytest.approx(evaluate(tmp_path, "final")["top1"])
    assert (metrics["train_examples"], metrics["validation_examples"]) == (96, 48)
    # Per-step schedule, 3 steps per epoch (96 / 32): the epoch logs the q of its last step.
    steps = [3 * e + 2 for e in range(3)]
    expected = [10 ** (-2 + 3 * s / 9) for s in steps]
    assert [row["iee_q"] for row in history] == pytest.approx(expected, rel=1e-5)
    # ... and so does the per-step cosine learning rate.
    lr = config.train.learning_rate
    expected = [0.5 * lr * (1 + math.cos(math.pi * s / 9)) for s in steps]
    assert [row["lr"] for row in history] == pytest.approx(expected, rel=1e-5)


def test_without_a_validation_split_the_test_split_is_monitored(tmp_path):
    metrics = train(_config("train.epochs=2"), tmp_path, verbose=0)
    history = Run(tmp_path).history()
    assert metrics["monitor"] == "test"
    assert metrics["best_test_accuracy"] == max(row["val_accuracy"] for row in history)
    assert metrics["test_accuracy"] == pytest.approx(history[-1]["val_accuracy"])


def test_a_validation_split_larger_than_the_training_split_is_a_config_error():
    with pytest.raises(ConfigError, match=r"data.validation_examples: 1700 held-out examples \+"):
        _config("data.validation_examples=1700")


def test_nothing_is_written_before_the_data_is_found(tmp_path):
    run = tmp_path / "run"
    config = config_lib.load(
        "configs/fashion_mnist_resnet20_ienet.yaml", [f"data.data_dir={tmp_path / 'none'}"]
    )
    with pytest.raises(DataError, match=r"No Fashion-MNIST IDX files .*--set data\.data_dir=DIR"):
        train(config, run, verbose=0)
    assert not run.exists()


def test_a_directory_in_use_is_refused_naming_the_holder_and_a_stale_lock_is_taken(tmp_path):
    config = _config("train.epochs=1")
    with Run(tmp_path).claim():
        with pytest.raises(
            RunLockedError, match=f"in use by another process \\(PID {os.getpid()}\\)"
        ):
            train(config, tmp_path, verbose=0)
    assert not (tmp_path / "config.yaml").exists()  # refused before writing anything
    (tmp_path / ".lock").write_text("999999\n")  # a dead holder's lock file, not locked
    assert train(config, tmp_path, verbose=0)["completed"]


def test_a_directory_of_another_config_is_refused_once_it_has_trained(tmp_path):
    train(_config("train.epochs=1"), tmp_path, verbose=0)
    with pytest.raises(
        RunError, match=r"different config \(train.epochs: 1 -> 2\); .* \(recorded in state.json\)"
    ):
        train(_config("train.epochs=2"), tmp_path, verbose=0)


def test_a_changed_artefact_fails_verification(tmp_path):
    train(_config("train.epochs=1"), tmp_path, verbose=0)
    best = tmp_path / "checkpoints" / "best.keras"
    best.write_bytes(best.read_bytes()[:-10] + b"0123456789")
    with pytest.raises(RunError, match="does not match the SHA-256"):
        Run(tmp_path).model("best")


CRASHING = textwrap.dedent(
    """
    import os, sys
    from ienet_tf import config as config_lib, runs
    from ienet_tf.train import trainer

    run_dir, mode, *overrides = sys.argv[1:]
    calls = {"pending": 0, "replace": 0, "state": 0}

    def die():
        os._exit(137)  # like kill -9: no cleanup, no atexit

    write_pending, replace = runs.Run.write_pending, os.replace
    write_atomically = runs.write_atomically

    def pending(self, which, save):
        calls["pending"] += 1
        if mode == f"half-{which}" and calls["pending"] >= 3:
            path = self.path / runs._PENDING[which]
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(b"PK\\x03\\x04 half a zip")
            die()
        return write_pending(self, which, save)

    def atomic(path, payload):
        if path.name == "state.json":
            calls["state"] += 1
            if mode == "before-commit" and calls["state"] == 2:
                die()
        return write_atomically(path, payload)

    def rename(src, dst):
        if mode == "after-commit" and calls["state"] == 2 and ".pending" in str(src):
            die()
        return replace(src, dst)

    runs.Run.write_pending = pending
    runs.write_atomically = atomic
    runs.os.replace = rename
    if mode == "worse-after-resume":
        from ienet_tf.train.trainer import _EpochCommit

        begin, end = _EpochCommit.on_epoch_begin, _EpochCommit.on_epoch_end

        def on_epoch_begin(self, epoch, logs=None):
            if epoch == 1:
                die()
            begin(self, epoch, logs)

        def on_epoch_end(self, epoch, logs=None):
            logs["val_accuracy"] = 0.9  # epoch 0 scores best
            end(self, epoch, logs)

        _EpochCommit.on_epoch_begin = on_epoch_begin
        _EpochCommit.on_epoch_end = on_epoch_end
    trainer.train(config_lib.load("configs/digits_convnet_ienet.yaml", overrides), run_dir, 0)
    """
)


def _crash(run_dir: Path, mode: str, overrides: list[str]) -> None:
    done = subprocess.run(
        [sys.executable, "-c", CRASHING, str(run_dir), mode, *overrides],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    assert done.returncode == 137, done.stderr[-2000:]


@pytest.mark.slow
@pytest.mark.parametrize(
    "mode, committed",
    [
        ("half-last", 1),  # killed while writing epoch 1's last.keras
        ("before-commit", 1),  # epoch 1's files written, state.json not yet renamed
        ("after-commit", 2),  # epoch 1 committed, its files not yet renamed into place
        ("half-final", 3),  # killed while writing the final model.keras
    ],
)
def test_a_crash_at_any_point_leaves_a_directory_the_rerun_finishes(tmp_path, mode, committed):
    overrides = [*BASE, "train.epochs=3"]
    _crash(tmp_path, mode, overrides)
    state = Run(tmp_path).state()
    assert state["epochs_done"] == committed
    assert not Run(tmp_path).is_complete()
    # Readers see the committed state even before a rerun cleans up.
    if committed:
        Run(tmp_path).verified_model_path("last")
    metrics = train(config_lib.load(DEMO, overrides), tmp_path, verbose=0)
    _assert_consistent(tmp_path, 3)
    assert metrics["invocations"] == 2
    assert metrics["epochs_this_invocation"] == 3 - committed


@pytest.mark.slow
def test_best_stays_best_across_a_resume_followed_by_a_worse_epoch(tmp_path, monkeypatch):
    """Killed after epoch 0 (val 0.9, the best); epochs 1-2 score worse after the resume:
    best.keras is still epoch 0's file and the best score is persisted, not reset."""
    overrides = [*BASE, "train.epochs=3"]
    _crash(tmp_path, "worse-after-resume", overrides)
    first = Run(tmp_path).state()
    assert first["epochs_done"] == 1
    best_digest = first["artefacts"]["checkpoints/best.keras"]
    from ienet_tf.train.trainer import _EpochCommit

    end = _EpochCommit.on_epoch_end

    def scripted(self, epoch, logs=None):
        logs["val_accuracy"] = 0.1 * (epoch + 1)  # 0.2, 0.3: both below epoch 0's score
        end(self, epoch, logs)

    assert first["best"] == {"monitor": "val_accuracy", "value": 0.9, "epoch": 0}
    monkeypatch.setattr(_EpochCommit, "on_epoch_end", scripted)
    metrics = train(config_lib.load(DEMO, overrides), tmp_path, verbose=0)
    assert metrics["best_epoch"] == 0
    assert Run(tmp_path).artefacts()["checkpoints/best.keras"] == best_digest
    assert sha256(tmp_path / "checkpoints" / "best.keras") == best_digest


def _rewrite_keras(source: Path, target: Path, edit) -> None:
    """Copy a .keras zip, letting `edit(name, bytes) -> bytes | None` change or drop files."""
    import zipfile

    with zipfile.ZipFile(source) as src, zipfile.ZipFile(target, "w") as dst:
        for item in src.infolist():
            data = edit(item.filename, src.read(item.filename))
            if data is not None:
                dst.writestr(item, data)


@pytest.mark.parametrize(
    "case, message",
    [
        ("no-config", "no config.json|There is no item named 'config.json'|config.json"),
        ("unknown-class", "Unknown layer|unknown|Could not locate class"),
        ("shape-mismatch", "shape|Shape"),
        ("not-a-zip", "File is not a zip file|not a zip"),
    ],
)
def test_damaged_keras_files_are_one_line_errors(tiny_run, tmp_path, case, message, capsys):
    """`.keras` files that cannot be loaded: one `RunError` line naming the file (and, through
    the CLI, exit 2 without a traceback)."""
    from ienet_tf.cli import main
    from ienet_tf.io import load_keras_model

    good = tiny_run / "model.keras"
    bad = tmp_path / "model.keras"
    if case == "not-a-zip":
        bad.write_bytes(b"not a zip at all")
    else:

        def edit(name, data):
            if name == "config.json":
                if case == "no-config":
                    return None
                text = data.decode()
                if case == "unknown-class":
                    # both the class name and the registered "ienet_tf>" name
                    return text.replace('IEBinaryConv2D"', 'NoSuchLayer"').encode()
                return text.replace('"filters": 64', '"filters": 48').encode()
            return data

        _rewrite_keras(good, bad, edit)
    with pytest.raises(RunError, match=f"cannot load {bad}") as info:
        load_keras_model(bad)
    assert "\n" not in str(info.value) and re.search(message, str(info.value)), info.value
    # A run directory from before state.json (nothing to verify) holding the damaged file.
    legacy = tmp_path / "legacy"
    legacy.mkdir()
    (legacy / "config.yaml").write_bytes((tiny_run / "config.yaml").read_bytes())
    (legacy / "model.keras").write_bytes(bad.read_bytes())
    assert main(["evaluate", "--run", str(legacy), "--which", "final"]) == 2
    progress, err = capsys.readouterr().err.strip().splitlines()  # what it does, then why not
    assert progress.startswith("ienet evaluate: evaluating the final model of")
    assert err.startswith("ienet evaluate: error: cannot load") and "Traceback" not in err


def _umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


def test_publish_copies_a_model_as_a_run_and_replaces_only_when_finished(tiny_run, tmp_path):
    source = Run(tiny_run)
    destination = tmp_path / "ready" / "model"
    published = source.publish(destination)
    assert sorted(p.name for p in destination.iterdir()) == [
        ".ienet-tf.json",  # the ownership manifest: a later publish may replace it
        "config.yaml",
        "metrics.json",
        "model.keras",
    ]
    assert published.config() == source.config() and published.is_complete()
    assert destination.stat().st_mode & 0o777 == 0o777 & ~_umask()  # as a plain mkdir's
    metrics = published.metrics()
    assert metrics["test_accuracy"] == source.metrics()["test_accuracy"]
    assert metrics["published_from"] == {
        "run": source.path.name,
        "model": "model.keras",
        "sha256": sha256(source.model_path("final")),
    }
    # The same weights, without the optimizer's state.
    original, copy = source.model("final"), published.model("final")
    shape = (4, *original.input_shape[1:])
    images = np.random.default_rng(0).normal(size=shape).astype("float32")
    np.testing.assert_array_equal(original(images), copy(images))
    assert destination.joinpath("model.keras").stat().st_size < source.model_path().stat().st_size
    assert published.checkpoints() == {"final": destination / "model.keras"}

    before = {p.name: p.read_bytes() for p in destination.iterdir()}

    def fail(staged: Run) -> None:
        (staged.path / "half.tflite").write_bytes(b"half")
        raise RuntimeError("export failed")

    with pytest.raises(RuntimeError, match="export failed"):
        source.publish(destination, finish=fail)
    assert {p.name: p.read_bytes() for p in destination.iterdir()} == before
    assert [p.name for p in destination.parent.iterdir()] == ["model"]  # no staging left

    source.publish(destination, finish=lambda staged: (staged.path / "extra").write_text("x"))
    assert (destination / "extra").read_text() == "x"
    assert [p.name for p in destination.parent.iterdir()] == ["model"]

    # The checkpoint chosen on the monitored split, with that checkpoint's test accuracy.
    best = source.publish(tmp_path / "best", which="best")
    assert best.metrics()["published_from"]["model"] == "checkpoints/best.keras"
    assert source.metrics()["monitor"] == "test"  # no validation split: best is best-on-test
    assert best.metrics()["test_accuracy"] == source.metrics()["best_test_accuracy"]
    np.testing.assert_array_equal(source.model("best")(images), best.model("final")(images))
    with pytest.raises(ValueError, match="which must be 'final' or 'best'"):
        source.publish(tmp_path / "last", which="last")
    # A user's folder at the destination is never replaced.
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("mine")
    with pytest.raises(RunError, match=r"is not empty \(notes.txt\) and was not written by"):
        source.publish(tmp_path / "mine")
    assert [p.name for p in (tmp_path / "mine").iterdir()] == ["notes.txt"]


def test_an_unfinished_run_is_not_published(tmp_path):
    train(_config("train.epochs=1"), tmp_path / "run", verbose=0)
    Run(tmp_path / "run").metrics_path.unlink()  # as if it had stopped after the epoch
    with pytest.raises(RunError, match="has not finished"):
        Run(tmp_path / "run").publish(tmp_path / "out")
    assert not (tmp_path / "out").exists()
