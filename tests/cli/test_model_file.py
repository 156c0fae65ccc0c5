"""The CLI on a user's own saved model (issue 29, friction 2): `--model FILE` (a .keras, .h5
or SavedModel directory) for export, evaluate, cost and report, `--inputs FILE.npy` (and
`--labels`) as its data, and `bench --compare` on a .tflite exported from Python."""

import hashlib
import json
import warnings

import numpy as np
import pytest
import tensorflow as tf

from ienet_tf import export, layers, models
from ienet_tf.cli import main
from ienet_tf.cost import model_cost


def _model() -> tf.keras.Model:
    """A user's own network (no registered architecture), with trained-looking thresholds
    so that its two IE-BC branches stay two binary convolutions."""
    rng = np.random.default_rng(0)
    inputs = tf.keras.Input((8, 8, 1))
    x = tf.keras.layers.Conv2D(16, 3, padding="same", use_bias=False)(inputs)
    x = tf.keras.layers.BatchNormalization()(x)
    x = layers.IEBinaryConv2D(16, 3, k=2)(x)
    x = tf.keras.layers.BatchNormalization()(x)
    x = tf.keras.layers.GlobalAveragePooling2D()(x)
    model = tf.keras.Model(inputs, tf.keras.layers.Dense(4)(x), name="mine")
    conv = next(layer for layer in model.layers if isinstance(layer, layers.IEBinaryConv2D))
    conv.thresholds.assign(rng.normal(0, 0.3, conv.thresholds.shape))
    return model


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """The model as .keras, .h5 and SavedModel, 16 inputs, the model's own classes of them
    as labels (so its top-1 is 100%), and a batch of the wrong shape."""
    folder = tmp_path_factory.mktemp("model_file")
    tf.keras.backend.clear_session()
    model = _model()
    files = {
        "keras": folder / "mine.keras",
        "h5": folder / "mine.h5",
        "savedmodel": folder / "mine_savedmodel",
    }
    for path in files.values():
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "You are saving your model as an HDF5 file")
            model.save(path)
    x = np.random.default_rng(1).normal(size=(16, 8, 8, 1)).astype(np.float32)
    np.save(folder / "x.npy", x)
    np.save(folder / "y.npy", model.predict(x, verbose=0).argmax(1))
    np.save(folder / "bad.npy", x[:, :4, :4])
    return {**files, "folder": folder, "x": folder / "x.npy", "y": folder / "y.npy"}


def _ienet(capsys, *argv) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _error_line(err: str, command: str) -> str:
    """The command's one error line (progress lines may come before it), no traceback."""
    assert "Traceback" not in err
    errors = [line for line in err.splitlines() if line.startswith(f"ienet {command}: error:")]
    assert len(errors) == 1, err
    assert err.rstrip().endswith(errors[0])  # nothing after it
    return errors[0]


def test_export_model_with_inputs_writes_a_verified_binary_tflite(saved, capsys):
    output = saved["folder"] / "mine.tflite"
    code, out, err = _ienet(
        capsys, "export", "--model", saved["keras"], "--inputs", saved["x"], "--output", output
    )
    assert code == 0, err
    report = json.loads(output.with_name("mine.tflite.json").read_text())
    assert report["sha256"] == hashlib.sha256(output.read_bytes()).hexdigest()
    assert report["op_histogram"]["LceBconv2d"] == 2 == report["expected_ops"]["LceBconv2d"]
    assert "LceDequantize" not in report["op_histogram"]
    assert report["source"] == {
        "model_file": str(saved["keras"]),
        "parity_inputs": f"first 16 inputs of {saved['x']}",
    }
    assert report["parity"]["num_inputs"] == 16
    assert f"parity on 16 inputs of {saved['x']}: 100% within" in out


def test_export_model_needs_parity_inputs_and_writes_nothing(saved, capsys):
    output = saved["folder"] / "none.tflite"
    code, _, err = _ienet(capsys, "export", "--model", saved["keras"], "--output", output)
    assert code == 2
    assert "needs parity inputs" in _error_line(err, "export") and "--inputs" in err
    assert not output.exists() and not output.with_name("none.tflite.json").exists()


