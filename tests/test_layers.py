import larq as lq
import numpy as np
import numpy_reference as ref
import pytest
import tensorflow as tf

from ienet_tf import errors, layers, quantizers


def _randomize(layer, rng, threshold_scale=0.5):
    """Random thresholds and lambdas, as after training (the inits are 0 and ~0)."""
    if layer.thresholds is not None:
        layer.thresholds.assign(rng.normal(0, threshold_scale, layer.thresholds.shape))
    if layer.lambdas is not None:
        layer.lambdas.assign(rng.uniform(0.2, 1.5, layer.lambdas.shape))
    layer.alpha.assign(rng.uniform(0.5, 2.0, layer.alpha.shape))


def _reference(layer, x, **kwargs):
    thresholds = None if layer.thresholds is None else layer.thresholds.numpy()
    lambdas = None if layer.lambdas is None else layer.lambdas.numpy()
    return ref.iebc(
        x,
        layer.kernel.latent_variable.numpy(),
        layer.alpha.numpy(),
        thresholds,
        lambdas,
        stride=layer.strides[0],
        padding=layer.padding,
        pad_value=layer.pad_values,
        **kwargs,
    )


@pytest.mark.parametrize("k", [1, 2, 3])
@pytest.mark.parametrize("strides", [1, 2])
@pytest.mark.parametrize("padding, pad_values", [("same", 1.0), ("same", 0.0), ("valid", 0.0)])
def test_iebc_forward_matches_numpy_reference(k, strides, padding, pad_values, rng):
    layer = layers.IEBinaryConv2D(
        8, 3, k=k, strides=strides, padding=padding, pad_values=pad_values
    )
    x = rng.normal(size=(2, 7, 6, 5)).astype(np.float32)
    layer.build(x.shape)
    _randomize(layer, rng)
    y = layer(x, training=False).numpy()
    np.testing.assert_allclose(y, _reference(layer, x), rtol=1e-5, atol=1e-4)


