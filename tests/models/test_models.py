"""Architectures: parameter counts by independent formula, shapes, binary conv counts."""

import numpy as np
import pytest
import tensorflow as tf

from ienet_tf import layers, models


def conv(k, c_in, c_out):
    return k * k * c_in * c_out


def bn(c):
    return 2 * c  # trainable gamma and beta


def dense(c_in, c_out):
    return c_in * c_out + c_out


def binary_extras(variant, c_in, c_out, k, scalar_lambdas=False):
    """alpha, thresholds and lambdas of one IE-BC layer (nothing for the float variant)."""
    if variant == "fp":
        return 0
    thresholds = k * c_in if variant in ("rsign", "iebc", "ienet") else 0
    lambdas = (k - 1) * (1 if scalar_lambdas else c_out)
    return c_out + thresholds + lambdas


def resnet20_params(variant, k, classes=10, c=3):
    total = conv(3, c, 16) + bn(16)
    c_in = 16
    for width in (16, 32, 64):
        for _ in range(6):
            total += conv(3, c_in, width) + binary_extras(variant, c_in, width, k) + bn(width)
            c_in = width
    return total + bn(64) + dense(64, classes)


def resnet18_cifar_params(variant, k, classes=10, c=3):
    total = conv(3, c, 64) + bn(64)
    c_in = 64
    for stage, width in enumerate((64, 128, 256, 512)):
        for block in range(2):
            total += conv(3, c_in, width) + binary_extras(variant, c_in, width, k, True) + bn(width)
            total += conv(3, width, width) + binary_extras(variant, width, width, k, True)
            total += bn(width)
            if stage > 0 and block == 0:
                # the release's shortcut: ONE branch, no thresholds, no lambdas; alpha only
                total += conv(1, c_in, width) + binary_extras(variant, c_in, width, 1, True)
                total -= c_in if variant in ("rsign", "iebc", "ienet") else 0
                total += bn(width)
            c_in = width
    return total + bn(512) + dense(512, classes)


def vgg_small_params(variant, k, classes=10, c=3, size=32):
    total = conv(3, c, 128) + bn(128)
    c_in = 128
    for width in (128, 256, 256, 512, 512):
        total += conv(3, c_in, width) + binary_extras(variant, c_in, width, k, True) + bn(width)
        c_in = width
    spatial = size // 8
    return total + dense(spatial * spatial * 512, classes)


def bireal_resnet_params(variant, k, blocks, classes=1000, c=3):
    total = conv(7, c, 64) + bn(64)
    c_in = 64
    for stage, (width, num_blocks) in enumerate(zip((64, 128, 256, 512), blocks, strict=True)):
        for unit in range(2 * num_blocks):
            total += conv(3, c_in, width) + binary_extras(variant, c_in, width, k) + bn(width)
            if stage > 0 and unit == 0:
                total += conv(1, c_in, width) + bn(width)  # real-valued downsample
            c_in = width
    return total + bn(512) + dense(512, classes)


def resnet26_params(variant, k, stem_size, classes):
    """Bottleneck [2, 2, 2, 2]: 1x1 (w) -> 3x3 (w) -> 1x1 (4w), binary, each -> BN; a real
    1x1 projection + BN at the first block of every stage (the channel count changes)."""
    total = conv(stem_size, 3, 64) + bn(64)
    c_in = 64
    for width in (64, 128, 256, 512):
        for block in range(2):
            for k_size, a, b in ((1, c_in, width), (3, width, width), (1, width, 4 * width)):
                total += conv(k_size, a, b) + binary_extras(variant, a, b, k) + bn(b)
            if block == 0:
                total += conv(1, c_in, 4 * width) + bn(4 * width)
            c_in = 4 * width
    return total + bn(2048) + dense(2048, classes)


def convnet_params(variant, k, classes=10, c=1):
    total = conv(3, c, 32) + bn(32)
    c_in = 32
    for width in (64, 64, 128):
        total += conv(3, c_in, width) + binary_extras(variant, c_in, width, k) + bn(width)
        c_in = width
    return total + dense(128, classes)


