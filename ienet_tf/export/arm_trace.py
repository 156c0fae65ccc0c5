"""Executed aarch64 instructions of LCE's ARM kernels, counted from qemu's trace.

One implementation serves `verify_arm(..., trace=True)` (`ienet verify-arm --trace`) and
the instruction-count benchmark (`benchmarks/arm_instructions.py`, whose docstring is the
method's long form).

How it counts: `ienet-lce-runner` (`make arm-runtime`) runs under `qemu-aarch64-static -d
in_asm,exec,nochain` (Debian's static qemu 7.2 has no TCG plugins). qemu runs guest code in
translated blocks (TBs): `in_asm` prints each TB once, when it is translated, with its
instructions; `exec` prints a line for every execution of a TB, and `nochain` stops TBs
jumping into each other unlogged. Instructions executed = the sum over TB executions of
that TB's instruction count. The log (0.3 to tens of GB) is never stored: it streams
through a pipe into `TraceCounter`.

Where: the log is cut at every execution of the TB at the entry of
`tflite::Interpreter::Invoke()` and of the TB at its return address in `main`, so loading
and file I/O fall outside every invoke (`invoke_markers`). With `per_op`, also at the entry
of `tflite::Subgraph::OpInvoke` (which tail-calls the op's kernel) and at its return
address in `tflite::Subgraph::Invoke()` (`op_markers`): the n-th such segment of an invoke
is the n-th node of TFLite's execution plan, i.e. the n-th operator of the flatbuffer. The
interpreter's loop between two ops counts for the invoke, in no op. No runner change: the
markers are addresses of the existing static binary.

What: a TB is attributed to the function containing its first instruction (`nm -n -S -C`
of the static binary: `Symbols`), and a function to the first of `CATEGORIES` whose
pattern its demangled name matches (`category`). There are no call stacks: libc's memcpy
counts as libc whichever op called it, and a kernel inlined into its caller counts with
the caller.

Not latency: qemu executes every instruction alike (no caches, no stalls, no pipeline).
"""

from __future__ import annotations

import bisect
import collections
import dataclasses
import fcntl
import json
import os
import re
import select
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Protocol

from ienet_tf.errors import MissingToolError, UsageError
from ienet_tf.export.bench import InterpreterError

__all__ = [
    "CATEGORIES",
    "CATEGORY_NAMES",
    "KERNEL_CATEGORIES",
    "SHORT",
    "Count",
    "InvokeTrace",
    "OpTrace",
    "Symbols",
    "Trace",
    "TraceCounter",
    "category",
    "grouped",
    "invoke_markers",
    "invokes_of",
    "kept",
    "op_markers",
    "short_name",
    "summarize",
    "trace_run",
]

#: (category, pattern over the demangled function name): the first match wins. LCE's
#: binary conv reuses TFLite's im2col templates on bitpacked `int` words, and LCE's BGEMM
#: ruy's packing templates on `int`/`unsigned int`; ruy's untyped front end (TrMul, its
#: allocator, the packed-matrix set-up) serves float and binary GEMMs alike and counts as
#: runtime. `[plt]` is the static binary's ifunc call stubs (memcpy, memset...).
CATEGORIES = (
    (
        "LCE binary conv (LceBconv2d)",
        r"compute_engine::core::(bgemm|bconv2d|indirect_bgemm)|compute_engine::tflite::bconv"
        r"|compute_engine::ref::bconv|optimized_ops::(Im2col|DilatedIm2col|"
        r"ExtractPatchIntoBufferColumn)<int>|zero_padding|ruy::[\w:]+<.*\bint>\(",
    ),
    (
        "LCE bitpacking (LceQuantize)",
        r"compute_engine::core::bitpacking|compute_engine::tflite::Quantize",
    ),
    ("LCE other (dequantize, bmaxpool)", r"compute_engine::"),
    (
        "float conv / FC GEMM (im2col, ruy float kernels)",
        r"ruy::\w*Float|ruy::[\w:]+<.*\bfloat\b|Im2col|im2col|ExtractPatchIntoBufferColumn"
        r"|ops::builtin::(conv|fully_connected|depthwise_conv)::|optimized_ops::(Conv|"
        r"FullyConnected|DepthwiseConv)|cpu_backend_gemm::|Eigen",
    ),
    (
        "elementwise (ADD, ADD_N, MUL, PRELU, ...)",
        r"ops::builtin::(add|add_n|sub|mul|maximum_minimum|activations|prelu)::|"
        r"optimized_ops::(Add|AddN|BroadcastAdd|Mul|BroadcastMul|Sub|BroadcastSub|Prelu|"
        r"BroadcastPrelu|Relu|Maximum|Minimum)|Elementwise|tensor_utils::|"
        r"ProcessBroadcastShapes",
    ),
    (
        "pool / mean / pad / softmax / reshape",
        r"tflite::ops::|optimized_ops::|reference_ops::|reference_integer_ops::",
    ),
    (
        "libc (memcpy, memset, malloc)",
        r"^\[plt\]|^_*(mem|str|malloc|free|calloc|realloc|_int_|libc_|cfree|tcache)",
    ),
    (
        "runtime (TFLite interpreter, ruy front end, C++ library)",
        r"tflite::|ruy::|std::|"
        r"operator (new|delete)",
    ),
)
CATEGORY_NAMES = (*(name for name, _ in CATEGORIES), "other")
#: Short column names of the categories (same order as CATEGORY_NAMES).
SHORT = ("bconv", "bitpack", "LCE other", "float conv/FC", "elementwise", "pool/pad/mean",
         "libc", "runtime", "other")  # fmt: skip
