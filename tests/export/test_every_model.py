"""Every registered model x variant converts to binary LCE kernels and matches Keras."""

import numpy as np
import pytest
import tensorflow as tf

from ienet_tf import export, layers, models
from ienet_tf.ir2net import inference_model
from ienet_tf.models.testing import as_if_trained

SMALL_INPUT = {
    "convnet": (8, 8, 1),
    "resnet18": (32, 32, 3),
    "resnet34": (32, 32, 3),
    "resnet26": (32, 32, 3),
}
VARIANTS = ["fp", "bireal", "rsign", "iebc", "iee", "ienet"]
# The bottleneck ResNet-26 is the Elastic-Link paper's network: its baseline and ours.
BOTTLENECK_VARIANTS = ["fp", "bireal", "ienet"]
# Elastic-Link and IR²Net on the models their papers (or the issue) name.
MODIFIED = [
    *((name, "ienet+el") for name in ("resnet20", "resnet26", "resnet26_cifar", "vgg_small")),
    ("resnet26", "bireal+el"),
    *(
        (name, "ienet+ir2net")
        for name in ("resnet20", "resnet18_cifar", "vgg_small", "resnet18", "convnet")
    ),
    ("resnet20", "bireal+el+ir2net"),
]
CASES = [
    *(
        (name, variant)
        for name in models.available()
        for variant in (BOTTLENECK_VARIANTS if name.startswith("resnet26") else VARIANTS)
    ),
    *MODIFIED,
]


@pytest.mark.slow
@pytest.mark.parametrize("name, variant", CASES)
def test_model_exports_with_expected_ops_and_parity(name, variant, tmp_path):
    rng = np.random.default_rng(0)
    shape = SMALL_INPUT.get(name, (16, 16, 3))
    model = inference_model(models.build(name, variant, input_shape=shape))
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


# Models whose training step `fit` traces into a graph (what `ienet train` runs); the larger
# networks repeat these layer classes, so they step eagerly: the same train_step, gradients
# and optimizer without a 15-30 s trace each.
TRACED = ("convnet", "vgg_small")


@pytest.mark.slow
@pytest.mark.parametrize("name, variant", MODIFIED)
def test_new_model_trains_a_few_steps(name, variant):
    """Every Elastic-Link / IR²Net model x variant takes optimizer steps through `fit`."""
    rng = np.random.default_rng(0)
    shape = SMALL_INPUT.get(name, (16, 16, 3))
    model = models.build(name, variant, num_classes=10, input_shape=shape)
    # A small step: random labels on 8 images at batch 4 make large steps diverge.
    model.compile(
        tf.keras.optimizers.SGD(0.01),
        tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        run_eagerly=name not in TRACED,
    )
    new_parts = [
        w for w in model.trainable_weights if "_el/" in w.name or w.name.startswith("recovery")
    ]
    assert new_parts, "the variant added no Elastic-Link or recovery weights"
    before = [w.numpy() for w in new_parts]
    x = rng.normal(size=(8, *shape)).astype(np.float32)
    y = rng.integers(0, 10, size=8)
    history = model.fit(x, y, batch_size=4, epochs=1, verbose=0).history
    assert np.all(np.isfinite(history["loss"]))
    assert all(np.any(w.numpy() != b) for w, b in zip(new_parts, before, strict=True))
