"""`verify_arm` / `ienet verify-arm`: exports run on LCE's aarch64 kernels under qemu.

The tests that build or run the runtime are slow; they build it (the `runtime` fixture of
conftest.py: `make arm-runtime`, cached across runs) and skip, saying why, only where it
cannot be built here (no qemu, no cross-compiler, no third-party sources).
"""

import argparse
import collections
import dataclasses
import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from ienet_tf import errors, export, int8, models
from ienet_tf.cli import verify_arm as cli
from ienet_tf.export import arm, arm_trace
from ienet_tf.export.flatbuffer import FlatbufferError, read_graph
from ienet_tf.models.testing import as_if_trained

ROOT = Path(__file__).resolve().parents[2]
READY = ROOT / "converters" / "ready" / "fashion_mnist_resnet20_ienet_k2" / "model.tflite"


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    """Small exports, each written by `export.to_tflite` (verified on x86 as usual): an
    IE-Net K=2 network binary + float, its binary + int8 forms (float and int8 I/O), an
    Elastic-Link ResNet-20, and the float (fp) network."""
    folder = tmp_path_factory.mktemp("arm_exports")
    rng = np.random.default_rng(0)
    written = {}
    model = as_if_trained(models.build("convnet", "ienet", input_shape=(8, 8, 1)))
    x = rng.normal(size=(16, 8, 8, 1)).astype(np.float32)
    written["ienet_k2"] = export.to_tflite(
        model, folder / "ienet_k2.tflite", x, min_agreement=0.75
    ).path
    qat = int8.qat_model(model, [rng.normal(size=(8, 8, 8, 1)).astype(np.float32)] * 2)
    for name, int8_io in (("ienet_k2_int8", False), ("ienet_k2_int8_io", True)):
        written[name] = export.to_tflite(
            qat, folder / f"{name}.tflite", x, int8=True, int8_io=int8_io, min_agreement=0.75
        ).path
    el = as_if_trained(models.build("resnet20", "ienet+el", input_shape=(8, 8, 3)))
    written["resnet20_ienet_el"] = export.to_tflite(
        el, folder / "el.tflite", rng.normal(size=(16, 8, 8, 3)).astype(np.float32),
        tolerance=1e-4, min_agreement=0.75,
    ).path  # fmt: skip
    fp = as_if_trained(models.build("convnet", "fp", input_shape=(8, 8, 1)))
    written["fp"] = export.to_tflite(fp, folder / "fp.tflite", x, min_agreement=0.75).path
    return written


def _assert_agrees(result: arm.ArmResult) -> None:
    assert [m.mode for m in result.modes] == list(arm.MODES)
    assert result.agrees, result.table()
    for mode in result.modes:
        assert mode.within_tolerance == 1.0 and mode.top1_agreement == 1.0, result.table()


@pytest.mark.slow
@pytest.mark.parametrize(
    "name", ["ienet_k2", "ienet_k2_int8", "ienet_k2_int8_io", "resnet20_ienet_el"]
)
def test_exports_agree_with_x86_in_every_mode(runtime, exports, name):
    if "int8" not in name:
        result = arm.verify_arm(exports[name], inputs=32, runtime=runtime)
        _assert_agrees(result)
        assert all(m.max_abs_diff < 1e-4 for m in result.modes), result.table()
        assert all(m.host_max_abs_diff is not None for m in result.modes)
        return
    # Binary + int8, judged as its export was: in output steps, 90% of inputs. Measured on
    # 3 seeds x 64 inputs: 1-5 inputs differ from LCE's wheel (TFLite 2.16) by 13-23 steps
    # (a requantization that rounds the other way flips a binarization downstream), and the
    # x86 build of the runner's own sources (TFLite 2.10) differs on exactly those inputs:
    # the gap is TensorFlow's version, not the ARM kernels (docs/guide/arm.md). So 64
    # inputs: with 6, one such input failed a clean-clone run.
    result = arm.verify_arm(exports[name], inputs=64, runtime=runtime)
    assert result.rule.startswith("int8") and result.agrees, result.table()
    assert all(m.host_max_abs_diff is not None for m in result.modes)


@pytest.mark.slow
def test_ready_model_agrees_and_the_cli_prints_json(runtime, capsys):
    parser = argparse.ArgumentParser()
    cli.add_parser(parser.add_subparsers())
    args = parser.parse_args(["verify-arm", "--model", str(READY), "--inputs", "4", "--json"])
    assert args.handler(args) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["agrees"] and report["num_inputs"] == 4
    assert [m["mode"] for m in report["modes"]] == list(arm.MODES)
    assert max(m["max_abs_diff"] for m in report["modes"]) < 1e-4


