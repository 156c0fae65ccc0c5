"""IR²Net: attention map, erase mask and two-pass loss against numpy; the recovery head's
shapes, parameters and FLOPs; the training wrapper on disk and in `model.fit`."""

import math

import numpy as np
import pytest
import tensorflow as tf

from ienet_tf import cost, ir2net, models
from ienet_tf.ir2net import InformationRestriction
from ienet_tf.models.recovery import information_recovery


def numpy_attention(features):
    energy = (features.astype(np.float64) ** 2).mean(axis=-1)
    norm = np.sqrt((energy**2).sum(axis=(1, 2), keepdims=True))
    return energy / np.maximum(norm, 1e-6)


def numpy_bilinear(maps, out_h, out_w):
    """Bilinear resize with half-pixel centres (PyTorch `align_corners=False`)."""
    _, h, w = maps.shape

    def taps(size_in, size_out):
        src = np.clip((np.arange(size_out) + 0.5) * size_in / size_out - 0.5, 0, size_in - 1)
        low = np.floor(src).astype(int)
        return low, np.minimum(low + 1, size_in - 1), src - low

    y0, y1, fy = taps(h, out_h)
    x0, x1, fx = taps(w, out_w)
    top = maps[:, y0][:, :, x0] * (1 - fx) + maps[:, y0][:, :, x1] * fx
    bottom = maps[:, y1][:, :, x0] * (1 - fx) + maps[:, y1][:, :, x1] * fx
    return top * (1 - fy)[None, :, None] + bottom * fy[None, :, None]


def numpy_mask(features, size, threshold):
    attention = numpy_bilinear(numpy_attention(features), *size)
    return attention > threshold * attention.mean(axis=(1, 2), keepdims=True)


def test_attention_map_matches_numpy(rng):
    features = rng.normal(size=(3, 4, 5, 8)).astype(np.float32)
    got = ir2net.attention_map(tf.constant(features)).numpy()
    assert got.shape == (3, 4, 5, 1)
    np.testing.assert_allclose(got[..., 0], numpy_attention(features), rtol=1e-5)
    np.testing.assert_allclose(np.sqrt((got**2).sum(axis=(1, 2, 3))), 1.0, rtol=1e-5)


@pytest.mark.parametrize("threshold", [0.15, 0.5, 1.0])
def test_erase_mask_matches_numpy(rng, threshold):
    # Energy concentrated on a few positions, so the threshold actually erases pixels.
    features = rng.normal(size=(4, 4, 4, 6)) * rng.uniform(0, 2, size=(4, 4, 4, 1)) ** 3
    features = features.astype(np.float32)
    got = ir2net.erase_mask(tf.constant(features), (16, 16), threshold).numpy()[..., 0]
    expected = numpy_mask(features, (16, 16), threshold)
    assert got.shape == (4, 16, 16) and set(np.unique(got)) <= {0.0, 1.0}
    np.testing.assert_array_equal(got.astype(bool), expected)
    assert 0 < expected.mean() < 1  # the case is not trivial


def _tiny_classifier():
    inputs = tf.keras.Input((8, 8, 1))
    x = tf.keras.layers.Conv2D(4, 3, padding="same", name="conv")(inputs)
    x = tf.keras.layers.Activation("tanh", name="features")(x)
    x = tf.keras.layers.GlobalAveragePooling2D()(x)
    return tf.keras.Model(inputs, tf.keras.layers.Dense(3, name="logits")(x))


def test_train_step_minimises_the_mean_of_the_two_passes(rng):
    classifier = _tiny_classifier()
    model = InformationRestriction(classifier, "features", erase_threshold=0.5)
    loss_fn = tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    model.compile(tf.keras.optimizers.SGD(0.1), loss_fn)
    x = rng.normal(size=(6, 8, 8, 1)).astype(np.float32)
    y = rng.integers(0, 3, size=6)
    before = [w.numpy() for w in classifier.trainable_weights]

    # Independently: mask from the first pass's features (numpy), mean of the two losses.
    features = tf.keras.Model(classifier.input, classifier.get_layer("features").output)
    mask = numpy_mask(features(x).numpy(), (8, 8), 0.5)[..., None].astype(np.float32)
    assert 0 < mask.mean() < 1
    with tf.GradientTape() as tape:
        expected_loss = 0.5 * (loss_fn(y, classifier(x)) + loss_fn(y, classifier(x * mask)))
    grads = tape.gradient(expected_loss, classifier.trainable_weights)

    logs = model.train_on_batch(x, y, return_dict=True)
    np.testing.assert_allclose(logs["loss"], expected_loss.numpy(), rtol=1e-5)
    for old, grad, new in zip(before, grads, classifier.trainable_weights, strict=True):
        np.testing.assert_allclose(new.numpy(), old - 0.1 * grad.numpy(), rtol=1e-4, atol=1e-6)


