"""The deployment constraint: IE-BC converts into binary LCE kernels and matches Keras."""

import collections
import hashlib
import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import larq as lq
import larq_compute_engine as lce
import numpy as np
import pytest
import tensorflow as tf

from ienet_tf import errors, export, layers
from ienet_tf.export import tflite as tflite_module

ROOT = Path(__file__).resolve().parents[2]


def _ienet(rng, ks=(2, 2, 3, 1), trained_thresholds=True) -> tf.keras.Model:
    inputs = tf.keras.Input((16, 16, 3))
    x = tf.keras.layers.Conv2D(32, 3, padding="same", use_bias=False)(inputs)
    x = tf.keras.layers.BatchNormalization()(x)
    for i, k in enumerate(ks):
        x = layers.IEBinaryConv2D(32, 3, k=k, strides=2 if i == 1 else 1)(x)
        x = tf.keras.layers.BatchNormalization()(x)
    x = tf.keras.layers.GlobalAveragePooling2D()(x)
    model = tf.keras.Model(inputs, tf.keras.layers.Dense(10)(x))
    for layer in model.layers:
        if isinstance(layer, tf.keras.layers.BatchNormalization):
            layer.moving_mean.assign(rng.normal(0, 0.1, layer.moving_mean.shape))
            layer.moving_variance.assign(rng.uniform(0.5, 2, layer.moving_variance.shape))
        if isinstance(layer, layers.IEBinaryConv2D) and trained_thresholds:
            layer.thresholds.assign(rng.normal(0, 0.3, layer.thresholds.shape))
            if layer.lambdas is not None:
                layer.lambdas.assign(rng.uniform(0.1, 1.0, layer.lambdas.shape))
    return model


@pytest.fixture(scope="module")
def converted():
    rng = np.random.default_rng(7)
    tf.keras.backend.clear_session()
    model = _ienet(rng)
    flatbuffer, histogram = export.convert(model)
    return model, flatbuffer, histogram


def test_each_branch_becomes_one_binary_conv_and_nothing_falls_back(converted):
    _, _, histogram = converted
    assert histogram["LceBconv2d"] == 2 + 2 + 3 + 1
    assert histogram["LceQuantize"] == 2 + 2 + 3 + 1
    assert "LceDequantize" not in histogram
    assert histogram["CONV_2D"] == 1  # the full-precision stem only
    # alpha and lambda_k fuse into the LceBconv2d output transform: the only MULs left
    # are the BatchNorms after the three branch sums (the k=1 layer's BN fuses too).
    assert histogram["MUL"] == 3
    assert histogram["ADD_N"] == 3  # one per layer with k > 1


def test_lce_interpreter_matches_keras(converted):
    model, flatbuffer, _ = converted
    x = np.random.default_rng(3).normal(size=(8, 16, 16, 3)).astype(np.float32)
    parity = export.parity(model, flatbuffer, x)
    assert parity.max_abs_diff < 1e-4
    assert parity.top1_agreement == 1.0
    assert parity.num_inputs == 8


def test_shared_kernel_is_stored_once(rng):
    sizes = {}
    for k in (1, 4):
        tf.keras.backend.clear_session()
        inputs = tf.keras.Input((8, 8, 64))
        layer = layers.IEBinaryConv2D(64, 3, k=k)
        model = tf.keras.Model(inputs, layer(inputs))
        layer.thresholds.assign(rng.normal(0, 0.3, layer.thresholds.shape))
        flatbuffer, histogram = export.convert(model)
        assert histogram["LceBconv2d"] == k
        sizes[k] = len(flatbuffer)
    # A float kernel would be 3*3*64*64*4 = 147 KB per branch; bitpacked, one copy ~4.6 KB.
    assert sizes[4] - sizes[1] < 3 * 3 * 64 * 64 * 4 / 8


