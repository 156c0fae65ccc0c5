"""Convert with the Larq Compute Engine and verify that the binary kernels survived.

LCE's converter fails silently: a layer that breaks one of its patterns becomes
`LceDequantize` + a float `CONV_2D` with no warning, and a file 10-20x larger. So every
export here is checked three ways before anything is written:

1. the Keras model against the converter's rules (`rules.check_model`), naming layers;
2. the flatbuffer's ops: one `LceBconv2d` per distinct IE-BC branch, no `LceDequantize`, a
   float `CONV_2D` only for the layers meant to be float, no `MUL` right after a binary
   conv (alpha and lambda fuse into it);
3. the LCE interpreter against Keras on real inputs (`parity`).

`to_tflite` checks its arguments before the (seconds-long) conversion, hides the
converter's log unless `verbose`, reports its steps to an optional `progress` callback, and
writes the `.tflite` and its sidecar so that a kill at any moment never leaves a `.tflite`
without the sidecar written with it (see `_write_export`).
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import errno
import faulthandler
import hashlib
import io
import json
import math
import numbers
import os
import re
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Protocol

import larq as lq
import numpy as np
import tensorflow as tf

from ienet_tf import errors, precision
from ienet_tf.checks import input_batch
from ienet_tf.export import int8_verify
from ienet_tf.export.flatbuffer import read_graph
from ienet_tf.export.rules import binary_layers, check_model, is_binary_conv
from ienet_tf.io import exclusive_lock, one_line, write_temporary
from ienet_tf.ir2net import inference_model
from ienet_tf.layers import IEBinaryConv2D
from ienet_tf.runs import Run

__all__ = [
    "DEFAULT_MIN_AGREEMENT",
    "DEFAULT_TOLERANCE",
    "MUL_AFTER_BCONV",
    "ExportResult",
    "Parity",
    "check_output_path",
    "convert",
    "convert_int8",
    "expected_ops",
    "lce_predict",
    "op_histogram",
    "parity",
    "stack_versions",
    "to_tflite",
    "verify_ops",
]

#: Max |LCE - Keras| on one input's outputs. The float parts agree to ~1e-5 (the same
#: arithmetic in another order); 1e-3 leaves room for deep float stems and large logits.
DEFAULT_TOLERANCE = 1e-3

#: The fraction of parity inputs that must agree within the tolerance (see `Parity`).
DEFAULT_MIN_AGREEMENT = 0.9

#: The key of `expected_ops` for MULs that consume an `LceBconv2d` output directly.
MUL_AFTER_BCONV = "MUL after LceBconv2d"


#: The only suffix `to_tflite` writes (its sidecar is `<name>.tflite.json`).
TFLITE_SUFFIX = ".tflite"


def check_output_path(path: str | os.PathLike, argument: str = "path") -> Path:
    """`path` as a `Path` if `to_tflite` may write it (and `path + ".json"`); a
    `UsageError` naming `argument` (e.g. "--output") otherwise: a suffix other than
    `.tflite`, a directory, a folder that is a file, or a file that a run directory owns
    (its model files, config.yaml, state.json, metrics.json, history.csv, resume/,
    tensorboard/), also through a symlink. Cheap: call it before loading anything.
    """
    path = Path(path)
    sidecar = path.with_name(path.name + ".json") if path.name else path
    for target in (path, sidecar):
        resolved = target.resolve()
        run = Run.enclosing(resolved)
        if run is not None and run.owns(resolved):
            owned = resolved.relative_to(run.path).as_posix()
            via = "" if resolved == target.absolute() else f" (via {target} -> {resolved})"
            raise errors.UsageError(
                f"{argument} {path} would overwrite {owned} of the run directory "
                f"{run.path}{via}; write the export to a new .tflite file, e.g. "
                f"{run.path / 'model.tflite'}."
            )
    if path.is_dir():
        raise errors.UsageError(
            f"{argument} {path} is a directory; name the file to write, e.g. "
            f"{path / ('model' + TFLITE_SUFFIX)}."
        )
    if path.suffix != TFLITE_SUFFIX:
        hint = f", e.g. {path.with_suffix(TFLITE_SUFFIX)}" if path.stem else ""
        raise errors.UsageError(
            f"{argument} {path} does not end in {TFLITE_SUFFIX}; an export writes a "
            f"{TFLITE_SUFFIX} file (and its report {TFLITE_SUFFIX}.json){hint}."
        )
    for folder in path.parents:
        if folder.exists():
            if not folder.is_dir():
                raise errors.UsageError(
                    f"{argument} {path}: {folder} is a file, not a folder; choose another path."
                )
            break
    _refuse_foreign_files(path, sidecar, argument)
    return path


def _refuse_foreign_files(path: Path, sidecar: Path, argument: str) -> None:
    """A `UsageError` unless every file an export to `path` would replace is an earlier
    export's: a `.tflite` whose sidecar records its SHA-256, and that sidecar. A link at
    either name is never written over."""
    for target in (path, sidecar):
        if target.is_symlink():
            raise errors.UsageError(
                f"{argument} {path}: {target} is a symbolic link; an export never writes over "
                "a link: choose another path, or remove the link."
            )
    if not (path.exists() or sidecar.exists()):
        return
    fix = "choose another path, or move the file away"
    try:
        recorded = json.loads(sidecar.read_text()).get("sha256")
    except (OSError, ValueError, UnicodeDecodeError, AttributeError):
        recorded = None
    if recorded is None:
        existing = path if path.exists() else sidecar
        raise errors.UsageError(
            f"{argument} {path}: {existing} exists and is not an `ienet export` file (no "
            f"report {sidecar.name} records it); {fix}."
        )
    if path.exists() and hashlib.sha256(path.read_bytes()).hexdigest() != recorded:
        raise errors.UsageError(
            f"{argument} {path} exists and differs from the export {sidecar.name} records "
            f"(changed since); {fix}."
        )


def _check_number(value, name: str, fraction: bool = False) -> float:
    """`value` as a float if it is finite and > 0 (a `fraction`: in [0, 1]); a
    `UsageError` naming `name` otherwise."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise errors.UsageError(
            f"{name} must be a number, got {one_line(repr(value), 80)} ({type(value).__name__})."
        )
    number = float(value)
    if fraction and not 0 <= number <= 1:
        raise errors.UsageError(f"{name} is {number!r}; it must be a fraction in [0, 1].")
    if not fraction and not (math.isfinite(number) and number > 0):
        raise errors.UsageError(
            f"{name} is {number!r}; it must be a finite number > 0 (the max |LCE - Keras| "
            f"on one input's outputs; default {DEFAULT_TOLERANCE:g})."
        )
    return number


