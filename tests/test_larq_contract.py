"""larq's own contracts, kept by every public layer and quantizer of ienet-tf.

- `larq.testing_utils.layer_test` (get/set weights, functional and Sequential models, shape
  inference, `from_config`, `train_on_batch`) for each public layer over its meaningful
  configurations;
- larq's quantizer contract (`lq.quantizers.get/serialize/deserialize`,
  `tf.keras.activations.get/serialize/deserialize`, `precision`, metrics) for our
  quantizers, and every binary quantizer larq registers accepted by `IEBinaryConv2D` under
  larq's name;
- `lq.models.summary` on every registry network;
- a property test (hypothesis): constructor arguments drawn for each public layer and
  quantizer survive `get_config` and a `.keras` file, outputs included.
"""

import inspect
import json
import re

import larq as lq
import numpy as np
import pytest
import tensorflow as tf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from larq import quantizers_test as larq_quantizers_test
from larq.testing_utils import layer_test

from ienet_tf import layers, models, quantizers
from ienet_tf.elastic_link import ElasticLink
from ienet_tf.initializers import SpreadThresholds
from ienet_tf.models.blocks import PadChannels, SliceChannels, SpatialPad
from ienet_tf.torch_form import TorchBatchNormalization

IMAGE = (2, 6, 6, 3)
LAYER_CASES = [
    pytest.param(layers.IEBinaryConv2D, {"filters": 4, "kernel_size": 3}, IMAGE, id="ienet"),
    pytest.param(
        layers.IEBinaryConv2D,
        {
            "filters": 4,
            "kernel_size": 3,
            "k": 1,
            "learnable_thresholds": False,
            "kernel_quantizer": "ste_sign",
            "input_quantizer": "approx_sign",
            "kernel_constraint": "weight_clip",
        },
        IMAGE,
        id="bireal",
    ),
    pytest.param(
        layers.IEBinaryConv2D,
        {"filters": 4, "kernel_size": 3, "k": 3, "strides": 2, "lambda_mode": "scalar"},
        IMAGE,
        id="k3-stride2-scalar",
    ),
    pytest.param(
        layers.IEBinaryConv2D,
        {
            "filters": 4,
            "kernel_size": 3,
            "strides": 2,
            "pad_values": 0.0,
            "symmetric_padding": True,
            "use_bias": True,
            "bias_in_branches": True,
        },
        IMAGE,
        id="release",
    ),
    pytest.param(
        layers.IEBinaryConv2D,
        {"filters": 4, "kernel_size": 3, "padding": "valid", "dilation_rate": 2},
        IMAGE,
        id="valid-dilated",
    ),
    pytest.param(ElasticLink, {"filters": 6, "strides": 2}, IMAGE, id="el-expand"),
    pytest.param(ElasticLink, {"filters": 3, "gamma_mode": "scalar"}, IMAGE, id="el-same"),
    pytest.param(TorchBatchNormalization, {"momentum": 0.9, "epsilon": 1e-5}, IMAGE, id="bn"),
    pytest.param(SpatialPad, {"padding": 1, "value": 0.0}, IMAGE, id="pad"),
    pytest.param(PadChannels, {"channels": 5}, IMAGE, id="pad-channels"),
    pytest.param(SliceChannels, {"channels": 2}, IMAGE, id="slice-channels"),
]


@pytest.mark.parametrize("layer_cls, kwargs, input_shape", LAYER_CASES)
def test_larqs_layer_test(layer_cls, kwargs, input_shape):
    layer_test(layer_cls, kwargs=kwargs, input_shape=input_shape)


OUR_QUANTIZERS = [("iee_sign", quantizers.IEESign), ("iee_act_sign", quantizers.IEEActivationSign)]


# larq's own quantizer tests (shipped in the larq package), run on our quantizers as they
# run on larq's: the contract is larq's code, not our copy of it.
@pytest.mark.parametrize("module", [lq.quantizers, tf.keras.activations])
@pytest.mark.parametrize("name, cls", OUR_QUANTIZERS)
def test_larqs_own_serialization_test(module, name, cls):
    assert type(lq.quantizers.get(name)) is cls
    larq_quantizers_test.TestCommonFunctionality().test_serialization(module, name, cls)