def test_fresh_thresholds_merge_identical_branches(rng):
    model = _ienet(rng, trained_thresholds=False)
    # Merged branches leave their per-branch scales unfused: k MULs per layer with k > 1.
    assert export.expected_ops(model) == {
        "LceBconv2d": 4,
        "CONV_2D": 1,
        export.MUL_AFTER_BCONV: 2 + 2 + 3,
    }
    _, histogram = export.convert(model)
    assert histogram["LceBconv2d"] == 4


class _ScaleBeforeConv(lq.quantizers.Quantizer):
    """Breaks an LCE rule on purpose: scales the binary activation before the conv."""

    precision = 1

    def call(self, inputs):
        return lq.quantizers.ste_sign(inputs) * tf.range(1.0, inputs.shape[-1] + 1.0)


class _PerInputChannelKernel(lq.quantizers.Quantizer):
    """Breaks an LCE rule on purpose: a kernel scaled per INPUT channel."""

    precision = 1

    def call(self, inputs):
        return lq.quantizers.ste_sign(inputs) * tf.range(1.0, inputs.shape[-2] + 1.0)[:, None]


def _one_layer(layer, shape=(8, 8, 32)):
    inputs = tf.keras.Input(shape)
    return tf.keras.Model(inputs, layer(inputs))


@pytest.mark.parametrize(
    "layer, rule",
    [
        (
            layers.IEBinaryConv2D(32, 3, k=1, input_quantizer=_ScaleBeforeConv(), name="bad"),
            "sign-input",
        ),
        (
            layers.IEBinaryConv2D(
                32, 3, k=1, kernel_quantizer=_PerInputChannelKernel(), name="bad"
            ),
            "binary-kernel",
        ),
        (lq.layers.QuantConv2D(32, 3, input_quantizer="ste_sign", name="bad"), "binary-pair"),
        (lq.layers.QuantConv2D(32, 3, kernel_quantizer="ste_sign", name="bad"), "binary-pair"),
    ],
)
def test_rule_breaking_layers_are_named_before_converting(layer, rule):
    model = _one_layer(layer)
    assert [(v.layer, v.rule) for v in export.check_model(model)] == [("bad", rule)]
    with pytest.raises(errors.ExportError, match=f"layer 'bad' breaks `{rule}`"):
        export.convert(model)


def _binary_conv(**options):
    options = {
        "padding": "same",
        "input_quantizer": "ste_sign",
        "kernel_quantizer": "ste_sign",
        "name": "bad",
        **options,
    }
    return lq.layers.QuantConv2D(32, 3, **options)


@pytest.mark.parametrize(
    "shape, options, rule",
    [
        ((2, 2, 32), {"pad_values": 0.0}, "zero-padding-small-map"),
        ((1, 5, 32), {"pad_values": 0.0}, "zero-padding-small-map"),
        ((4, 4, 32), {"pad_values": 0.0, "dilation_rate": 2}, "zero-padding-small-map"),
        ((3, 3, 32), {"pad_values": 0.0}, None),  # the kernel fits: exact
        ((2, 2, 32), {"pad_values": 1.0}, None),  # LCE's own padding: exact
        ((8, 8, 8), {"groups": 2}, "grouped-binary-conv"),  # 4 channels a group: float
        ((8, 8, 64), {"groups": 2}, "grouped-binary-conv"),  # 32: LceBconv2d, not runnable
    ],
)
def test_layers_lce_computes_wrongly_or_cannot_run_are_named(shape, options, rule):
    model = _one_layer(_binary_conv(**options), shape)
    assert [(v.layer, v.rule) for v in export.check_model(model)] == (
        [("bad", rule)] if rule else []
    )


