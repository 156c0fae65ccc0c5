"""Binary + int8 export: the QAT model, its numpy reference, the int8 op check on every
model, parity with the LCE interpreter, and the errors a user can fix."""

import json

import numpy as np
import numpy_reference as ref
import pytest
import tensorflow as tf

from ienet_tf import errors, export, int8, layers, models
from ienet_tf.cost import model_cost
from ienet_tf.export import int8_verify as verify
from ienet_tf.models.blocks import hard_tanh
from ienet_tf.models.testing import as_if_trained

# --- numpy references -------------------------------------------------------------------


def np_fake_quant(x, low, high):
    """TensorFlow's FakeQuantWithMinMaxVars (8 bits, narrow_range=False), float32, written
    out from its kernel: nudge the zero point to an integer in [0, 255] so that 0.0 is
    exact, clamp to the nudged range, round half up onto the grid."""
    x = np.asarray(x, np.float32)
    low, high = np.float32(low), np.float32(high)
    quant_min, quant_max = np.float32(0.0), np.float32(255.0)
    scale = (high - low) / (quant_max - quant_min)
    zero_from_min = quant_min - low / scale
    if zero_from_min < quant_min:
        zero = quant_min
    elif zero_from_min > quant_max:
        zero = quant_max
    else:
        zero = np.float32(np.floor(zero_from_min + np.float32(0.5)))  # std::round, >= 0
    nudged_min = (quant_min - zero) * scale
    nudged_max = (quant_max - zero) * scale
    clamped = np.clip(x, nudged_min, nudged_max)
    steps = np.floor((clamped - nudged_min) * (np.float32(1.0) / scale) + np.float32(0.5))
    return (steps * scale + nudged_min).astype(np.float32), (nudged_min, nudged_max, scale)


def np_round_int8(w, axes):
    """Symmetric int8 rounding, one scale max|w| / 127 per index of the other axes."""
    scale = np.abs(w).max(axis=axes, keepdims=True) / 127.0
    return np.round(w / scale) * scale


def np_int8_iebc(x, layer):
    """`Int8IEBinaryConv2D` in numpy: per branch FQ(x + FQ(beta_k)) -> sign -> conv with
    the IEE-binarized kernel, +1 padding -> * lambda_k alpha (+ bias on branch 0) -> FQ;
    the branches summed by a chain of fake-quantized adds."""
    ranges = {
        name: (lo.numpy(), hi.numpy()) for name, (lo, hi) in layer.fake_quant_ranges().items()
    }
    kernel = ref.sign(ref.standardize_per_output_channel(layer.kernel.latent_variable.numpy()))
    alpha = layer.alpha.numpy()
    thresholds = layer.thresholds.numpy()
    lambdas = [np.ones_like(alpha)] + [lam for lam in layer.lambdas.numpy()]
    stride = layer.strides[0]
    out = None
    for k in range(layer.k):
        beta = thresholds[k]
        beta_q, _ = np_fake_quant(beta, min(beta.min(), 0.0), max(beta.max(), 0.0))
        shifted, _ = np_fake_quant(x + beta_q, *ranges[f"shift{k}"])
        y = ref.conv2d(ref.sign(shifted), kernel, stride, "same", 1.0) * lambdas[k] * alpha
        if k == 0:
            y = y + layer.bias.numpy()
        y, _ = np_fake_quant(y, *ranges[f"branch{k}"])
        if out is None:
            out = y
        else:
            out = out + y
            if k < layer.k - 1:
                out, _ = np_fake_quant(out, *ranges[f"sum{k}"])
    return np_fake_quant(out, *ranges["output"])


# --- helpers ----------------------------------------------------------------------------


def _qat(name, variant, shape, rng, batches=2):
    model = as_if_trained(models.build(name, variant, input_shape=shape))
    images = [rng.normal(size=(8, *shape)).astype(np.float32) for _ in range(batches)]
    return model, int8.qat_model(model, images)


@pytest.fixture(scope="module")
def convnet_qat():
    """The demo network's QAT counterpart (K = 2, random weights made to look trained)."""
    tf.keras.backend.clear_session()
    rng = np.random.default_rng(5)
    model = as_if_trained(models.build("convnet", "ienet"))
    logits = model.get_layer("logits")
    logits.bias.assign(rng.normal(0, 0.1, logits.bias.shape))  # a trained, non-zero bias
    qat = int8.qat_model(model, [rng.normal(size=(8, 8, 8, 1)).astype(np.float32)] * 2)
    return model, qat, rng.normal(size=(32, 8, 8, 1)).astype(np.float32)