def test_wrapper_infers_as_the_plain_model_and_round_trips(tmp_path, rng):
    model = models.build("resnet20", "ienet+ir2net", input_shape=(16, 16, 3))
    assert isinstance(model, InformationRestriction)
    assert model.feature_layer == "stage3_unit6_out" and model.erase_threshold == 0.15
    x = rng.normal(size=(4, 16, 16, 3)).astype(np.float32)
    np.testing.assert_array_equal(model.predict(x, verbose=0), model.classifier.predict(x))
    model.save(tmp_path / "ir2.keras")
    loaded = tf.keras.models.load_model(tmp_path / "ir2.keras")
    assert isinstance(loaded, InformationRestriction)
    assert ir2net.inference_model(loaded) is loaded.classifier
    np.testing.assert_allclose(
        loaded.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-5, atol=1e-6
    )
    assert len(loaded.weights) == len(model.classifier.weights)


def test_wrapper_names_a_missing_feature_layer():
    with pytest.raises(ValueError, match="has no layer 'nope'"):
        InformationRestriction(_tiny_classifier(), "nope")
    with pytest.raises(ValueError, match="needs \\(batch, height, width, channels\\)"):
        InformationRestriction(_tiny_classifier(), "logits")
    with pytest.raises(ValueError, match="`erase_threshold` must be a number >= 0"):
        InformationRestriction(_tiny_classifier(), "features", erase_threshold=-1)


def head_params(c_cat, c_out, ratio):
    """Trainable parameters of the recovery head: 1x1 conv, BN (gamma, beta), depthwise
    3x3 and its BN for Ghost, PReLU (one slope per channel)."""
    primary = math.ceil(c_out / ratio)
    total = c_cat * primary + 2 * primary
    if ratio > 1:
        cheap = primary * (ratio - 1)
        total += 9 * cheap + 2 * cheap
    return total + c_out


def head_macs(c_cat, c_out, ratio, pixels):
    primary = math.ceil(c_out / ratio)
    return pixels * (c_cat * primary + (9 * primary * (ratio - 1) if ratio > 1 else 0))


@pytest.mark.parametrize("ratio", [1, 2, 4, 20])
def test_recovery_head_shapes_parameters_and_flops(ratio):
    # ResNet-20 at 32x32: stem 16@32, stages 16@32, 32@16 -> pooled to 8x8, final 64@8.
    plain = models.build("resnet20", "ienet")
    model = models.build("resnet20", "ienet+ir2net", recovery_ratio=ratio).classifier
    c_cat = 16 + 16 + 32 + 64
    assert model.get_layer("recovery_concat").output.shape == (None, 8, 8, c_cat)
    assert model.get_layer("recovery_prelu").output.shape == (None, 8, 8, 64)
    assert model.count_params() - plain.count_params() == head_params(c_cat, 64, ratio) + (
        2 * math.ceil(64 / ratio) * (1 + (ratio - 1))  # BN moving statistics
    )
    head_cost = cost.model_cost(model).fp_macs - cost.model_cost(plain).fp_macs
    assert head_cost == head_macs(c_cat, 64, ratio, 8 * 8)


def test_streamlined_heads_cost_less():
    flops = [
        cost.model_cost(models.build("resnet18", "ienet+ir2net", recovery_ratio=r)).flops
        for r in (1, 2, 4, 20)
    ]
    assert flops == sorted(flops, reverse=True)
    plain = cost.model_cost(models.build("resnet18", "ienet")).flops
    assert (flops[0] - plain) > 10 * (flops[-1] - plain)  # ratio 20: >10x cheaper head


def test_recovery_rejects_uneven_pooling():
    final = tf.keras.Input((4, 4, 8))
    shallow = tf.keras.Input((9, 9, 4))
    with pytest.raises(ValueError, match="cannot pool a 9x9 feature map to 4x4"):
        information_recovery(final, [shallow])
    with pytest.raises(ValueError, match="`recovery_ratio` must be an integer >= 1"):
        information_recovery(final, [], ratio=0)