def test_export_verify_arm_without_a_runtime_is_one_line_and_writes_nothing(
    saved, capsys, tmp_path, monkeypatch
):
    from ienet_tf.export import arm

    monkeypatch.setenv(arm.RUNTIME_ENV, str(tmp_path / "nothing-built"))
    output = saved["folder"] / "arm.tflite"
    argv = ["export", "--model", saved["keras"], "--inputs", saved["x"], "--output", output]
    code, _, err = _ienet(capsys, *argv, "--verify-arm")
    assert code == 2 and "make arm-runtime" in _error_line(err, "export")
    assert not output.exists() and not output.with_name("arm.tflite.json").exists()


def test_export_verify_arm_prints_the_modes(saved, capsys, tmp_path, monkeypatch):
    """The CLI's wiring (tests/export/test_arm.py runs the real aarch64 check)."""
    from ienet_tf.export import arm

    agreed = arm.ModeResult("default", True, 1.0, 1.0, 2e-7, None, 0.0, 1.0)
    monkeypatch.setattr(arm, "find_runtime", lambda runtime=None: None)
    monkeypatch.setattr(
        arm,
        "verify_arm",
        lambda path, modes, inputs, runtime: arm.ArmResult(
            str(path), len(inputs), "given", "rule", (agreed,), "runtime"
        ),
    )
    output = saved["folder"] / "arm.tflite"
    argv = ["export", "--model", saved["keras"], "--inputs", saved["x"], "--output", output]
    code, out, err = _ienet(capsys, *argv, "--verify-arm")
    assert code == 0, err
    assert f"{output}: aarch64 LCE kernels (qemu) vs LCE's x86 interpreter" in out
    assert "(16 inputs: the parity inputs; rule: rule)" in out
    assert json.loads(output.with_name("arm.tflite.json").read_text())["arm"]["agrees"]


def test_inputs_of_the_wrong_shape_are_one_line_naming_file_and_shape(saved, capsys):
    bad = saved["folder"] / "bad.npy"
    output = saved["folder"] / "bad.tflite"
    code, _, err = _ienet(
        capsys, "export", "--model", saved["keras"], "--inputs", bad, "--output", output
    )
    assert code == 2
    line = _error_line(err, "export")
    assert f"--inputs {bad} has shape (16, 4, 4, 1)" in line and "(N, 8, 8, 1)" in line
    assert not output.exists()
    not_npy = saved["folder"] / "text.npy"
    not_npy.write_text("1, 2, 3")
    code, _, err = _ienet(
        capsys, "export", "--model", saved["keras"], "--inputs", not_npy, "--output", output
    )
    assert code == 2 and "is not a readable .npy array" in _error_line(err, "export")


@pytest.mark.parametrize("kind", ["keras", "h5", "savedmodel"])
def test_evaluate_model_on_inputs_and_labels(saved, capsys, kind):
    code, out, err = _ienet(
        capsys, "evaluate", "--model", saved[kind], "--inputs", saved["x"], "--labels", saved["y"]
    )
    assert code == 0, err
    assert out == "mine: top-1 100.00%\n"  # the labels are the model's own classes
    shifted = saved["folder"] / "shifted.npy"
    np.save(shifted, (np.load(saved["y"]) + 1) % 4)  # every label wrong
    code, out, _ = _ienet(
        capsys, "evaluate", "--model", saved[kind], "--inputs", saved["x"], "--labels", shifted
    )
    assert code == 0 and out == "mine: top-1 0.00%\n"