#: The categories of LCE's own kernels: the functions `summarize` lists as the kernels.
KERNEL_CATEGORIES = CATEGORY_NAMES[:2]
_RULES = [(name, re.compile(pattern)) for name, pattern in CATEGORIES]
_BINUTILS = "apt-get install -y binutils-aarch64-linux-gnu"


def category(function: str) -> str:
    """The category of a demangled function name (the first matching rule)."""
    for name, rule in _RULES:
        if rule.search(function):
            return name
    return "other"


def kept(functions: dict[str, int], total: int) -> dict[str, int]:
    """The functions with at least 0.01% of `total`; the rest summed per category (as
    `[smaller functions: CATEGORY]`, which `grouped` reads back)."""
    found: dict[str, int] = {}
    rest: collections.Counter = collections.Counter()
    for name, count in sorted(functions.items(), key=lambda item: -item[1]):
        if count * 10_000 >= total:
            found[name] = count
        else:
            rest[category(name)] += count
    for group, count in rest.items():
        found[f"[smaller functions: {group}]"] = count
    return found


def grouped(functions: dict[str, int]) -> dict[str, int]:
    """Instructions per category (every category, in order) from instructions per function."""
    found = dict.fromkeys(CATEGORY_NAMES, 0)
    for name, count in functions.items():
        small = re.fullmatch(r"\[smaller functions: (.*)\]", name)
        found[small.group(1) if small else category(name)] += count
    return found


def short_name(function: str, template: int = 24) -> str:
    """A demangled name without its return type, parameters and outer namespaces: the last
    two components (`bgemm::BinaryKernelNeon8x4<float>`; three under a nested `tflite::`,
    `compute_engine::tflite::QuantizeEval`), template arguments longer than `template`
    characters elided (`bgemm::RunRuyPack<…>`)."""
    name = re.sub(r"( \[clone [^\]]*\])+$", "", function.strip())
    name = re.sub(r"\s+const$", "", name)
    if name.endswith(")"):  # the parameter list
        depth = 0
        for at in range(len(name) - 1, -1, -1):
            depth += {")": 1, "(": -1}.get(name[at], 0)
            if depth == 0:
                if at > 0:  # not a bare "(anonymous namespace)"-like name
                    name = name[:at]
                break
    parts, depth, current = [], 0, ""
    at = 0
    while at < len(name):
        char = name[at]
        depth += {"<": 1, "(": 1, ">": -1, ")": -1}.get(char, 0)
        if depth == 0 and name.startswith("::", at):
            parts.append(current)
            current = ""
            at += 2
            continue
        if depth == 0 and char == " " and not current.endswith("operator"):
            current = ""  # a return type before the name
            parts.clear()
        else:
            current += char
        at += 1
    parts.append(current)
    parts = [part for part in parts if part]
    # LCE's ops live in `compute_engine::tflite::`: not TFLite's, so one component more
    keep = 3 if len(parts) > 2 and parts[-2] == "tflite" else 2
    tail = parts[-keep:] or [function]

    def elide(part: str) -> str:
        start = part.find("<")
        if start > 0 and part.endswith(">") and len(part) - start - 2 > template:
            return part[:start] + "<…>"
        return part

    return "::".join(elide(part) for part in tail)


