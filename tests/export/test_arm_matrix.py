"""Every registry family x variant, binary + float and binary + int8, on LCE's aarch64
kernels in all three modes (`ienet export`'s `arm.ArmCheck`): `make test-arm`.

About 20 minutes of exports and qemu runs, so the suite leaves it out; it runs where
`IENET_ARM_MATRIX=1` (what `make test-arm` sets), after building the runtime as the other
ARM tests do (conftest.py).
"""

import os

import numpy as np
import pytest

from ienet_tf import export, int8, models
from ienet_tf.export import arm
from ienet_tf.ir2net import inference_model
from ienet_tf.models.testing import as_if_trained

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        os.environ.get("IENET_ARM_MATRIX") != "1", reason="the ARM matrix: `make test-arm`"
    ),
]
FORMS = [("fp", None), ("bireal", None), ("ienet", 1), ("ienet", 2), ("ienet", 3)]
FORMS += [("ienet+el", None), ("ienet+ir2net", None)]


def _shape(name):
    size = max(models.spec(name).min_size, 8)
    return (size, size, 1 if name == "convnet" else 3)


def _network(name, variant, k=None):
    model = models.build(name, variant, k=k, input_shape=_shape(name), num_classes=10)
    return inference_model(as_if_trained(model))


@pytest.mark.parametrize("name", models.available())
@pytest.mark.parametrize("variant, k", FORMS)
def test_binary_float_exports_agree_on_the_aarch64_kernels(runtime, tmp_path, name, variant, k):
    x = np.random.default_rng(0).normal(size=(32, *_shape(name))).astype(np.float32)
    result = export.to_tflite(
        _network(name, variant, k), tmp_path / "m.tflite", x, tolerance=1e-4,
        min_agreement=0.75, checks=[arm.ArmCheck(runtime)],
    )  # fmt: skip
    on_arm = result.checks["arm"]  # the check raised if a mode disagreed
    assert [m.mode for m in on_arm.modes] == list(arm.MODES) and on_arm.agrees


@pytest.mark.parametrize("name", models.available())
@pytest.mark.parametrize("variant", ["bireal", "ienet", "ienet+el"])
def test_binary_int8_exports_agree_on_the_aarch64_kernels(runtime, tmp_path, name, variant):
    rng = np.random.default_rng(0)
    model = _network(name, variant)
    calibration = [rng.normal(size=(8, *_shape(name))).astype(np.float32)] * 2
    qat = int8.qat_model(model, calibration)
    x = rng.normal(size=(64, *_shape(name))).astype(np.float32)  # 64: see test_arm.py
    result = export.to_tflite(
        qat, tmp_path / "m.tflite", x, int8=True, min_agreement=0.75,
        checks=[arm.ArmCheck(runtime)],
    )  # fmt: skip
    assert result.checks["arm"].rule.startswith("int8") and result.checks["arm"].agrees
