"""The deployment constraint: IE-BC converts into binary LCE kernels and matches Keras."""

import collections
import json

import larq as lq
import larq_compute_engine as lce
import numpy as np
import pytest
import tensorflow as tf

from ienet_tf import export, layers


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
            layers.IEBinaryConv2D(32, 3, k=1, activation_estimator=_ScaleBeforeConv(), name="bad"),
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
    with pytest.raises(export.ExportError, match=f"layer 'bad' breaks `{rule}`"):
        export.convert(model)


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
    with pytest.raises(export.ExportError, match="1 LceDequantize"):
        export.verify_ops(histogram, export.expected_ops(model))
    assert not list(tmp_path.iterdir())


def test_verify_ops_counts():
    expected = {"LceBconv2d": 3, "CONV_2D": 1, export.MUL_AFTER_BCONV: 0}
    export.verify_ops({"LceBconv2d": 3, "LceQuantize": 3, "CONV_2D": 1}, expected)
    with pytest.raises(export.ExportError, match="2 LceBconv2d op"):
        export.verify_ops({"LceBconv2d": 2, "CONV_2D": 1}, expected)
    with pytest.raises(export.ExportError, match="2 CONV_2D op"):
        export.verify_ops({"LceBconv2d": 3, "CONV_2D": 2}, expected)
    with pytest.raises(export.ExportError, match="1 MUL after LceBconv2d op"):
        export.verify_ops({"LceBconv2d": 3, "CONV_2D": 1, export.MUL_AFTER_BCONV: 1}, expected)


def test_to_tflite_writes_file_and_sidecar_only_on_success(tmp_path, rng):
    model = _ienet(rng)
    result = export.to_tflite(model, tmp_path / "m.tflite", source={"note": "test"})
    report = json.loads(result.sidecar.read_text())
    assert report["op_histogram"]["LceBconv2d"] == 8
    assert report["expected_ops"] == {"LceBconv2d": 8, "CONV_2D": 1, export.MUL_AFTER_BCONV: 0}
    assert report["size_bytes"] == (tmp_path / "m.tflite").stat().st_size
    assert report["weight_bytes"]["binary"] > 0 and report["weight_bytes"]["float"] > 0
    assert report["parity"]["max_abs_diff"] < 1e-4 and report["source"] == {"note": "test"}
    versions = report["versions"]
    assert {"larq", "larq-compute-engine"} <= set(versions)
    assert "tensorflow" in versions or "tensorflow-cpu" in versions
    bad = _one_layer(layers.IEBinaryConv2D(32, 3, k=1, activation_estimator=_ScaleBeforeConv()))
    with pytest.raises(export.ExportError):
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
        with pytest.raises(export.ExportError, match="inputs agree within"):
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
