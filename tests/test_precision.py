"""Mixed precision (`ienet_tf.precision`, `train.mixed_precision`): every registry network
trains under both mixed policies, the binary layers compute in 16 bits what they compute in
float32, the IEE estimator's gradient survives float16, and a mixed run exports in float32.

Whole untrained binary networks are chaotic under rounding (a pre-activation within 2^-11
of its threshold flips, and each flip moves ~9*C_in outputs of the next layer: measured on
`as_if_trained` ResNet-20s, 25-100% top-1 agreement between float16 and float32 on random
inputs), so the layer-by-layer comparison below is the precise one: with inputs kept
`MARGIN` away from every threshold, a layer's 16-bit output agrees with its float32 one
within `TOLERANCE[policy]` times its largest output.
"""

import json

import numpy as np
import pytest
import tensorflow as tf

from ienet_tf import layers, models, precision, quantizers
from ienet_tf.cli import main

MIXED = ("mixed_float16", "mixed_bfloat16")
#: 16-bit vs float32 output of one binary layer, relative to its largest |output|: float16
#: keeps 11 significant bits, bfloat16 8 (each multiply and add rounds once).
TOLERANCE = {"mixed_float16": 4e-3, "mixed_bfloat16": 3e-2}
MARGIN = 0.05  # |x + beta_k| at least this: the 16-bit and float32 signs agree
VARIANTS = ("fp", "bireal", "rsign", "iebc", "iee", "ienet", "ienet+el", "ienet+ir2net")


def _shape(name):
    """The smallest input each network takes (`ModelSpec.min_size`), at least 8x8: the
    matrix below is 176 builds and steps, and float16 has no CPU kernels. 4 images a step:
    with 2, BatchNorm over a 1x1 last stage sees 2 values a channel and its float16
    gradient overflows even unscaled (measured: 32 of 88 float16 cases, ResNet-20 at 4x4,
    the CIFAR ResNets at 8x8, ResNet-26 at 32x32)."""
    size = max(models.spec(name).min_size, 8)
    return (size, size, 1 if name == "convnet" else 3)


def _cases():
    """Every registry family x every variant (ienet also at K = 1, 3, 4)."""
    forms = [(variant, None) for variant in VARIANTS] + [("ienet", k) for k in (1, 3, 4)]
    return [(name, variant, k) for name in models.available() for variant, k in forms]


@pytest.fixture
def restore_policy():
    yield
    assert tf.keras.mixed_precision.global_policy().name == "float32"  # `policy` restored it


@pytest.mark.slow
@pytest.mark.parametrize("policy", MIXED)
@pytest.mark.parametrize("name, variant, k", _cases())
def test_every_registry_network_trains_a_step_under_each_mixed_policy(
    name, variant, k, policy, restore_policy
):
    with precision.policy(policy):
        model = models.build(name, variant, k=k, input_shape=_shape(name), num_classes=10)
    assert precision.compute_dtypes(model) == {policy.split("_")[1], "float32"}
    assert model.output.dtype == tf.float32  # the logits, so the softmax and the loss
    assert all(w.dtype == tf.float32 for w in model.weights)  # variables stay float32
    x = np.random.default_rng(0).normal(size=(4, *_shape(name))).astype(np.float32)
    optimizer = tf.keras.optimizers.SGD(0.01)
    if policy == "mixed_float16":
        # Keras' dynamic loss scaling starts at 2^15 and halves it at each step whose float16
        # gradient overflows (that step is skipped). IEE at q = 0.01 scales the kernels'
        # gradient by up to r / std(W) ~ 100 / 0.05: a fresh IEE ResNet-20 skips 8 steps and
        # settles at 2^7, deeper IE-Nets lower (measured), so the test starts at 1 (the
        # scale then grows) and its one step must have finite gradients.
        optimizer = tf.keras.mixed_precision.LossScaleOptimizer(optimizer, initial_scale=1.0)
    # Keras' own train step, spelled out and eager: half the cost of `train_on_batch` at
    # these sizes (no train function to make), and it shows the unscaled gradients.
    weights = model.trainable_weights
    before = [w.numpy() for w in weights]
    loss_fn = tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    with tf.GradientTape() as tape:
        loss = loss_fn(np.arange(4), model(x, training=True))
        scaled = optimizer.get_scaled_loss(loss) if policy == "mixed_float16" else loss
    gradients = tape.gradient(scaled, weights)
    if policy == "mixed_float16":
        gradients = optimizer.get_unscaled_gradients(gradients)
    assert np.isfinite(loss.numpy())
    assert all(np.isfinite(g.numpy()).all() for g in gradients)  # the step is not skipped
    optimizer.apply_gradients(zip(gradients, weights, strict=True))
    assert all(np.isfinite(w.numpy()).all() for w in weights)
    assert any(not np.array_equal(b, w.numpy()) for b, w in zip(before, weights, strict=True))


def _away_from_thresholds(rng, shape, thresholds):
    """N(0, 1) inputs, each redrawn until it is `MARGIN` from every `-beta_k`."""
    x = rng.normal(size=shape)
    while True:
        near = np.zeros(shape, bool)
        for beta in thresholds:
            near |= np.abs(x + beta) < MARGIN
        if not near.any():
            return x.astype(np.float32)
        x[near] = rng.normal(size=int(near.sum()))


