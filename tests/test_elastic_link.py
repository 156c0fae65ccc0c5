"""Elastic-Link: squeeze / expand / pool and gamma against numpy, in models and on disk."""

import numpy as np
import pytest
import tensorflow as tf

from ienet_tf import layers, models
from ienet_tf.elastic_link import ElasticLink


def numpy_shape_matched(x, filters, strides):
    """Independent SE(x): average pooling (window = stride, 'same' padding: the padding
    is split before/after as in a 'same' conv of that stride and not counted in the mean),
    then group means (squeeze) or whole-tensor repeats (expand)."""
    n, h, _, c = x.shape  # square inputs
    if strides > 1:
        out = -(-h // strides)
        before = max((out - 1) * strides + strides - h, 0) // 2
        starts = [max(i * strides - before, 0) for i in range(out)]
        stops = [min(i * strides - before + strides, h) for i in range(out)]
        pooled = np.zeros((n, out, out, c))
        for i in range(out):
            for j in range(out):
                window = x[:, starts[i] : stops[i], starts[j] : stops[j]]
                pooled[:, i, j] = window.mean(axis=(1, 2))
        x = pooled
    if c > filters:
        group = c // filters
        x = np.stack([x[..., o * group : (o + 1) * group].mean(-1) for o in range(filters)], -1)
    elif c < filters:
        x = np.concatenate([x] * (filters // c), axis=-1)
    return x


@pytest.mark.parametrize(
    "c_in, filters, strides",
    [(16, 16, 1), (16, 32, 2), (64, 16, 1), (32, 8, 2), (8, 24, 1), (12, 4, 3)],
)
def test_link_matches_numpy_reference(rng, c_in, filters, strides):
    x = rng.normal(size=(2, 7, 7, c_in)).astype(np.float32)
    link = ElasticLink(filters, strides)
    link.build(x.shape)
    gamma = rng.uniform(0.5, 2.0, size=filters).astype(np.float32)
    link.gamma.assign(gamma)
    expected = numpy_shape_matched(x.astype(np.float64), filters, strides) * gamma
    got = link(x).numpy()
    assert got.shape == expected.shape == link.compute_output_shape(x.shape)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def test_gamma_shape_init_and_gradient(rng):
    x = tf.constant(rng.normal(size=(3, 4, 4, 8)).astype(np.float32))
    channel, scalar = ElasticLink(16), ElasticLink(16, gamma_mode="scalar")
    for link in (channel, scalar):
        link(x)
        np.testing.assert_array_equal(link.gamma.numpy(), np.ones(link.gamma.shape))
        assert link.trainable_weights == [link.gamma]
    assert channel.gamma.shape == (16,) and scalar.gamma.shape == ()
    # d(sum(gamma * SE(x))) / d gamma = sum of SE(x) over batch and space, per channel.
    with tf.GradientTape() as tape:
        total = tf.reduce_sum(channel(x))
    grad = tape.gradient(total, channel.gamma).numpy()
    expected = numpy_shape_matched(x.numpy().astype(np.float64), 16, 1).sum(axis=(0, 1, 2))
    np.testing.assert_allclose(grad, expected, rtol=1e-5)


@pytest.mark.parametrize(
    "kwargs, shape, message",
    [
        ({"filters": 16}, (1, 4, 4, 12), "one must be a multiple of the other"),
        ({"filters": 0}, None, "`filters` must be an integer >= 1"),
        ({"filters": 8, "strides": 0}, None, "`strides` must be an integer >= 1"),
        ({"filters": 8, "gamma_mode": "pixel"}, None, "`gamma_mode` must be one of"),
    ],
)
def test_bad_arguments_are_named(kwargs, shape, message):
    with pytest.raises(ValueError, match=message):
        ElasticLink(**kwargs).build(shape)


def test_variant_adds_one_link_per_binary_conv():
    plain = models.build("resnet20", "ienet", input_shape=(16, 16, 3))
    linked = models.build("resnet20", "ienet+el", input_shape=(16, 16, 3))
    convs = [layer for layer in linked.layers if isinstance(layer, layers.IEBinaryConv2D)]
    links = [layer for layer in linked.layers if isinstance(layer, ElasticLink)]
    assert len(links) == len(convs) == 18
    # gamma adds C_out parameters per binary conv, nothing else changes.
    extra = sum(conv.filters for conv in convs)
    assert linked.count_params() == plain.count_params() + extra
    # Each link sees the conv's real-valued input and is added to the conv's output.
    for conv, link in zip(convs, links, strict=True):
        assert link.input is conv.input
        assert (link.strides, link.filters) == (conv.strides[0], conv.filters)


def test_link_squeezes_and_expands_in_the_bottleneck():
    model = models.build("resnet26_cifar", "bireal+el", input_shape=(16, 16, 3))
    links = {layer.name: layer for layer in model.layers if isinstance(layer, ElasticLink)}
    assert len(links) == 24
    first = "stage2_block1"
    assert (links[f"{first}_conv1_el"].input_channels, links[f"{first}_conv1_el"].filters) == (
        256,
        128,
    )  # squeeze
    assert links[f"{first}_conv2_el"].strides == 2  # pool
    assert (links[f"{first}_conv3_el"].input_channels, links[f"{first}_conv3_el"].filters) == (
        128,
        512,
    )  # expand


def test_float_variant_rejects_the_link():
    with pytest.raises(ValueError, match="Elastic-Link accompanies binary convolutions"):
        models.build("resnet20", "fp+el")


def test_linked_model_round_trips(tmp_path, rng):
    model = models.build("resnet20", "ienet+el", input_shape=(16, 16, 3))
    for layer in model.layers:
        if isinstance(layer, ElasticLink):
            layer.gamma.assign(rng.uniform(0.1, 2.0, layer.gamma.shape))
    x = rng.normal(size=(4, 16, 16, 3)).astype(np.float32)
    model.save(tmp_path / "el.keras")
    loaded = tf.keras.models.load_model(tmp_path / "el.keras")
    np.testing.assert_allclose(
        loaded.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-5, atol=1e-6
    )
    link = loaded.get_layer("stage1_unit1_conv_el")
    assert isinstance(link, ElasticLink) and link.get_config()["gamma_mode"] == "channel"