def test_scalar_lambdas_broadcast_over_channels(rng):
    layer = layers.IEBinaryConv2D(6, 3, k=3, lambda_mode="scalar")
    x = rng.normal(size=(1, 5, 5, 4)).astype(np.float32)
    layer.build(x.shape)
    assert layer.lambdas.shape == (2, 1)
    _randomize(layer, rng)
    np.testing.assert_allclose(layer(x).numpy(), _reference(layer, x), rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("k", [1, 2, 3])
def test_weights_shapes_and_initialisation(k, rng):
    layer = layers.IEBinaryConv2D(16, 3, k=k)
    layer.build((None, 9, 9, 12))
    names = [w.name.split("/")[-1].split(":")[0] for w in layer.trainable_weights]
    assert names == ["kernel", "alpha", "thresholds"] + (["lambdas"] if k > 1 else [])
    assert layer.kernel.shape == (3, 3, 12, 16)
    assert layer.alpha.shape == (16,)
    assert layer.thresholds.shape == (k, 12)
    np.testing.assert_allclose(
        layer.alpha.numpy(),
        np.abs(layer.kernel.latent_variable.numpy()).mean(axis=(0, 1, 2)),
        rtol=1e-6,
    )
    np.testing.assert_array_equal(layer.thresholds.numpy(), 0.0)
    if k > 1:
        assert layer.lambdas.shape == (k - 1, 16)
        lambdas = layer.lambdas.numpy()
        assert lambdas.min() >= 0.0 and lambdas.max() < 1e-3 and np.unique(lambdas).size > 1
    else:
        assert layer.lambdas is None


def test_shared_kernel_is_binarized_once_per_call(rng, monkeypatch):
    layer = layers.IEBinaryConv2D(4, 3, k=3)
    layer.build((None, 5, 5, 3))
    calls = []
    original = quantizers.IEESign.call
    monkeypatch.setattr(
        quantizers.IEESign, "call", lambda self, x: calls.append(1) or original(self, x)
    )
    layer(rng.normal(size=(1, 5, 5, 3)).astype(np.float32))
    assert len(calls) == 1


@pytest.mark.parametrize("k", [1, 2, 3])
def test_gradients_reach_every_weight(k, rng):
    layer = layers.IEBinaryConv2D(8, 3, k=k)
    x = tf.constant(rng.normal(size=(4, 6, 6, 5)).astype(np.float32))
    layer.build(x.shape)
    _randomize(layer, rng, threshold_scale=0.2)
    with tf.GradientTape() as tape:
        y = layer(x, training=True)
        loss = tf.reduce_sum(y * rng.normal(size=y.shape))
    grads = tape.gradient(loss, layer.trainable_weights)
    assert len(grads) == len(layer.trainable_weights) == (2 + 1 + (k > 1))
    for weight, grad in zip(layer.trainable_weights, grads, strict=True):
        assert grad is not None, weight.name
        assert np.all(np.isfinite(grad.numpy())) and np.any(grad.numpy() != 0), weight.name


def test_bireal_baseline_configuration(rng):
    layer = layers.IEBinaryConv2D(
        8,
        3,
        k=1,
        learnable_thresholds=False,
        kernel_quantizer="magnitude_aware_sign",
        input_quantizer="approx_sign",
    )
    x = rng.normal(size=(2, 6, 6, 4)).astype(np.float32)
    layer.build(x.shape)
    assert layer.thresholds is None and layer.lambdas is None
    assert [w.name.split("/")[-1] for w in layer.trainable_weights] == ["kernel:0", "alpha:0"]
    latent = layer.kernel.latent_variable.numpy()
    scale = np.abs(latent).mean(axis=(0, 1, 2))  # Bi-Real's magnitude-aware sign
    expected = ref.conv2d(ref.sign(x), ref.sign(latent) * scale, 1, "same", 1.0)
    np.testing.assert_allclose(
        layer(x).numpy(), expected * layer.alpha.numpy(), rtol=1e-5, atol=1e-4
    )


@pytest.mark.parametrize(
    "estimator, cls",
    [
        ("iee_act_sign", quantizers.IEEActivationSign),
        ("approx_sign", lq.quantizers.ApproxSign),
        ("ste_sign", lq.quantizers.SteSign),
        ("swish_sign", lq.quantizers.SwishSign),
    ],
)
@pytest.mark.parametrize(
    "kernel_quantizer, kernel_cls",
    [("iee_sign", quantizers.IEESign), ("ste_sign", lq.quantizers.SteSign)],
)
def test_ablation_options_select_quantizers(estimator, cls, kernel_quantizer, kernel_cls, rng):
    layer = layers.IEBinaryConv2D(
        4, 3, k=2, input_quantizer=estimator, kernel_quantizer=kernel_quantizer
    )
    x = rng.normal(size=(1, 5, 5, 3)).astype(np.float32)
    layer.build(x.shape)
    assert type(layer.input_quantizer) is cls
    assert type(layer.kernel_quantizer) is kernel_cls
    _randomize(layer, rng)
    np.testing.assert_allclose(
        layer(x).numpy(),
        _reference(layer, x, standardize=kernel_quantizer == "iee_sign"),
        rtol=1e-5,
        atol=1e-4,
    )


def test_config_round_trip_keeps_every_option():
    layer = layers.IEBinaryConv2D(
        12,
        (3, 1),
        k=3,
        strides=2,
        pad_values=0.0,
        kernel_quantizer=quantizers.IEESign(standardize=False, q=0.2),
        input_quantizer=quantizers.IEEActivationSign(normalize=False),
        thresholds_initializer=tf.keras.initializers.RandomNormal(0.0, 0.1),
        lambda_mode="scalar",
        alpha_regularizer=tf.keras.regularizers.L2(1e-4),
    )
    config = layer.get_config()
    restored = layers.IEBinaryConv2D.from_config(config)
    assert restored.get_config() == config
    assert restored.k == 3 and restored.kernel_size == (3, 1) and restored.pad_values == 0.0
    assert restored.kernel_quantizer.standardize is False
    assert restored.kernel_quantizer.q.numpy() == pytest.approx(0.2)
    assert restored.input_quantizer.normalize is False
    assert isinstance(restored.alpha_regularizer, tf.keras.regularizers.L2)


@pytest.mark.parametrize(
    "kwargs, argument",
    [
        ({"k": 0}, "`k`"),
        ({"k": -2}, "`k`"),
        ({"k": 2.5}, "`k`"),
        ({"k": 2.0}, "`k`"),
        ({"k": "2"}, "`k`"),
        ({"k": True}, "`k`"),
        ({"input_quantizer": "sign"}, "`input_quantizer`"),
        ({"kernel_quantizer": "dorefa_quantizer"}, "`kernel_quantizer`"),
        ({"k": 2, "learnable_thresholds": False}, "`learnable_thresholds=False`"),
        ({"lambda_mode": "per_layer"}, "`lambda_mode`"),
        ({"data_format": "channels_first"}, "`data_format`"),
        ({"padding": "causal"}, "`padding`"),
    ],
)
def test_invalid_arguments_raise_value_error_naming_them(kwargs, argument):
    with pytest.raises(ValueError) as error:
        layers.IEBinaryConv2D(8, 3, **kwargs)
    message = str(error.value)
    assert argument in message
    if "`k`" == argument:
        assert repr(kwargs["k"]) in message and ">= 1" in message
    if argument in ("`input_quantizer`", "`kernel_quantizer`"):
        assert "e.g." in message and repr(next(iter(kwargs.values()))) in message


def test_thresholds_constraint_clips_after_each_step_and_is_a_config_key(tmp_path):
    """A layer argument is a config key with nothing else declared: `model.layer.<arg>`."""
    from pathlib import Path

    from ienet_tf import config as config_lib
    from ienet_tf.train import build_model

    layer = layers.IEBinaryConv2D(4, 3, k=2, thresholds_constraint="weight_clip")
    model = tf.keras.Sequential([tf.keras.Input((6, 6, 3)), layer])
    layer.thresholds.assign(np.full((2, 3), 3.0, np.float32))
    model.compile(tf.keras.optimizers.SGD(0.0), "mse")
    model.fit(np.zeros((2, 6, 6, 3)), np.zeros((2, 6, 6, 4)), verbose=0)
    np.testing.assert_array_equal(layer.thresholds.numpy(), 1.0)  # clipped to [-1, 1]
    restored = layers.IEBinaryConv2D.from_config(layer.get_config())
    assert isinstance(restored.thresholds_constraint, lq.constraints.WeightClip)
    digits = Path(__file__).parents[1] / "configs" / "digits_convnet_ienet.yaml"
    config = config_lib.load(digits, ["model.layer.thresholds_constraint=weight_clip"])
    binary = [lay for lay in build_model(config).layers if isinstance(lay, layers.IEBinaryConv2D)]
    assert binary and all(
        isinstance(lay.thresholds_constraint, lq.constraints.WeightClip) for lay in binary
    )
    with pytest.raises(errors.ConfigError, match=r"model\.layer\.thresholds_constraint: .*'iee'"):
        config_lib.load(
            digits,
            ["model.variant=iee", "model.k=null", "model.layer.thresholds_constraint=weight_clip"],
        )