def _fake_runtime(tmp_path) -> arm.Runtime:
    """A runtime whose programs must never run."""
    return arm.Runtime(tmp_path, tmp_path / "no-runner", None, "/nonexistent/qemu", {})


@pytest.mark.slow
@pytest.mark.parametrize("size, exact", [(2, False), (3, True)])
def test_the_aarch64_kernels_share_lces_small_map_zero_padding_error(
    runtime, tmp_path, size, exact
):
    """`rules.py`'s `zero-padding-small-map`, measured on ARM: a zero-padded 3x3 binary conv
    on a 2x2 map is wrong in the default and indirect BGEMM modes as on x86; LCE's
    reference kernel is right; on a 3x3 map every mode is exact."""
    import larq as lq
    import larq_compute_engine as lce
    import tensorflow as tf

    inputs = tf.keras.Input((size, size, 32))
    conv = lq.layers.QuantConv2D(
        32, 3, padding="same", pad_values=0.0, input_quantizer="ste_sign",
        kernel_quantizer="ste_sign", kernel_constraint="weight_clip",
    )  # fmt: skip
    model = tf.keras.Model(inputs, conv(inputs))
    x = np.random.default_rng(0).normal(size=(4, size, size, 32)).astype(np.float32)
    expected = model(x).numpy().reshape(4, -1)
    path = tmp_path / "conv.tflite"
    path.write_bytes(lce.convert_keras_model(model))  # the rule's check bypassed
    info = arm._run(runtime, path, ["--info"])
    (tmp_path / "inputs.bin").write_bytes(arm._encode(x, info["inputs"][0]))
    wrong = {
        mode
        for mode in arm.MODES
        if not np.array_equal(arm._predict(runtime, path, tmp_path, mode, 4, info)[0], expected)
    }
    assert wrong == (set() if exact else {"default", "indirect"})


def test_a_damaged_file_is_refused_in_one_line_before_qemu_runs(tmp_path, monkeypatch):
    damaged = tmp_path / "damaged.tflite"
    data = bytearray(READY.read_bytes())
    data[4:8] = b"XXXX"  # the file identifier
    damaged.write_bytes(bytes(data))

    def never(*args, **kwargs):
        raise AssertionError("a subprocess ran on a damaged file")

    monkeypatch.setattr(subprocess, "run", never)
    with pytest.raises(FlatbufferError) as caught:
        arm.verify_arm(damaged, runtime=_fake_runtime(tmp_path))
    assert str(damaged) in str(caught.value) and "\n" not in str(caught.value)


def test_a_missing_runtime_names_make_arm_runtime(tmp_path):
    with pytest.raises(errors.MissingToolError, match=r"make arm-runtime") as caught:
        arm.verify_arm(READY, runtime=tmp_path / "nothing-built")
    assert "\n" not in str(caught.value)


def test_a_missing_qemu_names_the_apt_package(tmp_path, monkeypatch):
    runner = tmp_path / "aarch64" / "ienet-lce-runner"
    runner.parent.mkdir()
    runner.write_text("")
    runner.chmod(0o755)
    manifest = {"runners": {"aarch64": "aarch64/ienet-lce-runner", "x86_64": "none"}}
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(errors.MissingToolError, match=r"apt-get install -y qemu-user-static"):
        arm.find_runtime(tmp_path)


def test_wrong_modes_and_inputs_are_usage_errors(tmp_path):
    with pytest.raises(errors.UsageError, match="modes must be"):
        arm.verify_arm(READY, modes=("fast",), runtime=_fake_runtime(tmp_path))
    with pytest.raises(errors.UsageError, match="inputs"):
        arm.verify_arm(READY, inputs=0, runtime=_fake_runtime(tmp_path))


def test_a_disagreement_exits_with_one_line(monkeypatch, capsys):
    failed = arm.ModeResult("indirect", False, 0.5, 0.5, 1.2, None, 0.0, 3.0)
    result = arm.ArmResult("m.tflite", 4, "given", "rule", (failed,), "runtime")
    monkeypatch.setattr(arm, "verify_arm", lambda *args, **kwargs: result)
    parser = argparse.ArgumentParser()
    cli.add_parser(parser.add_subparsers())
    args = parser.parse_args(["verify-arm", "--model", "m.tflite", "--mode", "indirect"])
    with pytest.raises(errors.ExportError, match=r"indirect: 50% of inputs agree") as caught:
        args.handler(args)
    assert "\n" not in str(caught.value) and "NO" in capsys.readouterr().out


