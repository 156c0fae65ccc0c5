"""Registered names: every custom object under `"ienet_tf>" + name` (what a saved file now
carries) and under its bare name (what files of earlier versions carry, and what string
identifiers such as `kernel_quantizer="iee_sign"` resolve through), see
`ienet_tf.registration`."""

import inspect
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import larq as lq
import numpy as np
import pytest
import tensorflow as tf

import ienet_tf
from ienet_tf import layers, quantizers, registration
from ienet_tf.initializers import SpreadThresholds
from ienet_tf.models.blocks import PadChannels, hard_tanh

PACKAGE_DIR = Path(ienet_tf.__file__).parent

#: What ienet-tf registers, written out: it must agree with what the registry holds.
EXPECTED = {
    "ActFakeQuant",
    "BinaryStatsLogger",
    "ElasticLink",
    "IEBinaryConv2D",
    "IEEActivationSign",
    "IEESchedule",
    "IEESign",
    "InformationRestriction",
    "Int8Conv2D",
    "Int8Dense",
    "Int8DepthwiseConv2D",
    "Int8ElasticLink",
    "Int8IEBinaryConv2D",
    "MeanAbsTorchDefault",
    "PadChannels",
    "SliceChannels",
    "SpatialPad",
    "SpreadThresholds",
    "TorchBatchNormalization",
    "TorchSGD",
    "hard_tanh",
}
#: Public Keras-kind classes that are deliberately not registered.
NOT_REGISTERED = {
    "IEEQuantizer",  # the abstract base of IEESign / IEEActivationSign, never saved
    "BatchNormReestimation",  # training callbacks, never part of a saved model
    "PerStepLearningRate",
}
KERAS_KINDS = (
    tf.keras.layers.Layer,
    tf.keras.initializers.Initializer,
    tf.keras.callbacks.Callback,
    tf.keras.optimizers.Optimizer,
    tf.keras.constraints.Constraint,
    tf.keras.regularizers.Regularizer,
)


def _ours() -> dict[str, object]:
    """Every object of ienet_tf in Keras' global custom objects, by its Python name."""
    return {
        obj.__name__: obj
        for obj in tf.keras.utils.get_custom_objects().values()
        if getattr(obj, "__module__", "").startswith("ienet_tf.")
    }


def test_every_registered_object_has_the_prefixed_and_the_bare_name():
    ours = _ours()
    assert set(ours) == EXPECTED
    prefixed = registration.registered()
    assert set(prefixed) == {f"ienet_tf>{name}" for name in EXPECTED}
    custom_objects = tf.keras.utils.get_custom_objects()
    for name, obj in ours.items():
        assert tf.keras.saving.get_registered_name(obj) == f"ienet_tf>{name}"  # what is saved
        assert tf.keras.saving.get_registered_object(f"ienet_tf>{name}") is obj
        assert prefixed[f"ienet_tf>{name}"] is obj
        assert custom_objects[name] is obj  # files of earlier versions, string identifiers


def test_every_public_keras_class_of_the_package_is_registered():
    public = {}
    for module_name, module in list(sys.modules.items()):
        if module_name == "ienet_tf" or module_name.startswith("ienet_tf."):
            for attr in getattr(module, "__all__", ()):
                obj = getattr(module, attr, None)
                if (
                    inspect.isclass(obj)
                    and issubclass(obj, KERAS_KINDS)
                    and obj.__module__.startswith("ienet_tf.")
                ):
                    public[obj.__name__] = obj
    assert set(public) - NOT_REGISTERED <= EXPECTED
    assert NOT_REGISTERED <= set(public)  # the exemptions are not stale
    for name in NOT_REGISTERED:
        assert name not in tf.keras.utils.get_custom_objects()


def test_registration_goes_through_the_one_decorator():
    """No module registers with larq's or Keras' decorators directly (bare-only or
    prefixed-only names), not even one that `import ienet_tf` does not import."""
    direct = ("register_keras_custom_object", "register_alias", "register_keras_serializable")
    offenders = [
        f"{path.relative_to(PACKAGE_DIR)}: {word}"
        for path in PACKAGE_DIR.rglob("*.py")
        if path.name != "registration.py"
        for word in direct
        if word in path.read_text()
    ]
    assert offenders == []