# --- the fake-quant op and the QAT layers against numpy ----------------------------------


@pytest.mark.parametrize("low, high", [(-1.3, 2.7), (-6.0, 6.0), (0.2, 3.0), (-4.0, -0.5)])
def test_fake_quant_nudges_and_rounds_like_the_numpy_reference(low, high, rng):
    layer = int8.ActFakeQuant()
    x = tf.constant(rng.normal(0, 3, size=(4, 500)).astype(np.float32))
    layer(x)
    (lo, hi), *_ = layer.fake_quant_ranges().values()
    lo.assign(low)
    hi.assign(high)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = layer(x, training=False)
    expected, (nudged_min, nudged_max, scale) = np_fake_quant(x.numpy(), low, high)
    np.testing.assert_allclose(y.numpy(), expected, atol=1e-6)
    assert nudged_min <= 0.0 <= nudged_max
    np.testing.assert_allclose(np.unique(np.round((expected - nudged_min) / scale, 3)) % 1, 0)
    # The straight-through gradient: 1 inside the nudged range, 0 outside.
    inside = (x.numpy() >= nudged_min) & (x.numpy() <= nudged_max)
    np.testing.assert_array_equal(tape.gradient(y, x).numpy(), inside.astype(np.float32))
    assert int8.nudged_range(low, high)[:3] == pytest.approx((nudged_min, nudged_max, scale))


def test_qat_binary_conv_forward_matches_the_numpy_reference(convnet_qat):
    _, qat, x = convnet_qat
    layer = qat.get_layer("conv2")  # stride 2, K = 2, BatchNorm folded in
    assert isinstance(layer, int8.Int8IEBinaryConv2D) and layer.k == 2
    inputs = tf.keras.Model(qat.input, layer.input)(x).numpy()
    actual = layer(inputs, training=False).numpy()
    expected, (_, _, scale) = np_int8_iebc(inputs, layer)
    steps = np.abs(actual - expected) / scale
    # float32 vs float64 sums: an element within ~1e-6 of a rounding boundary may round
    # the other way (one step), nothing else.
    assert np.mean(steps < 1e-3) > 0.999 and steps.max() <= 1.0 + 1e-3


def test_qat_float_conv_folds_its_batchnorm_and_rounds_its_kernel(convnet_qat):
    model, qat, x = convnet_qat
    conv = qat.get_layer("stem_conv")
    inputs = tf.keras.Model(qat.input, conv.input)(x).numpy()
    # the trained model's conv -> BN on the same (quantized) input, weights rounded as the
    # converter stores them after folding the BatchNorm
    bn = model.get_layer("stem_bn")
    a = bn.gamma.numpy() / np.sqrt(bn.moving_variance.numpy() + bn.epsilon)
    folded = model.get_layer("stem_conv").kernel.numpy() * a
    bias = bn.beta.numpy() - a * bn.moving_mean.numpy()
    expected = ref.conv2d(inputs, np_round_int8(folded, (0, 1, 2)), 1, "same") + bias
    np.testing.assert_allclose(conv(inputs).numpy(), expected, rtol=1e-4, atol=1e-4)
    unrounded = ref.conv2d(inputs, folded, 1, "same") + bias
    bn_out = tf.keras.Model(model.input, bn.output)(
        tf.keras.Model(qat.input, qat.get_layer("image_fq").output)(x)
    )
    np.testing.assert_allclose(bn_out.numpy(), unrounded, rtol=1e-4, atol=1e-4)