CASES = {
    # name: (formula, input shape, classes, binary convs)
    "resnet20": (resnet20_params, (32, 32, 3), 10, 18),
    "resnet18_cifar": (resnet18_cifar_params, (32, 32, 3), 10, 19),
    "vgg_small": (vgg_small_params, (32, 32, 3), 10, 5),
    "resnet18": (lambda v, k: bireal_resnet_params(v, k, (2, 2, 2, 2)), (64, 64, 3), 1000, 16),
    "resnet34": (lambda v, k: bireal_resnet_params(v, k, (3, 4, 6, 3)), (32, 32, 3), 1000, 32),
    "resnet26": (lambda v, k: resnet26_params(v, k, 7, 1000), (32, 32, 3), 1000, 24),
    "resnet26_cifar": (lambda v, k: resnet26_params(v, k, 3, 10), (32, 32, 3), 10, 24),
    "convnet": (convnet_params, (8, 8, 1), 10, 3),
}
VARIANT_K = [
    ("fp", 1),
    ("bireal", 1),
    ("rsign", 1),
    ("iee", 1),
    ("iebc", 2),
    ("ienet", 2),
    ("ienet", 3),
]


def _trainable(model):
    return int(sum(np.prod(w.shape) for w in model.trainable_weights))


def test_registry_lists_every_model():
    assert set(models.available()) == set(CASES)


@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.parametrize("variant, k", VARIANT_K)
def test_parameter_count_shape_and_binary_convs(name, variant, k):
    formula, shape, classes, binary_convs = CASES[name]
    model = models.build(
        name, variant, k=k if variant in ("iebc", "ienet") else None, input_shape=shape
    )
    assert _trainable(model) == formula(variant, k)
    assert model.output_shape == (None, classes)
    binary = [layer for layer in model.layers if isinstance(layer, layers.IEBinaryConv2D)]
    assert len(binary) == (0 if variant == "fp" else binary_convs)
    # every binary conv has K branches, but the single-branch shortcuts of ResNet-18 CIFAR
    assert all(layer.k == (1 if layer.name.endswith("_down_conv") else k) for layer in binary)
    # First and last layers stay full precision.
    assert type(model.layers[1]) is tf.keras.layers.Conv2D
    assert type(model.layers[-1]) is tf.keras.layers.Dense


@pytest.mark.parametrize(
    "variant, kernel, activation, thresholds",
    [
        ("bireal", "SteSign", "ApproxSign", False),
        ("rsign", "SteSign", "ApproxSign", True),
        ("iebc", "SteSign", "ApproxSign", True),
        ("iee", "IEESign", "ApproxSign", False),
        ("ienet", "IEESign", "IEEActivationSign", True),
    ],
)
def test_variants_pick_their_quantizers(variant, kernel, activation, thresholds):
    model = models.build("resnet20", variant)
    layer = next(lay for lay in model.layers if isinstance(lay, layers.IEBinaryConv2D))
    assert type(layer.kernel_quantizer).__name__ == kernel
    assert type(layer.input_quantizer).__name__ == activation
    assert (layer.thresholds is not None) == thresholds
    assert (layer.kernel_constraint is not None) == (kernel == "SteSign")


@pytest.mark.parametrize(
    "estimator, activation",
    [("approx_sign", "ApproxSign"), ("ste_sign", "SteSign"), ("iee_act_sign", "IEEActivationSign")],
)
def test_input_quantizer_replaces_only_the_activation_backward(estimator, activation):
    """The ablation knob swaps the activation estimator and nothing else: same weights,
    same forward pass (every estimator binarizes with sign), different input gradients."""
    reference = models.build("convnet", "ienet", input_shape=(8, 8, 1))
    model = models.build("convnet", "ienet", input_shape=(8, 8, 1), input_quantizer=estimator)
    binary = [lay for lay in model.layers if isinstance(lay, layers.IEBinaryConv2D)]
    assert {type(lay.input_quantizer).__name__ for lay in binary} == {activation}
    assert {type(lay.kernel_quantizer).__name__ for lay in binary} == {"IEESign"}
    assert all(lay.thresholds is not None and lay.k == 2 for lay in binary)
    assert model.name == "convnet_ienet_k2"
    trainable = [w.name for w in model.trainable_weights]
    assert trainable == [w.name for w in reference.trainable_weights]
    sources = {w.name: w for w in reference.weights}
    for target in model.weights:  # the IEE estimator's q is the only weight not shared
        if target.name in sources:
            target.assign(sources[target.name])
    x = tf.constant(np.random.default_rng(0).normal(size=(4, 8, 8, 1)), tf.float32)
    np.testing.assert_allclose(model(x).numpy(), reference(x).numpy(), rtol=1e-5, atol=1e-5)

    def input_gradient(network):
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = tf.reduce_sum(network(x, training=True) ** 2)
        return tape.gradient(loss, x).numpy()

    same = np.allclose(input_gradient(model), input_gradient(reference), rtol=1e-4, atol=1e-6)
    assert same == (estimator == "iee_act_sign")  # only the backward pass differs
    restored = tf.keras.models.model_from_json(model.to_json(), custom_objects=None)
    assert (
        type(
            next(
                lay for lay in restored.layers if isinstance(lay, layers.IEBinaryConv2D)
            ).input_quantizer
        ).__name__
        == activation
    )


