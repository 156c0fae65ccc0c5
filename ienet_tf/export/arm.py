"""Run an exported model on LCE's aarch64 kernels (under qemu) and compare with x86.

LCE's x86 Python interpreter runs portable kernels; on a phone or a Raspberry Pi LCE runs
hand-written NEON/assembly ones (the BGEMM and indirect BGEMM kernels, a different output
transform). `verify_arm` runs a `.tflite` on those: `ienet-lce-runner`, a static aarch64
build of TFLite + LCE (converters/arm_runtime/, `make arm-runtime`), under
`qemu-aarch64-static`, in each of LCE's three `LceBconv2d` modes (`MODES`), and compares
every mode's outputs with the x86 interpreter's on the same inputs under the export's
parity rule: `tflite.compare_outputs` within `DEFAULT_TOLERANCE` for float outputs,
`int8_verify.int8_parity` (output steps) for a binary + int8 model. It also runs the x86
build of the same sources, so `host_max_abs_diff` isolates what the architecture changes
from what TensorFlow's version changes (the runner is TFLite 2.10's, LCE's wheel 2.16's).

With `trace=True` (`ienet verify-arm --trace`) every mode also runs one input (the first)
under qemu's instruction trace (`arm_trace`): the mode's `trace` records, for the second
of two invokes (the first also packs LCE's filters), the executed aarch64 instructions per
category, the LCE kernel functions that ran (bconv, bitpack) and the instructions of every
operator. Counts, not latency: qemu executes every instruction alike.

The inputs: `inputs` seeded random normal inputs (`DEFAULT_INPUTS`), or an array of the
user's own (`ienet verify-arm` passes an export's own parity inputs where its sidecar
records their config). The file is verified
(`flatbuffer.verify`) before anything runs, like `ienet bench`.

```python
from ienet_tf.export.arm import verify_arm

result = verify_arm("model.tflite")
print(result.table())
assert result.agrees
```
"""

from __future__ import annotations

import dataclasses
import json
import numbers
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from ienet_tf.checks import input_batch, is_int
from ienet_tf.errors import ExportError, MissingToolError, UsageError
from ienet_tf.export import arm_trace
from ienet_tf.export.bench import STALL_TIMEOUT_S, InterpreterError, _signal_name
from ienet_tf.export.flatbuffer import interface, read_graph, verify
from ienet_tf.io import one_line

__all__ = [
    "DEFAULT_INPUTS",
    "INSTALL_COMMAND",
    "MODES",
    "TRACE_INVOKES",
    "ArmCheck",
    "ArmResult",
    "ModeResult",
    "Runtime",
    "disagreement",
    "find_runtime",
    "trace_tables",
    "verify_arm",
]

#: LCE's `LceBconv2d` kernels: the optimized BGEMM (what a device runs by default),
#: `use_reference_bconv` and `use_indirect_bgemm`.
MODES = ("default", "reference", "indirect")
#: Seeded random inputs when none are given: 32, so the parity rule's 10% can absorb what it
#: is there for (a pre-activation within float error of 0 binarizing the other way: 1 input
#: in 64 measured): with 8, one such input failed an agreeing ResNet-26 in the reference mode.
DEFAULT_INPUTS = 32
#: What the runtime needs from Debian.
INSTALL_COMMAND = "apt-get install -y qemu-user-static g++-aarch64-linux-gnu libeigen3-dev"
#: The runtime's build, in a checkout of ienet-tf.
BUILD_DIR = Path(__file__).resolve().parents[2] / "converters" / "arm_runtime"
#: `runtime=` when not given: a build folder (holding manifest.json) named here.
RUNTIME_ENV = "IENET_ARM_RUNTIME"
#: Invokes of the traced run (`trace=True`): the last is recorded, the first does one-time work.
TRACE_INVOKES = 2
#: Seconds a traced run may take (qemu logs every executed block: ~20x slower).
TRACE_TIMEOUT_S = 7200.0
_QEMU = ("qemu-aarch64-static", "qemu-aarch64")
_DTYPES = {"FLOAT32": np.float32, "INT8": np.int8, "UINT8": np.uint8, "INT32": np.int32}


