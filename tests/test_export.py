"""The deployment constraint: IE-BC converts into binary LCE kernels and matches Keras."""

import collections

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
    assert export.expected_binary_convs(model) == 4
    _, histogram = export.convert(model)
    assert histogram["LceBconv2d"] == 4


class _ScaleBeforeConv(lq.quantizers.Quantizer):
    """Breaks an LCE rule on purpose: scales the binary activation before the conv."""

    precision = 1

    def call(self, inputs):
        return lq.quantizers.ste_sign(inputs) * tf.range(1.0, inputs.shape[-1] + 1.0)


def test_a_float_fallback_is_an_error_naming_the_rule():
    inputs = tf.keras.Input((8, 8, 32))
    outputs = layers.IEBinaryConv2D(32, 3, k=1, activation_estimator=_ScaleBeforeConv())(inputs)
    with pytest.raises(export.ExportError, match="LceDequantize") as error:
        export.convert(tf.keras.Model(inputs, outputs))
    assert "expected 1" in str(error.value) and "pad_values=1.0" in str(error.value)


def test_verify_ops_counts():
    export.verify_ops({"LceBconv2d": 3, "LceQuantize": 3}, 3)
    with pytest.raises(export.ExportError, match="2 LceBconv2d op"):
        export.verify_ops({"LceBconv2d": 2}, 3)


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