def test_cli_spells_out_the_modes_and_default_inputs_of_the_module():
    assert cli.MODES == arm.MODES and cli.DEFAULT_INPUTS == arm.DEFAULT_INPUTS


def _small_ienet():
    model = as_if_trained(models.build("convnet", "ienet", input_shape=(8, 8, 1)))
    return model, np.random.default_rng(0).normal(size=(8, 8, 8, 1)).astype(np.float32)


@pytest.mark.slow
def test_export_verify_arm_records_the_modes_in_the_sidecar(runtime, tmp_path):
    model, x = _small_ienet()
    check = arm.ArmCheck(runtime)
    result = export.to_tflite(model, tmp_path / "m.tflite", x, min_agreement=0.75, checks=[check])
    _assert_agrees(result.checks["arm"])
    on_arm = result.checks["arm"]
    assert on_arm.num_inputs == len(x) and on_arm.model == str(tmp_path / "m.tflite")
    section = json.loads(result.sidecar.read_text())["arm"]
    assert section["agrees"] and [m["mode"] for m in section["modes"]] == list(arm.MODES)
    assert "model" not in section and "runtime" not in section  # no paths of this machine


def test_export_verify_arm_writes_nothing_when_a_mode_disagrees(tmp_path, monkeypatch):
    failed = arm.ModeResult("default", False, 0.25, 0.5, 3.0, None, 0.0, 1.0)
    monkeypatch.setattr(
        arm,
        "verify_arm",
        lambda path, modes, inputs, runtime: arm.ArmResult(
            str(path), len(inputs), "given", "rule", (failed,), "runtime"
        ),
    )
    check = arm.ArmCheck(_fake_runtime(tmp_path))
    model, x = _small_ienet()
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(errors.ExportError, match=r"default: 25% of inputs agree") as caught:
        export.to_tflite(model, out / "m.tflite", x, min_agreement=0.75, checks=[check])
    assert str(out / "m.tflite") in str(caught.value) and "nothing was written" in str(caught.value)
    assert not list(out.iterdir())


def test_the_arm_check_finds_its_runtime_when_made(tmp_path, monkeypatch):
    """So a missing runtime fails before anything converts (`ienet export --verify-arm`)."""
    monkeypatch.setenv(arm.RUNTIME_ENV, str(tmp_path / "nothing-built"))
    with pytest.raises(errors.MissingToolError, match="make arm-runtime"):
        arm.ArmCheck()
    with pytest.raises(errors.UsageError, match="modes must be"):
        arm.ArmCheck(_fake_runtime(tmp_path), modes=("fast",))


def _sidecar_of(tmp_path, source: dict, tflite: bytes | None = None) -> Path:
    from ienet_tf.runs import sha256

    model = tmp_path / "m.tflite"
    model.write_bytes(READY.read_bytes() if tflite is None else tflite)
    report = {"sha256": sha256(model), "parity": {"num_inputs": 8}, "source": source}
    model.with_name("m.tflite.json").write_text(json.dumps(report))
    return model


def test_verify_arm_replays_the_parity_inputs_its_sidecar_records(tmp_path):
    from ienet_tf import config as config_lib
    from ienet_tf.train import test_images

    digits = config_lib.to_dict(config_lib.load(ROOT / "configs" / "digits_convnet_ienet.yaml"))
    model = _sidecar_of(tmp_path, {"config": digits})
    images, described = cli._recorded_inputs(model)
    np.testing.assert_array_equal(images, test_images(config_lib.from_dict(digits), 8))
    assert described == "the export's parity inputs (8 digits test images, from its sidecar)"
    # a sidecar of another file, or one recording no config: nothing to replay
    model.write_bytes(model.read_bytes() + b"\0")
    assert cli._recorded_inputs(model) == (None, None)
    assert cli._recorded_inputs(_sidecar_of(tmp_path, {"model_file": "x.keras"})) == (None, None)
    broken = dict(digits, data={**digits["data"], "name": "no_such_data"})
    images, why = cli._recorded_inputs(_sidecar_of(tmp_path, {"config": broken}))
    assert images is None and why.startswith("its sidecar's 8 test images cannot be read here")


