"""Importing the authors' PyTorch checkpoints: files (.pth, .pth.tar, .npz), the key and
shape checks, and `ienet import-torch` end to end (evaluate, then train on)."""

import json

import numpy as np
import pytest
import yaml

torch = pytest.importorskip("torch")
import torch_reference as ref  # noqa: E402

from ienet_tf import models  # noqa: E402
from ienet_tf.cli import main  # noqa: E402
from ienet_tf.errors import CheckpointImportError  # noqa: E402
from ienet_tf.interop import release  # noqa: E402


@pytest.fixture(scope="module")
def reference():
    torch.manual_seed(0)
    net = ref.resnet20()
    return ref.randomize(net, torch.Generator().manual_seed(0)).eval()


def _model():
    return models.build("resnet20", "ienet", compat="release")


def _forward_matches(model, net, rng):
    x = rng.normal(size=(4, 32, 32, 3)).astype(np.float32)
    with torch.no_grad():
        expected = net(torch.tensor(x.transpose(0, 3, 1, 2).copy())).numpy()
    np.testing.assert_allclose(model(x, training=False).numpy(), expected, atol=1e-4)


@pytest.mark.parametrize("suffix", [".pth", ".pth.tar", ".npz"])
def test_checkpoint_files_round_trip(reference, tmp_path, rng, suffix):
    path = tmp_path / f"model{suffix}"
    state = reference.state_dict()
    if suffix == ".pth":  # bare state_dict
        torch.save(state, path)
    elif suffix == ".pth.tar":  # the release's {"state_dict": ...} with DataParallel names
        wrapped = {f"module.{key}": value for key, value in state.items()}
        torch.save({"epoch": 400, "state_dict": wrapped, "best_prec1": 88.5}, path)
    else:
        np.savez(path, **{key: value.numpy() for key, value in state.items()})
    model = _model()
    report = release.load_state_dict(model, release.read_checkpoint(path))
    assert report.keys_consumed == len(state) - len(report.keys_ignored)
    assert all(key.endswith("num_batches_tracked") for key in report.keys_ignored)
    _forward_matches(model, reference, rng)


def _state(reference):
    return {key: value.numpy() for key, value in reference.state_dict().items()}


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda s: s.pop("layer2.3.scale.w1"), r"missing keys: layer2\.3\.scale\.w1"),
        (lambda s: s.update({"layer9.0.extra": np.zeros(3)}), r"unexpected keys: layer9\.0\.extra"),
        (
            lambda s: s.update({"fc.weight": np.zeros((10, 65), np.float32)}),
            r"mis-shaped: fc\.weight \(10, 65\) for logits/kernel:0 \(64, 10\)",
        ),
        (lambda s: s.update({"bn1.weight": "text"}), r"bn1\.weight: not a numeric tensor"),
    ],
)
def test_state_dicts_that_do_not_fit_are_named_and_change_nothing(reference, edit, message):
    model = _model()
    before = [w.numpy() for w in model.weights]
    state = _state(reference)
    edit(state)
    with pytest.raises(CheckpointImportError, match=message):
        release.load_state_dict(model, state)
    assert all(np.array_equal(a, w.numpy()) for a, w in zip(before, model.weights, strict=True))


def test_models_the_release_does_not_have_are_refused(reference):
    state = _state(reference)
    with pytest.raises(CheckpointImportError, match="K=3 branches; the release's IE-Net has K=2"):
        release.load_state_dict(models.build("resnet20", "ienet", k=3, compat="release"), state)
    with pytest.raises(CheckpointImportError, match="not a binary IE-BC convolution"):
        release.load_state_dict(models.build("resnet20", "fp", compat="release"), state)
    with pytest.raises(CheckpointImportError, match="built with compat='lce'"):
        release.load_state_dict(models.build("resnet20", "ienet"), state)
    with pytest.raises(CheckpointImportError, match="not one of the release's networks"):
        release.load_state_dict(models.build("convnet", "ienet"), state)
    with pytest.raises(CheckpointImportError, match="expected a state_dict"):
        release.load_state_dict(_model(), [1, 2])


