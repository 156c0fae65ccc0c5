"""The promises of a command towards what it does not own (issue 27), one family per test,
each provoked through the `ienet` command line: a user's folder, file or link is never
written, deleted or followed; a damaged or edited run says so and the advice works; failed
work is never a result; the operating system's refusals are one line and lose nothing.

`test_fault_harness.py` interleaves the same faults at random (hypothesis.stateful)."""

import contextlib
import errno
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from file_tree import snapshot

from ienet_tf import runs
from ienet_tf.cli import main
from ienet_tf.runs import MANIFEST, Run, Search

DEMO = "configs/digits_convnet_ienet.yaml"
TUNE = "configs/tune_digits.yaml"
SMALL = ["--set", "data.subset=96", "--set", "data.test_subset=64", "--set", "train.batch_size=32"]


def ienet(capsys, *argv) -> tuple[int, str]:
    """Run one `ienet` command in this process: (exit code, stderr's last line)."""
    capsys.readouterr()
    code = main([str(a) for a in argv])
    err = capsys.readouterr().err.strip().splitlines()
    return code, err[-1] if err else ""


def train_argv(run, epochs=1, *extra):
    return [
        "train",
        "--config",
        DEMO,
        "--run",
        run,
        "--verbose",
        "0",
        *SMALL,
        "--set",
        f"train.epochs={epochs}",
        *extra,
    ]


def assert_one_line_error(code: int, line: str, *fragments: str) -> None:
    assert code == 2, line
    assert line.startswith("ienet ") and ": error: " in line, line
    assert "Traceback" not in line
    for fragment in fragments:
        assert fragment in line, (fragment, line)


@pytest.fixture
def user_folder(tmp_path):
    """A folder of the user's holding names a command also writes."""
    folder = tmp_path / "mine"
    (folder / "resume").mkdir(parents=True)
    for name in ("notes.txt", "config.yaml", "history.csv", "report.md", "trials.csv"):
        (folder / name).write_text(f"the user's {name}\n")
    (folder / "resume" / "mine.txt").write_text("the user's\n")
    return folder


@pytest.fixture
def complete_run(tmp_path, capsys):
    """A finished 1-epoch run of `train_argv`."""
    path = tmp_path / "run"
    assert ienet(capsys, *train_argv(path, 1))[0] == 0
    return path


@pytest.fixture
def interrupted_run(tmp_path, monkeypatch):
    """A run of 2 epochs stopped (Ctrl-C) after committing epoch 0."""
    from ienet_tf.train import trainer

    end = trainer._EpochCommit.on_epoch_end

    def stop_after_first(self, epoch, logs=None):
        end(self, epoch, logs)
        raise KeyboardInterrupt

    path = tmp_path / "run"
    with monkeypatch.context() as patch:
        patch.setattr(trainer._EpochCommit, "on_epoch_end", stop_after_first)
        assert main([str(a) for a in train_argv(path, 2)]) == 130
    assert Run(path).state()["epochs_done"] == 1 and not Run(path).is_complete()
    return path


# --- 1. a command touches only what it wrote --------------------------------------------


@pytest.mark.parametrize("command", ["train", "tune", "report", "import-torch"])
def test_a_folder_that_is_not_ours_is_refused_before_anything_is_written(
    command, user_folder, tiny_run, tmp_path, capsys
):
    before = snapshot(user_folder)
    argv = {
        "train": train_argv(user_folder),
        "tune": ["tune", "--config", TUNE, "--output", user_folder, "--verbose", "0"],
        "report": ["report", "--run", tiny_run, "--output", user_folder],
        "import-torch": [
            "import-torch",
            "--config",
            "configs/cifar10_resnet20_ienet.yaml",
            "--set",
            "model.compat=release",
            "--weights",
            tmp_path / "missing.pth",
            "--run",
            user_folder,
        ],
    }[command]
    code, line = ienet(capsys, *argv)
    assert_one_line_error(code, line, f"{user_folder} is not empty", "nothing was written")
    assert snapshot(user_folder) == before