def _format_shape(shape) -> str:
    return "(" + ", ".join("N" if d is None else str(d) for d in shape) + ")"


def _check_inputs(inputs, model: tf.keras.Model) -> np.ndarray:
    """The parity batch as a float32 array of the model's input shape, or a `UsageError`
    naming what is wrong with `inputs` (see `checks.input_batch`)."""
    return input_batch(inputs, model.input_shape, model.name, "inputs")


def op_histogram(flatbuffer: bytes) -> dict[str, int]:
    """Count the operators of a TFLite flatbuffer by name (custom ops by custom code)."""
    return read_graph(flatbuffer).histogram()


def _branch_groups(layer) -> list[int]:
    """Sizes of the groups of identical branches of a binary conv layer.

    Branches with equal thresholds binarize identically and the converter merges them into
    one `LceBconv2d` (freshly initialised IE-BC layers have all thresholds at 0). A merged
    convolution feeds several per-branch scales, so those MULs cannot fuse into it.
    """
    if not isinstance(layer, IEBinaryConv2D) or layer.thresholds is None:
        return [1]
    _, counts = np.unique(layer.thresholds.numpy(), axis=0, return_counts=True)
    return [int(c) for c in counts]


def _is_float_conv(layer) -> bool:
    """A 2D convolution that converts to a float `CONV_2D`: Keras' own, or a larq
    `QuantConv2D` without quantizers (depthwise/separable/transposed ones are other ops)."""
    return type(layer) is tf.keras.layers.Conv2D or (
        type(layer) is lq.layers.QuantConv2D
        and layer.input_quantizer is None
        and layer.kernel_quantizer is None
    )