@dataclasses.dataclass(frozen=True)
class Runtime:
    """A built `ienet-lce-runner` (`make arm-runtime`) and the emulator that runs it."""

    folder: Path
    aarch64: Path
    host: Path | None  # the x86-64 build of the same sources
    qemu: str
    manifest: dict


def find_runtime(runtime: str | os.PathLike | None = None) -> Runtime:
    """The runtime in `runtime` (a build folder with its manifest.json), else in
    `$IENET_ARM_RUNTIME`, else the build `make arm-runtime` makes for the current sources
    (`make -C converters/arm_runtime print-dir`). `MissingToolError` naming the command
    that installs or builds what is missing: qemu, the runtime (and the cross-compiler it
    needs)."""
    folder = runtime if runtime is not None else os.environ.get(RUNTIME_ENV) or _build_folder()
    folder = Path(folder)
    manifest_path = folder / "manifest.json"
    try:
        manifest = json.loads(manifest_path.read_text())
        aarch64 = folder / manifest["runners"]["aarch64"]
        host = folder / manifest["runners"]["x86_64"]
    except (OSError, ValueError, KeyError, TypeError):
        needs = ""
        if shutil.which("aarch64-linux-gnu-g++") is None:
            needs = f" after `{INSTALL_COMMAND}`"
        raise MissingToolError(
            f"no aarch64 LCE runtime in {folder} (no complete build: {manifest_path.name} "
            f"missing or unreadable); build it with `make arm-runtime`{needs}"
        ) from None
    if not os.access(aarch64, os.X_OK):
        raise MissingToolError(
            f"the aarch64 runner {aarch64} is missing; rebuild it with `make arm-runtime`"
        )
    qemu = next((found for name in _QEMU if (found := shutil.which(name))), None)
    if qemu is None:
        raise MissingToolError(
            "qemu-aarch64-static not found (it runs the aarch64 LCE runtime here); install it "
            "with `apt-get install -y qemu-user-static`"
        )
    return Runtime(folder, aarch64, host if os.access(host, os.X_OK) else None, qemu, manifest)


def _build_folder() -> Path:
    """The cache folder `make arm-runtime` builds the current sources into."""
    if not (BUILD_DIR / "Makefile").is_file():
        raise MissingToolError(
            f"no aarch64 LCE runtime: pass runtime=DIR (or set {RUNTIME_ENV}) to a build of "
            "converters/arm_runtime, made with `make arm-runtime` in an ienet-tf checkout"
        )
    if shutil.which("make") is None:
        raise MissingToolError(
            "`make` not found (it locates and builds the aarch64 LCE runtime); install it "
            "with `apt-get install -y make`"
        )
    found = subprocess.run(
        ["make", "-s", "--no-print-directory", "-C", str(BUILD_DIR), "print-dir"],
        capture_output=True,
        text=True,
        check=False,
    )
    lines = found.stdout.split()
    if found.returncode != 0 or len(lines) != 1:
        raise MissingToolError(
            f"cannot locate the aarch64 LCE runtime ({one_line(found.stderr or found.stdout)}); "
            "build it with `make arm-runtime`"
        )
    return Path(lines[0])


@dataclasses.dataclass(frozen=True)
class ModeResult:
    """One LCE kernel mode on aarch64 against the x86 interpreter."""

    mode: str
    agrees: bool
    #: the parity rule's verdict figures: the fraction of inputs within the tolerance, ...
    within_tolerance: float
    top1_agreement: float
    max_abs_diff: float
    #: int8 models: the largest difference in output quantization steps
    max_lsb: float | None
    #: against the x86-64 build of the same sources (None without one)
    host_max_abs_diff: float | None
    #: per inference under qemu (emulated: not a device's latency)
    mean_ms: float
    #: `trace=True`: one input's instructions per category, kernel and op (`arm_trace`)
    trace: arm_trace.InvokeTrace | None = None