def test_layer_options_are_checked_by_the_layer_and_name_the_option():
    def refused(message, option, **kwargs):
        with pytest.raises(models.LayerOptionError, match=message) as info:
            models.build("resnet20", **{"variant": "ienet", **kwargs})
        assert info.value.option == option

    refused("Unknown `input_quantizer` 'tanh'", "input_quantizer", input_quantizer="tanh")
    refused("'fp' has no IE-BC layers", None, variant="fp", input_quantizer="ste_sign")
    refused(
        "no argument `input_quantizr`; did you mean 'input_quantizer'",
        "input_quantizr",
        input_quantizr="ste_sign",
    )
    refused("`name` is set by the network", "name", name="x")
    refused("`strides` is set by the network", "strides", strides=2)
    refused("Unknown `lambda_mode` 'x'", "lambda_mode", lambda_mode="x")
    refused("`groups`=2: IEBinaryConv2D has no grouped form", "groups", groups=2)


@pytest.mark.parametrize("k, levels", [(2, [-0.5, 0.5]), (3, [-0.5, 0.0, 0.5]), (1, [0.0])])
def test_spread_thresholds_are_evenly_spaced_per_channel(k, levels):
    from ienet_tf.initializers import SpreadThresholds

    values = SpreadThresholds(0.5)((k, 4)).numpy()
    np.testing.assert_allclose(values, np.repeat(np.array(levels)[:, None], 4, axis=1), atol=1e-7)
    serialized = tf.keras.initializers.serialize(SpreadThresholds(0.25))
    restored = tf.keras.initializers.deserialize(serialized)
    assert isinstance(restored, SpreadThresholds) and restored.width == 0.25
    for bad in (-0.1, float("nan"), "wide"):
        with pytest.raises(ValueError, match="`width` must be"):
            SpreadThresholds(bad)


def test_threshold_spread_and_lambda_init_start_the_branches_apart(tmp_path):
    """The release's initialisation (default) gives identical branches; a spread and a
    lambda start them apart, only in the IE-BC layers, and survive save/load."""
    from ienet_tf import inspection
    from ienet_tf.initializers import SpreadThresholds

    release = models.build("convnet", "ienet", input_shape=(8, 8, 1))
    model = models.build(
        "convnet",
        "ienet",
        input_shape=(8, 8, 1),
        thresholds_initializer=SpreadThresholds(0.5),
        lambdas_initializer=tf.keras.initializers.Constant(1.0),
    )
    binary = [lay for lay in model.layers if isinstance(lay, layers.IEBinaryConv2D)]
    for layer in binary:
        np.testing.assert_allclose(layer.thresholds.numpy()[:, 0], [-0.5, 0.5])
        np.testing.assert_array_equal(layer.lambdas.numpy(), 1.0)
    x = np.random.default_rng(0).normal(size=(8, 8, 8, 1)).astype(np.float32)
    assert all(row["differ"] == 0.0 for row in inspection.branch_diversity(release, x))
    apart = inspection.branch_diversity(model, x)
    assert len(apart) == 3 and all(row["differ"] > 0.1 for row in apart)  # x in [-0.5, 0.5)
    assert all(row["lambda"] == 1.0 and row["threshold_gap"] == pytest.approx(1.0) for row in apart)
    model.save(tmp_path / "m.keras")
    restored = tf.keras.models.load_model(tmp_path / "m.keras")
    np.testing.assert_allclose(restored(x).numpy(), model(x).numpy(), rtol=1e-5, atol=1e-5)
    first = next(lay for lay in restored.layers if isinstance(lay, layers.IEBinaryConv2D))
    config = first.get_config()
    assert config["thresholds_initializer"]["class_name"].endswith("SpreadThresholds")
    spread, constant = SpreadThresholds(0.5), tf.keras.initializers.Constant(1.0)
    for kwargs, option, message in (
        (
            {"variant": "iee", "thresholds_initializer": spread},
            "thresholds_initializer",
            "'iee' has none",
        ),
        (
            {"variant": "bireal", "lambdas_initializer": constant},
            "lambdas_initializer",
            "'bireal' with K=1 has one branch",
        ),
        (
            {"k": 1, "lambdas_initializer": constant},
            "lambdas_initializer",
            "'ienet' with K=1 has one branch",
        ),
        (
            {
                "thresholds_initializer": {
                    "class_name": "SpreadThresholds",
                    "config": {"width": 1.5},
                }
            },
            "thresholds_initializer",
            r"must be a number in \[0, 1\]",
        ),
        (
            {"lambdas_initializer": "no_such_initializer"},
            "lambdas_initializer",
            "no_such_initializer",
        ),
    ):
        with pytest.raises(models.LayerOptionError, match=message) as info:
            models.build("convnet", **{"variant": "ienet", **kwargs})
        assert info.value.option == option