@pytest.mark.parametrize(
    "shape, pad_values, exact",
    [((2, 2, 32), 0.0, False), ((3, 3, 32), 0.0, True), ((2, 2, 32), 1.0, True)],
)
def test_the_small_map_zero_padding_rule_is_what_lce_computes(shape, pad_values, exact, rng):
    """Bypassing the check: LCE's converted conv differs from Keras exactly where the rule
    says (tests/export/test_arm.py measures the same on the aarch64 kernels)."""
    import larq_compute_engine as lce

    model = _one_layer(_binary_conv(pad_values=pad_values), shape)
    x = rng.normal(size=(4, *shape)).astype(np.float32)
    difference = np.abs(export.lce_predict(lce.convert_keras_model(model), x) - model(x)).max()
    assert (difference == 0) == exact


def test_lce_refuses_to_run_a_grouped_binary_conv_with_its_default_kernels(rng):
    import larq_compute_engine as lce
    from larq_compute_engine.tflite.python.interpreter import Interpreter

    model = _one_layer(_binary_conv(groups=2), (8, 8, 64))
    flatbuffer = lce.convert_keras_model(model)
    assert export.op_histogram(flatbuffer)["LceBconv2d"] == 1
    x = rng.normal(size=(2, 8, 8, 64)).astype(np.float32)
    with pytest.raises(RuntimeError):
        Interpreter(flatbuffer)  # prepare fails: "not supported with this kernel"
    np.testing.assert_array_equal(
        Interpreter(flatbuffer, use_indirect_bgemm=True).predict(x), model(x)
    )


def test_quant_dense_is_named():
    inputs = tf.keras.Input((16,))
    dense = lq.layers.QuantDense(
        4, input_quantizer="ste_sign", kernel_quantizer="ste_sign", name="head"
    )
    model = tf.keras.Model(inputs, dense(inputs))
    assert [(v.layer, v.rule) for v in export.check_model(model)] == [("head", "no-quant-dense")]


def test_the_converter_really_falls_back_where_the_rules_say(tmp_path):
    """The rule is not hypothetical: bypassing the check, LCE emits LceDequantize."""
    import larq_compute_engine as lce

    model = _one_layer(lq.layers.QuantConv2D(32, 3, input_quantizer="ste_sign", name="bad"))
    histogram = export.op_histogram(lce.convert_keras_model(model))
    assert histogram["LceDequantize"] == 1 and "LceBconv2d" not in histogram
    with pytest.raises(errors.ExportError, match="1 LceDequantize"):
        export.verify_ops(histogram, export.expected_ops(model))
    assert not list(tmp_path.iterdir())


def test_verify_ops_counts():
    expected = {"LceBconv2d": 3, "CONV_2D": 1, export.MUL_AFTER_BCONV: 0}
    export.verify_ops({"LceBconv2d": 3, "LceQuantize": 3, "CONV_2D": 1}, expected)
    with pytest.raises(errors.ExportError, match="2 LceBconv2d op"):
        export.verify_ops({"LceBconv2d": 2, "CONV_2D": 1}, expected)
    with pytest.raises(errors.ExportError, match="2 CONV_2D op"):
        export.verify_ops({"LceBconv2d": 3, "CONV_2D": 2}, expected)
    with pytest.raises(errors.ExportError, match="1 MUL after LceBconv2d op"):
        export.verify_ops({"LceBconv2d": 3, "CONV_2D": 1, export.MUL_AFTER_BCONV: 1}, expected)


def test_to_tflite_writes_file_and_sidecar_only_on_success(tmp_path, rng, verify_calls):
    model = _ienet(rng)
    result = export.to_tflite(model, tmp_path / "m.tflite", source={"note": "test"})
    assert len(verify_calls) == 1  # ops, sizes and sidecar read one verified parse
    report = json.loads(result.sidecar.read_text())
    assert report["op_histogram"]["LceBconv2d"] == 8
    assert report["expected_ops"] == {"LceBconv2d": 8, "CONV_2D": 1, export.MUL_AFTER_BCONV: 0}
    assert report["size_bytes"] == (tmp_path / "m.tflite").stat().st_size
    assert report["weight_bytes"]["binary"] > 0 and report["weight_bytes"]["float"] > 0
    assert report["parity"]["max_abs_diff"] < 1e-4 and report["source"] == {"note": "test"}
    versions = report["versions"]
    assert {"larq", "larq-compute-engine"} <= set(versions)
    assert "tensorflow" in versions or "tensorflow-cpu" in versions
    bad = _one_layer(layers.IEBinaryConv2D(32, 3, k=1, input_quantizer=_ScaleBeforeConv()))
    with pytest.raises(errors.ExportError):
        export.to_tflite(bad, tmp_path / "bad.tflite")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.tflite", "m.tflite.json"]