@pytest.mark.parametrize(
    "identifier, expected",
    [
        ("iee_sign", quantizers.IEESign),
        ("IEESign", quantizers.IEESign),
        ("ienet_tf>IEESign", quantizers.IEESign),
        ("iee_act_sign", quantizers.IEEActivationSign),
        ("IEEActivationSign", quantizers.IEEActivationSign),
    ],
)
def test_string_identifiers_resolve_in_plain_larq_layers(identifier, expected):
    layer = lq.layers.QuantConv2D(2, 3, input_quantizer=identifier, kernel_quantizer=identifier)
    assert type(layer.input_quantizer) is expected and type(layer.kernel_quantizer) is expected
    assert type(lq.quantizers.get(identifier)) is expected


def _model() -> tf.keras.Model:
    inputs = tf.keras.Input((6, 6, 3))
    x = layers.IEBinaryConv2D(
        4, 3, k=2, thresholds_initializer=SpreadThresholds(0.5), name="binary"
    )(inputs)
    x = lq.layers.QuantConv2D(
        4, 1, input_quantizer="iee_act_sign", kernel_quantizer="iee_sign", name="plain_larq"
    )(x)
    x = PadChannels(6)(x)
    x = tf.keras.layers.Activation(hard_tanh)(x)
    return tf.keras.Model(inputs, x)


def _config(path) -> dict:
    with zipfile.ZipFile(path) as archive:
        return json.loads(archive.read("config.json"))


def _registered_names(node) -> list[tuple[str | None, str | None]]:
    """(module, registered name) of every serialized object in a config; a function's
    registered name is its `config` (Keras keeps `module: "builtins"` for activations)."""
    found = []
    if isinstance(node, dict):
        if "class_name" in node and "config" in node:
            name = node.get("registered_name")
            if node["class_name"] == "function":
                name = node["config"]
            found.append((node.get("module"), name))
        for value in node.values():
            found.extend(_registered_names(value))
    elif isinstance(node, list):
        for value in node:
            found.extend(_registered_names(value))
    return found


def _bare(source, target) -> None:
    """A copy of a .keras file as an earlier version wrote it: bare registered names."""
    with zipfile.ZipFile(source) as src, zipfile.ZipFile(target, "w") as dst:
        for item in src.infolist():
            data = src.read(item.filename)
            if item.filename == "config.json":
                data = data.replace(b'"ienet_tf>', b'"')
            dst.writestr(item, data)


def test_a_saved_model_carries_the_prefixed_names_and_round_trips(tmp_path, rng):
    model = _model()
    x = rng.normal(size=(2, 6, 6, 3)).astype(np.float32)
    model.save(tmp_path / "model.keras")
    names = _registered_names(_config(tmp_path / "model.keras"))
    assert all(
        str(name).startswith("ienet_tf>")
        for module, name in names
        if str(module).startswith("ienet_tf.")
    )
    assert sorted(name for _, name in names if str(name).startswith("ienet_tf>")) == [
        "ienet_tf>IEBinaryConv2D",
        "ienet_tf>IEEActivationSign",
        "ienet_tf>IEEActivationSign",
        "ienet_tf>IEESign",
        "ienet_tf>IEESign",
        "ienet_tf>PadChannels",
        "ienet_tf>SpreadThresholds",
        "ienet_tf>hard_tanh",
    ]
    restored = tf.keras.models.load_model(tmp_path / "model.keras")
    np.testing.assert_array_equal(restored(x).numpy(), model(x).numpy())
    assert type(restored.get_layer("plain_larq").kernel_quantizer) is quantizers.IEESign


def test_a_file_saved_under_the_old_bare_names_still_loads(tmp_path, rng):
    model = _model()
    x = rng.normal(size=(2, 6, 6, 3)).astype(np.float32)
    model.save(tmp_path / "model.keras")
    _bare(tmp_path / "model.keras", tmp_path / "old.keras")
    names = [name for _, name in _registered_names(_config(tmp_path / "old.keras"))]
    assert "IEBinaryConv2D" in names and "IEESign" in names and "hard_tanh" in names
    assert not any(str(name).startswith("ienet_tf>") for name in names)
    restored = tf.keras.models.load_model(tmp_path / "old.keras")
    np.testing.assert_array_equal(restored(x).numpy(), model(x).numpy())
    assert type(restored.get_layer("binary")).__name__ == "IEBinaryConv2D"
    assert type(restored.get_layer("plain_larq").input_quantizer) is quantizers.IEEActivationSign


LOAD_WITHOUT_IENET_TF = """
import json, sys
import tensorflow as tf, larq
outcome = {}
for name in sys.argv[1:]:
    try:
        model = tf.keras.models.load_model(name)
        outcome[name] = ["loaded " + type(model).__name__]
    except Exception as error:
        outcome[name] = [f"{type(error).__name__}: {error}"]
    outcome[name].append("ienet_tf" in sys.modules)
print(json.dumps(outcome))
"""