@pytest.mark.slow
def test_verify_arm_cli_runs_a_run_export_on_its_own_test_images(runtime, tmp_path, capsys):
    from ienet_tf import config as config_lib
    from ienet_tf.train import build_model, test_images

    config = config_lib.load(ROOT / "configs" / "digits_convnet_ienet.yaml")
    model = as_if_trained(build_model(config))
    path = export.to_tflite(
        model, tmp_path / "digits.tflite", test_images(config, 16), min_agreement=0.75,
        source={"config": config_lib.to_dict(config)},
    ).path  # fmt: skip
    parser = argparse.ArgumentParser()
    cli.add_parser(parser.add_subparsers())
    args = parser.parse_args(["verify-arm", "--model", str(path), "--runtime", str(runtime.folder)])
    assert args.handler(args) == 0
    out = capsys.readouterr().out
    assert "(16 inputs: the export's parity inputs (16 digits test images, from its sidecar)" in out


def _fake_trace(bconv: int, kernel: str) -> arm_trace.InvokeTrace:
    categories = dict.fromkeys(arm_trace.CATEGORY_NAMES, 0)
    categories.update({arm_trace.CATEGORY_NAMES[0]: bconv, "other": 100})
    count = arm_trace.Count(kernel, "bconv", bconv, f"void compute_engine::{kernel}(int)")
    ops = (
        arm_trace.OpTrace(0, "LceBconv2d", bconv, (count,)),
        arm_trace.OpTrace(1, "ADD", 60, (arm_trace.Count("add::Eval", "elementwise", 60, "x"),)),
    )
    return arm_trace.InvokeTrace(bconv + 100, bconv + 900, categories, (count,), ops)


def _traced_result() -> arm.ArmResult:
    modes = (
        arm.ModeResult("default", True, 1.0, 1.0, 1e-7, None, 2e-7, 4.0,
                       _fake_trace(4_000, "bgemm::BinaryKernelNeon8x4<float>")),
        arm.ModeResult("reference", True, 1.0, 1.0, 1e-7, None, 2e-7, 6.0,
                       _fake_trace(70_000, "bconv2d::BConv2DReference<…>")),
    )  # fmt: skip
    return arm.ArmResult("m.tflite", 4, "given", "rule", modes, "runtime")


def test_a_traced_result_shows_categories_kernels_and_ops_below_the_agreement():
    result = _traced_result()
    text = result.table()
    agreement, traced = text.split("aarch64 instructions of one invoke", 1)
    assert "reference  yes" in agreement and "(4 inputs: given; rule: rule)" in agreement
    lines = traced.splitlines()
    assert any(line.split()[:3] == ["bconv", "4,000", "(98%)"] for line in lines), text
    assert any(line.split()[:3] == ["total", "4,100", "70,100"] for line in lines), text
    assert any(line.split()[:3] == ["first", "invoke", "4,900"] for line in lines), text
    assert not any(line.startswith("bitpack") for line in lines)  # no mode ran one: left out
    kernels = traced.split("LCE kernels that ran")[1]
    assert "bgemm::BinaryKernelNeon8x4<float>" in kernels and "BConv2DReference" in kernels
    ops = traced.split("Per operator")[1]
    assert "default: 40 instructions of the interpreter between ops" in ops
    rows = [line.split() for line in ops.splitlines()]
    assert ["1", "ADD", "60", "60", "add::Eval"] in rows  # the same top function: once
    assert "top function (default | reference, where they differ)" in ops
    assert ["0", "LceBconv2d", "4,000", "70,000", "bgemm::BinaryKernelNeon8x4<float>", "|",
            "bconv2d::BConv2DReference<…>"] == rows[3], text  # fmt: skip
    untraced = dataclasses.replace(result, modes=tuple(
        dataclasses.replace(m, trace=None) for m in result.modes))  # fmt: skip
    assert "instructions" not in untraced.table()


def test_a_traced_result_dumps_its_trace_to_json_and_an_untraced_one_none():
    report = json.loads(json.dumps(_traced_result().as_dict()))
    trace = report["modes"][0]["trace"]
    assert trace["instructions"] == 4_100 and trace["categories"]["other"] == 100
    assert trace["kernels"][0]["function"] == "bgemm::BinaryKernelNeon8x4<float>"
    assert trace["kernels"][0]["demangled"].startswith("void compute_engine::")
    assert [op["op"] for op in trace["ops"]] == ["LceBconv2d", "ADD"]
    untraced = arm.ModeResult("default", True, 1.0, 1.0, 1e-7, None, 2e-7, 4.0)
    plain = arm.ArmResult("m.tflite", 4, "given", "rule", (untraced,), "runtime").as_dict()
    assert "trace" not in plain["modes"][0]  # the export sidecar's `arm` section is unchanged