def test_unreadable_files_are_named(tmp_path):
    corrupt = tmp_path / "corrupt.pth"
    corrupt.write_bytes(b"\x80\x04not really a checkpoint" * 10)
    with pytest.raises(CheckpointImportError, match=r"corrupt\.pth is not a readable PyTorch"):
        release.read_checkpoint(corrupt)
    listed = tmp_path / "list.pth"
    torch.save([torch.zeros(2)], listed)
    with pytest.raises(CheckpointImportError, match="holds a list, not a state_dict"):
        release.read_checkpoint(listed)
    code = tmp_path / "code.pth"
    torch.save({"state_dict": {"fc.weight": torch.zeros(2)}, "hook": _model}, code)
    with pytest.raises(CheckpointImportError, match=r"code\.pth is not a readable PyTorch"):
        release.read_checkpoint(code)  # weights_only: the pickled function is never run
    broken = tmp_path / "broken.npz"
    broken.write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(CheckpointImportError, match=r"broken\.npz is not a readable \.npz"):
        release.read_checkpoint(broken)
    keras_weights = tmp_path / "weights.h5"
    keras_weights.write_bytes(b"\x89HDF")
    with pytest.raises(CheckpointImportError, match="unknown checkpoint format"):
        release.read_checkpoint(keras_weights)
    with pytest.raises(CheckpointImportError, match="does not exist"):
        release.read_checkpoint(tmp_path / "missing.pth")


DIGITS_CONFIG = {
    "model": {"name": "resnet20", "variant": "ienet", "k": 2, "compat": "release"},
    "data": {"name": "digits", "subset": 64, "test_subset": 96},
    "train": {"epochs": 2, "batch_size": 32},
}


def _digits_reference():
    """The reference ResNet-20 for 8x8x1 digits (one input channel), random weights."""
    torch.manual_seed(1)
    net = ref.resnet20()
    net.conv1 = torch.nn.Conv2d(1, 16, 3, 1, 1, bias=False)
    return ref.randomize(net, torch.Generator().manual_seed(1)).eval()


def test_import_torch_writes_a_run_that_evaluates_exports_and_trains_on(tmp_path, capsys):
    from ienet_tf import data

    config = tmp_path / "digits_resnet20_release.yaml"
    config.write_text(yaml.safe_dump(DIGITS_CONFIG))
    net = _digits_reference()
    checkpoint = tmp_path / "IE-NEt_resnet20.th"
    torch.save({"state_dict": net.state_dict(), "best_prec1": 10.0}, checkpoint)
    run = tmp_path / "run"
    argv = ["import-torch", "--weights", str(checkpoint), "--config", str(config)]
    assert main([*argv, "--run", str(run)]) == 0
    assert "weights of resnet20_ienet_k2_release set from" in capsys.readouterr().out

    images, labels = next(
        iter(data.load("digits", "test", batch_size=96, training=False, subset=96))
    )
    with torch.no_grad():
        logits = net(torch.tensor(np.asarray(images).transpose(0, 3, 1, 2).copy())).numpy()
    torch_top1 = float(np.mean(logits.argmax(axis=1) == np.asarray(labels)))
    assert main(["evaluate", "--run", str(run)]) == 0
    line = capsys.readouterr().out
    assert "(last): top-1" in line
    ours = float(line.split("top-1 ")[1].rstrip("%\n")) / 100
    assert ours == pytest.approx(torch_top1, abs=2 / 96)  # at most two flipped samples

    # The run trains on from the imported weights (epoch 0 onwards) and completes.
    assert main(["train", "--config", str(config), "--run", str(run), "--verbose", "0"]) == 0
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["completed"] and metrics["epochs_this_invocation"] == 2
    state = json.loads((run / "state.json").read_text())
    assert state["imported_from"]["checkpoint"] == str(checkpoint)
    # Again into the same directory: refused, nothing written.
    assert main([*argv, "--run", str(run)]) == 2
    assert "already holds a run" in capsys.readouterr().err


@pytest.mark.parametrize(
    "setup, message",
    [
        ("missing", "checkpoint file"),
        ("extra", "unexpected keys: extra.weight"),
        ("lce", "model.compat is 'lce'"),
    ],
)
def test_import_torch_errors_are_one_line_and_leave_no_directory(tmp_path, capsys, setup, message):
    config = tmp_path / "c.yaml"
    raw = json.loads(json.dumps(DIGITS_CONFIG))
    if setup == "lce":
        raw["model"]["compat"] = "lce"
    config.write_text(yaml.safe_dump(raw))
    checkpoint = tmp_path / "ckpt.pth"
    if setup != "missing":
        state = _digits_reference().state_dict()
        state["extra.weight"] = torch.zeros(1)
        torch.save(state, checkpoint)
    run = tmp_path / "run"
    argv = ["import-torch", "--weights", str(checkpoint), "--config", str(config)]
    assert main([*argv, "--run", str(run)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("ienet import-torch: error:") and message in err
    assert "\n" not in err and "Traceback" not in err
    assert not run.exists()
