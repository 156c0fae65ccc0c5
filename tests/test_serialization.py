import larq as lq
import numpy as np
import pytest
import tensorflow as tf

from ienet_tf import callbacks, layers, quantizers


def _model(rng) -> tf.keras.Model:
    inputs = tf.keras.Input((8, 8, 3))
    x = tf.keras.layers.Conv2D(16, 3, padding="same")(inputs)
    x = tf.keras.layers.BatchNormalization()(x)
    x = layers.IEBinaryConv2D(16, 3, k=2)(x)
    x = tf.keras.layers.BatchNormalization()(x)
    x = layers.IEBinaryConv2D(
        16, 3, k=3, strides=2, lambda_mode="scalar", input_quantizer="approx_sign"
    )(x)
    x = lq.layers.QuantConv2D(
        16, 1, input_quantizer="iee_act_sign", kernel_quantizer="iee_sign", use_bias=False
    )(x)
    x = tf.keras.layers.GlobalAveragePooling2D()(x)
    model = tf.keras.Model(inputs, tf.keras.layers.Dense(4)(x))
    for layer in model.layers:
        if isinstance(layer, layers.IEBinaryConv2D):
            layer.thresholds.assign(rng.normal(0, 0.3, layer.thresholds.shape))
            if layer.lambdas is not None:
                layer.lambdas.assign(rng.uniform(0.1, 1.0, layer.lambdas.shape))
    # Distinct q per quantizer, as in the middle of a schedule.
    for i, quantizer in enumerate(callbacks.iee_quantizers(model)):
        quantizer.q.assign(0.05 * (i + 1))
    return model


def _q_values(model):
    return [float(q.q.numpy()) for q in callbacks.iee_quantizers(model)]


@pytest.mark.parametrize("fmt", ["keras", "savedmodel", "h5_weights"])
def test_save_load_round_trip_keeps_predictions_and_q(fmt, tmp_path, rng):
    model = _model(rng)
    x = rng.normal(size=(4, 8, 8, 3)).astype(np.float32)
    expected = model(x, training=False).numpy()
    q_before = _q_values(model)
    assert len(q_before) == 5 and len(set(q_before)) == 5

    if fmt == "keras":
        model.save(tmp_path / "model.keras")
        restored = tf.keras.models.load_model(tmp_path / "model.keras")
    elif fmt == "savedmodel":
        model.save(tmp_path / "saved", save_format="tf")
        restored = tf.keras.models.load_model(tmp_path / "saved")
    else:
        model.save_weights(tmp_path / "weights.h5")
        tf.keras.backend.clear_session()
        restored = _model(np.random.default_rng(99))  # different weights and q
        restored.load_weights(tmp_path / "weights.h5")

    assert _q_values(restored) == pytest.approx(q_before)
    np.testing.assert_array_equal(restored(x, training=False).numpy(), expected)
    types = [type(layer).__name__ for layer in restored.layers]
    assert types.count("IEBinaryConv2D") == 2
    binary = [layer for layer in restored.layers if isinstance(layer, layers.IEBinaryConv2D)]
    assert isinstance(binary[0].kernel_quantizer, quantizers.IEESign)
    assert isinstance(binary[1].input_quantizer, lq.quantizers.ApproxSign)
    assert binary[1].lambda_mode == "scalar" and binary[1].k == 3


def test_restored_model_keeps_training_with_the_schedule(tmp_path, rng):
    model = _model(rng)
    model.compile("sgd", tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.save(tmp_path / "model.keras")
    restored = tf.keras.models.load_model(tmp_path / "model.keras")
    x = rng.normal(size=(8, 8, 8, 3)).astype(np.float32)
    y = rng.integers(0, 4, 8)
    kernel_before = restored.layers[3].kernel.latent_variable.numpy().copy()
    restored.fit(x, y, epochs=2, verbose=0, callbacks=[callbacks.IEESchedule(epochs=2)])
    assert _q_values(restored) == pytest.approx([10**-0.5] * 5, rel=1e-6)
    assert np.any(restored.layers[3].kernel.latent_variable.numpy() != kernel_before)