@pytest.fixture(scope="module")
def without_ienet_tf(tmp_path_factory) -> dict[str, list]:
    """What loading files of ienet-tf objects gives in a process that does not import
    ienet_tf (one subprocess for every case): `[outcome, whether ienet_tf got imported]`
    by file name (the last one loaded is the one Keras imports ienet_tf for)."""
    from ienet_tf.ir2net import InformationRestriction

    directory = tmp_path_factory.mktemp("without_ienet_tf")
    inputs = tf.keras.Input((6, 6, 3))
    binary = tf.keras.Model(inputs, layers.IEBinaryConv2D(4, 3, k=2)(inputs))
    binary.save(directory / "binary.keras")
    with pytest.warns(UserWarning, match="HDF5 file"):
        binary.save(directory / "binary.h5")
    plain = lq.layers.QuantConv2D(4, 3, input_quantizer="iee_act_sign", kernel_quantizer="iee_sign")
    tf.keras.Model(inputs, plain(inputs)).save(directory / "larq.keras")
    activation = tf.keras.layers.Activation(hard_tanh)(inputs)
    tf.keras.Model(inputs, activation).save(directory / "activation.keras")
    features = tf.keras.layers.Conv2D(4, 3, name="features")(inputs)
    logits = tf.keras.layers.Dense(2)(tf.keras.layers.GlobalAveragePooling2D()(features))
    wrapper = InformationRestriction(tf.keras.Model(inputs, logits), "features")
    wrapper(tf.zeros((1, 6, 6, 3)))
    wrapper.save(directory / "wrapper.keras")
    names = ["binary.keras", "binary.h5", "larq.keras", "activation.keras", "wrapper.keras"]
    done = subprocess.run(
        [sys.executable, "-c", LOAD_WITHOUT_IENET_TF, *names],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=directory,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_an_h5_model_without_ienet_tf_fails_naming_the_package(without_ienet_tf):
    message, imported = without_ienet_tf["binary.h5"]
    assert message.startswith("ValueError: Unknown layer: 'ienet_tf>IEBinaryConv2D'.")
    assert not imported


def test_a_keras_file_of_an_activation_without_ienet_tf_fails_naming_the_package(
    without_ienet_tf,
):
    """A function is saved under its registered name (`config: "ienet_tf>hard_tanh"`),
    and Keras' activations refuse a name they cannot resolve."""
    message, imported = without_ienet_tf["activation.keras"]
    assert message.startswith("TypeError: Error when deserializing class 'Activation'")
    assert "Exception encountered: Unknown activation function" in message
    assert "'config': 'ienet_tf>hard_tanh'" in message and not imported


def test_a_keras_file_without_ienet_tf_fails_on_the_bare_class_name(without_ienet_tf):
    """Keras 2.15 pinned: a `.keras` file loaded without ienet_tf fails, but its message
    cannot name ienet_tf. A layer (or a quantizer in a larq layer) is deserialized with
    the Keras (larq) objects as `module_objects`; an unregistered one comes back as the
    string of its bare class name (never the registered name, never importing its module),
    which then fails where it is called (see `ienet_tf.registration`). If this changes,
    make this test assert that the message names ienet_tf."""
    assert without_ienet_tf["binary.keras"] == ["TypeError: 'str' object is not callable", False]
    assert without_ienet_tf["larq.keras"] == [
        "ValueError: `quantizer` must be `callable` or `None`, but got `<class 'str'>`.",
        False,
    ]


def test_a_top_level_ienet_tf_model_loads_without_ienet_tf(without_ienet_tf):
    """At the top of a file Keras imports the object's module (`ienet_tf.ir2net`, which
    imports the package and registers everything): a reason to keep `module` in the
    saved config."""
    assert without_ienet_tf["wrapper.keras"] == ["loaded InformationRestriction", True]


def test_import_ienet_tf_alone_registers_the_int8_layers_too():
    """A QAT model (`model_int8.keras`) loads after `import ienet_tf`, like every other."""
    code = (
        "import ienet_tf, tensorflow as tf\n"
        "assert tf.keras.utils.get_registered_object('ienet_tf>ActFakeQuant') is not None\n"
        "assert tf.keras.utils.get_registered_object('ienet_tf>Int8IEBinaryConv2D') is not None\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    assert done.returncode == 0, done.stderr[-2000:]
