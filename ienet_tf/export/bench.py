"""Latency of converted models in the LCE interpreter, and the result schema that
`converters/lce_benchmark.py` (the on-device `lce_benchmark_model`) shares.

On x86 LCE has no optimized binary kernels: its `LceBconv2d` runs a generic (or, with
`reference_bconv=True`, the reference) kernel, often slower than the float TFLite path.
x86 timings measure correctness and relative cost between our own models, never the
speed-up of a binary network on ARM.

The LCE interpreter does not verify the flatbuffer it is given, and a damaged file can
crash it (a segmentation fault kills the whole process, no exception to catch). So
`benchmark` verifies the file first (`flatbuffer.verify`) and then runs the interpreter in
a child process: a fresh `python -I -c` that loads only numpy and LCE's interpreter
extension (no TensorFlow, ~0.2 s to start). A crash or an interpreter error becomes one
`UsageError` line naming the file; the timings come back to this process.
"""

from __future__ import annotations

import contextlib
import dataclasses
import glob
import importlib.machinery
import importlib.util
import inspect
import json
import os
import platform
import queue
import signal
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
from collections.abc import Callable

from ienet_tf.checks import is_int
from ienet_tf.errors import UsageError
from ienet_tf.export.flatbuffer import verify
from ienet_tf.io import one_line

__all__ = [
    "architecture",
    "counterparts",
    "read_sidecar",
    "results_table",
    "MAX_RUNS",
    "MAX_THREADS",
    "MAX_WARMUP",
    "STALL_TIMEOUT_S",
    "X86_CAVEAT",
    "BenchResult",
    "InterpreterError",
    "benchmark",
    "check_settings",
]

X86_CAVEAT = (
    "Note: LCE has no optimized binary kernels for x86; these timings are not the speed-up "
    "of a binary network on ARM. Measure on the device with converters/lce_benchmark.py."
)

#: The most interpreter threads `benchmark` accepts (`--threads`).
MAX_THREADS = 64
#: The most timed runs (`--runs`).
MAX_RUNS = 100_000
#: The most untimed warm-up runs (`--warmup`).
MAX_WARMUP = 10_000
#: Seconds the interpreter may spend on one inference (or on loading the model) before
#: the child process is stopped as hung.
STALL_TIMEOUT_S = 600.0

_FIX = "it is not a valid model for the LCE interpreter (write one with `ienet export`)"


class InterpreterError(UsageError):
    """The LCE interpreter crashed on, or rejected, a flatbuffer that passed `verify`."""


@dataclasses.dataclass(frozen=True)
class BenchResult:
    """One latency measurement (milliseconds per single-image inference)."""

    model: str
    tool: str
    machine: str
    threads: int
    runs: int
    median_ms: float | None
    mean_ms: float
    min_ms: float
    max_ms: float
    std_ms: float
    size_bytes: int
    reference_bconv: bool = False

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


def check_settings(threads: int, runs: int, warmup: int) -> None:
    """Raise `UsageError` unless 1 <= threads <= `MAX_THREADS`, 1 <= runs <= `MAX_RUNS` and
    0 <= warmup <= `MAX_WARMUP` (all integers)."""
    for option, value, low, high in (
        ("threads", threads, 1, MAX_THREADS),
        ("runs", runs, 1, MAX_RUNS),
        ("warmup", warmup, 0, MAX_WARMUP),
    ):
        if not is_int(value, low, high):
            raise UsageError(
                f"{option} must be an integer from {low} to {high}, got {value!r} "
                f"(set --{option} in that range)"
            )


