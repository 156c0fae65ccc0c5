"""IR²Net: attention map, erase mask and two-pass loss against numpy; the recovery head's
shapes, parameters and FLOPs; the training wrapper on disk and in `model.fit`."""

import math

import numpy as np
import pytest
import tensorflow as tf

from ienet_tf import cost, ir2net, models
from ienet_tf.ir2net import InformationRestriction
from ienet_tf.models.recovery import information_recovery


def numpy_attention(features, norm="column"):
    """The release's `F.normalize(x.pow(2).mean(1))` on a (B, h, w) map: dim 1 is h, so
    every column is scaled to unit L2 norm over its rows (eps 1e-12 on the norm);
    `norm="map"` scales the whole map instead."""
    energy = (features.astype(np.float64) ** 2).mean(axis=-1)
    axes = (1,) if norm == "column" else (1, 2)
    length = np.sqrt((energy**2).sum(axis=axes, keepdims=True))
    return energy / np.maximum(length, 1e-12)


def numpy_bilinear(maps, out_h, out_w, align_corners=True):
    """Bilinear resize: `align_corners=True` maps the corner pixels onto each other
    (src = i * (in - 1) / (out - 1)), as the release's `F.interpolate(...,
    align_corners=True)`; otherwise half-pixel centres."""
    _, h, w = maps.shape

    def taps(size_in, size_out):
        i = np.arange(size_out)
        if align_corners:
            src = i * (size_in - 1) / max(size_out - 1, 1)
        else:
            src = np.clip((i + 0.5) * size_in / size_out - 0.5, 0, size_in - 1)
        low = np.floor(src).astype(int)
        return low, np.minimum(low + 1, size_in - 1), src - low

    y0, y1, fy = taps(h, out_h)
    x0, x1, fx = taps(w, out_w)
    top = maps[:, y0][:, :, x0] * (1 - fx) + maps[:, y0][:, :, x1] * fx
    bottom = maps[:, y1][:, :, x0] * (1 - fx) + maps[:, y1][:, :, x1] * fx
    return top * (1 - fy)[None, :, None] + bottom * fy[None, :, None]


def numpy_mask(features, size, threshold, norm="column", align_corners=True):
    attention = numpy_bilinear(numpy_attention(features, norm), *size, align_corners)
    return attention > threshold * attention.mean(axis=(1, 2), keepdims=True)


def _peaked(rng, shape=(4, 4, 4, 6)):
    """Energy concentrated on a few positions (the normalisations then differ)."""
    features = rng.normal(size=shape) * rng.uniform(0, 2, size=(*shape[:3], 1)) ** 3
    return features.astype(np.float32)


@pytest.mark.parametrize("norm", ["column", "map"])
def test_attention_map_matches_numpy(rng, norm):
    features = rng.normal(size=(3, 4, 5, 8)).astype(np.float32)
    got = ir2net.attention_map(tf.constant(features), norm).numpy()
    assert got.shape == (3, 4, 5, 1)
    np.testing.assert_allclose(got[..., 0], numpy_attention(features, norm), rtol=1e-5)
    axes = (1,) if norm == "column" else (1, 2)
    np.testing.assert_allclose(np.sqrt((got**2).sum(axis=axes)), 1.0, rtol=1e-5)
    with pytest.raises(ValueError, match="Unknown `attention_norm` 'rows'"):
        ir2net.attention_map(tf.constant(features), "rows")


@pytest.mark.parametrize("threshold", [0.15, 0.5, 1.0])
@pytest.mark.parametrize("norm, align_corners", [("column", True), ("map", False)])
def test_erase_mask_matches_numpy(rng, threshold, norm, align_corners):
    features = _peaked(rng)
    got = ir2net.erase_mask(tf.constant(features), (16, 16), threshold, norm, align_corners)
    got = got.numpy()[..., 0]
    expected = numpy_mask(features, (16, 16), threshold, norm, align_corners)
    assert got.shape == (4, 16, 16) and set(np.unique(got)) <= {0.0, 1.0}
    np.testing.assert_array_equal(got.astype(bool), expected)
    assert 0 < expected.mean() < 1  # the case is not trivial


def test_the_release_mask_keeps_most_of_a_single_peak_map_where_the_whole_map_norm_erases_it(
    rng,
):
    """8x8 feature maps (CIFAR ResNet-20) with one strong position each, upsampled to
    32x32: the release's column normalisation keeps almost every pixel (measured 97%), the
    whole-map normalisation only those near the peak (measured 5%)."""
    features = rng.normal(size=(64, 8, 8, 64)) * 0.1
    for sample, (row, column) in enumerate(rng.integers(0, 8, size=(64, 2))):
        features[sample, row, column] *= 30
    features = tf.constant(features.astype(np.float32))
    kept = {
        norm: float(tf.reduce_mean(ir2net.erase_mask(features, (32, 32), 0.15, norm, corners)))
        for norm, corners in (("column", True), ("map", False))
    }
    assert kept["column"] > 0.9 and kept["map"] < 0.2, kept


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
    classifier = models.build("resnet20", "ienet+ir2net", input_shape=(16, 16, 3))
    assert not isinstance(classifier, InformationRestriction)  # models are only models
    model = InformationRestriction.wrap(classifier)
    assert isinstance(model, InformationRestriction) and model.classifier is classifier
    assert model.feature_layer == "stage3_unit6_out" and model.erase_threshold == 0.15
    assert ir2net.final_features_layer(models.build("vgg_small", "ienet")) == "conv5_out"
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