def test_op_histogram_agrees_with_tflite_for_a_float_model():
    inputs = tf.keras.Input((8, 8, 3))
    x = tf.keras.layers.Conv2D(8, 3, activation="relu")(inputs)
    x = tf.keras.layers.MaxPooling2D()(x)
    x = tf.keras.layers.Flatten()(x)
    model = tf.keras.Model(inputs, tf.keras.layers.Dense(4)(x))
    flatbuffer = lce.convert_keras_model(model)
    interpreter = tf.lite.Interpreter(model_content=flatbuffer)
    expected = collections.Counter(op["op_name"] for op in interpreter._get_ops_details())
    assert export.op_histogram(flatbuffer) == dict(expected)


@pytest.mark.parametrize("broken_inputs, passes", [(0, True), (1, True), (2, False), (10, False)])
def test_parity_verdict_counts_inputs(broken_inputs, passes, tmp_path, rng, monkeypatch):
    """One flipped activation spoils one input; a conversion bug spoils them all."""
    model = _ienet(rng, ks=(2,))
    real_predict = export.tflite.lce_predict

    def predict_with_damage(flatbuffer, inputs):
        outputs = real_predict(flatbuffer, inputs)
        outputs[:broken_inputs] += 0.5
        return outputs

    monkeypatch.setattr(export.tflite, "lce_predict", predict_with_damage)
    inputs = rng.normal(size=(10, 16, 16, 3)).astype(np.float32)
    path = tmp_path / "m.tflite"
    if passes:
        result = export.to_tflite(model, path, inputs)
        assert result.parity.within_tolerance == pytest.approx(1 - broken_inputs / 10)
    else:
        with pytest.raises(errors.ExportError, match="inputs agree within"):
            export.to_tflite(model, path, inputs)
        assert not path.exists()


def test_float_convolutions_are_counted_by_what_they_convert_to():
    inputs = tf.keras.Input((8, 8, 3))
    x = lq.layers.QuantConv2D(4, 3)(inputs)  # no quantizers: a float CONV_2D
    x = tf.keras.layers.Conv2D(4, 3)(x)
    x = tf.keras.layers.DepthwiseConv2D(3)(x)  # a Conv2D subclass, but DEPTHWISE_CONV_2D
    model = tf.keras.Model(inputs, x)
    _, histogram = export.convert(model)
    assert export.expected_ops(model)["CONV_2D"] == histogram["CONV_2D"] == 2
    assert histogram["DEPTHWISE_CONV_2D"] == 1


def _no_conversion(*args, **kwargs):
    raise AssertionError("converted although the arguments are wrong")


def _ragged():
    return [np.zeros((16, 16, 3)), np.zeros((8, 16, 3))]


