"""Pins the private larq / Keras behaviour that `ienet_tf.compat` relies on: an upgrade of
either library that changes it fails here first, with the name of the assumption."""

import logging

import larq as lq
import numpy as np
import pytest
import tensorflow as tf

from ienet_tf import compat


def test_base_quantizer_is_a_keras_layer_with_precision_and_config():
    class Half(compat.BaseQuantizer):
        precision = 1

        def call(self, inputs):
            return super().call(inputs * 0.5)

    quantizer = Half(metrics=["flip_ratio"])
    assert isinstance(quantizer, tf.keras.layers.Layer) and quantizer.precision == 1
    np.testing.assert_allclose(quantizer(tf.constant([2.0, -4.0])).numpy(), [1.0, -2.0])
    assert "metrics" in quantizer.get_config()


@pytest.mark.parametrize(
    "padding, pad_values, native", [("same", 1.0, False), ("same", 0.0, True), ("valid", 1.0, True)]
)
def test_larq_padding_internals(padding, pad_values, native):
    layer = lq.layers.QuantConv2D(4, 3, strides=2, padding=padding, pad_values=pad_values)
    layer.build((None, 6, 6, 2))
    assert compat.larq_pads_natively(layer) is native
    # TensorFlow's "same" at stride 2 on an even input: nothing before, one after.
    paddings = compat.larq_same_padding(layer, tf.zeros((1, 6, 6, 2)))
    assert [list(p) for p in paddings] == [[0, 0], [0, 1], [0, 1], [0, 0]]
    with compat.valid_padding(layer):
        assert layer.padding == "valid"
    assert layer.padding == padding


def test_weight_profiles_expose_their_variable():
    model = tf.keras.Sequential([tf.keras.Input((4, 4, 2)), lq.layers.QuantConv2D(3, 3)])
    layer = model.layers[0]
    profile = lq.models.LayerProfile(layer)
    found = [compat.profiled_variable(w) for w in profile.weight_profiles]
    assert [v is w for v, w in zip(found, (layer.kernel, layer.bias), strict=True)] == [True] * 2


def test_functional_models_and_their_inbound_layers():
    inputs = tf.keras.Input((3,))
    hidden = tf.keras.layers.Dense(4, name="hidden")(inputs)
    other = tf.keras.layers.Dense(4, name="other")(inputs)
    joined = tf.keras.layers.Concatenate(name="joined")([hidden, other])
    model = tf.keras.Model(inputs, joined)
    assert compat.is_functional(model)
    assert not compat.is_functional(tf.keras.layers.Dense(2))
    assert [layer.name for layer in compat.inbound_layers(model.get_layer("joined"))] == [
        "hidden",
        "other",
    ]


def test_record_inputs_wraps_call_and_restores_it():
    layer = tf.keras.layers.Dense(2)
    model = tf.keras.Sequential([tf.keras.Input((3,)), layer])
    x = np.ones((1, 3), np.float32)
    recorded = compat.record_inputs(layer, lambda: model(x))
    np.testing.assert_array_equal(np.asarray(recorded[0]), x)
    assert "call" not in vars(layer)  # the class method is back


LEAK_SCRIPT = """
import gc, json
import psutil, tensorflow as tf, larq as lq
from ienet_tf import compat

def build_and_drop(forget):
    inputs = tf.keras.Input((8, 8, 512))
    outputs = inputs
    for _ in range(3):
        layer = lq.layers.QuantConv2D(
            512, 3, padding="same", input_quantizer="ste_sign", kernel_quantizer="ste_sign"
        )
        outputs = layer(outputs)
    tf.keras.Model(inputs, outputs)
    tf.keras.backend.clear_session()
    forgotten = compat.forget_custom_gradients() if forget else None
    gc.collect()
    return forgotten

def growth(forget):
    before = psutil.Process().memory_info().rss
    counts = [build_and_drop(forget) for _ in range(4)]
    return (psutil.Process().memory_info().rss - before) / 2**20, counts

build_and_drop(True)  # warm-up: TF's first-use allocations
kept, _ = growth(False)
freed, counts = growth(True)
print(json.dumps({"kept": kept, "freed": freed, "counts": counts}))
"""


def test_custom_gradient_registrations_can_be_forgotten_and_free_the_kernels():
    """Each build of a model with larq quantizers leaves its kernels (3 x 9.4 MB here) held
    by TF's gradient registry; forgetting the registrations frees them. In a fresh process,
    so that no other test's memory moves the measurement."""
    import json
    import os
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-c", LEAK_SCRIPT],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["kept"] > 70  # 4 builds x 3 kernels x 9.4 MB kept alive by the registry
    assert result["freed"] < result["kept"] / 2
    assert all(count >= 3 for count in result["counts"])


def test_full_precision_value_reads_a_mixed_layers_variable_in_float32_inside_its_call():
    seen = {}

    class Probe(tf.keras.layers.Layer):
        def build(self, input_shape):
            self.w = self.add_weight(name="w", shape=(2,), initializer="ones")

        def call(self, inputs):
            seen["autocast"] = tf.convert_to_tensor(self.w).dtype
            seen["full"] = compat.full_precision_value(self.w).dtype
            return inputs

    Probe(dtype="mixed_float16")(tf.zeros((1, 2)))
    assert seen == {"autocast": tf.float16, "full": tf.float32}


def test_larq_starved_weights_warning_is_kept_only_where_it_applies(caplog):
    """larq logs "may result in starved weights" per layer for a binary weight quantizer
    without a constraint; IEESign standardizes its weights, so its layers log nothing, and
    every other quantizer keeps larq's warning (what the filter reads from larq's frames)."""
    import ienet_tf.quantizers  # installs the filter

    def warnings_for(**kwargs) -> int:
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="larq.layers_base"):
            lq.layers.QuantConv2D(4, 3, input_quantizer="ste_sign", **kwargs)
        return sum("starved weights" in r.getMessage() for r in caplog.records)

    assert warnings_for(kernel_quantizer="iee_sign") == 0
    assert warnings_for(kernel_quantizer="ste_sign") == 1
    assert warnings_for(kernel_quantizer=ienet_tf.quantizers.IEESign(standardize=False)) == 1
    assert warnings_for(kernel_quantizer="ste_sign", kernel_constraint="weight_clip") == 0
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="larq.layers_base"):
        lq.layers.QuantDepthwiseConv2D(3, depthwise_quantizer="ste_sign")
    assert sum("starved weights" in r.getMessage() for r in caplog.records) == 1