def test_evaluate_model_without_data_or_with_bad_labels_is_one_line(saved, capsys):
    code, _, err = _ienet(capsys, "evaluate", "--model", saved["keras"])
    assert code == 2 and "needs data" in _error_line(err, "evaluate")
    short = saved["folder"] / "short.npy"
    np.save(short, np.zeros(3, np.int64))
    argv = ["evaluate", "--model", saved["keras"], "--inputs", saved["x"], "--labels", short]
    code, _, err = _ienet(capsys, *argv)
    assert code == 2 and f"--labels {short} has 3 labels for the 16" in _error_line(err, "evaluate")
    code, _, err = _ienet(capsys, "evaluate", "--model", saved["keras"], "--inputs", saved["x"])
    assert code == 2 and "go together" in _error_line(err, "evaluate")


def test_cost_model_counts_the_saved_model(saved, capsys):
    code, out, err = _ienet(capsys, "cost", "--model", saved["keras"], "--json")
    assert code == 0, err
    counted = json.loads(out)
    assert counted == json.loads(json.dumps(model_cost(_model()).as_dict()))
    assert counted["model"] == "mine" and counted["binary_ops"] > 0


def test_cost_config_given_a_model_file_says_pass_it_as_model(saved, capsys):
    for kind in ("keras", "h5", "savedmodel"):
        code, _, err = _ienet(capsys, "cost", "--config", saved[kind])
        line = _error_line(err, "cost")
        assert code == 2 and "is a model file" in line, line
        assert line.endswith(f"pass it as --model {saved[kind]}") and "UTF-8" not in line
    code, _, err = _ienet(capsys, "cost", "--model", "configs/digits_convnet_ienet.yaml")
    assert code == 2 and "is a config, not a model file; pass it as --config" in err


@pytest.fixture(scope="module")
def python_export(tmp_path_factory):
    """A registered network exported with the Python API (`export.to_tflite`): its sidecar
    has no source config."""
    tf.keras.backend.clear_session()
    path = tmp_path_factory.mktemp("python_export") / "convnet.tflite"
    model = models.build("convnet", "ienet", num_classes=10, input_shape=(8, 8, 1))
    inputs = np.random.default_rng(0).normal(size=(8, 8, 8, 1)).astype(np.float32)
    export.to_tflite(model, path, inputs)
    return path


@pytest.mark.parametrize("sidecar", [True, False], ids=["sidecar", "no-sidecar"])
def test_bench_compare_on_a_python_export(python_export, tmp_path, capsys, sidecar):
    path = tmp_path / "convnet.tflite"
    path.write_bytes(python_export.read_bytes())
    if sidecar:  # what to_tflite wrote: the Keras model's name, no source config
        report = python_export.with_name("convnet.tflite.json").read_text()
        assert json.loads(report)["source"] == {}
        path.with_name("convnet.tflite.json").write_text(report)
    code, out, err = _ienet(capsys, "bench", "--model", path, "--compare", "--runs", "1", "--json")
    assert code == 0, err
    results = json.loads(out)
    assert [r["model"] for r in results] == ["convnet.tflite", "convnet fp", "convnet bireal"]
    assert results[1]["size_bytes"] > 10 * results[0]["size_bytes"]  # the float counterpart


def test_bench_compare_refuses_a_network_of_the_users_own(saved, tmp_path, capsys):
    flatbuffer, _ = export.convert(_model())
    path = tmp_path / "mine.tflite"
    path.write_bytes(flatbuffer)
    code, _, err = _ienet(capsys, "bench", "--model", path, "--compare", "--runs", "1")
    line = _error_line(err, "bench")
    assert code == 2 and "this file's model ('mine') is none of them" in line
    assert "bench it without --compare" in line


def test_report_model_with_inputs(saved, tmp_path, capsys):
    output = tmp_path / "report"
    code, out, err = _ienet(
        capsys, "report", "--model", saved["keras"], "--inputs", saved["x"], "--output", output
    )
    assert code == 0, err
    assert out.strip() == str(output / "report.md")
    markdown = (output / "report.md").read_text()
    assert markdown.startswith("# Report: mine (K=2)")
    assert "the 16 inputs of" in markdown and "Table left out" not in markdown
    assert (output / "threshold_activations.png").is_file()