@pytest.mark.parametrize(
    "arguments, message",
    [
        (
            {"inputs": np.zeros((4, 8, 8, 1))},
            r"inputs has shape \(4, 8, 8, 1\), but .* \(N, 16, 16, 3\)",
        ),
        (
            {"inputs": np.zeros((16, 16, 3))},
            r"inputs has shape \(16, 16, 3\): one input without the batch axis",
        ),
        ({"inputs": np.zeros((0, 16, 16, 3))}, "inputs is an empty batch"),
        (
            {"inputs": np.full((2, 16, 16, 3), np.nan)},
            "inputs has NaN or infinite values .* in 2 of 2",
        ),
        (
            {"inputs": np.pad(np.full((1, 16, 16, 3), np.inf), ((1, 0), (0, 0), (0, 0), (0, 0)))},
            "index 1",
        ),
        ({"inputs": np.full((1, 16, 16, 3), 1e39)}, r"NaN or infinite values \(as float32\)"),
        ({"inputs": np.zeros((2, 16, 16, 3), np.complex64)}, "inputs has dtype complex64"),
        ({"inputs": np.full((2, 16, 16, 3), "x")}, "inputs has dtype <U1"),
        ({"inputs": _ragged()}, "inputs cannot be read as one array"),
        ({"tolerance": float("nan")}, "tolerance is nan"),
        ({"tolerance": float("inf")}, "tolerance is inf"),
        ({"tolerance": -1e-3}, "tolerance is -0.001"),
        ({"tolerance": 0}, "tolerance is 0.0"),
        ({"tolerance": "1e-3"}, "tolerance must be a number"),
        ({"min_agreement": 1.5}, "min_agreement is 1.5"),
        ({"path": "m.keras"}, r"path .*m.keras does not end in .tflite; .* e.g. .*m.tflite"),
        ({"path": "m"}, "does not end in .tflite"),
        ({"path": "."}, "is a directory"),
    ],
)
def test_wrong_arguments_are_named_before_converting(
    arguments, message, tmp_path, rng, monkeypatch
):
    model = _ienet(rng, ks=(1,))
    monkeypatch.setattr(export.tflite, "convert", _no_conversion)
    arguments = {"inputs": rng.normal(size=(2, 16, 16, 3)), **arguments}
    path = tmp_path / arguments.pop("path", "m.tflite")
    with pytest.raises(errors.UsageError, match=message) as raised:
        export.to_tflite(model, path, **arguments)
    assert isinstance(raised.value, ValueError)
    assert "\n" not in str(raised.value)
    assert not list(tmp_path.iterdir())


def test_inputs_of_another_number_type_are_converted(rng):
    model = _ienet(rng, ks=(1,))
    for dtype in (np.uint8, np.int64, np.float64, np.float16, bool):
        checked = export.tflite._check_inputs(np.ones((2, 16, 16, 3), dtype), model)
        assert checked.dtype == np.float32 and checked.shape == (2, 16, 16, 3)
    checked = export.tflite._check_inputs(tf.ones((2, 16, 16, 3), tf.float64), model)
    assert checked.dtype == np.float32


def _fake_run(path: Path) -> Path:
    (path / "checkpoints").mkdir(parents=True)
    for name in ("config.yaml", "state.json", "history.csv", "model.keras"):
        (path / name).write_text("run file")
    (path / "checkpoints" / "best.keras").write_text("run file")
    return path


