"""`ienet train/evaluate/cost/export` on the embedded digits data (a few steps each)."""

import csv
import json
import math
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from ienet_tf import config as config_lib
from ienet_tf import errors, models
from ienet_tf.cli import main
from ienet_tf.errors import UsageError
from ienet_tf.runs import Run
from ienet_tf.torch_form import TorchBatchNormalization
from ienet_tf.train import (
    add_weight_decay,
    evaluate,
    learning_rate_at,
    load_datasets,
    reestimate_batch_norm,
    train,
)

DEMO = Path("configs/digits_convnet_ienet.yaml")


def _config(*overrides):
    return config_lib.load(DEMO, ["data.subset=256", "data.test_subset=128", *overrides])


@pytest.mark.parametrize(
    "epochs, warmup, lr",
    [(400, 0, 0.1), (120, 5, 0.1), (10, 3, 0.05)],
)
def test_learning_rate_schedule(epochs, warmup, lr):
    train_cfg = config_lib.TrainConfig(epochs=epochs, warmup_epochs=warmup, learning_rate=lr)
    # The release: CosineAnnealingLR(T_max=E - (W - 1)) stepped from the last warm-up epoch.
    start = max(warmup - 1, 0)
    for epoch in range(epochs):
        if epoch < warmup:
            expected = lr * (epoch + 1) / warmup
        else:
            expected = lr / 2 * (1 + math.cos(math.pi * (epoch - start) / (epochs - start)))
        assert learning_rate_at(epoch, train_cfg) == pytest.approx(expected)
    assert learning_rate_at(start, train_cfg) == pytest.approx(lr)


@pytest.mark.parametrize("optimizer", ["sgd", "keras_sgd", "adam"])
def test_clip_norm_bounds_the_global_gradient_norm(optimizer):
    from ienet_tf.train import make_optimizer

    def step(clip_norm):
        train_cfg = config_lib.TrainConfig(
            optimizer=optimizer, learning_rate=0.1, momentum=0.0, clip_norm=clip_norm
        )
        opt = make_optimizer(train_cfg)
        a, b = tf.Variable([0.0, 0.0]), tf.Variable([0.0])
        opt.apply_gradients([(tf.constant([30.0, 0.0]), a), (tf.constant([40.0]), b)])
        return np.concatenate([a.numpy(), b.numpy()])

    unclipped, clipped = step(None), step(1.0)
    if optimizer == "adam":  # Adam's first step is lr * sign(g): clipping keeps the direction
        np.testing.assert_allclose(clipped, unclipped, rtol=1e-3)
    else:  # SGD: lr * g, with |g| = 50 scaled to 1
        np.testing.assert_allclose(unclipped, [-3.0, 0.0, -4.0], rtol=1e-6)
        np.testing.assert_allclose(clipped, [-0.06, 0.0, -0.08], rtol=1e-5)