@pytest.mark.parametrize("policy", MIXED)
@pytest.mark.parametrize(
    "variant, k",
    [("bireal", None), ("rsign", None), ("iebc", None), ("iee", None)]
    + [("ienet", k) for k in (1, 2, 3, 4)],
)
@pytest.mark.parametrize("compat", ["lce", "release"])
def test_a_binary_layer_in_16_bits_computes_what_it_does_in_float32(
    variant, k, compat, policy, restore_policy
):
    arguments = models.get_variant(variant, k, compat=compat).layer_arguments(27, False, False)
    rng = np.random.default_rng(1)
    reference = layers.IEBinaryConv2D(8, 3, strides=2, **arguments)
    reference.build((2, 9, 9, 3))
    for weight in reference.weights:
        if weight.trainable:
            weight.assign(
                rng.normal(0.0, 0.3, weight.shape) + (1.0 if "lambda" in weight.name else 0)
            )
    with precision.policy(policy):
        layer = layers.IEBinaryConv2D(8, 3, strides=2, **arguments)
    layer.build((2, 9, 9, 3))
    layer.set_weights(reference.get_weights())
    thresholds = [] if reference.thresholds is None else reference.thresholds.numpy()
    x = _away_from_thresholds(rng, (2, 9, 9, 3), [*thresholds] or [np.zeros(3)])
    expected = reference(x).numpy()
    actual = layer(x)
    assert actual.dtype == tf.as_dtype(policy.split("_")[1])
    scale = np.abs(expected).max()
    np.testing.assert_allclose(
        actual.numpy().astype(np.float32), expected, atol=TOLERANCE[policy] * scale, rtol=0
    )


@pytest.mark.parametrize("q", [0.01, 1.0, 10.0])
@pytest.mark.parametrize("quantizer", [quantizers.IEESign, quantizers.IEEActivationSign])
def test_the_iee_estimators_gradient_survives_float16(quantizer, q, restore_policy):
    """r * max(0, sqrt(3) q - 1.5 q^2 |x|): with q from 0.01 (r = 100) to 10 (a peak of
    17.3), float16 keeps it to its 11 bits; no overflow, no underflow to 0."""
    x = np.random.default_rng(2).normal(0.0, 0.1, (3, 3, 4, 8)).astype(np.float32)

    def gradient(policy):
        with precision.policy(policy):
            estimator = quantizer(q=q)
        variable = tf.Variable(x)
        with tf.GradientTape() as tape:
            y = estimator(tf.cast(variable, estimator.compute_dtype), training=True)
            loss = tf.reduce_sum(
                tf.cast(y, tf.float32) * np.linspace(-1, 1, x.size).reshape(x.shape)
            )
        return tape.gradient(loss, variable).numpy()

    expected = gradient("float32")
    actual = gradient("mixed_float16")
    assert np.isfinite(actual).all()
    np.testing.assert_allclose(actual, expected, atol=4e-3 * np.abs(expected).max(), rtol=0)
    assert np.count_nonzero(actual) == np.count_nonzero(expected)


def test_float32_model_rebuilds_a_mixed_network_with_the_same_weights(restore_policy):
    with precision.policy("mixed_float16"):
        mixed = models.build("convnet", "ienet+el", input_shape=(8, 8, 1))
    assert precision.is_mixed(mixed)
    twin = precision.float32_model(mixed)
    assert twin is not mixed and not precision.is_mixed(twin)
    assert [layer.name for layer in twin.layers] == [layer.name for layer in mixed.layers]
    for a, b in zip(twin.get_weights(), mixed.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    float32 = models.build("convnet", "ienet+el", input_shape=(8, 8, 1))
    assert precision.float32_model(float32) is float32
    with pytest.raises(ValueError, match="Unknown dtype policy 'float16'"):
        with precision.policy("float16"):
            pass


@pytest.mark.slow
def test_a_mixed_precision_run_trains_evaluates_resumes_and_exports_in_float32(
    tmp_path, capsys, restore_policy
):
    run, out = tmp_path / "run", tmp_path / "m.tflite"
    argv = ["train", "--config", "configs/digits_convnet_ienet.yaml", "--run", str(run)]
    sets = ["train.mixed_precision=mixed_float16", "train.epochs=2", "data.subset=256"]
    assert main([*argv, *(a for s in sets for a in ("--set", s))]) == 0
    assert "mixed_precision: mixed_float16" in (run / "config.yaml").read_text()
    model = tf.keras.models.load_model(run / "model.keras")
    assert precision.compute_dtypes(model) == {"float16", "float32"}
    metrics = json.loads((run / "metrics.json").read_text())
    assert np.isfinite(metrics["test_accuracy"]) and metrics["test_accuracy"] > 0.2  # > chance
    capsys.readouterr()
    assert main(["evaluate", "--run", str(run)]) == 0
    assert "top-1" in capsys.readouterr().out
    # A rerun with another policy is another config: refused, nothing changed.
    other = [*argv, "--set", "train.epochs=2", "--set", "data.subset=256"]
    assert main(other) == 2
    assert main(["export", "--run", str(run), "--output", str(out)]) == 0
    report = json.loads((out.parent / (out.name + ".json")).read_text())
    assert report["parity"]["within_tolerance"] >= 0.9  # the file vs its float32 network
    mixed = report["mixed_precision"]  # ... and vs the mixed network that was trained
    assert mixed["trained_compute_dtypes"] == ["float16", "float32"]
    assert mixed["top1_agreement"] >= 0.9
    assert report["op_histogram"].get("LceBconv2d", 0) > 0