def test_output_never_replaces_a_file_of_a_run_directory(tmp_path, rng, monkeypatch):
    run = _fake_run(tmp_path / "run")
    for owned in (
        "model.keras",
        "checkpoints/best.keras",
        "checkpoints/last.keras",
        "state.json",
        "metrics.json",
        "config.yaml",
        "history.csv",
        "resume/epoch-0001/x.tflite",
    ):
        with pytest.raises(errors.UsageError, match=f"--output .* would overwrite {owned} of"):
            export.check_output_path(run / owned, "--output")
    # Through a symlink, for the .tflite and for its sidecar.
    (tmp_path / "link.tflite").symlink_to(run / "model.keras")
    with pytest.raises(errors.UsageError, match=r"would overwrite model.keras .*\(via "):
        export.check_output_path(tmp_path / "link.tflite")
    (tmp_path / "other.tflite.json").symlink_to(run / "state.json")
    with pytest.raises(errors.UsageError, match=r"would overwrite state\.json"):
        export.check_output_path(tmp_path / "other.tflite")
    # `ienet export --output RUN/model.keras` used to replace the trained model.
    monkeypatch.setattr(export.tflite, "convert", _no_conversion)
    with pytest.raises(errors.UsageError, match=r"path .* would overwrite model\.keras"):
        export.to_tflite(_ienet(rng, ks=(1,)), run / "model.keras")
    assert (run / "model.keras").read_text() == "run file"
    # Beside the run's files, or in a new folder, is fine; a file as folder is not.
    assert export.check_output_path(run / "model.tflite") == run / "model.tflite"
    assert export.check_output_path(tmp_path / "new" / "m.tflite") == tmp_path / "new/m.tflite"
    with pytest.raises(errors.UsageError, match=r"history\.csv is a file, not a folder"):
        export.check_output_path(run / "history.csv" / "m.tflite")
    # A folder with config.yaml alone is not (yet) a run: only the suffix rule applies.
    (run / "state.json").unlink()
    with pytest.raises(errors.UsageError, match=r"does not end in \.tflite"):
        export.check_output_path(run / "model.keras")


def test_converter_log_is_hidden_unless_verbose(converted, capfd, monkeypatch):
    model, flatbuffer, histogram = converted

    def noisy(*args, fail=False, **kwargs):
        os.write(1, b"C++ stdout line\n")
        os.write(2, b"Estimated count of arithmetic ops (C++ stderr)\n")
        print("python print")
        print("python warning", file=sys.stderr)
        if fail:
            raise RuntimeError("conversion failed")
        return flatbuffer

    monkeypatch.setattr(lce, "convert_saved_model", noisy)
    capfd.readouterr()
    messages = []
    assert export.convert(model, progress=messages.append) == (flatbuffer, histogram)
    assert messages == ["converting with LCE ...", "checking ops ..."]
    out, err = capfd.readouterr()
    assert out == err == ""
    export.convert(model, verbose=True)
    out, err = capfd.readouterr()
    assert "C++ stdout line" in out and "python print" in out
    assert "Estimated count" in err and "python warning" in err
    # A failing conversion shows what the converter said.
    monkeypatch.setattr(lce, "convert_saved_model", lambda *a, **k: noisy(fail=True))
    with pytest.raises(RuntimeError, match="conversion failed"):
        export.convert(model)
    out, err = capfd.readouterr()
    assert out == ""
    for line in ("C++ stdout line", "Estimated count", "python print", "python warning"):
        assert line in err
    # The descriptors are back: later output is not swallowed.
    os.write(1, b"after\n")
    assert capfd.readouterr().out == "after\n"
    # The log lives only while the converter runs.
    assert not tflite_module.converter_log_path().exists()


def test_a_converter_that_aborts_leaves_its_log_and_a_fatal_error_line(tmp_path):
    """A C++ abort() in the converter kills the process without a Python exception: the
    captured log must survive it and the real stderr must say what died."""
    script = textwrap.dedent(
        """
        import os, sys
        from ienet_tf.export import tflite
        print(tflite.converter_log_path(), flush=True)
        with tflite._quiet():
            os.write(2, b"LCE: unsupported op, aborting\\n")
            os.abort()
        """
    )
    env = {**os.environ, "TMPDIR": str(tmp_path), "TF_CPP_MIN_LOG_LEVEL": "2"}
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300
    )
    assert done.returncode in (-signal.SIGABRT, 128 + signal.SIGABRT)
    assert "Fatal Python error: Aborted" in done.stderr and "_quiet" not in done.stdout
    log = Path(done.stdout.strip().splitlines()[-1])
    assert log.parent == tmp_path and "unsupported op, aborting" in log.read_text()


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _assert_every_tflite_has_its_sidecar(folder: Path) -> None:
    for tflite in folder.glob("*.tflite"):
        sidecar = tflite.with_name(tflite.name + ".json")
        assert sidecar.is_file(), f"{tflite.name} without its sidecar"
        assert json.loads(sidecar.read_text())["sha256"] == _sha256(tflite)


