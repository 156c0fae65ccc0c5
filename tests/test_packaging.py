"""The package as a user installs it (issue 29): the sdist and wheel build and pass `twine
check`, and the wheel, installed into a fresh virtual environment, runs `ienet` on a bundled
config from a folder that is not the checkout."""

import json
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

import ienet_tf

ROOT = Path(__file__).resolve().parent.parent


def _run(command, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(command, capture_output=True, text=True, timeout=600, **kwargs)


@pytest.mark.slow
def test_the_wheel_installs_into_a_fresh_venv_and_trains_a_bundled_config(tmp_path):
    dist = tmp_path / "dist"
    # No build isolation: the pinned setuptools and wheel of this environment, no download.
    built = _run(
        [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(dist), str(ROOT)]
    )
    assert built.returncode == 0, built.stderr[-3000:]
    wheel = next(dist.glob("*.whl"))
    sdist = next(dist.glob("*.tar.gz"))
    assert wheel.name == f"ienet_tf-{ienet_tf.__version__}-py3-none-any.whl"
    checked = _run([sys.executable, "-m", "twine", "check", "--strict", str(wheel), str(sdist)])
    assert checked.returncode == 0, checked.stdout + checked.stderr

    venv = tmp_path / "venv"
    assert _run([sys.executable, "-m", "venv", "--without-pip", str(venv)]).returncode == 0
    python = venv / "bin" / "python"
    installed = _run(
        [
            *(sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps"),
            *("--no-index", "--disable-pip-version-check", str(wheel)),
        ]
    )
    assert installed.returncode == 0, installed.stderr[-3000:]
    # The dependencies (TensorFlow and the rest, as pinned) come from this environment; only
    # its directory is added, not its .pth files, so its editable ienet_tf stays out of sight.
    site = Path(
        _run([str(python), "-c", "import site; print(site.getsitepackages()[0])"]).stdout.strip()
    )
    (site / "ienet_tf_test_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")

    work = tmp_path / "work"  # not the checkout: nothing is found through configs/ here
    work.mkdir()
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": ""}
    where = _run(
        [str(python), "-c", "import ienet_tf; print(ienet_tf.__file__)"], cwd=work, env=env
    )
    assert where.stdout.strip().startswith(str(site)), where.stdout + where.stderr

    version = _run([str(venv / "bin" / "ienet"), "--version"], cwd=work, env=env)
    assert version.stdout.strip() == f"ienet-tf {ienet_tf.__version__}"
    trained = _run(
        [
            *(str(venv / "bin" / "ienet"), "train", "--config", "digits_convnet_ienet"),
            *("--set", "train.epochs=1", "--run", "run", "--json", "--verbose", "0"),
        ],
        cwd=work,
        env=env,
    )
    assert trained.returncode == 0, trained.stderr[-3000:]
    result = json.loads(trained.stdout)
    assert 0.0 <= result["test_accuracy"] <= 1.0
    assert (work / "run" / "model.keras").is_file()
    # The config came from the wheel's data files, not from the checkout.
    config = (venv / "share" / "ienet-tf" / "configs" / "digits_convnet_ienet.yaml").read_text()
    assert config == (ROOT / "configs" / "digits_convnet_ienet.yaml").read_text()