def benchmark(
    flatbuffer: bytes,
    name: str = "model",
    threads: int = 1,
    runs: int = 50,
    warmup: int = 5,
    reference_bconv: bool = False,
    progress: Callable[[int, int], None] | None = None,
    *,
    source: str | os.PathLike | None = None,
) -> BenchResult:
    """Time `runs` single-image inferences after `warmup` untimed ones, in the LCE
    interpreter in a child process.

    `source` (default: `name`) names the flatbuffer in errors, e.g. its path. Raises
    `UsageError` for settings out of range (`check_settings`), `FlatbufferError` for a file
    that fails `flatbuffer.verify`, and `InterpreterError` when the interpreter crashes on,
    rejects or hangs on the file. `progress(done, runs)` is called after every timed run.
    """
    check_settings(threads, runs, warmup)
    label = str(name if source is None else source)
    verify(flatbuffer, label)
    request = {
        "threads": threads,
        "runs": runs,
        "warmup": warmup,
        "reference_bconv": bool(reference_bconv),
        "extension": _interpreter_extension(),
        "path": [p for p in sys.path if p],
    }
    timings = _run_child(request, bytes(flatbuffer), label, progress)
    return BenchResult(
        model=name,
        tool="lce-python-interpreter",
        machine=f"{platform.machine()} {platform.processor() or platform.system()}".strip(),
        threads=threads,
        runs=runs,
        median_ms=statistics.median(timings),
        mean_ms=statistics.fmean(timings),
        min_ms=min(timings),
        max_ms=max(timings),
        std_ms=statistics.pstdev(timings),
        size_bytes=len(flatbuffer),
        reference_bconv=reference_bconv,
    )


def _interpreter_extension() -> str:
    """The path of LCE's interpreter extension, found without importing LCE (which
    imports TensorFlow)."""
    spec = importlib.util.find_spec("larq_compute_engine")
    if spec is None or not spec.submodule_search_locations:
        raise UsageError(
            "larq-compute-engine is not installed; install it with "
            "`pip install larq-compute-engine` to run `ienet bench`"
        )
    for location in spec.submodule_search_locations:
        for suffix in importlib.machinery.EXTENSION_SUFFIXES:
            found = glob.glob(
                os.path.join(location, "tflite", "python", f"interpreter_wrapper_lite{suffix}")
            )
            if found:
                return found[0]
    raise UsageError(
        f"larq-compute-engine at {list(spec.submodule_search_locations)} has no interpreter "
        "extension (tflite/python/interpreter_wrapper_lite); reinstall it with "
        "`pip install --force-reinstall larq-compute-engine`"
    )