def expected_ops(model: tf.keras.Model) -> dict[str, int]:
    """What a correct conversion of `model` holds: `LceBconv2d` (one per distinct branch of
    every binary conv), `CONV_2D` (the full-precision convolutions) and the MULs left right
    after a binary conv (0 unless identical branches were merged, see `_branch_groups`)."""
    model = inference_model(model)
    groups = [
        g for layer in binary_layers(model) if is_binary_conv(layer) for g in _branch_groups(layer)
    ]
    return {
        "LceBconv2d": len(groups),
        "CONV_2D": sum(1 for layer in model.submodules if _is_float_conv(layer)),
        MUL_AFTER_BCONV: sum(g for g in groups if g > 1),
    }


def verify_ops(histogram: dict[str, int], expected: dict[str, int]) -> None:
    """Raise `ExportError` unless the ops (`histogram`, plus the count of MULs right after a
    binary conv under `MUL_AFTER_BCONV`) match `expected_ops`."""
    problems = []
    if histogram.get("LceDequantize", 0):
        problems.append(
            f"{histogram['LceDequantize']} LceDequantize op(s): a binarized tensor feeds a "
            "float op instead of a binary convolution"
        )
    for op, count in expected.items():
        if histogram.get(op, 0) != count:
            problems.append(f"{histogram.get(op, 0)} {op} op(s), expected {count}")
    if problems:
        raise errors.ExportError(
            "The LCE conversion fell back to float kernels: "
            + "; ".join(problems)
            + f". Op histogram: {histogram}. Binary layers must binarize their input with "
            "`lq.math.sign`, keep a +-alpha kernel per output channel, scale after the "
            "convolution and pad with `pad_values=1.0`."
        )