def test_cli_trace_asks_verify_arm_for_the_trace_and_prints_it(monkeypatch, capsys):
    asked = {}

    def fake(*args, **kwargs):
        asked.update(kwargs)
        return _traced_result()

    monkeypatch.setattr(arm, "verify_arm", fake)
    parser = argparse.ArgumentParser()
    cli.add_parser(parser.add_subparsers())
    args = parser.parse_args(["verify-arm", "--model", "m.tflite", "--inputs", "4", "--trace"])
    assert args.handler(args) == 0 and asked["trace"] is True
    assert "LCE kernels that ran" in capsys.readouterr().out
    args = parser.parse_args(["verify-arm", "--model", "m.tflite", "--inputs", "4", "--json"])
    assert args.handler(args) == 0 and asked["trace"] is False
    assert json.loads(capsys.readouterr().out)["modes"][1]["trace"]["ops"][0]["op"] == "LceBconv2d"


@pytest.fixture(scope="module")
def traced(runtime, exports):
    """The binary (IE-Net K=2) and float exports traced in every mode, on 4 inputs."""
    for tool in ("nm", "objdump", "readelf"):
        if shutil.which(f"aarch64-linux-gnu-{tool}") is None:
            pytest.skip(f"aarch64-linux-gnu-{tool} is not installed (binutils-aarch64-linux-gnu)")
    return {
        name: arm.verify_arm(exports[name], inputs=4, runtime=runtime, trace=True)
        for name in ("ienet_k2", "fp")
    }


def _kernels(mode: arm.ModeResult) -> list[str]:
    return [kernel.demangled for kernel in mode.trace.kernels]


@pytest.mark.slow
def test_traced_binary_model_runs_each_modes_own_bconv_kernel(traced):
    result = traced["ienet_k2"]
    _assert_agrees(result)
    modes = {m.mode: m for m in result.modes}
    bconv = arm_trace.CATEGORY_NAMES[0]
    for mode in modes.values():
        assert mode.trace.categories[bconv] > 0, result.table()
        assert sum(mode.trace.categories.values()) == mode.trace.instructions
        assert mode.trace.first_invoke_instructions > mode.trace.instructions  # packs filters
    default, reference, indirect = (_kernels(modes[m]) for m in arm.MODES)
    # default: LCE's optimized BGEMM (its NEON micro-kernel); reference: the reference
    # kernel, none of the BGEMM ones; indirect: the indirect BGEMM kernels
    assert any("core::bgemm::BinaryKernelNeon" in k for k in default), default
    assert not any("BConv2DReference" in k or "indirect_bgemm" in k for k in default)
    assert any("BConv2DReference" in k for k in reference), reference
    assert not any("core::bgemm::" in k or "indirect_bgemm" in k for k in reference)
    assert any("core::indirect_bgemm::" in k for k in indirect), indirect
    assert not any("BinaryKernelNeon" in k or "BConv2DReference" in k for k in indirect)
    for mode in modes.values():  # per op: the flatbuffer's ops, each bconv in its kernel
        ops = mode.trace.ops
        assert ops is not None and sum(o.instructions for o in ops) < mode.trace.instructions
        histogram = read_graph(Path(result.model).read_bytes()).histogram()
        assert collections.Counter(o.op for o in ops) == histogram
        assert all(o.functions[0].category == "bconv" for o in ops if o.op == "LceBconv2d")
    text = result.table()
    assert "LCE kernels that ran" in text and "Per operator" in text
    json.dumps(result.as_dict())


@pytest.mark.slow
def test_traced_float_model_runs_no_lce_kernel(traced):
    result = traced["fp"]
    _assert_agrees(result)
    for mode in result.modes:
        assert mode.trace.categories[arm_trace.CATEGORY_NAMES[0]] == 0
        assert mode.trace.kernels == () and mode.trace.instructions > 0
        assert {o.op for o in mode.trace.ops} >= {"CONV_2D"}
    assert "LCE kernels that ran: none" in result.table()
