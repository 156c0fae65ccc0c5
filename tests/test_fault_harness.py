"""A fault harness (issue 27): a `hypothesis.stateful` machine that interleaves `ienet
train`, kill -9 at a random moment, damage to a random file of the run (deleted, cut,
extended, replaced by a link out of it), files the user adds beside the run's own,
`evaluate` and `export`, all on the embedded digits data, and checks after every step:

- no file outside the run changed (the user's folder beside it);
- no file the user put into the run was lost or changed;
- every command either succeeds or says in one line what is wrong (exit code 2): an
  exception that escapes is a bug, and fails the machine;
- nothing reports success for work that failed: a train that exits 0 leaves a complete,
  verified run with finite metrics, and an export that exits 0 a `.tflite` its sidecar
  records.

Bounded for CI by the `ci` profile of `tests/conftest.py` (a few short examples,
derandomized); `pytest tests/test_fault_harness.py --hypothesis-profile=long` explores many
more. To add a fault, add a `@rule`; to add a promise, an `@invariant`.
"""

import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from file_tree import snapshot
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from ienet_tf.cli import main
from ienet_tf.runs import MODEL_FILES, Run, sha256

pytestmark = pytest.mark.slow

DEMO = "configs/digits_convnet_ienet.yaml"
EPOCHS = 2
TRAIN = ["--config", DEMO, "--verbose", "0", "--set", f"train.epochs={EPOCHS}"]
TRAIN += ["--set", "data.subset=96", "--set", "data.test_subset=64"]
TRAIN += ["--set", "train.batch_size=32"]
#: Files a user may put beside the run's own (some look like the run's temporaries).
USER_FILES = (
    "notes.txt",
    ".notes.txt.abcdefgh.tmp",
    "resume/mine.txt",
    "checkpoints/mine.keras",
    "tensorboard/mine.txt",
)
DAMAGE = ("delete", "cut", "extend", "link-out")


class RunFaults(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        self.root = Path(tempfile.mkdtemp(prefix="ienet-faults-"))
        self.run = self.root / "run"
        self.outside = self.root / "outside"
        (self.outside / "folder").mkdir(parents=True)
        (self.outside / "precious.txt").write_text("the user's\n")
        (self.outside / "folder" / "data.bin").write_bytes(os.urandom(64))
        self.outside_before = snapshot(self.outside)
        self.user: dict[str, bytes] = {}  # files the user put into the run
        self.export = self.root / "model.tflite"

    def teardown(self):
        shutil.rmtree(self.root, ignore_errors=True)

    # -- helpers --------------------------------------------------------------------------
    def _ienet(self, *argv) -> tuple[int, str]:
        import contextlib
        import io

        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main([str(a) for a in argv])  # an exception that escapes is a bug
        lines = err.getvalue().strip().splitlines()
        if code != 0:
            assert code == 2, (code, err.getvalue()[-2000:])
            assert lines and ": error: " in lines[-1], err.getvalue()[-2000:]
            assert "Traceback" not in err.getvalue()
        return code, out.getvalue()

    def _own_files(self) -> list[str]:
        """The run's own files now there (not the user's), in a stable order."""
        if not self.run.is_dir():
            return []
        return sorted(
            path.relative_to(self.run).as_posix()
            for path in self.run.rglob("*")
            if (path.is_file() or path.is_symlink())
            and path.relative_to(self.run).as_posix() not in self.user
        )

    # -- rules ------------------------------------------------------------------------------
    @rule()
    def train(self):
        code, _ = self._ienet("train", "--run", self.run, *TRAIN)
        if code == 0:  # success means a complete, verified run with finite numbers
            run = Run(self.run)
            metrics = run.metrics()
            assert metrics["completed"] and not run.damaged()
            assert [row["epoch"] for row in run.history()] == list(range(EPOCHS))
            numbers = [v for v in metrics.values() if isinstance(v, float)]
            assert numbers and all(math.isfinite(v) for v in numbers)
            for which in ("final", "best", "last"):
                run.verified_model_path(which)

    @rule(delay=st.floats(min_value=0.0, max_value=12.0))
    def train_killed(self, delay):
        child = subprocess.Popen(
            [sys.executable, "-m", "ienet_tf", "train", "--run", self.run, *TRAIN],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
        )
        try:
            child.wait(timeout=delay)
        except subprocess.TimeoutExpired:
            child.send_signal(signal.SIGKILL)
        _, err = child.communicate(timeout=120)
        if child.returncode not in (0, 2, -signal.SIGKILL):
            raise AssertionError(f"train exited {child.returncode}: {err.decode()[-2000:]}")

    @precondition(lambda self: self._own_files())
    @rule(action=st.sampled_from(DAMAGE), index=st.integers(min_value=0, max_value=10**6))
    def damage(self, action, index):
        files = self._own_files()
        path = self.run / files[index % len(files)]
        if action == "delete" or path.is_symlink():
            path.unlink()
        elif action == "cut":
            path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])
        elif action == "extend":
            path.write_bytes(path.read_bytes() + b"\n#")
        else:
            path.unlink()
            path.symlink_to(self.outside / "precious.txt")

    @rule(name=st.sampled_from(USER_FILES))
    def add_user_file(self, name):
        path = self.run / name
        parent = path.parent
        if name in self.user or path.exists() or path.is_symlink():
            return
        if not parent.is_dir() or parent.is_symlink() or not (self.run / ".ienet-tf.json").exists():
            return  # into the user's own folder only once it is a run (else: not ours)
        content = f"the user's {name} {time.time()}\n".encode()
        path.write_bytes(content)
        self.user[name] = content

    @rule()
    def evaluate(self):
        code, out = self._ienet("evaluate", "--run", self.run)
        if code == 0:
            assert "top-1" in out and "nan" not in out.lower()

    @rule()
    def export(self):
        code, _ = self._ienet("export", "--run", self.run, "--output", self.export)
        if code == 0:
            sidecar = json.loads(self.export.with_name(self.export.name + ".json").read_text())
            assert sidecar["sha256"] == sha256(self.export)

    # -- promises ---------------------------------------------------------------------------
    @invariant()
    def nothing_outside_changed(self):
        assert snapshot(self.outside) == self.outside_before

    @invariant()
    def the_users_files_are_kept(self):
        for name, content in self.user.items():
            assert (self.run / name).read_bytes() == content, name

    @invariant()
    def no_model_file_is_a_link_out(self):
        # A link the machine planted may stay where it was put, but the run never wrote
        # through one: the outside tree (above) is unchanged, and no model it committed
        # is read from outside.
        if (self.run / "state.json").is_file():
            for name in MODEL_FILES.values():
                path = self.run / name
                if path.is_file() and not path.is_symlink():
                    assert path.resolve().is_relative_to(self.run.resolve())


TestRunFaults = RunFaults.TestCase