@pytest.mark.parametrize("quantizer", OUR_QUANTIZERS)
def test_larqs_own_metrics_test(quantizer):
    larq_quantizers_test.test_metrics(quantizer)


def test_larqs_own_tests_are_the_ones_run():
    """The two tests above call larq's functions; this fails if larq stops shipping them."""
    source = inspect.getsource(larq_quantizers_test)
    assert "def test_serialization(self, module, name, ref_cls)" in source
    assert "def test_metrics(quantizer)" in source


#: Every binary quantizer larq 0.14 registers, under larq's names, and ours.
BINARY_NAMES = [
    "ste_sign",
    "approx_sign",
    "swish_sign",
    "magnitude_aware_sign",
    "ste_heaviside",
    "iee_sign",
    "iee_act_sign",
]


@pytest.mark.parametrize("argument", ["input_quantizer", "kernel_quantizer"])
@pytest.mark.parametrize("name", BINARY_NAMES)
def test_every_binary_quantizer_larq_registers_is_accepted_under_its_name(argument, name):
    layer = layers.IEBinaryConv2D(4, 3, **{argument: name})
    assert type(getattr(layer, argument)) is type(lq.quantizers.get(name))
    assert np.isfinite(layer(np.ones(IMAGE, np.float32)).numpy()).all()
    restored = layers.IEBinaryConv2D.from_config(layer.get_config())
    assert type(getattr(restored, argument)) is type(getattr(layer, argument))


@pytest.mark.parametrize("quantizer", ["ste_tern", "dorefa_quantizer", lq.quantizers.NoOp(8)])
def test_non_binary_larq_quantizers_are_refused_naming_the_argument(quantizer):
    with pytest.raises(ValueError, match="`input_quantizer` must be a binary larq quantizer"):
        layers.IEBinaryConv2D(4, 3, input_quantizer=quantizer)


def test_a_quantizer_larq_cannot_build_from_its_name_is_one_value_error():
    with pytest.raises(ValueError, match="`kernel_quantizer` 'NoOp': larq cannot build it"):
        layers.IEBinaryConv2D(4, 3, kernel_quantizer="NoOp")  # NoOp needs its precision


@pytest.mark.parametrize("name", models.available())
def test_larqs_model_summary_on_every_registry_network(name, capsys):
    shape = (8, 8, 1) if name == "convnet" else (32, 32, 3)
    model = models.build(name, "ienet+el", input_shape=shape, num_classes=10)
    lq.models.summary(model)
    out = capsys.readouterr().out
    ratio = float(re.search(r"Ratio of MACs that are binarized\s+([0-9.]+)", out).group(1))
    assert ratio > 0.5  # larq sees the IE-BC kernels as binary (precision 1)


# -- every argument survives a save ---------------------------------------------------------

_input_quantizers = st.sampled_from(["iee_act_sign", "approx_sign", "ste_sign", "swish_sign"])
_kernel_quantizers = st.sampled_from(["iee_sign", "ste_sign", "magnitude_aware_sign"])


@st.composite
def _iebc_arguments(draw):
    k = draw(st.integers(1, 4))
    thresholds = k > 1 or draw(st.booleans())
    use_bias = draw(st.booleans())
    arguments = {
        "filters": draw(st.integers(1, 6)),
        "kernel_size": draw(st.sampled_from([1, 3, (1, 3)])),
        "k": k,
        "strides": draw(st.sampled_from([1, 2])),
        "padding": draw(st.sampled_from(["same", "valid"])),
        "pad_values": draw(st.sampled_from([0.0, 1.0])),
        "symmetric_padding": draw(st.booleans()),
        "use_bias": use_bias,
        "bias_in_branches": use_bias and draw(st.booleans()),
        "input_quantizer": draw(_input_quantizers),
        "kernel_quantizer": draw(_kernel_quantizers),
        "learnable_thresholds": thresholds,
        "lambda_mode": draw(st.sampled_from(layers.LAMBDA_MODES)),
        "kernel_constraint": draw(st.sampled_from([None, "weight_clip"])),
        "activation": draw(st.sampled_from([None, "relu"])),
    }
    if thresholds:
        width = draw(st.floats(0.0, 1.0, allow_nan=False))
        arguments["thresholds_initializer"] = SpreadThresholds(width)
        arguments["thresholds_constraint"] = draw(st.sampled_from([None, "weight_clip"]))
    if k > 1:
        value = draw(st.floats(0.1, 2.0, allow_nan=False))
        arguments["lambdas_initializer"] = tf.keras.initializers.Constant(value)
    return arguments