def test_publish_never_replaces_a_folder_of_the_users(tiny_run, user_folder):
    before = snapshot(user_folder)
    with pytest.raises(runs.RunError, match=r"is not empty .* was not written by"):
        Run(tiny_run).publish(user_folder)
    assert snapshot(user_folder) == before


def test_an_export_never_replaces_a_file_it_did_not_write(tiny_run, tmp_path, capsys):
    mine = tmp_path / "model.tflite"
    mine.write_bytes(b"the user's model")
    code, line = ienet(capsys, "export", "--run", tiny_run, "--output", mine)
    assert_one_line_error(code, line, "is not an `ienet export` file")
    assert mine.read_bytes() == b"the user's model"
    # Its own earlier export is replaced; the same export edited since is not.
    ours = tmp_path / "ours.tflite"
    assert ienet(capsys, "export", "--run", tiny_run, "--output", ours)[0] == 0
    assert ienet(capsys, "export", "--run", tiny_run, "--output", ours)[0] == 0
    ours.write_bytes(ours.read_bytes() + b"edited")
    code, line = ienet(capsys, "export", "--run", tiny_run, "--output", ours)
    assert_one_line_error(code, line, "differs from the export")


def test_recovery_deletes_only_the_runs_own_names(interrupted_run, capsys):
    user = {
        "notes.txt": "mine",
        ".notes.txt.abcdefgh.tmp": "mine, though it looks temporary",
        "resume/mine.txt": "mine",
        "resume/epoch-notes": "mine",
        "checkpoints/mine.keras": "mine",
        "tensorboard/mine.txt": "mine",
    }
    for name, text in user.items():
        (interrupted_run / name).write_text(text)
    # What a crash leaves of the run's own: a pending model, a temporary state, a resume dir.
    (interrupted_run / "checkpoints" / ".pending-best.keras").write_text("half")
    (interrupted_run / ".state.json.k3j4h5g6.tmp").write_text("half")
    (interrupted_run / "resume" / ".epoch-0001.tmp").mkdir()
    assert ienet(capsys, *train_argv(interrupted_run, 2))[0] == 0
    for name, text in user.items():
        assert (interrupted_run / name).read_text() == text, name
    assert not (interrupted_run / "checkpoints" / ".pending-best.keras").exists()
    assert not (interrupted_run / ".state.json.k3j4h5g6.tmp").exists()
    assert sorted(p.name for p in (interrupted_run / "resume").iterdir()) == [
        "epoch-0001",
        "epoch-notes",
        "mine.txt",
    ]


@pytest.mark.parametrize("kind", ["file", "tflite", "dangling", "loop", "tune"])
def test_a_path_that_is_not_a_run_says_what_it_is(kind, tmp_path, capsys):
    path = tmp_path / {"tflite": "model.tflite"}.get(kind, "thing")
    expected = {
        "file": "is a file, not a directory",
        "tflite": "is a file (an export), not a directory",
        "dangling": "is a symbolic link to ",
        "loop": "is a symbolic link loop",
        "tune": "is the directory of an `ienet tune`",
    }[kind]
    if kind in ("file", "tflite"):
        path.write_text("x")
    elif kind == "dangling":
        path.symlink_to(tmp_path / "nowhere")
    elif kind == "loop":
        path.symlink_to(path)
    else:
        with Search(path).claim():
            pass
    for argv in (
        train_argv(path),
        ["evaluate", "--run", path],
        ["export", "--run", path, "--output", tmp_path / "x.tflite"],
        ["report", "--run", path],
    ):
        code, line = ienet(capsys, *argv)
        assert_one_line_error(code, line, expected)
    assert not (tmp_path / "nowhere").exists() and not (tmp_path / "x.tflite").exists()


# --- 2. no link leads a run outside itself ---------------------------------------------------


@pytest.mark.parametrize(
    "link", ["checkpoints", "tensorboard", "resume", "tensorboard/train", ".lock", "history.csv"]
)
def test_a_link_at_one_of_the_runs_names_is_refused(link, interrupted_run, tmp_path, capsys):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "precious.txt").write_text("precious")
    target = interrupted_run / link
    if target.exists():
        shutil.move(target, outside / target.name) if target.is_dir() else target.unlink()
    target.symlink_to(outside if link != "history.csv" else outside / "precious.txt")
    before = snapshot(outside)
    code, line = ienet(capsys, *train_argv(interrupted_run, 2))
    assert_one_line_error(code, line, f"{target}", "link")
    assert snapshot(outside) == before


