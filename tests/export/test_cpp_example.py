"""The C++ example `converters/cpp/ienet_infer.cc`: `make arm-example` cross-compiles it
static for aarch64 against the objects of the `ienet verify-arm` runtime, and under qemu it
classifies the ready model's test images as Keras does.

The tests build what they run (cached: the runtime once, then the example in seconds) and
skip, saying why, only where it cannot be built here (no qemu, no make, no cross-compiler,
no Eigen, no third-party sources). The fast test builds the example only on an already
built runtime (seconds); the slow one builds the runtime too where it has to (minutes).
"""

import json
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest

from ienet_tf.export import arm

ROOT = Path(__file__).resolve().parents[2]
READY = ROOT / "converters" / "ready" / "fashion_mnist_resnet20_ienet_k2"
IMAGES = 32
RUNTIME_DIR = ROOT / "converters" / "arm_runtime"
# The example's rules, read after the runtime's Makefile (converters/cpp/example.mk).
EXAMPLE_MAKE = ["make", "-s", "--no-print-directory", "-C", str(RUNTIME_DIR), "-f", "Makefile"]
EXAMPLE_MAKE += ["-f", "../cpp/example.mk"]


def _build_example(make, runtime_built_only: bool) -> Path:
    """`make arm-example`, then the example's path from its manifest.json (`runtime_built_only`:
    skip where the runtime is not built yet, rather than build it)."""
    if runtime_built_only:
        runtime = subprocess.run([*EXAMPLE_MAKE, "print-dir"], capture_output=True, text=True)
        if not (Path(runtime.stdout.strip()) / "manifest.json").is_file():
            pytest.skip(
                "the aarch64 LCE runtime is not built yet (`make arm-runtime`, minutes; "
                "the slow test here builds it)"
            )
    make("arm-example")
    folder = Path(subprocess.run([*EXAMPLE_MAKE, "print-example"], capture_output=True,
                                 text=True, check=True).stdout.strip())  # fmt: skip
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["source"] == "converters/cpp/ienet_infer.cc"
    return folder / manifest["example"]["aarch64"]


def _run(example: Path, *args) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["qemu-aarch64-static", str(example), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


@pytest.mark.slow
def test_the_example_gives_keras_top1_on_the_ready_model(arm_make, tmp_path):
    from ienet_tf.ir2net import inference_model
    from ienet_tf.train import load_run, test_images

    example = _build_example(arm_make, runtime_built_only=False)
    # The Keras model the .tflite was exported from, and the test images preprocessed as
    # that export's parity inputs were ("first 64 fashion_mnist test images").
    config, model = load_run(READY, "final")
    images = test_images(config, IMAGES)
    assert images.shape == (IMAGES, 28, 28, 1) and images.dtype == np.float32
    keras_top1 = np.asarray(inference_model(model)(images, training=False)).argmax(axis=1)
    images.astype("<f4").tofile(tmp_path / "images.f32")

    ran = _run(example, READY / "model.tflite", tmp_path / "images.f32")
    assert ran.returncode == 0, ran.stderr
    lines = ran.stdout.splitlines()
    assert len(lines) == IMAGES + 1, ran.stdout
    summary = json.loads(lines[-1])
    assert summary["images"] == IMAGES
    assert summary["top1"] == keras_top1.tolist()
    assert lines[0].startswith(f"image 0: class {keras_top1[0]} (logit ")


def test_a_bad_images_file_is_a_one_line_error(arm_make, tmp_path):
    example = _build_example(arm_make, runtime_built_only=True)
    (tmp_path / "short.f32").write_bytes(b"\0" * 100)
    (tmp_path / "empty.f32").write_bytes(b"")
    model = READY / "model.tflite"
    for images, says in [
        ("short.f32", "short.f32 has 100 bytes; it must hold one or more images of 784 float32"),
        ("empty.f32", "empty.f32 has 0 bytes"),
        ("missing.f32", "cannot read"),
    ]:
        ran = _run(example, model, tmp_path / images)
        assert ran.returncode == 1 and ran.stdout == ""
        assert ran.stderr.count("\n") == 1 and ran.stderr.startswith("ienet_infer: error: ")
        assert says in ran.stderr
    ran = _run(example, tmp_path / "short.f32", tmp_path / "short.f32")  # not a model
    assert ran.returncode == 1 and "is not a valid TFLite model" in ran.stderr.splitlines()[-1]
    ran = _run(example, model)
    assert ran.returncode == 2 and ran.stderr.startswith("usage: ienet_infer")


@pytest.mark.slow
def test_the_int8_io_path_matches_the_runner(arm_make, runtime, tmp_path):
    """A binary + int8 export with int8 input and output: the example quantizes the float
    images itself and dequantizes the logits; its top-1 is the runner's (the same kernels)
    on the images quantized as `ienet verify-arm` quantizes them."""
    from ienet_tf import export, int8, models
    from ienet_tf.models.testing import as_if_trained

    example = _build_example(arm_make, runtime_built_only=False)
    rng = np.random.default_rng(0)
    model = as_if_trained(models.build("convnet", "ienet", input_shape=(8, 8, 1)))
    qat = int8.qat_model(model, [rng.normal(size=(8, 8, 8, 1)).astype(np.float32)] * 2)
    x = rng.normal(size=(16, 8, 8, 1)).astype(np.float32)
    path = export.to_tflite(
        qat, tmp_path / "int8_io.tflite", x, int8=True, int8_io=True, min_agreement=0.75
    ).path
    info = arm._run(runtime, path, ["--info"])
    assert info["inputs"][0]["type"] == info["outputs"][0]["type"] == "INT8"
    (tmp_path / "inputs.bin").write_bytes(arm._encode(x, info["inputs"][0]))
    arm._run(runtime, path, ["--inputs", str(tmp_path / "inputs.bin"), "--outputs",
                             str(tmp_path / "outputs.bin"), "--count", str(len(x))])  # fmt: skip
    runner = np.fromfile(tmp_path / "outputs.bin", np.int8).reshape(len(x), -1)

    x.astype("<f4").tofile(tmp_path / "images.f32")
    ran = _run(example, path, tmp_path / "images.f32")
    assert ran.returncode == 0, ran.stderr
    *lines, summary = ran.stdout.splitlines()
    top1 = runner.argmax(axis=1)
    assert json.loads(summary)["top1"] == top1.tolist()
    # and the dequantized top logits: the same int8 outputs, not only the same argmax
    scale, zero = info["outputs"][0]["scale"], info["outputs"][0]["zero_point"]
    expected = (runner.max(axis=1).astype(np.float64) - zero) * scale
    printed = [float(re.fullmatch(r"image \d+: class \d+ \(logit (\S+)\)", ln)[1]) for ln in lines]
    np.testing.assert_allclose(printed, expected, atol=1e-4)
