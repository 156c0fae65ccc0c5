"""Every registered model x variant converts to binary LCE kernels and matches Keras."""

import numpy as np
import pytest
import tensorflow as tf

from ienet_tf import export, layers, models
from ienet_tf.models.testing import as_if_trained

SMALL_INPUT = {"convnet": (8, 8, 1), "resnet18": (32, 32, 3), "resnet34": (32, 32, 3)}
VARIANTS = ["fp", "bireal", "rsign", "iebc", "iee", "ienet"]


@pytest.mark.slow
@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("name", models.available())
def test_model_exports_with_expected_ops_and_parity(name, variant, tmp_path):
    rng = np.random.default_rng(0)
    shape = SMALL_INPUT.get(name, (16, 16, 3))
    model = models.build(name, variant, input_shape=shape)
    as_if_trained(model)
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