# --- 3. a damaged or edited run says so, and the advice works ---------------------------------


def test_a_deleted_config_is_named_and_restored_by_the_advised_rerun(interrupted_run, capsys):
    (interrupted_run / "config.yaml").unlink()
    code, line = ienet(capsys, "evaluate", "--run", interrupted_run)
    assert_one_line_error(code, line, "config.yaml is missing", "ienet train --config FILE")
    # Another config is not taken for it: the record in state.json decides.
    other = train_argv(interrupted_run, 2, "--set", "train.learning_rate=0.5")
    code, line = ienet(capsys, *other)
    assert_one_line_error(code, line, "different config (train.learning_rate: 0.01 -> 0.5)")
    assert ienet(capsys, *train_argv(interrupted_run, 2))[0] == 0  # the advice, followed
    assert Run(interrupted_run).is_complete()
    assert ienet(capsys, "evaluate", "--run", interrupted_run)[0] == 0


@pytest.mark.parametrize("damage", ["delete", "edit", "garble"])
def test_a_complete_runs_config_is_restored_by_the_rerun(damage, complete_run, capsys):
    """Found by the fault harness: a complete run whose config.yaml was deleted answered
    the rerun with exit 0 and left it deleted."""
    path = complete_run / "config.yaml"
    original = path.read_text()
    if damage == "delete":
        path.unlink()
    else:
        path.write_text(original.replace("k: 2", "k: 3") if damage == "edit" else "{{{")
    assert not Run(complete_run).is_intact()
    assert ienet(capsys, *train_argv(complete_run, 1))[0] == 0
    assert path.read_text() == original and Run(complete_run).is_intact()


def test_an_edited_config_is_named_with_the_change(interrupted_run, capsys):
    path = interrupted_run / "config.yaml"
    original = path.read_text()
    path.write_text(original.replace("k: 2", "k: 3"))
    code, line = ienet(capsys, "evaluate", "--run", interrupted_run)
    assert_one_line_error(code, line, "config.yaml was edited", "model.k: 2 -> 3")
    path.write_text(original)  # the advice: undo the edit
    assert ienet(capsys, "evaluate", "--run", interrupted_run)[0] == 0


@pytest.mark.parametrize("record", ["state.json", "metrics.json"])
def test_an_edited_record_is_named(record, complete_run, capsys):
    run = complete_run
    data = json.loads((run / record).read_text())
    data["epochs_done" if record == "state.json" else "test_accuracy"] = 0.99
    (run / record).write_text(json.dumps(data))
    code, line = ienet(capsys, "evaluate", "--run", run)
    assert_one_line_error(code, line, f"{record} was edited or damaged")


@pytest.mark.parametrize("damage", ["delete", "edit"])
@pytest.mark.parametrize("which", ["final", "last"])
def test_a_damaged_model_is_never_complete_and_the_rerun_restores_it(
    which, damage, complete_run, capsys
):
    run = complete_run
    metrics = Run(run).metrics()
    model = Run(run).model_path(which)
    model.unlink() if damage == "delete" else model.write_bytes(model.read_bytes()[:-10])
    code, line = ienet(capsys, "evaluate", "--run", run, "--which", which)
    assert_one_line_error(code, line, "rerun `ienet train` on the directory to restore it")
    capsys.readouterr()
    assert main([str(a) for a in train_argv(run, 1)]) == 0
    assert "already complete" not in capsys.readouterr().out
    code, line = ienet(capsys, "evaluate", "--run", run, "--which", which)
    assert code == 0, line
    assert not Run(run).damaged()
    assert Run(run).metrics()["test_accuracy"] == metrics["test_accuracy"]