def test_head_batchnorm_folds_into_the_classifier(rng):
    model = as_if_trained(models.build("resnet20", "ienet", input_shape=(8, 8, 3)))
    qat = int8.qat_model(model, rng.normal(size=(8, 8, 8, 3)).astype(np.float32))
    assert not any(isinstance(layer, tf.keras.layers.BatchNormalization) for layer in qat.layers)
    pooled = rng.normal(size=(5, 64)).astype(np.float32)
    head = tf.keras.Sequential([model.get_layer("head_bn"), model.get_layer("logits")])
    dense = qat.get_layer("logits")
    kernel = dense.kernel.numpy()
    expected = pooled @ np_round_int8(kernel, None) + dense.bias.numpy()
    np.testing.assert_allclose(dense(pooled).numpy(), expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(pooled @ kernel + dense.bias.numpy(), head(pooled), atol=1e-4)


def test_calibration_sets_ranges_to_what_the_tensors_span(convnet_qat, rng):
    _, qat, x = convnet_qat
    fq = qat.get_layer("image_fq")
    used = int8.calibrate(qat, [x[:16], x[16:]])
    assert used == 2
    assert fq.output_range() == pytest.approx((min(x.min(), 0.0), max(x.max(), 0.0)))
    # in training the ranges follow an exponential moving average of the batch range
    _, high = fq.output_range()
    wide = 10 * np.abs(x[:4])
    qat(wide, training=True)
    decay = fq.ema_decay
    assert fq.output_range()[1] == pytest.approx(decay * high + (1 - decay) * wide.max(), 1e-5)
    int8.calibrate(qat, [x[:16], x[16:]])


def test_hard_tanh_output_has_minus_one_zero_and_one_on_the_int8_grid():
    lo, hi, scale, zero = int8.nudged_range(*int8.fake_quant.HARD_TANH_RANGE)
    for value in (-1.0, 0.0, 1.0):
        assert (value / scale) % 1 == pytest.approx(0.0, abs=1e-9)
    assert lo == pytest.approx(-1.0) and hi > 1.0 and -128 <= zero <= 127


def test_qat_model_saves_and_loads_as_keras(convnet_qat, tmp_path):
    _, qat, x = convnet_qat
    qat.save(tmp_path / "qat.keras")
    loaded = tf.keras.models.load_model(tmp_path / "qat.keras")
    np.testing.assert_array_equal(loaded(x, training=False), qat(x, training=False))
    assert [type(layer) for layer in loaded.layers] == [type(layer) for layer in qat.layers]
    ranges = {w.name: w.numpy() for w in qat.weights if w.name.endswith(("min:0", "max:0"))}
    assert ranges and all(w.numpy() == ranges[w.name] for w in loaded.weights if w.name in ranges)
    iee = [layer.kernel_quantizer.q.numpy() for layer in qat.layers if hasattr(layer, "k")]
    assert iee == [
        layer.kernel_quantizer.q.numpy() for layer in loaded.layers if hasattr(layer, "k")
    ]


def test_qat_model_fine_tunes_with_fit(convnet_qat, rng):
    model, _, x = convnet_qat
    qat = int8.qat_model(model, x)
    qat.compile(
        tf.keras.optimizers.Adam(1e-3),
        tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    before = [w.numpy() for w in qat.trainable_weights]
    ranges = qat.get_layer("pool_fq").output_range()
    history = qat.fit(x, rng.integers(0, 10, len(x)), batch_size=8, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    assert all(np.any(w.numpy() != b) for w, b in zip(qat.trainable_weights, before, strict=True))
    assert qat.get_layer("pool_fq").output_range() != ranges  # the EMA moved


# --- the int8 conversion: every model, cheap shapes --------------------------------------

# One variant per model, chosen so that every variant and modifier occurs once or more:
# K = 1 and K = 2, thresholds or none, Elastic-Link, IR²Net's Ghost head (hardtanh,
# depthwise, concatenation) and full head (PReLU), max-pool + standalone BN, bottlenecks,
# projections and the all-int8 float network.
CASES = [
    ("convnet", "iebc", (8, 8, 1)),
    ("convnet", "ienet+ir2net", (8, 8, 1)),
    ("resnet20", "bireal+el", (8, 8, 3)),
    ("resnet18_cifar", "iee", (8, 8, 3)),
    ("vgg_small", "rsign", (8, 8, 3)),
    ("resnet26_cifar", "iee", (8, 8, 3)),
    ("resnet18", "ienet+ir2net", (32, 32, 3)),
    ("resnet34", "fp", (32, 32, 3)),
    ("resnet26", "bireal", (32, 32, 3)),
]


def test_cases_cover_every_model_and_variant():
    assert {name for name, _, _ in CASES} == set(models.available())
    used = {part for _, variant, _ in CASES for part in variant.split("+")}
    assert used == set(models.VARIANTS) | set(models.MODIFIERS)


@pytest.mark.parametrize("name, variant, shape", CASES)
def test_every_model_converts_to_binary_and_int8_only(name, variant, shape, rng):
    tf.keras.backend.clear_session()
    model, qat = _qat(name, variant, shape, rng, batches=1)
    classifier = getattr(model, "classifier", model)
    flatbuffer, ops, _ = export.convert_int8(qat, int8_io=True)
    kinds = verify.op_summary(ops)
    assert kinds["float"] == 0 and kinds["io"] == 0
    count = {}
    for op in ops:
        count[op.name] = count.get(op.name, 0) + 1
        if op.name in ("CONV_2D", "FULLY_CONNECTED", "DEPTHWISE_CONV_2D", "ADD", "MEAN"):
            assert set(op.input_types[:1]) == {"INT8"} and op.output_types == ("INT8",)
        if op.name == "LceBconv2d":
            assert op.output_types == ("INT8",)
        if op.name == "LceQuantize":
            assert op.input_types == ("INT8",)
    assert "LceDequantize" not in count
    # Counted on the trained model, independently of the QAT model: one LceBconv2d per
    # IE-BC branch, an int8 CONV_2D per real-valued Conv2D, one classifier.
    branches = sum(
        layer.k for layer in classifier.layers if isinstance(layer, layers.IEBinaryConv2D)
    )
    assert count.get("LceBconv2d", 0) == branches
    # one LceQuantize per binarized tensor: convolutions of one input share theirs
    assert (0 < count.get("LceQuantize", 0) <= branches) == (branches > 0)
    convs = sum(1 for layer in classifier.layers if type(layer) is tf.keras.layers.Conv2D)
    assert count.get("CONV_2D", 0) == convs
    assert count["FULLY_CONNECTED"] == 1
    sizes = verify.int8_weight_bytes(flatbuffer)
    assert sizes["int8"] > 0 and (sizes["binary"] > 0) == (variant != "fp")


# --- to_tflite(int8=True): sidecar, parity, I/O -----------------------------------------


@pytest.mark.parametrize("int8_io", [True, False])
def test_to_tflite_int8_writes_a_verified_model(convnet_qat, tmp_path, int8_io, verify_calls):
    model, qat, x = convnet_qat
    path = tmp_path / "m.tflite"
    result = export.to_tflite(qat, path, x, int8=True, int8_io=int8_io, min_agreement=0.75)
    assert len(verify_calls) == 1  # ops, parity, sizes and sidecar read one verified parse
    report = json.loads(result.sidecar.read_text())
    assert report["int8"]["op_kinds"]["float"] == 0
    assert report["int8"]["op_kinds"]["io"] == (0 if int8_io else 2)
    assert report["int8"]["io"] == ("int8" if int8_io else "float32")
    assert (
        report["op_histogram"]["LceBconv2d"] == 6 and "LceDequantize" not in report["op_histogram"]
    )
    assert set(report["weight_bytes"]) == {"binary", "int8", "float"}
    assert report["weight_bytes"]["int8"] == model_cost(model).int8_bytes
    # The interpreter by hand: int8 inputs quantized with the sidecar's scale / zero point.
    from larq_compute_engine.tflite.python.interpreter import Interpreter

    interpreter = Interpreter(path.read_bytes())
    keras = qat(x, training=False).numpy()
    if int8_io:
        q = report["int8"]["input_quantization"]
        assert interpreter.input_types[0] == np.int8
        assert interpreter.input_scales[0] == pytest.approx(q["scale"])
        images = np.clip(np.floor(x / q["scale"] + 0.5) + q["zero_point"], -128, 127)
        raw = np.asarray(interpreter.predict(images.astype(np.int8))).astype(np.float32)
        out = report["int8"]["output_quantization"]
        logits = (raw - out["zero_point"]) * out["scale"]
    else:
        assert interpreter.input_types[0] == np.float32
        logits = np.asarray(interpreter.predict(x))
    steps = np.abs(logits - keras) / report["int8"]["output_quantization"]["scale"]
    assert np.mean(steps <= 4) > 0.9 and np.mean(logits.argmax(-1) == keras.argmax(-1)) > 0.9
    assert report["parity"]["within_tolerance"] >= 0.75


def test_trained_run_fine_tunes_and_exports_with_tight_parity(tiny_run, tmp_path):
    """The whole path on a trained model and real images: QAT model, calibration on the
    training split, one fine-tune epoch, int8 export checked against the QAT model."""
    from ienet_tf.train import load_datasets, load_run

    config, model = load_run(tiny_run, "final")
    data = load_datasets(config, ("train", "test"))
    qat = int8.qat_model(model, data["train"], calibration_batches=2)
    qat.compile(
        tf.keras.optimizers.Adam(1e-4),
        tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    qat.fit(data["train"], epochs=1, verbose=0)
    images, _ = next(iter(data["test"]))
    result = export.to_tflite(qat, tmp_path / "int8.tflite", np.asarray(images)[:64], int8=True)
    assert result.parity.within_tolerance >= 0.9 and result.parity.top1_agreement >= 0.95
    assert result.parity.median_lsb <= 1.0
    logits = verify.int8_predict(result.path.read_bytes(), np.asarray(images))
    keras = qat(images, training=False).numpy()
    assert np.mean(logits.argmax(-1) == keras.argmax(-1)) >= 0.95


# --- errors a user can fix ---------------------------------------------------------------


def test_a_layer_without_an_int8_form_is_named():
    inputs = tf.keras.Input((8, 8, 3))
    x = tf.keras.layers.Conv2D(8, 3, name="conv")(inputs)
    x = tf.keras.layers.Activation("softplus", name="odd_activation")(x)
    model = tf.keras.Model(inputs, tf.keras.layers.GlobalAveragePooling2D()(x))
    with pytest.raises(errors.ExportError, match=r"'odd_activation'.*softplus"):
        int8.qat_model(model)


def test_a_float_op_left_in_the_conversion_fails_naming_its_layer(tmp_path, rng):
    """A hand-made QAT model with no fake-quant after one convolution: that conv stays
    float; the export names it and writes nothing."""
    inputs = tf.keras.Input((8, 8, 3))
    x = int8.ActFakeQuant(name="in_fq")(inputs)
    x = int8.Int8Conv2D(8, 3, name="quantized_conv")(x)
    x = int8.ActFakeQuant(name="conv_fq")(x)
    x = int8.Int8Conv2D(8, 3, name="forgotten_conv")(x)  # no fake-quant after it
    x = tf.keras.layers.GlobalAveragePooling2D()(x)
    model = tf.keras.Model(inputs, int8.ActFakeQuant(name="out_fq")(x))
    images = rng.normal(size=(8, 8, 8, 3)).astype(np.float32)
    int8.calibrate(model, images)
    with pytest.raises(errors.ExportError, match=r"float.*'forgotten_conv'"):
        export.to_tflite(model, tmp_path / "m.tflite", images, int8=True)
    assert list(tmp_path.iterdir()) == []


def test_int8_export_of_a_model_without_fake_quants_is_a_clear_error(convnet_qat, tmp_path):
    model, _, x = convnet_qat
    with pytest.raises(errors.UsageError, match=r"no fake-quant layers.*qat_model"):
        export.to_tflite(model, tmp_path / "m.tflite", x, int8=True)
    with pytest.raises(errors.UsageError, match="int8_io=True needs int8=True"):
        export.to_tflite(model, tmp_path / "m.tflite", x, int8_io=True)
    uncalibrated = int8.qat_model(model)
    with pytest.raises(errors.UsageError, match=r"never calibrated.*calibrate"):
        export.to_tflite(uncalibrated, tmp_path / "m.tflite", x, int8=True)
    with pytest.raises(errors.UsageError, match="already an int8 QAT model"):
        int8.qat_model(convnet_qat[1])
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "data, match",
    [
        (np.zeros((4, 16, 16, 1), np.float32), r"shape \(4, 16, 16, 1\)"),
        (np.zeros((8, 8, 1), np.float32), "without the batch axis"),
        (np.full((2, 8, 8, 1), np.nan, np.float32), "NaN"),
        (np.zeros((0, 8, 8, 1), np.float32), "empty batch"),
        ([], "calibration data is empty"),
        (np.array([["a"]]), "dtype"),
    ],
)
def test_wrong_calibration_input_is_named(convnet_qat, data, match):
    qat = convnet_qat[1]
    ranges = [r.numpy() for r in qat.weights if r.name.endswith(("min:0", "max:0"))]
    with pytest.raises(errors.UsageError, match=match):
        int8.calibrate(qat, data)
    # a failed calibration leaves the ranges as they were
    assert [r.numpy() for r in qat.weights if r.name.endswith(("min:0", "max:0"))] == ranges


def test_models_that_cannot_be_int8_are_refused_before_converting(rng):
    release = models.build("convnet", "ienet", compat="release")
    with pytest.raises(errors.ExportError, match="'conv1' pads its binarized input with 0"):
        int8.qat_model(release)
    fresh = models.build("convnet", "ienet")  # thresholds all 0: branches would merge
    qat = int8.qat_model(fresh, rng.normal(size=(4, 8, 8, 1)).astype(np.float32))
    with pytest.raises(errors.ExportError, match="'conv1' has branches with identical"):
        export.convert_int8(qat)


def test_cost_counts_int8_parameter_bytes():
    model = models.build("convnet", "ienet")
    cost = model_cost(model)
    # stem 3x3x1x32 + 32 int32 biases; classifier 128x10 + 10 biases; thresholds 2 x
    # (32 + 64 + 64) at one byte each; the binary convs' BatchNorms fold into LceBconv2d
    expected = (9 * 32 + 4 * 32) + (128 * 10 + 4 * 10) + 2 * (32 + 64 + 64)
    assert cost.int8_bytes == expected
    assert cost.as_dict()["int8_bytes"] == expected
    per_layer = {layer.name: layer.int8_bytes for layer in cost.layers}
    assert per_layer["stem_conv"] == 9 * 32 + 4 * 32 and per_layer["conv1_bn"] == 0


def test_hard_tanh_layers_get_the_fixed_range(rng):
    model = as_if_trained(models.build("resnet20", "bireal", input_shape=(8, 8, 3)))
    qat = int8.qat_model(model, rng.normal(size=(4, 8, 8, 3)).astype(np.float32))
    fixed = [layer for layer in qat.layers if getattr(layer, "fixed_range", None)]
    activations = [
        layer
        for layer in model.layers
        if isinstance(layer, tf.keras.layers.Activation) and layer.activation is hard_tanh
    ]
    assert len(fixed) == len(activations) > 0
    assert all(layer.output_range() == pytest.approx((-1.0, 128 / 127)) for layer in fixed)


@pytest.mark.slow
def test_export_int8_config_switch_trains_the_qat_model_and_the_cli_exports_it(tmp_path, capsys):
    """`--set export.int8=true`: after the float epochs the run fine-tunes and commits its
    int8 QAT model; on a finished run only that phase runs; `ienet export --int8` converts it
    (zero float ops) and `--int8` without the model is a clear error."""
    import json

    from ienet_tf.cli import main
    from ienet_tf.runs import Run

    base = ["train", "--config", "configs/digits_convnet_ienet.yaml", "--verbose", "0"]
    small = ["--set", "train.epochs=1", "--set", "data.subset=128", "--set", "data.test_subset=96"]
    run = tmp_path / "run"
    assert main([*base, "--run", str(run), *small]) == 0
    assert (
        main(["export", "--run", str(run), "--output", str(tmp_path / "x.tflite"), "--int8"]) == 2
    )
    assert "has no int8 model" in capsys.readouterr().err
    int8_args = ["--set", "export.int8=true", "--set", "export.int8_epochs=1"]
    assert main([*base, "--run", str(run), *small, *int8_args]) == 0  # the int8 phase only
    metrics = Run(run).metrics()
    assert metrics["epochs_this_invocation"] == 1 and 0 <= metrics["int8_test_accuracy"] <= 1
    assert (metrics["int8_optimizer"], metrics["int8_learning_rate"]) == ("adam", 1e-5)
    assert Run(run).verified_model_path("int8").name == "model_int8.keras"
    capsys.readouterr()
    # Its BatchNorms are folded: nothing to re-estimate, one line, exit 2.
    evaluate = ["evaluate", "--run", str(run), "--which", "int8"]
    assert main([*evaluate, "--bn-reestimation-batches", "2"]) == 2
    assert "the int8 model of" in capsys.readouterr().err
    out = tmp_path / "m_int8.tflite"
    assert main(["export", "--run", str(run), "--output", str(out), "--int8", "--int8-io"]) == 0
    printed = capsys.readouterr().out
    assert "'float': 0" in printed and "int8 weights" in printed
    sidecar = json.loads((tmp_path / "m_int8.tflite.json").read_text())
    assert sidecar["int8"]["op_kinds"]["float"] == 0
    assert sidecar["weight_bytes"]["int8"] > 0


def test_the_qat_learning_rate_follows_the_optimizer():
    from ienet_tf import config as config_lib
    from ienet_tf.train import int8_learning_rate

    def lr(*overrides):
        return int8_learning_rate(
            config_lib.load(
                "configs/digits_convnet_ienet.yaml", ["train.learning_rate=0.2", *overrides]
            )
        )

    assert lr() == 1e-5  # Adam, the default
    assert lr("export.int8_optimizer=sgd") == pytest.approx(0.002)  # the recipe's LR / 100
    assert lr("export.int8_optimizer=sgd", "export.int8_learning_rate=3e-4") == 3e-4