@dataclasses.dataclass(frozen=True)
class ArmResult:
    """`verify_arm`'s findings for one file."""

    model: str
    num_inputs: int
    inputs: str  # where they came from
    rule: str  # the parity rule applied
    modes: tuple[ModeResult, ...]
    runtime: str

    @property
    def agrees(self) -> bool:
        return all(mode.agrees for mode in self.modes)

    @property
    def traced(self) -> bool:
        return any(mode.trace is not None for mode in self.modes)

    def as_dict(self) -> dict:
        """A JSON-ready dict; a mode's `trace` only where it was traced."""
        found = {**dataclasses.asdict(self), "agrees": self.agrees}
        for mode in found["modes"]:
            if mode["trace"] is None:
                del mode["trace"]
        return found

    def table(self) -> str:
        """The modes as a table, with the inputs and the rule under it."""
        from tabulate import tabulate

        def figure(value, form: str) -> str:
            return "-" if value is None else format(value, form)

        rows = [
            [
                m.mode,
                "yes" if m.agrees else "NO",
                f"{m.within_tolerance:.0%}",
                f"{m.top1_agreement:.0%}",
                f"{m.max_abs_diff:.3g}",
                figure(m.max_lsb, ".0f"),
                figure(m.host_max_abs_diff, ".3g"),
                f"{m.mean_ms:.1f}",
            ]
            for m in self.modes
        ]
        header = [
            "mode", "agrees", "inputs ok", "top-1", "max |diff|", "max steps",
            "vs x86 build", "ms (qemu)",
        ]  # fmt: skip
        table = tabulate(rows, header, tablefmt="simple", disable_numparse=True)
        text = (
            f"{self.model}: aarch64 LCE kernels (qemu) vs LCE's x86 interpreter\n{table}\n"
            f"({self.num_inputs} inputs: {self.inputs}; rule: {self.rule})"
        )
        return f"{text}\n\n{trace_tables(self.modes)}" if self.traced else text


def verify_arm(
    model_path: str | os.PathLike,
    modes: tuple[str, ...] | list[str] = MODES,
    inputs: int | np.ndarray | None = None,
    runtime: str | os.PathLike | Runtime | None = None,
    trace: bool = False,
) -> ArmResult:
    """Run `model_path` on LCE's aarch64 kernels under qemu in each of `modes` and compare
    with LCE's x86 interpreter (module doc).

    `inputs`: a number of seeded random normal inputs (default `DEFAULT_INPUTS`) or a batch
    of the user's own (float, of the model's input shape). `runtime`: see `find_runtime`.
    `trace`: also count the aarch64 instructions of the first input in every mode (module
    doc; `MissingToolError` without the aarch64 binutils, before anything runs).
    Raises `UsageError` for a wrong mode or inputs, `FlatbufferError` for a damaged file
    (before anything runs), `MissingToolError` when qemu or the runtime is missing,
    `InterpreterError` when the runner crashes on or rejects the file. A disagreement is
    not raised: it is the result's `agrees` (False)."""
    from ienet_tf.export import int8_verify

    path = Path(model_path)
    modes = _check_modes(modes)
    try:
        flatbuffer = path.read_bytes()
    except OSError as error:
        raise UsageError(
            f"cannot read {path} ({error.strerror or error}); give a .tflite"
        ) from None
    verify(flatbuffer, str(path))  # before anything (qemu, LCE's interpreter) reads it
    found = interface(flatbuffer)
    if len(found.input_shapes) != 1 or len(found.output_shapes) != 1:
        raise UsageError(
            f"{path}: verify-arm compares models with one input and one output (this one has "
            f"{len(found.input_shapes)} and {len(found.output_shapes)})"
        )
    batch, described = _inputs(inputs, found.input_shapes[0], path.name)
    runtime = runtime if isinstance(runtime, Runtime) else find_runtime(runtime)
    symbols = arm_trace.Symbols.of(runtime.aarch64) if trace else None
    summary = int8_verify.op_summary(int8_verify.int8_ops(flatbuffer))
    # A binary + int8 model (no float op) is judged in output steps, as its export was.
    quantized = summary["float"] == 0 and summary["int8"] > 0
    if quantized:
        rule = (
            f"int8: {int8_verify.DEFAULT_ELEMENT_FRACTION:.0%} of an input's outputs within "
            f"{int8_verify.DEFAULT_LSB_TOLERANCE:g} steps, "
            f"{int8_verify.DEFAULT_MIN_AGREEMENT:.0%} of inputs"
        )
    else:
        from ienet_tf.export.tflite import DEFAULT_MIN_AGREEMENT, DEFAULT_TOLERANCE, lce_predict

        rule = f"max |diff| <= {DEFAULT_TOLERANCE:g} on {DEFAULT_MIN_AGREEMENT:.0%} of inputs"
        expected = lce_predict(flatbuffer, batch)
    results = []
    with tempfile.TemporaryDirectory(prefix="ienet-verify-arm-") as folder:
        work = Path(folder)
        info = _run(runtime, path, ["--info"])
        (work / "inputs.bin").write_bytes(_encode(batch, info["inputs"][0]))
        for mode in modes:
            arm, timing = _predict(runtime, path, work, mode, len(batch), info)
            host = None
            if runtime.host is not None:
                host_out, _ = _predict(runtime, path, work, mode, len(batch), info, emulate=False)
                host = float(np.abs(host_out.astype(np.float64) - arm).max())
            if quantized:
                agreement = int8_verify.int8_parity(_Outputs(arm), flatbuffer, batch)
                agrees = agreement.within_tolerance >= int8_verify.DEFAULT_MIN_AGREEMENT
                max_lsb = agreement.max_lsb
            else:
                agreement = _compare(expected, arm)
                agrees = agreement.within_tolerance >= DEFAULT_MIN_AGREEMENT
                max_lsb = None
            traced = None
            if symbols is not None:
                traced = _trace(runtime, path, flatbuffer, batch[:1], info, mode, symbols)
            results.append(
                ModeResult(
                    mode=mode,
                    agrees=bool(agrees),
                    within_tolerance=agreement.within_tolerance,
                    top1_agreement=agreement.top1_agreement,
                    max_abs_diff=agreement.max_abs_diff,
                    max_lsb=max_lsb,
                    host_max_abs_diff=host,
                    mean_ms=float(timing["mean_ms"]),
                    trace=traced,
                )
            )
    return ArmResult(
        model=str(path),
        num_inputs=len(batch),
        inputs=described,
        rule=rule,
        modes=tuple(results),
        runtime=str(runtime.folder),
    )