@pytest.mark.parametrize("damage", ["delete", "cut"])
def test_a_lost_resume_checkpoint_is_named_and_a_new_run_works(damage, interrupted_run, capsys):
    resume = interrupted_run / "resume" / "epoch-0000"
    if damage == "delete":
        shutil.rmtree(resume)
    else:  # found by the fault harness: TensorFlow's IndexError escaped as a traceback
        data = next(resume.glob("checkpoint.data-*"))
        data.write_bytes(data.read_bytes()[:100])
    code, line = ienet(capsys, *train_argv(interrupted_run, 2))
    assert_one_line_error(code, line, "resume/epoch-0000", "train into a new --run")
    assert ienet(capsys, "evaluate", "--run", interrupted_run)[0] == 0  # its models still read
    assert ienet(capsys, *train_argv(interrupted_run.with_name("new"), 1))[0] == 0


# --- 4. failed work is never a result --------------------------------------------------------


def test_a_non_finite_validation_metric_ends_training_uncommitted(tmp_path, monkeypatch, capsys):
    import tensorflow as tf

    class NaNValidation(tf.keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 1:
                logs["val_loss"] = float("nan")

    from ienet_tf.train import trainer

    real = trainer.iee_schedule
    monkeypatch.setattr(
        trainer, "iee_schedule", lambda *a, **k: [real(*a, **k), NaNValidation()][1]
    )
    code, line = ienet(capsys, *train_argv(tmp_path / "run", 3))
    assert_one_line_error(code, line, "diverged", "at epoch 1")
    run = Run(tmp_path / "run")
    assert run.state()["epochs_done"] == 1 and run.metrics() is None


def test_a_diverged_trial_is_never_the_best():
    from types import SimpleNamespace

    from ienet_tf.tune import search

    def trial(score, status="COMPLETED"):
        return SimpleNamespace(score=score, status=status)

    trials = {"0": trial(float("nan")), "1": trial(0.4), "2": trial(float("inf")), "3": trial(None)}
    tuner = SimpleNamespace(oracle=SimpleNamespace(trials=trials))
    assert search._best_completed(tuner, "val_accuracy") is trials["1"]
    trials.pop("1")
    assert search._best_completed(tuner, "val_accuracy") is None
    assert search._best_completed(tuner, "val_loss") is None


# --- 5. nothing waits forever ---------------------------------------------------------------


def test_a_batch_larger_than_the_data_says_what_it_becomes(tmp_path):
    from ienet_tf import config as config_lib
    from ienet_tf.train import train

    overrides = ["data.subset=40", "data.test_subset=16", "train.batch_size=64", "train.epochs=1"]
    config = config_lib.load(DEMO, overrides)
    with pytest.warns(UserWarning, match=r"batch_size 64 is larger than the 40 training examples"):
        metrics = train(config, tmp_path / "run", verbose=0)
    assert Run(tmp_path / "run").history()[0]["epoch"] == 0 and metrics["completed"]


# --- 6. the operating system's failures are one line and lose nothing ------------------------


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EROFS, errno.EACCES])
def test_a_refused_write_is_one_line_and_the_rerun_finishes(code, tmp_path, monkeypatch, capsys):
    from ienet_tf import io

    real, calls = io.write_temporary, []

    def failing(path, payload):
        calls.append(path)
        if Path(path).name == "state.json" and len(calls) > 4:  # epoch 1's commit
            raise OSError(code, os.strerror(code), str(path))
        return real(path, payload)

    run = tmp_path / "run"
    with monkeypatch.context() as patch:
        patch.setattr(io, "write_temporary", failing)
        result, line = ienet(capsys, *train_argv(run, 2))
    assert_one_line_error(result, line, os.strerror(code), "rerun")
    assert not [p for p in run.rglob("*") if p.name.endswith(".tmp")]
    assert Run(run).state()["epochs_done"] == 1
    assert ienet(capsys, *train_argv(run, 2))[0] == 0
    assert Run(run).metrics()["epochs_this_invocation"] == 1