@pytest.mark.parametrize("epochs, warmup, steps", [(8, 0, 5), (6, 2, 3)])
def test_learning_rate_schedule_per_step(epochs, warmup, steps):
    train_cfg = config_lib.TrainConfig(epochs=epochs, warmup_epochs=warmup, learning_rate=0.1)
    total, warm = epochs * steps, warmup * steps
    start = max(warm - 1, 0)
    got = [learning_rate_at(s // steps, train_cfg, s % steps, steps) for s in range(total)]
    expected = [
        0.1 * (s + 1) / warm
        if s < warm
        else 0.05 * (1 + math.cos(math.pi * (s - start) / (total - start)))
        for s in range(total)
    ]
    assert got == pytest.approx(expected)
    # Annealed within the last epoch, not held at its first step's value.
    assert got[-1] < got[-steps] / 5
    # One step per epoch is the per-epoch schedule.
    assert [learning_rate_at(e, train_cfg, 0, 1) for e in range(epochs)] == pytest.approx(
        [learning_rate_at(e, train_cfg) for e in range(epochs)]
    )


@pytest.mark.parametrize(
    "scope, names",
    [
        ("all", {"kernel", "gamma", "beta", "alpha", "thresholds", "lambdas", "bias"}),
        ("kernels_and_alpha", {"kernel", "alpha"}),
    ],
)
def test_weight_decay_scopes_and_value(scope, names):
    model = models.build("convnet", "ienet")
    count = add_weight_decay(model, 1e-4, scope)
    decayed = [
        v
        for v in model.trainable_variables
        if scope == "all" or v.name.split("/")[-1][:-2] in names
    ]
    assert count == len(decayed)
    assert {v.name.split("/")[-1][:-2] for v in decayed} == names
    expected = 0.5 * 1e-4 * sum(float(np.sum(np.square(v.numpy()))) for v in decayed)
    assert float(model.losses[0]) == pytest.approx(expected, rel=1e-5)
    assert add_weight_decay(models.build("convnet", "fp"), 0.0, scope) == 0


def test_train_writes_a_complete_run_and_a_rerun_does_nothing(tmp_path):
    config = _config("train.epochs=2")
    metrics = train(config, tmp_path, verbose=0)
    assert metrics["completed"] and metrics["epochs_this_invocation"] == 2
    for name in (
        "config.yaml",
        "model.keras",
        "metrics.json",
        "history.csv",
        "checkpoints/best.keras",
        "checkpoints/last.keras",
    ):
        assert (tmp_path / name).exists(), name
    assert any((tmp_path / "tensorboard").rglob("events.out.tfevents.*"))
    assert config_lib.load(tmp_path / "config.yaml") == config
    rows = list(csv.DictReader((tmp_path / "history.csv").open()))
    assert [float(r["iee_q"]) for r in rows] == pytest.approx([0.01, 10**-0.5], rel=1e-6)
    assert [float(r["lr"]) for r in rows] == pytest.approx([0.01, 0.005], rel=1e-6)
    assert 0.0 <= metrics["test_accuracy"] <= 1.0
    again = train(config, tmp_path, verbose=0)
    assert again == metrics
    with pytest.raises(errors.RunError, match=r"different config \(train.epochs: 2 -> 3\)"):
        train(_config("train.epochs=3"), tmp_path, verbose=0)


def _run_cli(*argv, timeout=300):
    return subprocess.run(
        [sys.executable, "-m", "ienet_tf", *argv],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )


@pytest.mark.slow
def test_kill_9_and_rerun_continues_at_the_right_epoch_with_the_right_q(tmp_path):
    argv = [
        "train",
        "--config",
        str(DEMO),
        "--run",
        str(tmp_path),
        "--verbose",
        "0",
        "--set",
        "train.epochs=30",
        "--set",
        "data.subset=512",
    ]
    process = subprocess.Popen(
        [sys.executable, "-m", "ienet_tf", *argv],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    history = tmp_path / "history.csv"
    deadline = time.time() + 240
    while time.time() < deadline and process.poll() is None:
        if history.exists() and len(history.read_text().splitlines()) >= 3:  # 2 epochs done
            break
        time.sleep(0.05)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    killed_after = len(history.read_text().splitlines()) - 1
    assert killed_after < 30, "training finished before it could be killed"
    assert not (tmp_path / "metrics.json").exists()

    result = _run_cli(*argv)
    assert result.returncode == 0, result.stderr
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["completed"] and metrics["epochs_this_invocation"] <= 30 - killed_after
    rows = list(csv.DictReader(history.open()))
    epochs = [int(r["epoch"]) for r in rows]
    assert epochs[-1] == 29 and epochs == sorted(epochs)
    resumed = epochs[killed_after:]
    assert resumed[0] >= killed_after  # no epoch trained twice from scratch
    for row in rows:
        epoch = int(row["epoch"])
        assert float(row["iee_q"]) == pytest.approx(10 ** (-2 + 3 * epoch / 30), rel=1e-5)
        assert float(row["lr"]) == pytest.approx(
            0.005 * (1 + math.cos(math.pi * epoch / 30)), rel=1e-5
        )


def test_evaluate_cost_and_export_on_a_trained_run(tiny_run, tmp_path, capsys):
    run = tiny_run
    assert main(["evaluate", "--run", str(run), "--which", "best"]) == 0
    assert "convnet_ienet_k2 (best): top-1" in capsys.readouterr().out
    assert main(["export", "--run", str(run), "--output", str(tmp_path / "m.tflite")]) == 0
    out = capsys.readouterr().out
    assert "'LceBconv2d':" in out and "LceDequantize" not in out
    assert (tmp_path / "m.tflite").stat().st_size > 0


def test_cost_json_reproduces_table_6(capsys):
    # IE-Net paper Table 6: memory (Mbit), FLOPs (paper convention: one IE-BC branch).
    table6 = {
        ("resnet18", "fp"): (374.1, 1.81e9),
        ("resnet18", "bireal"): (33.6, 1.63e8),
        ("resnet18", "ienet"): (33.8, 1.63e8),
        ("resnet34", "fp"): (697.3, 3.66e9),
        ("resnet34", "bireal"): (43.7, None),
        ("resnet34", "ienet"): (44.1, 1.93e8),
    }
    for (name, variant), (memory, flops) in table6.items():
        argv = ["cost", "--config", f"configs/imagenet_{name}_{variant}.yaml", "--json"]
        assert main(argv) == 0
        cost = json.loads(capsys.readouterr().out)
        assert cost["memory_mbit"] == pytest.approx(memory, rel=0.02), (name, variant)
        if flops is not None:
            assert cost["flops_paper"] == pytest.approx(flops, rel=0.02), (name, variant)
        assert cost["flops"] == pytest.approx(cost["fp_macs"] + cost["binary_ops"] / 64)
        if variant == "ienet":  # K = 2 branches: the full count doubles the binary ops
            branch = sum(layer["binary_ops_one_branch"] for layer in cost["layers"])
            assert cost["binary_ops"] == 2 * branch
        elif variant == "fp":
            assert cost["binary_ops"] == 0


def test_cost_of_resnet20_by_formula(capsys):
    assert main(["cost", "--config", "configs/cifar10_resnet20_ienet.yaml", "--json"]) == 0
    printed = capsys.readouterr()
    cost = json.loads(printed.out)  # stdout: the result only; progress on stderr
    assert printed.err.startswith("ienet cost: building resnet20 (ienet) at input [32, 32, 3]")
    macs = 0
    c_in, size = 16, 32
    for stage, width in enumerate((16, 32, 64)):
        for unit in range(6):
            if stage > 0 and unit == 0:
                size //= 2
            macs += 3 * 3 * c_in * width * size * size
            c_in = width
    assert cost["binary_ops"] == 2 * macs
    assert cost["fp_macs"] == 3 * 3 * 3 * 16 * 32 * 32 + 64 * 10
    assert main(["cost", "--config", "configs/cifar10_resnet20_ienet.yaml"]) == 0
    table = capsys.readouterr().out
    assert "stage1_unit1_conv" in table and "FLOPs" in table


def test_ir2net_run_trains_with_restriction_and_exports_the_classifier(tmp_path, capsys):
    """`+ir2net` through the CLI: the wrapper trains (q on schedule), evaluates, and the
    export is the plain classifier with its Ghost recovery head."""
    run = tmp_path / "run"
    overrides = ["model.variant=ienet+ir2net", "model.recovery_ratio=4", "train.epochs=2"]
    overrides += ["data.subset=128"]
    argv = ["train", "--config", str(DEMO), "--run", str(run), "--verbose", "0"]
    assert main([*argv, *(a for o in overrides for a in ("--set", o))]) == 0
    history = list(csv.DictReader((run / "history.csv").open()))
    assert [float(row["iee_q"]) for row in history] == pytest.approx([0.01, 10**-0.5])
    assert main(["evaluate", "--run", str(run)]) == 0
    # The run's models are the deployable classifier, not the training wrapper.
    assert "convnet_ienet_k2_ir2net (final): top-1" in capsys.readouterr().out
    assert main(["export", "--run", str(run), "--output", str(tmp_path / "m.tflite")]) == 0
    report = json.loads((tmp_path / "m.tflite.json").read_text())
    assert report["model"] == "convnet_ienet_k2_ir2net"
    ops = report["op_histogram"]
    # the Ghost head (ratio 4): 1x1 conv + depthwise conv, a hardtanh after each BN
    assert ops["LceBconv2d"] == 6 and ops["DEPTHWISE_CONV_2D"] == 1 and "PRELU" not in ops
    assert "LceDequantize" not in ops


@pytest.mark.parametrize(
    "argv, message",
    [
        (["train", "--config", "configs/nope.yaml"], "config file not found: configs/nope.yaml"),
        (
            ["train", "--config", str(DEMO), "--set", "model.variant=ienet+xnor"],
            "model.variant: Unknown variant modifier 'xnor'",
        ),
        (
            ["train", "--config", str(DEMO), "--set", "model.variant=fp+el"],
            "Elastic-Link accompanies binary convolutions",
        ),
        (["train", "--config", str(DEMO), "--set", "train.epochs=0"], "train.epochs: must be > 0"),
        (
            ["cost", "--config", str(DEMO), "--set", "model.input_shape=[4, 4, 1]"],
            "model.input_shape [4, 4, 1] does not match",
        ),
        (
            ["evaluate", "--run", "/nonexistent/run"],
            "run directory /nonexistent/run does not exist",
        ),
        (["export", "--run", ".", "--output", "x.tflite"], "not an `ienet train` run directory"),
    ],
)
def test_user_errors_are_one_line_with_exit_2(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"ienet {argv[0]}: error:") and message in err
    assert "\n" not in err and "Traceback" not in err


def test_cli_bad_arguments_exit_2_from_the_console(capsys):
    result = _run_cli("train")
    assert result.returncode == 2 and "--config" in result.stderr
    assert "Traceback" not in result.stderr
    with pytest.raises(SystemExit) as exit_info:  # "" would silently be the current directory
        main(["train", "--config", str(DEMO), "--run", ""])
    assert exit_info.value.code == 2
    assert "expected a path, got an empty string" in capsys.readouterr().err
    for removed in ("--output-dir", "--checkpoint"):  # ienet-tf 0.1's spellings are gone
        with pytest.raises(SystemExit) as exit_info:
            main(["train", "--config", str(DEMO), removed, "runs/x"])
        assert exit_info.value.code == 2
        assert f"unrecognized arguments: {removed}" in capsys.readouterr().err


def test_a_bug_keeps_its_traceback_and_debug_shows_user_errors_too(monkeypatch, capsys):
    import ienet_tf.cost

    def broken(model):
        raise RuntimeError("a bug in the cost model")

    monkeypatch.setattr(ienet_tf.cost, "model_cost", broken)
    with pytest.raises(RuntimeError, match="a bug in the cost model"):  # not exit 2
        main(["cost", "--config", str(DEMO)])
    capsys.readouterr()
    argv = ["--debug", "cost", "--config", str(DEMO), "--set", "model.k=0"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and err.strip().splitlines()[-1].startswith("ienet cost: error:")


def _console(*argv: str, probe: str = "") -> subprocess.CompletedProcess:
    """The `ienet` console script as installed (argv[0] `ienet`), TF's log level unset."""
    script = (
        "import sys, atexit\n"
        f"atexit.register(lambda: {probe or 'None'})\n"
        f"sys.argv = ['ienet', *{list(argv)!r}]\n"
        "from ienet_tf.cli import main\n"
        "sys.exit(main())\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    return subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300
    )


def test_help_does_not_import_tensorflow_and_commands_print_only_their_own_lines():
    probe = "print('tensorflow imported:', 'tensorflow' in sys.modules, file=sys.stderr)"
    result = _console("--help", probe=probe)
    assert result.returncode == 0 and "usage: ienet" in result.stdout
    assert result.stderr.strip() == "tensorflow imported: False"
    result = _console("cost", "--config", str(DEMO), "--json")
    assert result.returncode == 0, result.stderr[-2000:]
    json.loads(result.stdout)
    # No TensorFlow start-up or library warnings: every stderr line is the command's progress.
    lines = result.stderr.strip().splitlines()
    assert lines and all(line.startswith("ienet cost: ") for line in lines), lines


MIRRORED_SCRIPT = textwrap.dedent(
    """
    import numpy as np, tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    from ienet_tf import config as config_lib
    from ienet_tf.train import build_model, make_strategy, add_weight_decay
    from ienet_tf.train import compile_model
    config = config_lib.load("configs/digits_convnet_ienet.yaml")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 8, 8, 1)).astype("float32")
    y = rng.integers(0, 10, 64)
    losses = {}
    for name in ("default", "mirrored"):
        strategy = make_strategy(name)
        tf.keras.utils.set_random_seed(0)
        with strategy.scope():
            model = build_model(config)
            add_weight_decay(model, 1e-4, "all")
            compile_model(model, config)
        loss = model.train_on_batch(x, y, return_dict=True)["loss"]
        losses[name] = (strategy.num_replicas_in_sync, loss)
    print(losses)
    """
)


def test_mirrored_strategy_on_two_cpus_gives_the_same_first_step_loss():
    result = subprocess.run(
        [sys.executable, "-c", MIRRORED_SCRIPT],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    losses = eval(result.stdout.strip().splitlines()[-1])
    assert losses["default"][0] == 1 and losses["mirrored"][0] == 2
    assert losses["mirrored"][1] == pytest.approx(losses["default"][1], rel=1e-4)


def test_binary_stats_logging_is_a_config_switch(tmp_path):
    train(_config("train.epochs=1", "train.log_binary_stats=true"), tmp_path, verbose=0)
    events = list((tmp_path / "tensorboard" / "binary_stats").rglob("events.out.tfevents.*"))
    assert events
    tags = {
        value.tag
        for event in tf.compat.v1.train.summary_iterator(str(events[0]))
        for value in event.summary.value
    }
    assert {"iee/q", "iee/r", "binary_entropy/conv1", "flip_ratio/conv1"} <= tags


def test_every_option_has_help_and_run_is_the_run_directory_everywhere(tiny_run, capsys):
    from ienet_tf.cli.main import build_parser

    parser = build_parser()
    commands = next(a for a in parser._actions if a.dest == "command").choices
    for name, command in commands.items():
        for action in command._actions:
            if action.option_strings and action.help != "==SUPPRESS==":
                assert action.help, (name, action.option_strings)
    # --run is the run directory everywhere.
    assert main(["evaluate", "--run", str(tiny_run), "--which", "best"]) == 0
    assert capsys.readouterr().out.count("(best): top-1") == 1
    with pytest.raises(SystemExit) as exit_info:
        main(["evaluate"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "one of the arguments --run --model is required" in err


def test_reestimate_batch_norm_averages_the_batch_statistics():
    """The moving statistics become the mean of the per-batch statistics (numpy), layer by
    layer through the network; weights, momenta and frozen layers stay as they were."""
    rng = np.random.default_rng(3)
    inputs = tf.keras.Input((4, 4, 3))
    conv = tf.keras.layers.Conv2D(5, 3, padding="same", name="conv")
    bn4 = tf.keras.layers.BatchNormalization(momentum=0.9, name="bn4")
    pool = tf.keras.layers.GlobalAveragePooling2D()
    bn2 = TorchBatchNormalization(momentum=0.9, epsilon=1e-5, name="bn2")  # the models' BN
    frozen = tf.keras.layers.BatchNormalization(name="frozen")
    frozen.trainable = False
    outputs = tf.keras.layers.Dense(2)(frozen(bn2(pool(bn4(conv(inputs))))))
    model = tf.keras.Model(inputs, outputs)
    batches = [
        (rng.normal(i, 1 + i, (32, 4, 4, 3)).astype(np.float32), np.zeros(32)) for i in range(3)
    ]
    weights = [w.numpy().copy() for w in model.trainable_weights]
    frozen_state = [w.numpy().copy() for w in frozen.non_trainable_weights]

    assert reestimate_batch_norm(model, batches) == 3

    # The reference, in numpy: each layer's input in a training-mode pass, per batch.
    means4, vars4, means2, vars2 = [], [], [], []
    gamma4, beta4 = bn4.gamma.numpy(), bn4.beta.numpy()
    for x, _ in batches:
        c = conv(x).numpy()
        m, v = c.mean((0, 1, 2)), c.var((0, 1, 2))
        means4.append(m)
        vars4.append(v)
        p = (gamma4 * (c - m) / np.sqrt(v + bn4.epsilon) + beta4).mean((1, 2))
        means2.append(p.mean(0))
        vars2.append(p.var(0))
    np.testing.assert_allclose(bn4.moving_mean.numpy(), np.mean(means4, 0), rtol=1e-4, atol=1e-5)
    # Keras' fused 4-D kernel stores the unbiased variance, n/(n-1) = 512/511 here.
    np.testing.assert_allclose(bn4.moving_variance.numpy(), np.mean(vars4, 0), rtol=3e-3)
    np.testing.assert_allclose(bn2.moving_mean.numpy(), np.mean(means2, 0), rtol=1e-3, atol=1e-4)
    # PyTorch's running variance: the unbiased batch variance, n/(n-1) = 32/31.
    np.testing.assert_allclose(bn2.moving_variance.numpy(), np.mean(vars2, 0) * 32 / 31, rtol=1e-3)
    assert (bn4.momentum, bn2.momentum) == (0.9, 0.9)
    for w, before in zip(model.trainable_weights, weights, strict=True):
        np.testing.assert_array_equal(w.numpy(), before)
    for w, before in zip(frozen.non_trainable_weights, frozen_state, strict=True):
        np.testing.assert_array_equal(w.numpy(), before)
    # Bare images work as well as (images, labels) pairs.
    assert reestimate_batch_norm(model, [x for x, _ in batches[:1]]) == 1
    np.testing.assert_allclose(bn4.moving_mean.numpy(), means4[0], rtol=1e-4, atol=1e-5)
    with pytest.raises(UsageError, match="empty"):
        reestimate_batch_norm(model, [])
    with pytest.raises(UsageError, match="no BatchNormalization"):
        reestimate_batch_norm(tf.keras.Sequential([tf.keras.layers.Dense(2)]), batches)


def test_train_eval_split_is_the_training_examples_in_order_without_augmentation():
    config = config_lib.load(
        DEMO,
        ["data.subset=96", "data.validation_examples=32", "train.batch_size=16"],
    )
    splits = load_datasets(config, ("train", "train_eval", "validation"))

    def images(name):
        return np.concatenate([x.numpy() for x, _ in splits[name]])

    plain = images("train_eval")
    assert plain.shape[0] == 96
    np.testing.assert_array_equal(plain, images("train_eval"))  # a fixed order
    # digits are not augmented: the same examples as "train", which only shuffles them
    trained = images("train")
    assert not np.array_equal(trained, plain)
    np.testing.assert_array_equal(
        np.sort(trained.reshape(96, -1), 0), np.sort(plain.reshape(96, -1), 0)
    )
    held_out = {x.tobytes() for x in images("validation")}
    assert not held_out & {x.tobytes() for x in plain}


def test_bn_reestimation_batches_finishes_the_final_model_with_reestimated_statistics(tmp_path):
    config = _config(
        "train.epochs=1", "data.validation_examples=64", "train.bn_reestimation_batches=3"
    )
    metrics = train(config, tmp_path, verbose=0)
    assert metrics["bn_reestimated_batches"] == 3
    run = Run(tmp_path)
    final, last = run.model("final"), run.model("last")
    # The reference: the last epoch's checkpoint re-estimated here on the same batches.
    plain = load_datasets(config, ("train_eval",))["train_eval"]
    reestimate_batch_norm(last, plain.take(3))
    changed = 0
    for ours, reference, saved in zip(
        final.non_trainable_weights,
        last.non_trainable_weights,
        run.model("last").non_trainable_weights,
        strict=True,
    ):
        np.testing.assert_allclose(ours.numpy(), reference.numpy(), rtol=1e-5, atol=1e-6)
        changed += not np.allclose(ours.numpy(), saved.numpy())
    assert changed  # the saved moving statistics were replaced
    for ours, saved in zip(final.trainable_weights, last.trainable_weights, strict=True):
        np.testing.assert_array_equal(ours.numpy(), saved.numpy())
    # The metrics are the re-estimated model's; best.keras keeps its own statistics.
    assert metrics["test_accuracy"] == pytest.approx(evaluate(tmp_path)["top1"], abs=1e-6)
    assert train(config, tmp_path, verbose=0) == metrics


def test_evaluate_can_reestimate_the_batch_norm_statistics_without_saving(tmp_path, capsys):
    config = _config(
        "train.epochs=1", "data.validation_examples=64", "train.bn_reestimation_batches=3"
    )
    metrics = train(config, tmp_path, verbose=0)
    saved = {path.name: path.read_bytes() for path in tmp_path.glob("*.keras")}
    # last.keras re-estimated on the same 3 batches is the final model the run tested.
    results = evaluate(tmp_path, "last", 3)
    assert results["top1"] == pytest.approx(metrics["test_accuracy"], abs=1e-6)
    assert results["bn_reestimated_batches"] == 3
    assert "bn_reestimated_batches" not in evaluate(tmp_path, "last")
    argv = ["evaluate", "--run", str(tmp_path), "--which", "last", "--bn-reestimation-batches"]
    assert main([*argv, "3"]) == 0
    line = capsys.readouterr().out
    assert f"top-1 {metrics['test_accuracy']:.2%} with BatchNorm statistics re-estimated" in line
    assert {path.name: path.read_bytes() for path in tmp_path.glob("*.keras")} == saved
    with pytest.raises(SystemExit) as exit_info:
        main([*argv, "0"])
    assert exit_info.value.code == 2 and "expected a positive integer" in capsys.readouterr().err