def _run_child(
    request: dict, flatbuffer: bytes, label: str, progress: Callable[[int, int], None] | None
) -> list[float]:
    """Run `_child_main` in a fresh interpreter; its timings, or `InterpreterError`."""
    child_main = _child_main  # looked up at call time: a test can substitute it
    source = textwrap.dedent(inspect.getsource(child_main)) + f"\n{child_main.__name__}()\n"
    env = dict(os.environ)
    env.setdefault("OPENBLAS_NUM_THREADS", "1")  # numpy's thread pool: idle, but not free
    with tempfile.TemporaryFile() as log:
        child = subprocess.Popen(
            [sys.executable, "-I", "-c", source],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log,
            env=env,
        )
        try:
            messages = _start_reader(child)
            try:
                child.stdin.write(json.dumps(request).encode() + b"\n" + flatbuffer)
                child.stdin.close()
            except BrokenPipeError:
                pass  # the child died early: its exit code says how
            timings = error = None
            done = 0
            while timings is None and error is None:
                try:
                    message = messages.get(timeout=STALL_TIMEOUT_S)
                except queue.Empty:
                    raise InterpreterError(
                        f"{label}: the LCE interpreter made no progress for "
                        f"{STALL_TIMEOUT_S:g} s on this file and was stopped; {_FIX}"
                    ) from None
                if message is None:  # end of output: the child exited
                    break
                if "done" in message and progress:
                    for count in range(done + 1, message["done"] + 1):
                        progress(count, request["runs"])
                    done = message["done"]
                timings = message.get("timings")
                error = message.get("error")
            try:  # it has reported: give it a moment to exit
                code = child.wait(timeout=30 if timings or error else STALL_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                code = None  # killed below
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()
        log.seek(0)
        text = log.read().decode(errors="replace")
    if timings is not None:  # measured (a failure while exiting does not undo that)
        return timings
    errors = _logged_errors(text)
    if code is not None and code < 0:
        what = _signal_name(-code)
        raise InterpreterError(
            f"{label}: the LCE interpreter crashed ({what}) on this file; {_FIX}"
            + (f" [its log: {errors}]" if errors else "")
        )
    last = next((line for line in reversed(text.splitlines()) if line.strip()), "no output")
    detail = errors or error or one_line(f"its process exited with code {code}: {last}", 300)
    raise InterpreterError(f"{label}: the LCE interpreter rejected this file ({detail}); {_FIX}")


def _start_reader(child: subprocess.Popen) -> queue.Queue:
    """A queue of the child's JSON messages, then None at the end of its output."""
    messages: queue.Queue = queue.Queue()

    def read() -> None:
        for line in child.stdout:
            try:
                messages.put(json.loads(line))
            except ValueError:
                pass
        messages.put(None)

    threading.Thread(target=read, daemon=True).start()
    return messages


def _logged_errors(log: str, limit: int = 300) -> str:
    """TFLite's `ERROR:` lines (the reason behind an interpreter exception), one line."""
    lines = [
        line.split("ERROR:", 1)[1].strip().rstrip(".")
        for line in log.splitlines()
        if "ERROR:" in line
    ]
    text = "; ".join(dict.fromkeys(line for line in lines if line))  # each once, in order
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _signal_name(number: int) -> str:
    try:
        name = signal.Signals(number).name
    except ValueError:
        return f"signal {number}"
    hint = ", out of memory?" if name == "SIGKILL" else ""
    return f"signal {number}, {name}{hint}"


def _child_main() -> None:  # pragma: no cover - runs in the child process
    """The child: read a JSON request line and the flatbuffer from stdin, time the model,
    write JSON lines to stdout: {"done": n} per run, then {"timings": [...]} or
    {"error": "..."}. Self-contained (its source is run with `python -I -c`)."""
    import importlib.machinery
    import importlib.util
    import json
    import os
    import sys
    import time

    try:
        import resource

        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # a crash dumps no core file
    except (ImportError, ValueError, OSError):
        pass
    out = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)  # whatever the C++ side prints goes to the log, not into the messages

    def send(**message) -> None:
        out.write(json.dumps(message) + "\n")
        out.flush()

    request = json.loads(sys.stdin.buffer.readline())
    flatbuffer = sys.stdin.buffer.read()
    sys.path[:] = request["path"]
    try:
        import numpy as np

        path = request["extension"]
        loader = importlib.machinery.ExtensionFileLoader("interpreter_wrapper_lite", path)
        spec = importlib.util.spec_from_file_location(
            "interpreter_wrapper_lite", path, loader=loader
        )
        module = importlib.util.module_from_spec(spec)
        loader.exec_module(module)
        interpreter = module.LiteInterpreter(
            flatbuffer, request["threads"], request["reference_bconv"], False, False
        )
        shape = interpreter.input_shapes[0]
        rng = np.random.default_rng(0)
        if interpreter.input_types[0] == np.int8:  # a binary + int8 model with int8 input
            image = rng.integers(-128, 128, size=(1, *shape[1:])).astype(np.int8)
        else:
            image = rng.normal(size=(1, *shape[1:])).astype(np.float32)
        for _ in range(request["warmup"]):
            interpreter.predict([image])
            send(warmup=True)
        timings = []
        for i in range(request["runs"]):
            start = time.perf_counter()
            interpreter.predict([image])
            timings.append((time.perf_counter() - start) * 1e3)
            send(done=i + 1)
        send(timings=timings)
    except Exception as error:
        send(error=" ".join(f"{type(error).__name__}: {error}".split())[:300])


def counterparts(
    tflite: str | os.PathLike,
    variants=("fp", "bireal"),
    progress: Callable[[str], None] = print,
    *,
    flatbuffer: bytes | None = None,
) -> dict[str, bytes]:
    """The float and Bi-Real (K = 1) versions of an exported model's architecture,
    converted: `{"<network> <variant>": flatbuffer}`. The network and its input shape and
    classes come from `architecture` (the sidecar, else the file itself)."""
    from ienet_tf import models
    from ienet_tf.export.tflite import convert

    network, input_shape, num_classes = architecture(tflite, flatbuffer)
    converted = {}
    for variant in variants:
        model = models.build(network, variant, num_classes=num_classes, input_shape=input_shape)
        progress(f"converting the {variant} counterpart of {network} ...")
        converted[f"{network} {variant}"], _ = convert(model)
    return converted