@contextlib.contextmanager
def tmpfs(path: Path, options: str, injected: str):
    """A tmpfs mounted at `path` for the block, where root may mount one; else a skip (the
    injected `injected` test covers the logic)."""
    path.mkdir(parents=True, exist_ok=True)
    command = ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)]
    if os.geteuid() != 0 or not shutil.which("mount"):
        pytest.skip(f"cannot mount a tmpfs here (the injected {injected} test covers it)")
    if subprocess.run(command, capture_output=True).returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (the injected {injected} test covers it)")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def test_a_full_disk_for_real_is_one_line_and_the_rerun_finishes(tmp_path, capsys):
    """On a 600 KiB tmpfs: the run fills it, fails in one line with nothing half-written,
    and finishes once the disk has room."""
    with tmpfs(tmp_path / "disk", "size=600k", "ENOSPC") as disk:
        code, line = ienet(capsys, *train_argv(disk / "run", 3))
        assert_one_line_error(code, line, "No space left on device")
        assert not [p for p in disk.rglob("*") if p.name.endswith(".tmp")]
        subprocess.run(["mount", "-o", "remount,size=64m", str(disk)], check=True)
        assert ienet(capsys, *train_argv(disk / "run", 3))[0] == 0
        assert Run(disk / "run").is_complete()


def test_a_read_only_location_for_real_is_one_line(tmp_path, capsys):
    with tmpfs(tmp_path / "ro", "ro,size=1m", "EROFS") as disk:
        code, line = ienet(capsys, *train_argv(disk / "run", 1))
        assert_one_line_error(code, line, "Read-only file system")


def test_a_closed_pipe_ends_quietly():
    """`ienet cost ... | head -0`: the reader has gone before the table is written."""
    reader, writer = os.pipe()
    os.close(reader)
    done = subprocess.run(
        [sys.executable, "-m", "ienet_tf", "cost", "--config", DEMO],
        stdout=writer,
        stderr=subprocess.PIPE,
        text=True,
        timeout=120,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    os.close(writer)
    assert done.returncode == 141, done.stderr
    assert "Traceback" not in done.stderr and "BrokenPipeError" not in done.stderr


def test_a_manifest_claims_a_new_directory_first(tmp_path):
    """The claim: manifest before anything else; refused folders untouched; an empty one
    taken; a claim that wrote nothing else leaves no trace."""
    path = tmp_path / "new"
    with pytest.raises(RuntimeError):
        with Run(path).claim():
            assert json.loads((path / MANIFEST).read_text())["kind"] == "run"
            raise RuntimeError
    assert not path.exists()
    path.mkdir()
    with Run(path).claim():
        pass
    assert Run(path).owned_kind() == "run"
    # A claim killed while writing its manifest left its temporary: still a new directory.
    fresh = tmp_path / "killed"
    fresh.mkdir()
    (fresh / f".{MANIFEST}.k9z7n5qx.tmp").write_text("{")
    (fresh / ".lock").write_text("12345\n")
    with Run(fresh).claim():
        pass
    assert sorted(p.name for p in fresh.iterdir()) == [MANIFEST, ".lock"]
    with pytest.raises(
        runs.RunError, match="directory of an `ienet train`, not of an `ienet tune`"
    ):
        with Search(path).claim():
            pass


# --- 7. every user error is one line -------------------------------------------------------


@pytest.mark.parametrize(
    "setting, message",
    [
        ("model.name=resnet18", "is too small for resnet18"),
        ("train.strategy=tpu", "no TPU could be reached"),
    ],
)
def test_a_setting_that_cannot_work_here_is_one_line_and_writes_nothing(
    setting, message, tmp_path, capsys
):
    code, line = ienet(capsys, *train_argv(tmp_path / "run", 1, "--set", setting))
    assert_one_line_error(code, line, message)
    assert not (tmp_path / "run").exists()


def test_an_export_into_a_folder_that_takes_no_files_is_one_line(complete_run, capsys):
    if not Path("/proc/self").is_dir():
        pytest.skip("needs Linux's /proc, a folder that takes no new files")
    code, line = ienet(capsys, "export", "--run", complete_run, "--output", "/proc/model.tflite")
    assert_one_line_error(code, line, "cannot write /proc/model.tflite", "choose another --output")


def test_a_missing_int8_model_names_the_command_that_makes_it(complete_run, capsys):
    code, line = ienet(capsys, "evaluate", "--run", complete_run, "--which", "int8")
    assert_one_line_error(code, line, "has no int8 model", "--set export.int8=true")