def _layer_cases():
    return st.one_of(
        st.tuples(st.just(layers.IEBinaryConv2D), _iebc_arguments()),
        st.tuples(
            st.just(ElasticLink),
            st.fixed_dictionaries(
                {
                    "filters": st.sampled_from([1, 3, 6, 9]),  # divides or is divided by 3
                    "strides": st.sampled_from([1, 2]),
                    "gamma_mode": st.sampled_from(["channel", "scalar"]),
                }
            ),
        ),
        st.tuples(
            st.just(TorchBatchNormalization),
            st.fixed_dictionaries(
                {
                    "momentum": st.floats(0.0, 0.99, allow_nan=False),
                    "epsilon": st.floats(1e-6, 1e-2, allow_nan=False),
                    "center": st.booleans(),
                    "scale": st.booleans(),
                }
            ),
        ),
        st.tuples(
            st.just(SpatialPad),
            st.fixed_dictionaries(
                {"padding": st.integers(0, 2), "value": st.floats(-1.0, 1.0, allow_nan=False)}
            ),
        ),
    )


def _plain(config: dict) -> dict:
    """`config` as a `.keras` file stores it (JSON: tuples become lists)."""
    return json.loads(json.dumps(config))


@settings(
    max_examples=12,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(case=_layer_cases())
def test_every_drawn_layer_argument_survives_get_config_and_a_keras_file(case, tmp_path):
    layer_cls, arguments = case
    inputs = tf.keras.Input(IMAGE[1:])
    layer = layer_cls(**arguments)
    model = tf.keras.Model(inputs, layer(inputs))
    rng = np.random.default_rng(0)
    # positive: q, variances; away from the initial values, so that weights are compared
    model.set_weights([rng.uniform(0.1, 1.0, w.shape) for w in model.get_weights()])
    twin = layer_cls.from_config(layer.get_config())
    twin.build((None, *IMAGE[1:]))
    assert _plain(twin.get_config()) == _plain(layer.get_config())
    path = tmp_path / f"{layer.name}.keras"
    model.save(path)
    restored = tf.keras.models.load_model(path)
    again = restored.layers[-1]
    assert type(again) is layer_cls and _plain(again.get_config()) == _plain(layer.get_config())
    x = rng.normal(size=IMAGE).astype(np.float32)
    np.testing.assert_array_equal(restored(x).numpy(), model(x).numpy())


@settings(max_examples=12, deadline=None, derandomize=True)
@given(
    cls=st.sampled_from([quantizers.IEESign, quantizers.IEEActivationSign]),
    q=st.floats(1e-3, 1e3, allow_nan=False),
    flag=st.booleans(),
)
def test_every_drawn_quantizer_argument_survives_serialization(cls, q, flag):
    argument = "standardize" if cls is quantizers.IEESign else "normalize"
    quantizer = cls(q=q, **{argument: flag})
    restored = lq.quantizers.deserialize(lq.quantizers.serialize(quantizer))
    assert type(restored) is cls and restored.get_config() == quantizer.get_config()
    assert restored.get_config()["q"] == pytest.approx(q, rel=1e-6)  # stored as float32
    x = tf.constant(np.linspace(-2, 2, 24).reshape(2, 3, 4), tf.float32)
    np.testing.assert_array_equal(restored(x).numpy(), quantizer(x).numpy())


def test_an_argument_the_layer_cannot_honour_is_refused_not_dropped():
    with pytest.raises(ValueError, match="`groups`=2"):
        layers.IEBinaryConv2D(4, 3, groups=2)