class ArmCheck:
    """The aarch64 check as an export check: `to_tflite(model, path, inputs,
    checks=[ArmCheck()])` (`ienet export --verify-arm`) runs the converted file on LCE's
    aarch64 kernels in `modes` on the export's parity inputs before anything is written;
    a disagreeing mode fails the export. The runtime is found at construction
    (`find_runtime`), so a missing qemu or runtime fails before anything converts.

    The result (`ArmResult`) is the export's `checks["arm"]`; the sidecar's `arm` section is
    its `as_dict()` without this machine's paths."""

    name = "arm"
    doing = "running it on the aarch64 kernels (qemu)"

    def __init__(
        self,
        runtime: str | os.PathLike | Runtime | None = None,
        modes: tuple[str, ...] | list[str] = MODES,
    ):
        self.runtime = runtime if isinstance(runtime, Runtime) else find_runtime(runtime)
        self.modes = _check_modes(modes)

    def __call__(self, flatbuffer: bytes, path: Path, inputs: np.ndarray) -> tuple[ArmResult, dict]:
        with tempfile.TemporaryDirectory(prefix="ienet-export-arm-") as folder:
            copy = Path(folder) / path.name  # `path` is written only once every check passed
            copy.write_bytes(flatbuffer)
            result = verify_arm(copy, self.modes, inputs, self.runtime)
        result = dataclasses.replace(result, model=str(path), inputs="the parity inputs")
        if not result.agrees:
            raise ExportError(f"{disagreement(result)}; nothing was written.")
        section = {k: v for k, v in result.as_dict().items() if k not in ("model", "runtime")}
        return result, section


def disagreement(result: ArmResult) -> ExportError:
    """The one-line error for a result that does not agree (`ienet verify-arm` raises it)."""
    failed = [m for m in result.modes if not m.agrees]
    what = "; ".join(
        f"{m.mode}: {m.within_tolerance:.0%} of inputs agree, max |diff| {m.max_abs_diff:.3g}"
        for m in failed
    )
    return ExportError(
        f"{result.model}: the aarch64 LCE kernels disagree with LCE's x86 interpreter in "
        f"{len(failed)} of {len(result.modes)} mode(s) ({what}; rule: {result.rule}); the "
        "file would compute something else on an ARM device"
    )