# ------------------------------------------------------------------------------ symbols


def _binutil(tool: str) -> str:
    found = shutil.which(f"aarch64-linux-gnu-{tool}")
    if found is None:
        raise MissingToolError(f"aarch64-linux-gnu-{tool} not found; install it with `{_BINUTILS}`")
    return found


@dataclasses.dataclass(frozen=True)
class Symbols:
    """The static binary's functions, sorted by address."""

    starts: tuple[int, ...]
    ends: tuple[int, ...]
    names: tuple[str, ...]

    @classmethod
    def of(cls, binary: Path) -> Symbols:
        done = subprocess.run(
            [_binutil("nm"), "-n", "-S", "-C", "--defined-only", str(binary)],
            capture_output=True,
            text=True,
            check=True,
        )
        rows: list[list] = []
        for line in done.stdout.splitlines():
            parts = line.split(" ", 3)
            if len(parts) == 4 and len(parts[2]) == 1:
                start, size, kind, name = int(parts[0], 16), int(parts[1], 16), parts[2], parts[3]
            elif len(parts) >= 3 and len(parts[1]) == 1:
                start, size, kind, name = int(parts[0], 16), 0, parts[1], line.split(" ", 2)[2]
            else:
                continue
            if kind not in "tTwWi":
                continue
            if rows and rows[-1][0] == start:  # an alias: keep the sized one
                if size and not rows[-1][1]:
                    rows[-1] = [start, size, name]
                continue
            rows.append([start, size, name])
        for start, size in _plt_sections(binary):  # unnamed by nm: ifunc call stubs
            rows = [row for row in rows if not start <= row[0] < start + size]
            rows.append([start, size, "[plt]"])
        rows.sort(key=lambda row: row[0])
        ends = [
            start + size if size else (rows[i + 1][0] if i + 1 < len(rows) else start + 4)
            for i, (start, size, _) in enumerate(rows)
        ]
        return cls(tuple(r[0] for r in rows), tuple(ends), tuple(r[2] for r in rows))

    def function(self, pc: int) -> str:
        i = bisect.bisect_right(self.starts, pc) - 1
        if i >= 0 and pc < self.ends[i]:
            return self.names[i]
        return "?"

    def address(self, name: str) -> int:
        return self.starts[self.names.index(name)]

    def size(self, name: str) -> int:
        i = self.names.index(name)
        return self.ends[i] - self.starts[i]


def _plt_sections(binary: Path) -> list[tuple[int, int]]:
    done = subprocess.run(
        [_binutil("readelf"), "-S", "-W", str(binary)], capture_output=True, text=True, check=True
    )
    found = re.findall(r"\]\s+\.i?plt\s+\S+\s+([0-9a-f]+)\s+[0-9a-f]+\s+([0-9a-f]+)", done.stdout)
    return [(int(address, 16), int(size, 16)) for address, size in found]