def head_params(c_cat, c_out, ratio, prelu=False):
    """Trainable parameters of the recovery head. Full (ratio 1): 1x1 conv, BN (gamma,
    beta), PReLU (one slope per channel). Ghost: 1x1 conv to m, BN, activation; depthwise
    3x3 (multiplier ratio - 1) on it, BN, activation; PReLU slopes only with `prelu`."""
    if ratio == 1:
        return c_cat * c_out + 2 * c_out + c_out
    primary = math.ceil(c_out / ratio)
    cheap = primary * (ratio - 1)
    total = c_cat * primary + 2 * primary + 9 * cheap + 2 * cheap
    return total + (primary + cheap if prelu else 0)


def head_macs(c_cat, c_out, ratio, pixels):
    primary = c_out if ratio == 1 else math.ceil(c_out / ratio)
    return pixels * (c_cat * primary + (9 * primary * (ratio - 1) if ratio > 1 else 0))


def _head_output(model):
    return model.get_layer("pool").input


@pytest.mark.parametrize("ratio", [1, 2, 4, 20])
def test_recovery_head_shapes_parameters_and_flops(ratio):
    # ResNet-20 at 32x32: stem 16@32, stages 16@32, 32@16 -> pooled to 8x8, final 64@8.
    plain = models.build("resnet20", "ienet")
    model = models.build("resnet20", "ienet+ir2net", recovery_ratio=ratio)
    c_cat = 16 + 16 + 32 + 64
    assert model.get_layer("recovery_concat").output.shape == (None, 8, 8, c_cat)
    assert _head_output(model).shape == (None, 8, 8, 64)
    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    trainable -= sum(int(np.prod(w.shape)) for w in plain.trainable_weights)
    assert trainable == head_params(c_cat, 64, ratio)
    head_cost = cost.model_cost(model).fp_macs - cost.model_cost(plain).fp_macs
    assert head_cost == head_macs(c_cat, 64, ratio, 8 * 8)
    if ratio > 1:  # the release's Ghost module: the cheap conv reads the ACTIVATED primary
        assert model.get_layer("recovery_cheap").input is model.get_layer("recovery_act").output
        assert model.get_layer("recovery_act").activation is models.hard_tanh
        assert model.get_layer("recovery_cheap_act").activation is models.hard_tanh


def test_release_heads_per_network():
    """The release's defaults: ResNet-20 ratio 4, ResNet-18 CIFAR 20 (520 channels cut to
    512), VGG-Small 32 fusing the stem alone (128 + 512), ImageNet a PReLU after each BN
    and the stem taken before its max-pool."""
    r20 = models.build("resnet20", "ienet+ir2net")
    assert r20.get_layer("recovery_conv").output.shape[-1] == 16  # 64 / 4
    r18 = models.build("resnet18_cifar", "ienet+ir2net")
    assert r18.get_layer("recovery_conv").output.shape[-1] == 26  # ceil(512 / 20)
    assert r18.get_layer("recovery_ghost").output.shape[-1] == 520
    assert _head_output(r18).shape[-1] == 512
    vgg = models.build("vgg_small", "ienet+ir2net")
    assert vgg.get_layer("recovery_concat").output.shape == (None, 4, 4, 128 + 512)
    assert vgg.get_layer("recovery_conv").output.shape[-1] == 16  # 512 / 32
    plain = models.build("resnet18", "ienet", input_shape=(64, 64, 3))
    imagenet = models.build("resnet18", "ienet+ir2net", recovery_ratio=2, input_shape=(64, 64, 3))
    c_cat = 64 + 64 + 128 + 256 + 512
    assert imagenet.get_layer("recovery_concat").output.shape == (None, 2, 2, c_cat)
    assert imagenet.get_layer("recovery_pool0").input is imagenet.get_layer("stem_out").output
    assert isinstance(imagenet.get_layer("recovery_act"), tf.keras.layers.PReLU)
    trainable = sum(int(np.prod(w.shape)) for w in imagenet.trainable_weights)
    trainable -= sum(int(np.prod(w.shape)) for w in plain.trainable_weights)
    assert trainable == head_params(c_cat, 512, 2, prelu=True)
    full = models.build("resnet18", "ienet+ir2net", input_shape=(64, 64, 3))
    assert isinstance(full.get_layer("recovery_prelu"), tf.keras.layers.PReLU)  # IR2Net-A
    np.testing.assert_array_equal(full.get_layer("recovery_prelu").alpha.numpy(), 0.25)


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