def architecture(
    tflite: str | os.PathLike, flatbuffer: bytes | None = None
) -> tuple[str, tuple[int, ...], int]:
    """The registered network (`models.available()`), input shape and number of classes of
    an exported model: from the sidecar beside `tflite` if it records this file (its SHA-256)
    — the source config of `ienet export --run`, else the Keras model's name, which is all
    `export.to_tflite` knows of a model built by `models.build` (`<network>_<variant>...`) —
    otherwise from the flatbuffer (`bytes` of `tflite` if not given): its input and output
    shapes and the model name its tensor names carry. `UsageError` when neither names a
    registered network (a model of the user's own has no counterparts to build)."""
    import hashlib

    from ienet_tf import config as config_lib
    from ienet_tf.export.flatbuffer import interface

    if flatbuffer is None:
        with open(tflite, "rb") as f:
            flatbuffer = f.read()
    report = read_sidecar(tflite)
    if report.get("sha256") != hashlib.sha256(flatbuffer).hexdigest():
        report = {}  # another file's (or no) report: the file itself is the evidence
    source = report.get("source")
    network = None
    if isinstance(source, dict) and isinstance(source.get("config"), dict):
        with contextlib.suppress(ValueError):  # an invalid config names nothing
            network = config_lib.from_dict(source["config"]).model.name
    found = interface(flatbuffer)
    network = (
        network or _registered_network(report.get("model")) or _registered_network(found.name_scope)
    )
    shape, classes = report.get("input_shape"), report.get("num_classes")
    if network is None:
        from ienet_tf import models

        name = report.get("model") or found.name_scope
        raise UsageError(
            f"{tflite}: --compare builds the float and Bi-Real counterparts of a registered "
            f"network ({', '.join(models.available())}), but this file's model "
            f"({name or 'unnamed'!r}) is none of them (models.build names its models "
            "<network>_<variant>); bench it without --compare"
        )
    if not (isinstance(shape, list) and is_int(classes, 2)):
        shape, classes = found.input_shapes[0][1:], found.output_shapes[0][-1]
    return network, tuple(int(d) for d in shape), int(classes)


def read_sidecar(tflite: str | os.PathLike) -> dict:
    """The sidecar report `ienet export` (or `export.to_tflite`) wrote beside `tflite`; {}
    if there is none or it is not a JSON object."""
    try:
        with open(f"{os.fspath(tflite)}.json", "rb") as f:
            report = json.load(f)
    except (OSError, ValueError):
        return {}
    return report if isinstance(report, dict) else {}


def _registered_network(model_name) -> str | None:
    """The registered network a Keras model name of `models.build`'s form names:
    `<network>_<variant>[_k<K>][_<modifier>...]`, e.g. "resnet18_cifar_ienet_k2"."""
    from ienet_tf import models

    if not isinstance(model_name, str):
        return None
    for network in sorted(models.available(), key=len, reverse=True):
        rest = model_name.removeprefix(f"{network}_")
        if rest != model_name and rest.split("_", 1)[0] in models.VARIANTS:
            return network
    return None


def results_table(results: list[BenchResult]) -> str:
    """The results as a table, with latency and size ratios to the first one."""
    from tabulate import tabulate

    base = results[0]
    rows = [
        [
            r.model,
            f"{r.median_ms:.2f}",
            f"{r.min_ms:.2f}",
            f"{r.max_ms:.2f}",
            f"{r.size_bytes / 1e3:.1f}",
            f"{r.median_ms / base.median_ms:.2f}",
            f"{r.size_bytes / base.size_bytes:.2f}",
        ]
        for r in results
    ]
    header = ["model", "median ms", "min", "max", "size KB", "latency x", "size x"]
    table = tabulate(rows, header, tablefmt="simple", disable_numparse=True)
    return (
        f"{table}\n({base.threads} thread(s), {base.runs} runs, {base.machine}; ratios to "
        f"{base.model})\n{X86_CAVEAT}"
    )