def _flush_streams() -> None:
    """Flush Python's and C's buffered stdout/stderr (before file descriptors move)."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    with contextlib.suppress(Exception):
        ctypes.CDLL(None).fflush(None)


#: Where `_quiet` keeps the converter's log while it runs (`{pid}`: the process id); the
#: file is removed when the block ends, so it is left only by a crash of the process.
CONVERTER_LOG = "ienet-lce-convert-{pid}.log"


def converter_log_path(pid: int | None = None) -> Path:
    """The converter log `_quiet` keeps in the temporary directory while it runs: what a
    hard crash of the converter (SIGABRT/SIGSEGV, no Python exception) leaves behind."""
    return Path(tempfile.gettempdir()) / CONVERTER_LOG.format(pid=pid or os.getpid())


@contextlib.contextmanager
def _fatal_errors_to(fd: int) -> Iterator[None]:
    """Python's `faulthandler` on descriptor `fd` during the block: a fatal signal (the
    converter's C++ `abort()`) prints "Fatal Python error" and the Python stack there
    instead of dying silently; the previous state is restored after."""
    was_enabled = faulthandler.is_enabled()
    try:
        faulthandler.enable(file=fd)
    except (OSError, ValueError, RuntimeError):
        yield
        return
    try:
        yield
    finally:
        faulthandler.disable()
        if was_enabled:
            with contextlib.suppress(Exception):
                faulthandler.enable(file=sys.stderr)


@contextlib.contextmanager
def _quiet(enabled: bool = True) -> Iterator[None]:
    """Send what the block writes to file descriptors 1 and 2 (the converter's C++ log)
    and to `sys.stdout`/`sys.stderr` (Python warnings) to `converter_log_path()`; re-print
    it on stderr if the block raises (not on KeyboardInterrupt) and remove it when the
    block ends. If the process dies in the block (the converter aborts), the log stays
    there and `faulthandler` prints the fatal error on the real stderr. Output of other
    threads during the block is captured too."""
    if not enabled:
        yield
        return
    _flush_streams()
    log = None
    saved: list[int] = []
    path = converter_log_path()
    try:
        log = path.open("w+b")
        for fd in (1, 2):
            saved.append(os.dup(fd))
    except OSError:  # no temporary directory, or no stdout/stderr (a closed descriptor)
        for fd in saved:
            os.close(fd)
        if log is not None:
            log.close()
            path.unlink(missing_ok=True)
        yield
        return
    python = io.StringIO()
    try:
        try:
            os.dup2(log.fileno(), 1)
            os.dup2(log.fileno(), 2)
            with (
                _fatal_errors_to(saved[1]),
                contextlib.redirect_stdout(python),
                contextlib.redirect_stderr(python),
            ):
                yield
        finally:
            _flush_streams()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
    except Exception:  # not on Ctrl-C: a log is no help there
        log.seek(0)
        text = log.read().decode(errors="replace") + python.getvalue()
        if text:
            with contextlib.suppress(Exception):
                sys.stderr.write(text if text.endswith("\n") else text + "\n")
                sys.stderr.flush()
        raise
    finally:
        for fd in saved:
            os.close(fd)
        log.close()
        path.unlink(missing_ok=True)


def lce_convert(model: tf.keras.Model, int8_io: bool = False) -> bytes:
    """LCE's converter (ARM target) on `model`'s inference function.

    `lce.convert_keras_model` first does `model.save(folder, save_format="tf")`, which traces
    and serializes every layer's call in training and inference mode: ~90% of the whole
    conversion time of these models. The converter reads only the serving signature, so
    that is all that is saved here (with the variables it reads), and the SavedModel goes to
    LCE's public `convert_saved_model`: the same ops and outputs, ~5x sooner. `int8_io`:
    int8 input and output tensors (binary + int8 models)."""
    import larq_compute_engine as lce

    io_type = tf.int8 if int8_io else tf.float32
    spec = tf.TensorSpec([None, *model.input_shape[1:]], model.inputs[0].dtype)
    module = tf.Module()
    module.weights = list(model.variables)
    serve = tf.function(lambda x: {"output": model(x, training=False)}, input_signature=[spec])
    with tempfile.TemporaryDirectory() as folder:
        tf.saved_model.save(
            module, folder, signatures={"serving_default": serve.get_concrete_function()}
        )
        return lce.convert_saved_model(
            folder, inference_input_type=io_type, inference_output_type=io_type, target="arm"
        )


def convert(
    model: tf.keras.Model,
    verbose: bool = False,
    progress: Callable[[str], None] | None = None,
) -> tuple[bytes, dict[str, int]]:
    """Convert `model` with LCE (ARM target); check the rules and the op histogram.
    A training wrapper (IR²Net's `InformationRestriction`) converts its classifier.

    The converter's log (its C++ lines, TensorFlow's warnings) is hidden unless `verbose`,
    and re-printed on stderr if the conversion raises. `progress` is called with a short
    message before each step."""
    model = inference_model(model)
    violations = check_model(model)
    if violations:
        raise errors.ExportError(
            "The model would not convert to binary LCE kernels: "
            + "; ".join(str(v) for v in violations)
            + "."
        )
    if progress is not None:
        progress("converting with LCE ...")
    with _quiet(not verbose):
        flatbuffer = lce_convert(model)
    if progress is not None:
        progress("checking ops ...")
    graph = read_graph(flatbuffer)
    histogram = graph.histogram()
    verify_ops(
        {**histogram, MUL_AFTER_BCONV: graph.multiplies_after("LceBconv2d")}, expected_ops(model)
    )
    return flatbuffer, histogram


def convert_int8(
    model: tf.keras.Model,
    int8_io: bool = False,
    verbose: bool = False,
    progress: Callable[[str], None] | None = None,
) -> tuple[bytes, list, tf.keras.Model]:
    """Convert an int8 QAT model (`ienet_tf.int8.qat_model`) with LCE into binary + int8
    (int8 input and output tensors with `int8_io`, else float I/O) and verify its ops
    (`int8_verify.verify_int8_ops`). Returns the flatbuffer, its classified ops and the Keras
    model it must match (a copy of `model` with its biases on the converter's grid)."""
    model = inference_model(model)
    int8_verify.check_qat_model(model)
    reference = int8_verify.reference_model(model)
    if progress is not None:
        progress("converting with LCE (binary + int8) ...")
    with _quiet(not verbose):
        flatbuffer = lce_convert(reference, int8_io)
    if progress is not None:
        progress("checking ops ...")
    ops = int8_verify.int8_ops(flatbuffer)
    int8_verify.verify_int8_ops(ops, int8_verify.expected_int8_ops(reference), int8_io)
    return flatbuffer, ops, reference


def lce_predict(flatbuffer: bytes, inputs: np.ndarray, num_threads: int = 1) -> np.ndarray:
    """Run a converted model in the LCE interpreter (which knows the `Lce*` custom ops)."""
    from larq_compute_engine.tflite.python.interpreter import Interpreter

    interpreter = Interpreter(flatbuffer, num_threads=num_threads)
    return np.asarray(interpreter.predict(np.asarray(inputs, np.float32)))


@dataclasses.dataclass(frozen=True)
class Parity:
    """How the converted model agrees with Keras on the same inputs.

    `within_tolerance` is the fraction of inputs whose outputs all agree within
    `tolerance`. sign() is discontinuous at 0 and LCE computes the float pre-activations in
    another order than TensorFlow, so a value within ~1e-6 of 0 can binarize differently
    (seen: Keras -2.1e-7, LCE 0.0). That one flip changes that input's outputs far beyond
    any float tolerance, while a real conversion bug (padding, a lost scale, a float
    fallback) changes every input: so the verdict counts inputs, not the worst difference.
    """

    max_abs_diff: float
    within_tolerance: float
    top1_agreement: float
    num_inputs: int
    tolerance: float


def parity(
    model: tf.keras.Model,
    flatbuffer: bytes,
    inputs: np.ndarray,
    tolerance: float = DEFAULT_TOLERANCE,
) -> Parity:
    """Compare LCE interpreter outputs with Keras inference outputs."""
    expected = model(inputs, training=False).numpy()
    return compare_outputs(
        expected, lce_predict(flatbuffer, inputs).reshape(expected.shape), tolerance
    )


def compare_outputs(expected: np.ndarray, actual: np.ndarray, tolerance: float) -> Parity:
    """How `actual` outputs agree with `expected` ones, input by input (see `Parity`)."""
    expected, actual = np.asarray(expected, np.float64), np.asarray(actual, np.float64)
    per_input = np.abs(actual - expected).reshape(len(expected), -1).max(axis=1)
    return Parity(
        max_abs_diff=float(per_input.max()),
        within_tolerance=float(np.mean(per_input <= tolerance)),
        top1_agreement=float(np.mean(actual.argmax(-1) == expected.argmax(-1))),
        num_inputs=len(expected),
        tolerance=tolerance,
    )


@dataclasses.dataclass(frozen=True)
class ExportResult:
    path: Path
    sidecar: Path
    op_histogram: dict[str, int]
    parity: Parity
    size_bytes: int
    weight_bytes: dict[str, int]
    int8: dict | None = None  # binary + int8 exports: I/O, op kinds (see `ienet_tf.int8`)
    checks: dict[str, object] = dataclasses.field(default_factory=dict)  # `checks`' results


class ExportCheck(Protocol):
    """A check `to_tflite` runs on the converted file before writing it (`checks=`)."""

    name: str  # its key in `ExportResult.checks` and in the sidecar
    doing: str  # the progress line: "running it on the aarch64 kernels (qemu)"

    def __call__(self, flatbuffer: bytes, path: Path, inputs: np.ndarray) -> tuple[object, dict]:
        """The result and its sidecar section, for the file that will be `path`; raise an
        `IENetError` to refuse it (nothing is written)."""


def stack_versions() -> dict[str, str]:
    """Installed versions of TensorFlow, larq, LCE and ienet-tf (for reports)."""
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for package in ("tensorflow", "tensorflow-cpu", "larq", "larq-compute-engine", "ienet-tf"):
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            pass
    return found


def _temporary_pattern(name: str) -> re.Pattern:
    """The temporary files of an export to `name`: `.<name>.<random>.tmp` and
    `.<name>.json.<random>.tmp` (as `io.write_temporary` names them).
    """
    return re.compile(rf"\.{re.escape(name)}(\.json)?\.[^./]+\.tmp")


def _write_export(path: Path, flatbuffer: bytes, report: bytes) -> Path:
    """Write `path` and its sidecar `path + ".json"` so that a kill at any moment leaves
    no `.tflite` without the sidecar written with it: both go to temporary files first,
    then the old `.tflite` is removed, the sidecar renamed into place, and the `.tflite`
    last. Temporary files of an earlier export of `path` that died are removed first.
    Returns the sidecar's path."""
    sidecar = path.with_name(path.name + ".json")
    path.parent.mkdir(parents=True, exist_ok=True)
    # Exports into one folder write one at a time, so a temporary file found under the
    # lock is a dead export's.
    with exclusive_lock(path.parent):
        stale = _temporary_pattern(path.name)
        for entry in path.parent.iterdir():
            if stale.fullmatch(entry.name) and not entry.is_dir():
                entry.unlink(missing_ok=True)
        temporary: list[Path] = []
        try:
            temporary.append(write_temporary(path, flatbuffer))
            temporary.append(write_temporary(sidecar, report))
            # A reader never pairs the new sidecar with the old .tflite: that goes first.
            path.unlink(missing_ok=True)
            os.replace(temporary[1], sidecar)
            os.replace(temporary[0], path)
        except BaseException as error:
            for tmp in temporary:
                tmp.unlink(missing_ok=True)
            if isinstance(error, OSError) and error.errno == errno.ENOENT:
                # a folder that takes no new files (/proc, a vanished mount)
                raise errors.ExportError(
                    f"cannot write {path} ({error.strerror}); choose another --output."
                ) from None
            raise
        with contextlib.suppress(OSError):  # make the renames durable
            fd = os.open(path.parent, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
    return sidecar


def to_tflite(
    model: tf.keras.Model,
    path: str | Path,
    inputs: np.ndarray | None = None,
    tolerance: float = DEFAULT_TOLERANCE,
    source: dict | None = None,
    min_agreement: float = DEFAULT_MIN_AGREEMENT,
    *,
    verbose: bool = False,
    progress: Callable[[str], None] | None = None,
    int8: bool = False,
    int8_io: bool = False,
    lsb_tolerance: float | None = None,
    checks: Sequence[ExportCheck] = (),
) -> ExportResult:
    """Convert `model` with LCE, verify ops and parity, and only then write `path` and its
    JSON sidecar `path + ".json"` (op histogram, sizes, parity, versions, the .tflite's
    SHA-256, `source`).

    `inputs` are the parity batch (random normal inputs when `None`: say so in `source`);
    at least `min_agreement` of them must agree within `tolerance` (see `Parity`).
    The arguments are checked before converting: a `UsageError` (a `ValueError`) names a
    wrong `path` (see `check_output_path`), `tolerance`, `min_agreement` or `inputs`
    (shape, batch axis, empty, dtype, NaN/inf). On any failure nothing is written; a kill
    at any moment never leaves a `.tflite` without its sidecar, and the next export of
    `path` removes the temporary files of one that died.

    The converter's log is hidden unless `verbose`; `progress` (e.g. a print to stderr) is
    called with a short message before each step.

    `int8=True` exports an int8 QAT model (`ienet_tf.int8.qat_model`, calibrated and
    fine-tuned) as binary + int8: everything that is not a binary convolution computes in
    int8, with int8 input and output tensors if `int8_io` (else float I/O with a QUANTIZE
    and a DEQUANTIZE at the ends). Its checks are `int8_verify`'s: no float op, no
    LceDequantize, exact op counts, and parity with the QAT model counted in output
    quantization steps (`lsb_tolerance`, default 8, sign-flip aware; `tolerance` is for float
    exports). Pass real images (test images) as `inputs` for a binary + int8 export.

    `checks` run last, on the converted bytes and the parity inputs, before anything is
    written (`ExportCheck`; e.g. `arm.ArmCheck()`, the file on LCE's aarch64 kernels): each
    result is in the `ExportResult`'s `checks` and its section in the sidecar, and a check
    that raises leaves no file.
    """
    path = check_output_path(path)
    tolerance = _check_number(tolerance, "tolerance")
    min_agreement = _check_number(min_agreement, "min_agreement", fraction=True)
    trained = inference_model(model)
    # LCE converts float32 networks only: a mixed-precision one is rebuilt in float32 with
    # the same weights, and the file is checked against that (and reported against this).
    model = precision.float32_model(trained)
    if inputs is None:
        dims = model.input_shape[1:] if isinstance(model.input_shape, tuple) else (None,)
        if None in dims:
            raise errors.UsageError(
                f"inputs is None, but {model.name}'s input shape "
                f"{_format_shape(model.input_shape)} has unknown sizes; pass the parity inputs."
            )
        inputs = np.random.default_rng(0).normal(size=(8, *dims)).astype(np.float32)
    else:
        inputs = _check_inputs(inputs, model)
    int8_details = None
    if int8:
        lsb_tolerance = int8_verify.check_lsb_tolerance(lsb_tolerance)
        flatbuffer, ops, reference = convert_int8(model, int8_io, verbose, progress)
        if progress is not None:
            progress(f"parity on {len(inputs)} inputs ...")
        agreement = int8_verify.int8_parity(reference, flatbuffer, inputs, lsb_tolerance)
        int8_verify.check_parity(agreement, min_agreement)
        histogram = read_graph(flatbuffer).histogram()
        weights = int8_verify.int8_weight_bytes(flatbuffer)
        int8_details = int8_verify.sidecar_section(flatbuffer, ops, reference, int8_io)
        expected = int8_details["expected_ops"]
    else:
        if int8_io:
            raise errors.UsageError("int8_io=True needs int8=True (a binary + int8 export).")
        flatbuffer, histogram = convert(model, verbose=verbose, progress=progress)
        if progress is not None:
            progress(f"parity on {len(inputs)} inputs ...")
        agreement = parity(model, flatbuffer, inputs, tolerance)
        if not agreement.within_tolerance >= min_agreement:
            raise errors.ExportError(
                f"LCE interpreter and Keras disagree: only {agreement.within_tolerance:.0%} "
                f"of {agreement.num_inputs} inputs agree within {tolerance:g} (need "
                f"{min_agreement:.0%}; max |diff| {agreement.max_abs_diff:.3g}, top-1 "
                f"agreement {agreement.top1_agreement:.1%}); nothing was written."
            )
        weights = read_graph(flatbuffer).weight_bytes()
        expected = expected_ops(model)
    found, sections = {}, {}
    for check in checks:
        if progress is not None:
            progress(f"{check.doing} on {len(inputs)} inputs ...")
        found[check.name], sections[check.name] = check(flatbuffer, path, inputs)
    mixed = None
    if model is not trained:
        mixed = {
            "trained_compute_dtypes": sorted(precision.compute_dtypes(trained)),
            **dataclasses.asdict(
                compare_outputs(model(inputs).numpy(), trained(inputs).numpy(), tolerance)
            ),
        }
    report = {
        "tflite": path.name,
        "sha256": hashlib.sha256(flatbuffer).hexdigest(),
        "model": model.name,
        "input_shape": list(model.input_shape[1:]),
        "num_classes": int(model.output_shape[-1]),
        "size_bytes": len(flatbuffer),
        "weight_bytes": weights,
        "op_histogram": histogram,
        "expected_ops": expected,
        "parity": {**dataclasses.asdict(agreement), "min_agreement": min_agreement},
        **({"int8": int8_details} if int8_details is not None else {}),
        # the mixed-precision model trained vs the float32 network exported
        **({"mixed_precision": mixed} if mixed is not None else {}),
        **sections,
        "versions": stack_versions(),
        "source": source or {},
    }
    if progress is not None:
        progress(f"writing {path} ...")
    sidecar = _write_export(path, flatbuffer, (json.dumps(report, indent=2) + "\n").encode())
    return ExportResult(
        path, sidecar, histogram, agreement, len(flatbuffer), weights, int8_details, found
    )