def _trace(
    runtime: Runtime,
    path: Path,
    flatbuffer: bytes,
    sample: np.ndarray,
    info: dict,
    mode: str,
    symbols: arm_trace.Symbols,
) -> arm_trace.InvokeTrace:
    """`sample` (one input) invoked `TRACE_INVOKES` times under qemu's trace: the last."""
    inputs = _encode(np.repeat(sample, TRACE_INVOKES, 0), info["inputs"][0])
    found = arm_trace.trace_run(
        runtime, path, inputs, TRACE_INVOKES, mode, symbols=symbols, timeout=TRACE_TIMEOUT_S,
        per_op=True,
    )  # fmt: skip
    return arm_trace.summarize(found, [op.name for op in read_graph(flatbuffer).operators])


def trace_tables(modes: tuple[ModeResult, ...] | list[ModeResult]) -> str:
    """The traced modes' instructions: per category (every mode a column), the LCE kernel
    functions that ran, and per operator with its top function."""
    from tabulate import tabulate

    def table(rows: list[list[str]], header: list[str]) -> str:
        return tabulate(rows, header, tablefmt="simple", disable_numparse=True)

    traced = [m for m in modes if m.trace is not None]
    names = [m.mode for m in traced]
    rows = []
    for name, short in zip(arm_trace.CATEGORY_NAMES, arm_trace.SHORT, strict=True):
        counts = [(m.trace.categories[name], m.trace.instructions) for m in traced]
        if any(count for count, _ in counts):
            rows.append([short, *(f"{c:,} ({c / total:.0%})" for c, total in counts)])
    rows.append(["total", *(f"{m.trace.instructions:,}" for m in traced)])
    rows.append(["first invoke", *(f"{m.trace.first_invoke_instructions:,}" for m in traced)])
    parts = [
        f"aarch64 instructions of one invoke of input 1 (the second of {TRACE_INVOKES}; the "
        "first also packs LCE's filters). qemu counts, not latency:",
        table(rows, ["category", *names]),
        "",
    ]
    kernels = [
        [m.mode if j == 0 else "", k.function, k.category, f"{k.instructions:,}"]
        for m in traced
        for j, k in enumerate(m.trace.kernels)
    ]
    if kernels:
        parts.append("LCE kernels that ran (bconv and bitpack functions, most instructions first):")
        parts.append(table(kernels, ["mode", "function", "category", "instructions"]))
    else:
        parts.append("LCE kernels that ran: none (no bconv or bitpack function executed)")
    if all(m.trace.ops is not None for m in traced):
        rows = []
        for index, op in enumerate(traced[0].trace.ops):
            ops = [m.trace.ops[index] for m in traced]
            tops = [o.functions[0].function if o.functions else "-" for o in ops]
            top = tops[0] if len(set(tops)) == 1 else " | ".join(tops)  # once if the same
            rows.append([str(index), op.op, *(f"{o.instructions:,}" for o in ops), top])
        between = traced[0].trace.instructions - sum(o.instructions for o in traced[0].trace.ops)
        parts.append("")
        parts.append(
            f"Per operator, in execution order ({names[0]}: {between:,} instructions of the "
            "interpreter between ops are in none):"
        )
        where = f" ({' | '.join(names)}, where they differ)" if len(names) > 1 else ""
        parts.append(table(rows, ["#", "op", *names, f"top function{where}"]))
    return "\n".join(parts)


def _compare(expected: np.ndarray, actual: np.ndarray):
    from ienet_tf.export.tflite import DEFAULT_TOLERANCE, compare_outputs

    return compare_outputs(expected, actual.reshape(expected.shape), DEFAULT_TOLERANCE)


