import argparse
import contextlib
import io
import json
import math

import larq as lq
import matplotlib.image
import numpy as np
import numpy_reference as ref
import pytest
import tensorflow as tf
import yaml

from ienet_tf import callbacks, errors, inspection, layers
from ienet_tf.cli import report as report_cli
from ienet_tf.report import FIGURE_FILES, figures, write_report
from ienet_tf.runs import Report


def _numpy_entropy(p: float) -> float:
    return 0.0 if p in (0.0, 1.0) else -p * math.log2(p) - (1 - p) * math.log2(1 - p)


def _model(nested: bool = False) -> tf.keras.Model:
    """float conv -> IE-BC (k=3, nonzero thresholds) -> Bi-Real-style conv -> dense."""
    inputs = tf.keras.Input((6, 6, 2))
    x = tf.keras.layers.Conv2D(4, 3, padding="same", name="stem")(inputs)
    first = layers.IEBinaryConv2D(
        8,
        3,
        k=3,
        thresholds_initializer=tf.keras.initializers.RandomUniform(-0.5, 0.5),
        name="iebc",
    )
    if nested:
        block_in = tf.keras.Input((6, 6, 4))
        x = tf.keras.Model(block_in, first(block_in), name="block")(x)
    else:
        x = first(x)
    x = lq.layers.QuantConv2D(
        8, 3, padding="same", input_quantizer="ste_sign", kernel_quantizer="ste_sign", name="ste"
    )(x)
    x = tf.keras.layers.GlobalAveragePooling2D()(x)
    model = tf.keras.Model(inputs, tf.keras.layers.Dense(3, name="logits")(x))
    model.compile("adam", tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


def _data(n: int = 16):
    rng = np.random.default_rng(0)
    return rng.normal(size=(n, 6, 6, 2)).astype(np.float32), rng.integers(0, 3, n)


# --- stats ---------------------------------------------------------------------------------


def test_entropy_against_numpy():
    balanced = np.array([1.0, -1.0] * 8).reshape(2, 2, 2, 2)
    assert inspection.binary_weight_entropy(balanced) == pytest.approx(1.0)
    assert inspection.binary_weight_entropy(np.ones((3, 3, 2, 4))) == 0.0
    assert inspection.binary_weight_entropy(-np.ones((3, 3, 2, 4))) == 0.0
    quarter = -np.ones((4, 4))
    quarter[0] = 1.0  # p = 1/4
    assert inspection.binary_weight_entropy(quarter) == pytest.approx(_numpy_entropy(0.25))
    assert _numpy_entropy(0.25) == pytest.approx(0.811278, abs=1e-6)
    # Channel 0 balanced, channel 1 all +1: channel mean (1 + 0) / 2, kernel p = 3/4.
    kernel = np.stack([np.array([1.0, -1.0, 1.0, -1.0]), np.ones(4)], axis=-1)
    assert inspection.channel_weight_entropy(kernel) == pytest.approx(0.5)
    assert inspection.binary_weight_entropy(kernel) == pytest.approx(_numpy_entropy(0.75))
    with pytest.raises(ValueError, match=r"\+1 and -1"):
        inspection.binary_weight_entropy(np.array([0.5, -1.0]))


def test_quantization_error_against_numpy(rng):
    latent = rng.normal(size=(3, 3, 4, 5))
    binary = np.where(latent >= 0, 1.0, -1.0)
    expected = 0.0
    for c in range(5):
        w = latent[..., c].reshape(-1)
        alpha = np.abs(w).sum() / w.size
        expected += sum((wi - alpha * (1.0 if wi >= 0 else -1.0)) ** 2 for wi in w)
    expected /= latent.size
    assert inspection.quantization_error(latent, binary) == pytest.approx(expected, rel=1e-12)
    assert inspection.quantization_error(latent, binary, alpha=2.0) == pytest.approx(
        np.mean((latent - 2.0 * binary) ** 2)
    )
    two_spikes = 0.7 * binary
    assert inspection.quantization_error(two_spikes, binary) == pytest.approx(0.0, abs=1e-15)
    with pytest.raises(ValueError, match="same shape"):
        inspection.quantization_error(latent, binary[..., :4])


def test_flip_ratio():
    previous = np.ones((2, 5))
    current = previous.copy()
    current[0, :3] = -1.0
    assert inspection.flip_ratio(previous, current) == pytest.approx(0.3)
    assert inspection.flip_ratio(current, current) == 0.0
    assert inspection.flip_ratio(previous, -previous) == 1.0
    with pytest.raises(ValueError, match="same shape"):
        inspection.flip_ratio(previous, current[:1])


def test_latent_and_binary_kernels_of_the_layers():
    model = _model()
    assert [layer.name for layer in inspection.binary_kernel_layers(model)] == ["iebc", "ste"]
    iebc, ste = model.get_layer("iebc"), model.get_layer("ste")
    expected = ref.standardize_per_output_channel(iebc.kernel.latent_variable.numpy())
    np.testing.assert_allclose(inspection.latent_standardized(iebc), expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(inspection.binary_kernel(iebc), ref.sign(expected))
    raw = ste.kernel.latent_variable.numpy()
    np.testing.assert_array_equal(inspection.latent_standardized(ste), raw)
    np.testing.assert_array_equal(inspection.binary_kernel(ste), ref.sign(raw))
    assert inspection.layer_k(iebc) == 3 and inspection.layer_k(ste) == 1
    np.testing.assert_array_equal(inspection.layer_thresholds(ste), np.zeros((1, 8)))
    with pytest.raises(ValueError, match="not a binary layer"):
        inspection.latent_standardized(model.get_layer("stem"))


def test_gradient_norms_are_the_tapes_per_group_and_leave_the_model_unchanged():
    inputs = tf.keras.Input((6, 6, 2))
    x = tf.keras.layers.BatchNormalization(name="stem_bn")(
        tf.keras.layers.Conv2D(4, 3, padding="same", name="stem")(inputs)
    )
    x = layers.IEBinaryConv2D(8, 3, k=2, name="iebc")(x)
    x = tf.keras.layers.GlobalAveragePooling2D()(tf.keras.layers.BatchNormalization()(x))
    model = tf.keras.Model(inputs, tf.keras.layers.Dense(3, name="logits")(x))
    x_data, y_data = _data(8)
    state = [v.numpy().copy() for v in model.non_trainable_variables]
    rows = inspection.gradient_norms(model, [(x_data, y_data)], [0.05, 4.0])
    for row in rows:  # against the tape at that q, group by group
        for quantizer in callbacks.iee_quantizers(model):
            quantizer.q.assign(row["q"])
        with tf.GradientTape() as tape:
            loss = tf.keras.losses.sparse_categorical_crossentropy(
                y_data, model(x_data, training=True), from_logits=True
            )
            loss = tf.reduce_mean(loss)
        grads = dict(
            zip(
                [v.ref() for v in model.trainable_variables],
                tape.gradient(loss, model.trainable_variables),
                strict=True,
            )
        )
        iebc = model.get_layer("iebc")

        def norm(*variables, grads=grads):
            return math.sqrt(sum(float(tf.reduce_sum(grads[v.ref()] ** 2)) for v in variables))

        assert row["groups"]["thresholds"] == pytest.approx(norm(iebc.thresholds), rel=1e-4)
        assert row["groups"]["lambdas"] == pytest.approx(norm(iebc.lambdas), rel=1e-4)
        assert row["groups"]["binary kernels"] == pytest.approx(norm(iebc.kernel), rel=1e-4)
        assert row["global"] == pytest.approx(norm(*model.trainable_variables), rel=1e-4)
        assert set(row["groups"]) == {
            "binary kernels",
            "thresholds",
            "lambdas",
            "alpha",
            "batch norm",
            "float",
        }
        for v, before in zip(model.non_trainable_variables, state, strict=True):
            v.assign(before)
    # Only the surrogate gradient depends on q: a sharper estimator, another gradient.
    assert rows[0]["global"] != pytest.approx(rows[1]["global"], rel=1e-3)
    # q and the BatchNorm statistics are restored.
    for v, before in zip(model.non_trainable_variables, state, strict=True):
        np.testing.assert_array_equal(v.numpy(), before)
    with pytest.raises(ValueError, match="no IEE quantizer"):
        inspection.gradient_norms(
            tf.keras.Sequential([tf.keras.layers.Dense(2)]), [(x_data, y_data)], [1]
        )


def test_binarization_disagreement_against_numpy_and_state_unchanged():
    """Train- vs inference-mode binary codes of an IE-BC layer fed by a BatchNorm whose
    moving statistics are shifted from the batch's: counted in numpy from the BN formula."""
    inputs = tf.keras.Input((6, 6, 2))
    conv = tf.keras.layers.Conv2D(4, 3, padding="same", name="stem")
    bn = tf.keras.layers.BatchNormalization(name="stem_bn", epsilon=1e-3)
    iebc = layers.IEBinaryConv2D(
        8,
        3,
        k=2,
        thresholds_initializer=tf.keras.initializers.RandomUniform(-0.5, 0.5, seed=1),
        name="iebc",
    )
    x = iebc(bn(conv(inputs)))
    x = tf.keras.layers.GlobalAveragePooling2D()(x)
    model = tf.keras.Model(inputs, tf.keras.layers.Dense(3, name="logits")(x))
    images, _ = _data(16)
    c = conv(images).numpy()
    mean, var = c.mean((0, 1, 2)), c.var((0, 1, 2))
    bn.moving_mean.assign(mean + np.array([0.3, -0.2, 0.0, 0.1], np.float32))
    bn.moving_variance.assign(var * np.array([1.5, 1.0, 0.7, 1.0], np.float32))
    state = [v.numpy().copy() for v in model.non_trainable_variables]

    def code(m, v):
        x = bn.gamma.numpy() * (c - m) / np.sqrt(v + 1e-3) + bn.beta.numpy()
        return (x[..., None, :] + iebc.thresholds.numpy()) >= 0  # (N, H, W, K, C)

    expected = np.mean(code(mean, var) != code(bn.moving_mean.numpy(), bn.moving_variance.numpy()))
    rows = inspection.binarization_disagreement(model, images)
    assert [row["layer"] for row in rows] == ["iebc"] and rows[0]["k"] == 2
    assert 0.05 < expected < 0.5  # the shift flips a real share of the codes
    assert rows[0]["disagreement"] == pytest.approx(expected, abs=2 / c.size)
    for v, before in zip(model.non_trainable_variables, state, strict=True):
        np.testing.assert_array_equal(v.numpy(), before)
    # Moving statistics equal to the batch's: the two passes give the same codes.
    bn.moving_mean.assign(mean)
    bn.moving_variance.assign(var)
    assert inspection.binarization_disagreement(model, images)[0]["disagreement"] < 1e-3
    with pytest.raises(ValueError, match="no binary conv"):
        inspection.binarization_disagreement(
            tf.keras.Sequential([tf.keras.layers.Dense(2)]), images
        )


def test_branch_diversity_against_numpy():
    """Branch k's codes against branch 1's, counted in numpy from the layer's input (the
    image itself: the IE-BC layer is the first), its thresholds and its lambdas."""
    inputs = tf.keras.Input((6, 6, 2))
    iebc = layers.IEBinaryConv2D(5, 3, k=3, name="iebc")
    single = layers.IEBinaryConv2D(4, 3, k=1, name="single")  # one branch: no row
    x = tf.keras.layers.GlobalAveragePooling2D()(single(iebc(inputs)))
    model = tf.keras.Model(inputs, tf.keras.layers.Dense(2)(x))
    images, _ = _data(8)
    thresholds = np.array([[0.0, 0.1], [0.5, 0.1], [-0.3, 0.4]], np.float32)
    iebc.thresholds.assign(thresholds)
    iebc.lambdas.assign(np.array([[0.5, -0.5, 1.0, 0.0, 0.0], [0.1] * 5], np.float32))
    rows = inspection.branch_diversity(model, images)
    assert [(row["layer"], row["k"], row["branch"]) for row in rows] == [
        ("iebc", 3, 2),
        ("iebc", 3, 3),
    ]
    first = (images + thresholds[0]) >= 0
    for row, branch in zip(rows, (1, 2), strict=True):
        expected = np.mean(((images + thresholds[branch]) >= 0) != first)
        assert 0 < expected < 1
        assert row["differ"] == pytest.approx(expected)
        assert row["threshold_gap"] == pytest.approx(
            np.abs(thresholds[branch] - thresholds[0]).mean()
        )
    assert [row["lambda"] for row in rows] == pytest.approx([0.4, 0.1])
    # the release's initialisation: thresholds all 0, the branches are one branch
    iebc.thresholds.assign(np.zeros_like(thresholds))
    assert [row["differ"] for row in inspection.branch_diversity(model, images)] == [0.0, 0.0]
    plain = tf.keras.Sequential([tf.keras.Input((6, 6, 2)), layers.IEBinaryConv2D(2, 3, k=1)])
    assert inspection.branch_diversity(plain, images) == []
    dense = tf.keras.Sequential([tf.keras.Input((6, 6, 2)), tf.keras.layers.Dense(2)])
    assert inspection.branch_diversity(dense, images) == []  # no binary layer: nothing to compare
    from ienet_tf.report.writer import _branches_markdown

    assert _branches_markdown(plain, None, "left out") == ""  # no IE-BC: no section at all
    assert _branches_markdown(model, None, "left out").endswith("Table left out.\n")


# --- figures -------------------------------------------------------------------------------


def test_surrogate_figure_data_is_the_formula(tmp_path):
    path = tmp_path / "s.png"
    x = np.array([-1.5, -0.3, -0.05, 0.0, 0.02, 0.1, 0.7, 1.9])
    data = figures.iee_surrogate(-2.0, 1.0, path, stages=(0, 0.5, 1.0), x=x)
    assert path.stat().st_size > 0
    for curve, stage in zip(data["stages"], (0, 0.5, 1.0), strict=True):
        q = 10.0 ** (-2.0 + 3.0 * stage)
        r = max(1.0 / q, 1.0)
        assert curve["q"] == pytest.approx(q) and curve["r"] == pytest.approx(r)
        edge = 2 * math.sqrt(3) / (3 * q)
        for xi, f, df in zip(x, curve["F"], curve["dF"], strict=True):
            inside = r * (math.sqrt(3) * q * xi - np.sign(xi) * 0.75 * q * q * xi * xi)
            assert f == pytest.approx(inside if abs(xi) < edge else r * np.sign(xi), abs=1e-12)
            assert df == pytest.approx(r * max(0.0, math.sqrt(3) * q - 1.5 * q * q * abs(xi)))
    # F is continuous at the edge |x| = 2 sqrt3 / (3q).
    for q in (0.05, 1.0, 10.0):
        r, edge = max(1 / q, 1.0), 2 * math.sqrt(3) / (3 * q)
        for side in (-1.0, 1.0):
            near = side * edge * np.array([1 - 1e-9, 1 + 1e-9])
            left, right = figures.surrogate(near, q, r)
            assert left == pytest.approx(right, abs=1e-6) and right == pytest.approx(side * r)
    with pytest.raises(ValueError, match="stages"):
        figures.iee_surrogate(-2.0, 1.0, path, stages=(1.5,))


def test_weight_distribution_data_is_the_models_weights(tmp_path):
    model = _model()
    path = tmp_path / "w.png"
    data = figures.weight_distributions(model, path, epoch_label="epoch 0")
    assert list(data) == ["epoch 0"] and list(data["epoch 0"]) == ["iebc", "ste"]
    for name, values in data["epoch 0"].items():
        latent = model.get_layer(name).kernel.latent_variable.numpy()
        if name == "iebc":
            latent = ref.standardize_per_output_channel(latent)
        np.testing.assert_allclose(values, latent.reshape(-1), rtol=1e-5, atol=1e-6)
    other = _model()  # another checkpoint: overlaid, each with its own weights
    both = figures.weight_distributions({"a.keras": model, "b.keras": other}, path)
    assert list(both) == ["a.keras", "b.keras"]
    np.testing.assert_array_equal(both["a.keras"]["ste"], data["epoch 0"]["ste"])
    assert not np.allclose(both["a.keras"]["ste"], both["b.keras"]["ste"])
    assert matplotlib.image.imread(path).ndim == 3
    with pytest.raises(ValueError, match="no binary layers"):
        figures.weight_distributions(tf.keras.Sequential([tf.keras.layers.Dense(2)]), path)


@pytest.mark.parametrize("nested", [False, True])
def test_threshold_activations_are_sign_of_input_plus_thresholds(tmp_path, nested):
    model = _model(nested)
    image = _data(1)[0][0]
    shown = figures.threshold_activations(model, image, tmp_path / "t.png", channel=1)
    assert shown["layer"] == "iebc"
    # The input is the stem's output for this image, computed independently.
    stem = tf.keras.Model(model.inputs, model.get_layer("stem").output)
    np.testing.assert_allclose(shown["input"], stem(image[None])[0].numpy(), rtol=1e-5, atol=1e-6)
    thresholds = model.get_layer("block" if nested else "iebc")
    if nested:
        thresholds = thresholds.get_layer("iebc")
    beta = thresholds.thresholds.numpy()
    np.testing.assert_allclose(shown["thresholds"], beta)
    assert shown["binary"].shape == (3, 6, 6, 4)
    for k in range(3):
        expected = np.where(shown["input"] + beta[k] >= 0, 1.0, -1.0)
        np.testing.assert_array_equal(shown["binary"][k], expected)
    assert len({shown["binary"][k].tobytes() for k in range(3)}) > 1  # thresholds differ
    assert "call" not in vars(thresholds)  # the recording patch is gone


def test_entropy_table_rows(tmp_path):
    model = _model()
    rows = figures.entropy_table(model, tmp_path / "e.png")
    assert [(r.name, r.k) for r in rows] == [("iebc", 3), ("ste", 1)]
    binary = ref.sign(model.get_layer("ste").kernel.latent_variable.numpy())
    p = float(np.mean(binary > 0))
    assert rows[1].plus_fraction == pytest.approx(p)
    assert rows[1].entropy_bits == pytest.approx(_numpy_entropy(p))
    assert rows[1].weights == binary.size
    assert (tmp_path / "e.png").stat().st_size > 0


def test_k_sweep_from_csv(tmp_path):
    csv_path = tmp_path / "trials.csv"
    csv_path.write_text(
        "trial_id,k,t_min,val_accuracy\n0,1,-2,0.8\n1,1,-1,0.9\n2,2,-2,0.95\n3,3,-2,\n"
    )
    points = figures.k_sweep(csv_path, tmp_path / "k.png")
    assert [(p.k, p.runs) for p in points] == [(1, 2), (2, 1)]
    assert points[0].error == pytest.approx(0.15)
    assert (points[0].error_min, points[0].error_max) == pytest.approx((0.1, 0.2))
    assert points[1].error == pytest.approx(0.05)
    assert matplotlib.image.imread(tmp_path / "k.png").shape[2] in (3, 4)


def test_k_sweep_from_tuner_trials(tmp_path):
    """`ienet tune`'s trials.csv: `objective` is the validation accuracy unless the search's
    config.yaml says otherwise; unfinished trials are left out."""
    trials = tmp_path / "trials.csv"
    trials.write_text(
        "trial,status,k,t_min,t_max,objective\n"
        "0,COMPLETED,2,-2,1,0.75\n1,COMPLETED,4,-2,1,0.5\n2,COMPLETED,4,-1,1,0.7\n"
        "3,FAILED,1,-2,1,\n4,RUNNING,2,-2,1,0.1\n"
    )
    (tmp_path / "config.yaml").write_text(yaml.safe_dump({"tune": {"objective": "val_accuracy"}}))
    points = figures.k_sweep_points(trials)
    assert [(p.k, p.runs) for p in points] == [(2, 1), (4, 2)]
    assert [p.error for p in points] == pytest.approx([0.25, 0.4])
    (tmp_path / "config.yaml").write_text(yaml.safe_dump({"tune": {"objective": "val_loss"}}))
    with pytest.raises(ValueError, match="not an accuracy"):
        figures.k_sweep_points(trials)


def _fake_run(path, model: dict, accuracy: float) -> None:
    path.mkdir(parents=True)
    (path / "config.yaml").write_text(yaml.safe_dump({"model": model, "data": {"name": "x"}}))
    (path / "metrics.json").write_text(json.dumps({"test_accuracy": accuracy}))


def test_k_sweep_from_run_directories(tmp_path):
    root = tmp_path / "sweep"
    _fake_run(root / "k1", {"name": "convnet", "variant": "ienet", "k": 1}, 0.7)
    _fake_run(root / "group" / "k3", {"name": "convnet", "variant": "ienet", "k": 3}, 0.9)
    _fake_run(root / "group" / "k3b", {"name": "convnet", "variant": "ienet", "k": 3}, 0.8)
    _fake_run(root / "default", {"name": "convnet", "variant": "ienet"}, 0.85)  # K = 2
    (root / "unfinished").mkdir()
    (root / "unfinished" / "config.yaml").write_text("model: {k: 4}\n")
    points = figures.k_sweep_points(root)
    assert [(p.k, p.runs) for p in points] == [(1, 1), (2, 1), (3, 2)]
    assert [p.error for p in points] == pytest.approx([0.3, 0.15, 0.15])
    assert (points[2].error_min, points[2].error_max) == pytest.approx((0.1, 0.2))


def test_k_sweep_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="nothing usable for a K sweep"):
        figures.k_sweep(tmp_path / "empty", tmp_path / "k.png")
    bad = tmp_path / "bad.csv"
    bad.write_text("k,loss\n1,0.3\n")
    with pytest.raises(ValueError, match="val_accuracy"):
        figures.k_sweep(bad, tmp_path / "k.png")
    failed = tmp_path / "failed.csv"
    failed.write_text("k,val_accuracy\n1,\n2,nan\n")
    with pytest.raises(ValueError, match="nothing usable"):
        figures.k_sweep(failed, tmp_path / "k.png")
    with pytest.raises(ValueError, match="does not exist"):
        figures.k_sweep(tmp_path / "nope", tmp_path / "k.png")
    assert not (tmp_path / "k.png").exists()


# --- report and CLI ------------------------------------------------------------------------


def _events(log_dir):
    found = {}
    for file in sorted(log_dir.glob("events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(str(file)):
            for value in event.summary.value:
                found.setdefault(value.tag, []).append((event.step, value))
    return found


def test_report_command_on_a_trained_run(tiny_run, tmp_path):
    parser = argparse.ArgumentParser()
    report_cli.add_parser(parser.add_subparsers(dest="command"))
    trials = tmp_path / "trials.csv"
    trials.write_text("k,val_accuracy\n1,0.5\n2,0.6\n2,0.7\n")
    out = tmp_path / "report"
    args = parser.parse_args(
        [
            "report",
            "--run",
            str(tiny_run),
            "--output",
            str(out),
            "--k-sweep",
            str(trials),
        ]
    )
    printed, told = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(printed), contextlib.redirect_stderr(told):
        assert args.handler(args) == 0
    assert printed.getvalue().strip() == str(out / "report.md")  # stdout: the result only
    steps = told.getvalue().splitlines()
    assert steps[0].startswith("ienet report: loading model.keras")
    assert "ienet report: weight histograms of 3 saved model(s)" in steps
    assert f"ienet report: error vs K from {trials}" in steps
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [".ienet-tf.json", ".lock", "report.md", *FIGURE_FILES.values()]
    )  # and no staging directory left behind
    for file in FIGURE_FILES.values():
        image = matplotlib.image.imread(out / file)
        assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100, file
    markdown = (out / "report.md").read_text()
    metrics = json.loads((tiny_run / "metrics.json").read_text())
    for name in ("conv1", "conv2", "conv3"):
        assert f"| {name} |" in markdown
    for file in FIGURE_FILES.values():
        assert f"]({file})" in markdown
    assert f"{metrics['test_accuracy']:.4g}" in markdown
    assert "our definition" in markdown and "checkpoints/best.keras" in markdown
    # The train- vs inference-mode codes of the first test batch, as the inspection computes.
    from ienet_tf.train import load_datasets, load_run

    config, model = load_run(tiny_run)
    batch, _ = next(iter(load_datasets(config, ("test",))["test"]))
    for row in inspection.binarization_disagreement(model, batch.numpy()):
        assert f"| {row['layer']} | {row['k']} | {row['disagreement']:.2%} |" in markdown
    assert "ienet report: binary codes in training vs inference mode" in steps
    branches = inspection.branch_diversity(model, batch.numpy())
    assert len(branches) == 3  # the demo's three IE-BC layers, K = 2
    for row in branches:
        assert (
            f"| {row['layer']} | 2 | {row['differ']:.2%} | {row['threshold_gap']:.3g} |" in markdown
        )
    tags = _events(tiny_run / "tensorboard" / "report")
    assert {f"report/{f[:-4]}" for f in FIGURE_FILES.values()} <= set(tags)


def test_report_bad_inputs(tmp_path, tiny_run):
    with pytest.raises(errors.RunError, match="does not exist"):
        write_report(tmp_path / "missing")
    (tmp_path / "not_a_run").mkdir()
    with pytest.raises(errors.RunError, match=r"no config\.yaml"):
        write_report(tmp_path / "not_a_run")
    (tmp_path / "empty").mkdir()
    out = tmp_path / "out"
    with pytest.raises(ValueError, match="nothing usable"):
        write_report(tiny_run, out, image=np.zeros((8, 8, 1)), k_sweep_source=tmp_path / "empty")
    assert not out.exists()  # a failure leaves no half report


# --- callback ------------------------------------------------------------------------------


def test_binary_stats_logger_writes_tensorboard_scalars(tmp_path):
    model = _model()
    record = {}

    class _Kernels(tf.keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            record[-1] = {n: inspection.binary_kernel(model.get_layer(n)) for n in ("iebc", "ste")}

        def on_epoch_end(self, epoch, logs=None):
            record[epoch] = {
                n: inspection.binary_kernel(model.get_layer(n)) for n in ("iebc", "ste")
            }

    logger = callbacks.BinaryStatsLogger(str(tmp_path / "tb"))
    x, y = _data()
    model.fit(
        x, y, epochs=2, verbose=0, callbacks=[_Kernels(), callbacks.IEESchedule(epochs=2), logger]
    )
    tags = _events(tmp_path / "tb")
    expected = {"iee/q", "iee/r"} | {
        f"{kind}/{name}" for kind in ("binary_entropy", "flip_ratio") for name in ("iebc", "ste")
    }
    assert expected <= set(tags)

    def values(tag):
        return [(step, float(tf.make_ndarray(v.tensor))) for step, v in tags[tag]]

    assert values("iee/q") == [(0, pytest.approx(0.01)), (1, pytest.approx(10**-0.5))]
    assert values("iee/r") == [(0, pytest.approx(100.0)), (1, pytest.approx(10**0.5))]
    for name in ("iebc", "ste"):
        for epoch in (0, 1):
            current, previous = record[epoch][name], record[epoch - 1][name]
            entropy = _numpy_entropy(float(np.mean(current > 0)))
            flips = float(np.mean(current != previous))
            assert values(f"binary_entropy/{name}")[epoch] == (epoch, pytest.approx(entropy))
            assert values(f"flip_ratio/{name}")[epoch] == (epoch, pytest.approx(flips))
    assert any(values(f"flip_ratio/{n}")[0][1] > 0 for n in ("iebc", "ste"))  # kernels moved
    assert tf.keras.utils.get_custom_objects()["BinaryStatsLogger"] is callbacks.BinaryStatsLogger
    restored = callbacks.BinaryStatsLogger(**logger.get_config())
    assert (restored.log_dir, restored.every) == (str(tmp_path / "tb"), 1)
    with pytest.raises(ValueError, match="every"):
        callbacks.BinaryStatsLogger(str(tmp_path), every=0)


def test_report_without_test_data_replaces_only_its_own_files(tiny_run, tmp_path, monkeypatch):
    from ienet_tf.errors import DataError
    from ienet_tf.report import writer

    def no_data(*args, **kwargs):
        raise DataError("digits is not here")

    monkeypatch.setattr(writer, "test_images", no_data)
    out = tmp_path / "report"
    with Report(out).claim():  # a report directory of an earlier `ienet report`
        pass
    (out / "notes.txt").write_text("mine")
    (out / FIGURE_FILES["k_sweep"]).write_bytes(b"stale")
    (out / FIGURE_FILES["activations"]).write_bytes(b"stale")
    markdown = write_report(tiny_run, out).read_text()
    assert "left out: the test data is not available here (digits is not here)" in markdown
    assert "Table left out: the test data is not available here" in markdown
    assert FIGURE_FILES["activations"] not in markdown
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [
            ".ienet-tf.json",
            ".lock",
            "notes.txt",
            "report.md",
            FIGURE_FILES["weights"],
            FIGURE_FILES["surrogate"],
            FIGURE_FILES["entropy"],
        ]
    )
    assert (out / "notes.txt").read_text() == "mine"
    # A folder of the user's is never a report's: refused before anything is drawn.
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / FIGURE_FILES["k_sweep"]).write_bytes(b"my figure")
    with pytest.raises(errors.RunError, match=r"is not empty \(k_sweep.png\) and was not written"):
        write_report(tiny_run, mine)
    assert [p.name for p in mine.iterdir()] == [FIGURE_FILES["k_sweep"]]
