"""The optional parts of the install (`ienet_tf.extras`): without them the core works and
each part that needs one says which extra brings it."""

import subprocess
import sys
import textwrap

import pytest

from ienet_tf import errors, extras

# A Python in which the extras' packages cannot be imported (as if not installed).
WITHOUT_EXTRAS = textwrap.dedent(
    f"""
    import sys

    class NotInstalled:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in {sorted(extras.EXTRAS)!r}:
                raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)

    sys.meta_path.insert(0, NotInstalled())
    """
)


def _without_extras(code: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", WITHOUT_EXTRAS + textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_the_core_works_without_the_extras_and_each_part_names_its_extra():
    done = _without_extras(
        """
        import numpy as np
        import ienet_tf
        from ienet_tf import errors, export, layers, models, quantizers

        model = models.build("convnet", "ienet", input_shape=(8, 8, 1))
        assert model(np.zeros((1, 8, 8, 1), np.float32)).shape == (1, 10)
        assert quantizers.IEESign()(np.ones((3, 3, 1, 2), np.float32)).shape == (3, 3, 1, 2)
        for module in extras.EXTRAS:
            assert module not in sys.modules, module
        from ienet_tf.data import sources
        for load, extra in (
            (sources.digits_arrays, "data"),
            (lambda: __import__("ienet_tf.tune"), "tune"),
            (lambda: __import__("ienet_tf.report.figures"), "report"),
        ):
            try:
                load()
            except errors.MissingExtraError as error:
                assert f"pip install 'ienet-tf[{extra}]'" in str(error), error
                assert isinstance(error, ImportError)
            else:
                raise AssertionError(f"{extra}: no MissingExtraError")
        print("ok")
        """.replace("extras.EXTRAS", repr(sorted(extras.EXTRAS)))
    )
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-3000:]


def test_the_cli_names_the_missing_extra_in_one_line():
    done = _without_extras(
        """
        from ienet_tf.cli import main
        config = "configs/tune_digits.yaml"
        sys.exit(main(["tune", "--config", config, "--output", "/nonexistent/x"]))
        """
    )
    assert done.returncode == 2, done.stderr[-3000:]
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert lines[-1] == (
        "ienet tune: error: keras_tuner is not installed: `pip install 'ienet-tf[tune]'` brings "
        "keras-tuner."
    ), done.stderr[-3000:]
    assert "Traceback" not in done.stderr


def test_require_returns_the_module_and_keeps_real_errors():
    assert extras.require("sklearn.datasets").load_digits
    with pytest.raises(KeyError):
        extras.require("numpy")  # not an extra: a bug in the caller
    assert issubclass(errors.MissingExtraError, errors.IENetError)