class _Outputs:
    """Outputs already computed (the aarch64 runner's), standing in for the Keras model
    that `int8_verify.int8_parity` calls: the int8 rule is applied as the export applies
    it, to the x86 interpreter against these."""

    def __init__(self, outputs: np.ndarray):
        self._outputs = outputs

    def __call__(self, inputs, training: bool = False) -> _Outputs:
        return self

    def numpy(self) -> np.ndarray:
        return self._outputs


def _check_modes(modes) -> tuple[str, ...]:
    modes = (modes,) if isinstance(modes, str) else tuple(modes)
    wrong = [m for m in modes if m not in MODES]
    if wrong or not modes:
        raise UsageError(
            f"modes must be some of {', '.join(MODES)}, got {one_line(repr(wrong or modes), 80)}"
        )
    return tuple(dict.fromkeys(modes))


def _inputs(inputs, shape: tuple[int, ...], name: str) -> tuple[np.ndarray, str]:
    """The batch to run, and where it came from."""
    dims = tuple(shape[1:])
    if inputs is None or is_int(inputs, 1):
        count = DEFAULT_INPUTS if inputs is None else int(inputs)
        batch = np.random.default_rng(0).normal(size=(count, *dims)).astype(np.float32)
        return batch, "seeded random normal (seed 0)"
    if isinstance(inputs, (bool, numbers.Number)):
        raise UsageError(f"inputs must be a number of inputs >= 1 or an array, got {inputs!r}")
    return input_batch(inputs, (None, *dims), name, "inputs"), "given"


def _encode(batch: np.ndarray, tensor: dict) -> bytes:
    """The runner's input bytes for `batch`: float32 as it is, int8 quantized with the
    tensor's scale and zero point as `int8_verify.int8_predict` quantizes for x86."""
    if tensor["type"] == "FLOAT32":
        return np.ascontiguousarray(batch, np.float32).tobytes()
    if tensor["type"] == "INT8":
        scale, zero = tensor["scale"], tensor["zero_point"]
        return np.clip(np.floor(batch / scale + 0.5) + zero, -128, 127).astype(np.int8).tobytes()
    raise UsageError(f"verify-arm feeds float32 or int8 inputs, not {tensor['type']}")


def _predict(
    runtime: Runtime,
    path: Path,
    work: Path,
    mode: str,
    count: int,
    info: dict,
    emulate: bool = True,
) -> tuple[np.ndarray, dict]:
    """Run the runner (aarch64 under qemu, or the x86 build) on work/inputs.bin: the
    outputs as float64 (int8 ones dequantized) and its timing line."""
    out = work / "outputs.bin"
    files = ["--inputs", str(work / "inputs.bin"), "--outputs", str(out)]
    timing = _run(runtime, path, ["--mode", mode, *files, "--count", str(count)], emulate)
    tensor = info["outputs"][0]
    dtype = _DTYPES.get(tensor["type"])
    if dtype is None:
        raise UsageError(f"verify-arm compares float32 or int8 outputs, not {tensor['type']}")
    values = np.frombuffer(out.read_bytes(), dtype).reshape(count, -1).astype(np.float64)
    if tensor["type"] == "INT8":  # dequantized as int8_predict does for x86
        values = (values - tensor["zero_point"]) * tensor["scale"]
    return values, timing


def _run(runtime: Runtime, path: Path, arguments: list[str], emulate: bool = True) -> dict:
    """One run of the runner; its JSON line, or `InterpreterError` naming the file."""
    command = [str(runtime.aarch64 if emulate else runtime.host), str(path), *arguments]
    if emulate:
        command.insert(0, runtime.qemu)
    which = "aarch64 LCE runtime" if emulate else "x86 build of the LCE runtime"
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=STALL_TIMEOUT_S, check=False
        )
    except subprocess.TimeoutExpired:
        raise InterpreterError(
            f"{path}: the {which} ran for more than {STALL_TIMEOUT_S:g} s and was stopped"
        ) from None
    if done.returncode < 0:
        raise InterpreterError(
            f"{path}: the {which} crashed ({_signal_name(-done.returncode)}) on this file"
        )
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        reason = [line for line in done.stderr.splitlines() if line.strip()]
        raise InterpreterError(
            f"{path}: the {which} rejected this file ({one_line('; '.join(reason[-4:]))})"
        )
    return json.loads(lines[-1])