def test_resnet20_runs_forward_at_fashion_mnist_size():
    model = models.build("resnet20", "ienet", num_classes=10, input_shape=(28, 28, 1))
    out = model(np.zeros((2, 28, 28, 1), np.float32), training=False)
    assert out.shape == (2, 10)


def test_imagenet_conv_batchnorms_start_at_1e_minus_8():
    model = models.build("resnet18", "ienet", input_shape=(32, 32, 3))
    gammas = {
        layer.name: layer.gamma.numpy()
        for layer in model.layers
        if isinstance(layer, tf.keras.layers.BatchNormalization)
    }
    assert np.allclose(gammas.pop("head_bn"), 1.0)
    assert all(np.allclose(g, 1e-8) for g in gammas.values())


def test_cifar_downsample_shortcut_is_parameter_free_zero_padding():
    pad = models.PadChannels(8)
    x = np.arange(2 * 2 * 2 * 4, dtype=np.float32).reshape(2, 2, 2, 4)
    y = pad(x).numpy()
    np.testing.assert_array_equal(y[..., 2:6], x)
    np.testing.assert_array_equal(y[..., :2], 0)
    np.testing.assert_array_equal(y[..., 6:], 0)
    assert models.PadChannels.from_config(pad.get_config()).channels == 8


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"name": "resnet50"}, "Unknown model 'resnet50'"),
        ({"variant": "xnor"}, "Unknown `variant` 'xnor'"),
        ({"variant": "bireal", "k": 2}, "multi-branch"),
        ({"k": 0}, "`k` must be an integer >= 1"),
        ({"num_classes": 1}, "`num_classes`"),
        ({"input_shape": (32, 32)}, "`input_shape`"),
        ({"name": "resnet18", "input_shape": (16, 16, 3)}, "too small"),
    ],
)
def test_build_rejects_bad_arguments(kwargs, message):
    args = {"name": "resnet20", **kwargs}
    with pytest.raises(ValueError, match=message):
        models.build(args.pop("name"), **args)


def test_model_saves_and_loads(tmp_path):
    model = models.build("resnet20", "ienet", input_shape=(16, 16, 3))
    x = np.random.default_rng(0).normal(size=(2, 16, 16, 3)).astype(np.float32)
    model.save(tmp_path / "m.keras")
    restored = tf.keras.models.load_model(tmp_path / "m.keras")
    np.testing.assert_allclose(restored(x).numpy(), model(x).numpy(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", ["convnet", "resnet20"])
def test_build_returns_the_plain_classifier_for_every_variant(name):
    """Models are only models: no training wrapper, whatever the modifiers (IR²Net's
    restriction is the trainer's business, `train.training_model`)."""
    from ienet_tf.ir2net import InformationRestriction

    shape = (8, 8, 1) if name == "convnet" else (16, 16, 3)
    binary = [base for base, spec in models.VARIANTS.items() if spec.binary]
    names = [*models.VARIANTS, *(f"{b}+el" for b in binary), *(f"{b}+ir2net" for b in binary)]
    names.append("ienet+el+ir2net")
    for variant in names:
        model = models.build(name, variant, input_shape=shape)
        assert isinstance(model, tf.keras.Model) and not isinstance(model, InformationRestriction)
        assert type(model).__name__ == "Functional", (variant, type(model))  # Keras' own
        assert model.output_shape == (None, 10), variant


def test_build_model_passes_the_ablation_options_from_the_config():
    from pathlib import Path

    from ienet_tf import config as config_lib
    from ienet_tf.train import build_model

    options = [
        "input_quantizer=approx_sign",
        "thresholds_initializer={class_name: SpreadThresholds, config: {width: 0.25}}",
        "lambdas_initializer={class_name: Constant, config: {value: 0.5}}",
    ]
    config = config_lib.load(
        Path(__file__).parents[2] / "configs" / "digits_convnet_ienet.yaml",
        [f"model.layer.{option}" for option in options],
    )
    binary = [lay for lay in build_model(config).layers if isinstance(lay, layers.IEBinaryConv2D)]
    assert binary and all(type(lay.input_quantizer).__name__ == "ApproxSign" for lay in binary)
    for layer in binary:
        np.testing.assert_allclose(layer.thresholds.numpy()[:, 0], [-0.25, 0.25])
        np.testing.assert_array_equal(layer.lambdas.numpy(), 0.5)
