"""Every registered model x variant converts to binary LCE kernels and matches Keras."""

import numpy as np
import pytest
import tensorflow as tf

from ienet_tf import export, layers, models

SMALL_INPUT = {"convnet": (8, 8, 1), "resnet18": (32, 32, 3), "resnet34": (32, 32, 3)}
VARIANTS = ["fp", "bireal", "rsign", "iebc", "iee", "ienet"]


def _as_if_trained(model, rng):
    """Distinct thresholds, non-trivial lambdas and BN statistics, as after training."""
    for layer in model.layers:
        if isinstance(layer, layers.IEBinaryConv2D):
            if layer.thresholds is not None:
                layer.thresholds.assign(rng.normal(0, 0.3, layer.thresholds.shape))
            if layer.lambdas is not None:
                layer.lambdas.assign(rng.uniform(0.2, 1.0, layer.lambdas.shape))
        if isinstance(layer, tf.keras.layers.BatchNormalization):
            layer.gamma.assign(rng.uniform(0.5, 1.5, layer.gamma.shape))
            layer.moving_mean.assign(rng.normal(0, 0.1, layer.moving_mean.shape))
            layer.moving_variance.assign(rng.uniform(0.5, 2.0, layer.moving_variance.shape))


@pytest.mark.slow
@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("name", models.available())
def test_model_exports_with_expected_ops_and_parity(name, variant, tmp_path):
    rng = np.random.default_rng(0)
    shape = SMALL_INPUT.get(name, (16, 16, 3))
    model = models.build(name, variant, input_shape=shape)
    _as_if_trained(model, rng)
    binary = [layer for layer in model.layers if isinstance(layer, layers.IEBinaryConv2D)]
    inputs = rng.normal(size=(16, *shape)).astype(np.float32)
    # Random weights and inputs: a pre-activation within ~1e-6 of 0 can binarize differently
    # in LCE and TF (see export.Parity); allow such flips on a quarter of the inputs.
    result = export.to_tflite(
        model, tmp_path / "m.tflite", inputs, tolerance=1e-4, min_agreement=0.75
    )
    ops = result.op_histogram
    assert ops.get("LceBconv2d", 0) == sum(layer.k for layer in binary)
    assert "LceDequantize" not in ops
    float_convs = sum(1 for layer in model.layers if type(layer) is tf.keras.layers.Conv2D)
    assert ops.get("CONV_2D", 0) == float_convs
    assert result.parity.within_tolerance >= 0.75
    if variant != "fp":
        assert result.weight_bytes["binary"] > 0