# Exports a one-layer model to argv[1] and dies as argv[2] says.
CRASHING = textwrap.dedent(
    """
    import os, sys
    from pathlib import Path
    import numpy as np
    import tensorflow as tf
    from ienet_tf import export, layers
    from ienet_tf.export import tflite

    path, mode, verbose = Path(sys.argv[1]), sys.argv[2], sys.argv[3] == "verbose"
    inputs = tf.keras.Input((8, 8, 16))
    model = tf.keras.Model(inputs, layers.IEBinaryConv2D(16, 3, k=1)(inputs))
    replace, write = os.replace, tflite.write_temporary
    renames = []

    def rename_then_die(src, dst):  # dies between the two renames into the folder
        if Path(dst).parent == path.parent:
            renames.append(dst)
            if len(renames) == 2:
                os._exit(137)
        replace(src, dst)

    def write_half_then_die(target, payload):  # dies while writing the flatbuffer
        if target == path:
            write(target, payload[: len(payload) // 2])
            os._exit(137)
        return write(target, payload)

    if mode == "between-renames":
        os.replace = rename_then_die
    elif mode == "during-write":
        tflite.write_temporary = write_half_then_die
    x = np.random.default_rng(0).normal(size=(10, 8, 8, 16)).astype(np.float32)
    export.to_tflite(model, path, x, verbose=verbose)
    """
)


@pytest.mark.slow
@pytest.mark.parametrize(
    "mode, earlier_export, verbose",
    [
        ("during-write", True, False),
        ("between-renames", False, True),
        ("between-renames", True, False),
    ],
)
def test_a_killed_export_leaves_no_tflite_without_sidecar(tmp_path, mode, earlier_export, verbose):
    path = tmp_path / "m.tflite"
    sidecar = tmp_path / "m.tflite.json"
    if earlier_export:
        path.write_bytes(b"earlier")
        sidecar.write_text(json.dumps({"sha256": _sha256(path)}))
    (tmp_path / ".other.tflite.abc123.tmp").write_bytes(b"another target's")
    done = subprocess.run(
        [sys.executable, "-c", CRASHING, str(path), mode, "verbose" if verbose else "quiet"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "0"},  # the converter's full log
    )
    assert done.returncode == 137, done.stderr[-2000:]
    # The converter's log shows only when asked for.
    assert ("Estimated count of arithmetic ops" in done.stderr) == verbose
    assert ("Reading SavedModel" in done.stderr) == verbose
    _assert_every_tflite_has_its_sidecar(tmp_path)
    left = sorted(p.name for p in tmp_path.iterdir())
    if mode == "during-write":  # nothing renamed yet: the earlier export is intact
        assert path.read_bytes() == b"earlier"
    else:  # the sidecar went first, and the earlier .tflite before it
        assert not path.exists() and json.loads(sidecar.read_text())["tflite"] == "m.tflite"
    assert [n for n in left if n.startswith(".m.tflite.")], left  # a dead export's file

    tf.keras.backend.clear_session()
    inputs = tf.keras.Input((8, 8, 16))
    model = tf.keras.Model(inputs, layers.IEBinaryConv2D(16, 3, k=1)(inputs))
    messages = []
    x = np.random.default_rng(0).normal(size=(10, 8, 8, 16)).astype(np.float32)
    result = export.to_tflite(model, path, x, progress=messages.append)
    assert messages == [
        "converting with LCE ...",
        "checking ops ...",
        "parity on 10 inputs ...",
        f"writing {path} ...",
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        ".other.tflite.abc123.tmp",  # not this export's
        "m.tflite",
        "m.tflite.json",
    ]
    _assert_every_tflite_has_its_sidecar(tmp_path)
    assert result.sidecar == sidecar and result.size_bytes == path.stat().st_size