def _return_sites(binary: Path, symbols: Symbols, caller: str, callee: int) -> tuple[int, ...]:
    """The addresses after every `bl callee` in the function `caller` (objdump)."""
    start = symbols.address(caller)
    done = subprocess.run(
        [
            _binutil("objdump"),
            "-d",
            "--no-show-raw-insn",
            f"--start-address={start:#x}",
            f"--stop-address={start + symbols.size(caller):#x}",
            str(binary),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    calls = re.findall(rf"^\s*([0-9a-f]+):\s+bl\s+{callee:x}\b", done.stdout, re.MULTILINE)
    return tuple(int(call, 16) + 4 for call in calls)


def invoke_markers(binary: Path, symbols: Symbols) -> tuple[int, tuple[int, ...]]:
    """The entry of `tflite::Interpreter::Invoke()` and its return addresses in `main`."""
    entry = symbols.address("tflite::Interpreter::Invoke()")
    returns = _return_sites(binary, symbols, "main", entry)
    if not returns:
        raise UsageError(f"{binary}: main never calls tflite::Interpreter::Invoke()")
    return entry, returns


#: The function TFLite's op loop calls for every node (it tail-calls the kernel's invoke).
OP_INVOKE = "tflite::Subgraph::OpInvoke(TfLiteRegistration const&, TfLiteNode*)"


def op_markers(binary: Path, symbols: Symbols) -> tuple[int, tuple[int, ...]] | None:
    """The entry of `Subgraph::OpInvoke` and its return addresses in `Subgraph::Invoke()`;
    None where the build inlined it (no per-op counts then)."""
    if OP_INVOKE not in symbols.names or "tflite::Subgraph::Invoke()" not in symbols.names:
        return None
    entry = symbols.address(OP_INVOKE)
    returns = _return_sites(binary, symbols, "tflite::Subgraph::Invoke()", entry)
    return (entry, returns) if returns else None


# ------------------------------------------------------------------------------ counting

#: A translated block as `-d in_asm` prints it, then the `-d exec` line of its first run.
_IN_BLOCK = re.compile(rb"\nIN: [^\n]*\n((?:0x[0-9a-f]+: [^\n]*\n)+)\n(Trace [^\n]*)\n")
_CHUNK = 1 << 22


class TraceCounter:
    """Instructions executed, from qemu's `-d in_asm,exec,nochain` log fed in pieces.

    Every `exec` line names a TB by its host code address, guest pc and flags; the same
    TB always prints the same line. The first `exec` line after an `in_asm` block is that
    block's (qemu translates a TB, then runs it), which gives each line its instruction
    count. The log is cut into segments at the `exec` lines of the `markers` (pc -> the
    kind of the segment it opens); each segment counts its lines."""

    def __init__(self, markers: dict[int, str]):
        self._markers = {b"/%016x/" % pc: kind for pc, kind in markers.items()}
        self.segments: list[tuple[str, collections.Counter]] = [("outside", collections.Counter())]
        self.sizes: dict[bytes, int] = {}
        self.conflicts = 0
        self.blocks = 0
        self.log_bytes = 0
        self._rest = b"\n"

    def feed(self, data: bytes) -> None:
        self.log_bytes += len(data)
        buffer = self._rest + data
        last = buffer.rfind(b"\n")
        start = buffer.rfind(b"\nTrace ", 0, last)
        if start < 0:
            self._rest = buffer
            return
        cut = buffer.index(b"\n", start + 1) + 1
        self._piece(buffer[:cut])
        self._rest = buffer[cut - 1 :]  # from the newline, so a block's "\nIN: " still matches

    def finish(self) -> None:
        self._piece(self._rest + b"\n")
        self._rest = b"\n"

    def _piece(self, piece: bytes) -> None:
        found = 0
        for match in _IN_BLOCK.finditer(piece):
            found += 1
            size = match.group(1).count(b"\n")
            line = match.group(2)
            first = int(match.group(1).split(b":", 1)[0], 16)
            if first != _pc(line) or self.sizes.get(line, size) != size:
                self.conflicts += 1
            self.sizes[line] = size
        if found != piece.count(b"\nIN: "):
            raise ValueError("unexpected qemu -d in_asm format (a block without its exec line)")
        self.blocks += found
        cuts = []
        for pattern, kind in self._markers.items():
            at = piece.find(pattern)
            while at >= 0:
                cuts.append((piece.rfind(b"\n", 0, at) + 1, kind))
                at = piece.find(pattern, at + len(pattern))
        begin = 0
        for at, kind in sorted(cuts):
            self.segments[-1][1].update(piece[begin:at].split(b"\n"))
            self.segments.append((kind, collections.Counter()))
            begin = at
        self.segments[-1][1].update(piece[begin:].split(b"\n"))

    def counts(self, index: int) -> dict[int, list[int]]:
        """Segment `index` as {TB pc: [executions, instructions]}."""
        found: dict[int, list[int]] = {}
        for line, times in self.segments[index][1].items():
            if not line.startswith(b"Trace "):
                continue
            size = self.sizes.get(line)
            if size is None:
                raise ValueError(f"an executed TB was never printed by in_asm: {line[:120]!r}")
            entry = found.setdefault(_pc(line), [0, 0])
            entry[0] += times
            entry[1] += times * size
        return found


def _pc(line: bytes) -> int:
    return int(line.split(b"/", 2)[1], 16)


class _Runner(Protocol):
    """What `trace_run` needs of an `arm.Runtime`."""

    aarch64: Path
    qemu: str


@dataclasses.dataclass
class Trace:
    """One traced run: its invokes' counts per function, and what the run cost.

    Per invoke: `instructions`, `tb_executions`, `functions` ({demangled name:
    instructions}) and, traced `per_op`, `ops`: per node of the execution plan, in order,
    `{"instructions": n, "functions": {...}}` (None where the build has no op markers)."""

    invokes: list[dict]
    outside_instructions: int
    tb_translations: int
    log_bytes: int
    wall_seconds: float
    runner: dict


def trace_run(
    runtime: _Runner,
    model: Path,
    inputs: bytes,
    count: int = 2,
    mode: str = "default",
    singlestep: bool = False,
    symbols: Symbols | None = None,
    timeout: float = 7200,
    per_op: bool = False,
) -> Trace:
    """Run `model` `count` times (on `inputs`: the runner's input bytes of `count` samples)
    under qemu's trace and count (module doc)."""
    symbols = symbols or Symbols.of(runtime.aarch64)
    entry, returns = invoke_markers(runtime.aarch64, symbols)
    markers = {entry: "invoke", **{pc: "outside" for pc in returns}}
    ops = op_markers(runtime.aarch64, symbols) if per_op else None
    if ops is not None:
        markers.update({ops[0]: "op", **{pc: "between" for pc in ops[1]}})
    counter = TraceCounter(markers)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="ienet-arm-instructions-") as folder:
        work = Path(folder)
        (work / "inputs.bin").write_bytes(inputs)
        read_fd, write_fd = os.pipe()
        try:
            fcntl.fcntl(read_fd, getattr(fcntl, "F_SETPIPE_SZ", 1031), 1 << 20)
        except OSError:
            pass  # a smaller pipe only costs more wake-ups
        command = [
            runtime.qemu, *(["-singlestep"] if singlestep else []),
            "-d", "in_asm,exec,nochain", "-D", f"/dev/fd/{write_fd}",
            str(runtime.aarch64), str(model), "--mode", mode, "--count", str(count),
            "--inputs", str(work / "inputs.bin"), "--outputs", str(work / "outputs.bin"),
        ]  # fmt: skip
        with open(work / "stdout", "w+") as out, open(work / "stderr", "w+") as err:
            process = subprocess.Popen(command, stdout=out, stderr=err, pass_fds=(write_fd,))
            os.close(write_fd)
            try:
                _drain(read_fd, counter, start + timeout)
            finally:
                os.close(read_fd)
                if process.poll() is None:
                    process.kill()
                process.wait()
            out.seek(0)
            err.seek(0)
            lines = [line for line in out.read().splitlines() if line.startswith("{")]
            if process.returncode != 0 or not lines:
                raise InterpreterError(
                    f"{model}: the traced aarch64 runner failed (exit {process.returncode}): "
                    + " ".join(err.read().split()[-40:])
                )
    counter.finish()
    if counter.conflicts:
        raise ValueError(f"{counter.conflicts} TBs were printed twice with different sizes")
    invokes, outside = invokes_of(counter, symbols, per_op=ops is not None)
    if per_op and ops is None:
        for invoke in invokes:
            invoke["ops"] = None
    if len(invokes) != count:
        raise ValueError(f"found {len(invokes)} invokes in the trace, expected {count}")
    return Trace(
        invokes=invokes,
        outside_instructions=outside,
        tb_translations=counter.blocks,
        log_bytes=counter.log_bytes,
        wall_seconds=time.perf_counter() - start,
        runner=json.loads(lines[-1]),
    )


def invokes_of(
    counter: TraceCounter, symbols: Symbols, per_op: bool = False
) -> tuple[list[dict], int]:
    """The invokes of a finished count (`Trace.invokes`, with `ops` where `per_op`: the
    counter was cut at the op markers too) and the instructions outside every invoke.

    Segments: "invoke" opens an invoke, "op" one of its ops (until the next marker),
    "between" the interpreter's loop after an op (the invoke's, in no op), "outside" closes
    the invoke; an op segment outside an invoke (none is expected) counts as outside."""
    invokes: list[dict] = []
    outside = 0
    current: dict | None = None
    for index, (kind, _) in enumerate(counter.segments):
        counts = counter.counts(index)
        if kind == "outside" or (current is None and kind != "invoke"):
            outside += sum(instr for _, instr in counts.values())
            current = None
            continue
        functions: collections.Counter = collections.Counter()
        for pc, (_, instr) in counts.items():
            functions[symbols.function(pc)] += instr
        if kind == "invoke":
            current = {"instructions": 0, "tb_executions": 0, "functions": collections.Counter()}
            if per_op:
                current["ops"] = []
            invokes.append(current)
        elif kind == "op":
            current["ops"].append(
                {"instructions": sum(functions.values()), "functions": dict(functions)}
            )
        current["instructions"] += sum(functions.values())
        current["tb_executions"] += sum(times for times, _ in counts.values())
        current["functions"].update(functions)
    for invoke in invokes:
        invoke["functions"] = dict(invoke["functions"])
    return invokes, outside


def _drain(fd: int, counter: TraceCounter, deadline: float) -> None:
    while True:
        left = deadline - time.perf_counter()
        if left <= 0:
            raise TimeoutError("the traced run passed its time limit")
        ready, _, _ = select.select([fd], [], [], min(left, 60))
        if not ready:
            continue
        data = os.read(fd, _CHUNK)
        if not data:
            return
        if len(data) < _CHUNK // 8:
            time.sleep(0.002)  # let the pipe fill: fewer, larger reads (qemu writes by line)
            while len(data) < _CHUNK and select.select([fd], [], [], 0)[0]:
                more = os.read(fd, _CHUNK - len(data))
                if not more:
                    break
                data += more
        counter.feed(data)


# ------------------------------------------------------------------------------ summary

#: The LCE kernel functions `summarize` keeps per invoke, and the functions per op.
TOP_KERNELS = 8
TOP_OP_FUNCTIONS = 3


@dataclasses.dataclass(frozen=True)
class Count:
    """A function's instructions: its short name (`short_name`), its category's short name
    (`SHORT`) and its full demangled name."""

    function: str
    category: str
    instructions: int
    demangled: str


@dataclasses.dataclass(frozen=True)
class OpTrace:
    """One node of the execution plan in one traced invoke."""

    index: int
    op: str  # builtin name (`CONV_2D`) or custom code (`LceBconv2d`)
    instructions: int
    functions: tuple[Count, ...]  # its top functions, most instructions first


@dataclasses.dataclass(frozen=True)
class InvokeTrace:
    """One traced invoke of one input in one mode (`verify_arm(..., trace=True)`)."""

    instructions: int
    #: the first invoke's (it also packs LCE's filters and prepares ruy)
    first_invoke_instructions: int
    #: every category's instructions (`CATEGORY_NAMES`, in order)
    categories: dict[str, int]
    #: the LCE kernel functions that ran (`KERNEL_CATEGORIES`), most instructions first
    kernels: tuple[Count, ...]
    #: per operator, or None where the runner's op loop could not be marked
    ops: tuple[OpTrace, ...] | None


def _counts(functions: dict[str, int], top: int, only=None) -> tuple[Count, ...]:
    ranked = sorted(functions.items(), key=lambda item: (-item[1], item[0]))
    found = []
    for name, instructions in ranked:
        group = category(name)
        if instructions and (only is None or group in only):
            short = SHORT[CATEGORY_NAMES.index(group)]
            found.append(Count(short_name(name), short, instructions, name))
    return tuple(found[:top])


def summarize(trace: Trace, op_names: list[str] | tuple[str, ...] | None = None) -> InvokeTrace:
    """The last invoke of `trace` (traced `per_op`), its ops named by `op_names` (the
    flatbuffer's operators, in order); no per-op counts where their number differs."""
    last, first = trace.invokes[-1], trace.invokes[0]
    ops = None
    found = last.get("ops")
    if found is not None and op_names is not None and len(found) == len(op_names):
        ops = tuple(
            OpTrace(index, name, op["instructions"], _counts(op["functions"], TOP_OP_FUNCTIONS))
            for index, (name, op) in enumerate(zip(op_names, found, strict=True))
        )
    return InvokeTrace(
        instructions=last["instructions"],
        first_invoke_instructions=first["instructions"],
        categories=grouped(last["functions"]),
        kernels=_counts(last["functions"], TOP_KERNELS, KERNEL_CATEGORIES),
        ops=ops,
    )
