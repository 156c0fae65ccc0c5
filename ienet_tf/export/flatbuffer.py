"""Read a TFLite flatbuffer: its operators, how they connect, and where the bytes go.

The FlatBuffers Python runtime does not verify what it reads, and neither does the LCE
interpreter (it builds its model with `FlatBufferModel::BuildFromBuffer`): a .tflite with a
few bytes changed can make it read outside the file and crash the process. `verify` walks
every table the interpreter reads (model, operator codes, subgraph, tensors, quantization,
sparsity, operators and their options, buffers, metadata, signatures) before anything else
parses the file, and checks every offset, vector length and index. The field layout comes
from the pinned TensorFlow wheel's generated schema (`schema_py_generated`), not from a
table of our own.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import math
import re
import struct

from flatbuffers import flexbuffers
from flatbuffers.table import Table
from tensorflow.lite.python import schema_py_generated as schema

from ienet_tf.errors import UsageError

__all__ = [
    "MAX_TENSOR_BYTES",
    "FlatbufferError",
    "Graph",
    "Interface",
    "Operator",
    "builtin_name",
    "interface",
    "read_graph",
    "verify",
]

#: The largest tensor `verify` accepts (2 GiB, TFLite's own limit for a flatbuffer): a
#: changed byte in a shape must not make the interpreter allocate terabytes.
MAX_TENSOR_BYTES = 2**31

# The schema's enums, by value.
_BUILTIN_NAMES = {
    code: name for name, code in vars(schema.BuiltinOperator).items() if name.isupper()
}
_TENSOR_TYPES = {code: name for name, code in vars(schema.TensorType).items() if name.isupper()}
_BUILTIN_OPTIONS = {
    code: name for name, code in vars(schema.BuiltinOptions).items() if not name.startswith("_")
}
_BUILTIN_OPTIONS_2 = {
    code: name for name, code in vars(schema.BuiltinOptions2).items() if not name.startswith("_")
}
_SPARSE_INDEX_VECTORS = {
    code: name for name, code in vars(schema.SparseIndexVector).items() if not name.startswith("_")
}
_QUANTIZATION_DETAILS = {
    code: name
    for name, code in vars(schema.QuantizationDetails).items()
    if not name.startswith("_")
}
# Bytes per element of the fixed-size tensor types (STRING, RESOURCE and VARIANT have none;
# INT4 constants are stored packed or not, depending on the converter).
_ELEMENT_BYTES = {
    "FLOAT32": 4, "FLOAT16": 2, "INT32": 4, "UINT8": 1, "INT64": 8, "BOOL": 1, "INT16": 2,
    "COMPLEX64": 8, "INT8": 1, "FLOAT64": 8, "COMPLEX128": 16, "UINT64": 8, "UINT32": 4,
    "UINT16": 2,
}  # fmt: skip
# LCE's custom operators that parse a FlexBuffer map of options (and crash without one).
_NEEDS_OPTIONS_MAP = ("LceBconv2d", "LceBMaxPool2d")
_SUPPORTED_SCHEMA_VERSION = 3
_MAX_BUFFER_SIZE = 2**31 - 1  # FLATBUFFERS_MAX_BUFFER_SIZE


def _dims(shape) -> str:
    """A shape for a message, cut after 8 dimensions (a damaged one can have thousands)."""
    shown = ", ".join(str(d) for d in shape[:8])
    return f"[{shown}{', ...' if len(shape) > 8 else ''}]"


def builtin_name(code: int) -> str:
    """The schema's name of builtin operator `code` (`CONV_2D`), `BUILTIN_<code>` if unknown."""
    return _BUILTIN_NAMES.get(code, f"BUILTIN_{code}")


class FlatbufferError(UsageError):
    """A file that is not a structurally valid TFLite model; the message names the first
    problem found (and, given the file's name, the file and the fix)."""


@dataclasses.dataclass(frozen=True)
class Operator:
    name: str  # builtin name (`CONV_2D`) or custom code (`LceBconv2d`)
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]


@dataclasses.dataclass(frozen=True)
class Graph:
    """The operators of every subgraph, and the constant bytes behind each tensor."""

    operators: tuple[Operator, ...]
    constant_bytes: dict[int, int]  # tensor index -> bytes of its constant buffer

    def histogram(self) -> dict[str, int]:
        return dict(sorted(collections.Counter(op.name for op in self.operators).items()))

    def multiplies_after(self, op_name: str) -> int:
        """MUL operators that consume an output of an `op_name` operator directly."""
        produced = {t for op in self.operators if op.name == op_name for t in op.outputs}
        return sum(1 for op in self.operators if op.name == "MUL" and produced & set(op.inputs))

    def weight_bytes(self) -> dict[str, int]:
        """Constant bytes split into the bitpacked filters of `LceBconv2d` and the rest."""
        binary = {op.inputs[1] for op in self.operators if op.name == "LceBconv2d"}
        split = {"binary": 0, "float": 0}
        for tensor, size in self.constant_bytes.items():
            split["binary" if tensor in binary else "float"] += size
        return split


def read_graph(flatbuffer: bytes) -> Graph:
    """Verify (`verify`) and parse a flatbuffer; `FlatbufferError` (a `ValueError`) if it is
    not a valid TFLite model. Cached on the bytes: the checks, the sizes and the sidecar of
    one export read one parse, verified once."""
    return _verified_graph(bytes(flatbuffer))


@functools.lru_cache(maxsize=4)
def _verified_graph(flatbuffer: bytes) -> Graph:
    verify(flatbuffer)
    try:
        return _read(flatbuffer)
    except Exception as error:  # verified above: this would be a gap in `verify`
        raise FlatbufferError(f"corrupt TFLite flatbuffer ({type(error).__name__})") from None


@dataclasses.dataclass(frozen=True)
class Interface:
    """What a flatbuffer says about the network it came from, without running it."""

    input_shapes: tuple[tuple[int, ...], ...]
    output_shapes: tuple[tuple[int, ...], ...]
    #: The most common first component of the tensor names: the converter names tensors
    #: after the Keras ops (`resnet20_ienet_k2/stage1_unit1_conv/...`), so this is the
    #: Keras model's name. None when no tensor name has one.
    name_scope: str | None


def interface(flatbuffer: bytes) -> Interface:
    """The input and output shapes and the Keras model's name (`Interface`) of a TFLite
    flatbuffer, verified first (`FlatbufferError` if it is not a valid model)."""
    read_graph(flatbuffer)  # verified (and cached) before the generated reader touches it
    subgraph = schema.Model.GetRootAsModel(flatbuffer, 0).Subgraphs(0)

    def shapes(indices) -> tuple[tuple[int, ...], ...]:
        tensors = [subgraph.Tensors(int(i)) for i in indices]
        return tuple(
            tuple(int(d) for d in t.ShapeAsNumpy()) if t.ShapeLength() else () for t in tensors
        )

    scopes = collections.Counter(
        name.split(b"/", 1)[0].decode(errors="replace")
        for name in (subgraph.Tensors(t).Name() or b"" for t in range(subgraph.TensorsLength()))
        if b"/" in name
    )
    return Interface(
        shapes(subgraph.InputsAsNumpy()),
        shapes(subgraph.OutputsAsNumpy()),
        scopes.most_common(1)[0][0] if scopes else None,
    )


def operator_names(model) -> list[str]:
    """The name of each operator code of a parsed `schema.Model` (custom ops by their
    custom code), in opcode order."""
    names = []
    for i in range(model.OperatorCodesLength()):
        code = model.OperatorCodes(i)
        if code.CustomCode():
            names.append(code.CustomCode().decode(errors="replace"))
        else:
            names.append(
                builtin_name(_builtin_code(code.BuiltinCode(), code.DeprecatedBuiltinCode()))
            )
    return names


def _read(flatbuffer: bytes) -> Graph:
    model = schema.Model.GetRootAsModel(flatbuffer, 0)
    names = operator_names(model)
    operators = []
    constant_bytes: dict[int, int] = {}
    for s in range(model.SubgraphsLength()):
        subgraph = model.Subgraphs(s)
        for o in range(subgraph.OperatorsLength()):
            op = subgraph.Operators(o)
            operators.append(
                Operator(
                    names[op.OpcodeIndex()],
                    tuple(int(i) for i in op.InputsAsNumpy()) if op.InputsLength() else (),
                    tuple(int(i) for i in op.OutputsAsNumpy()) if op.OutputsLength() else (),
                )
            )
        if s == 0:  # tensor indices below are those of the main subgraph
            for t in range(subgraph.TensorsLength()):
                buffer = model.Buffers(subgraph.Tensors(t).Buffer())
                if buffer is not None and buffer.DataLength():
                    constant_bytes[t] = buffer.DataLength()
    return Graph(tuple(operators), constant_bytes)


def _builtin_code(code: int, deprecated: int) -> int:
    # Codes above 127 live only in `BuiltinCode`; older ones in the deprecated int8 field.
    return max(code, deprecated)


# --- verification -----------------------------------------------------------------------


class _Invalid(Exception):
    """A problem found by `verify`, before the file name and the fix are added."""


class _SlotRecorder:
    """Stands in for a generated table's `_tab` and records which vtable slot an accessor
    asks for: the schema's field layout, read off the generated code."""

    slot: int | None = None

    def Offset(self, slot: int) -> int:
        self.slot = slot
        return 0  # "field absent": the accessor returns its default


@functools.cache
def _slot(cls: type, accessor: str) -> int:
    """The vtable offset of field `accessor` of generated table `cls`."""
    table = cls()
    table._tab = recorder = _SlotRecorder()
    method = getattr(table, accessor)
    method(*[0] * (method.__code__.co_argcount - 1))
    if recorder.slot is None:  # pragma: no cover - a schema this module does not know
        raise RuntimeError(f"{cls.__name__}.{accessor} reads no field")
    return recorder.slot


class _Buffer:
    """Bounds- and alignment-checked reads, as the C++ `flatbuffers::Verifier` does them."""

    def __init__(self, data: bytes):
        self.data = data
        self.size = len(data)

    def check(self, pos: int, size: int, what: str, align: int = 1) -> None:
        if pos < 0 or size < 0 or pos + size > self.size:
            raise _Invalid(
                f"{what} (bytes {pos}..{pos + size}) lies outside the {self.size}-byte file"
            )
        if align > 1 and pos % align:
            raise _Invalid(f"{what} at byte {pos} is not {align}-byte aligned")

    def scalar(self, fmt: str, pos: int, what: str) -> int | float:
        size = struct.calcsize(fmt)
        self.check(pos, size, what, align=size)
        return struct.unpack_from(fmt, self.data, pos)[0]

    def uoffset(self, pos: int, what: str) -> int:
        """The absolute position a 32-bit forward offset at `pos` points to."""
        offset = self.scalar("<I", pos, what)
        if offset == 0 or offset > _MAX_BUFFER_SIZE:
            raise _Invalid(f"{what} has offset {offset}")
        target = pos + offset
        self.check(target, 1, what)
        return target

    def table(self, pos: int, what: str) -> _Table:
        soffset = self.scalar("<i", pos, what)
        vtable = pos - soffset
        self.check(vtable, 4, f"{what}'s vtable", align=2)
        vtable_size, object_size = struct.unpack_from("<HH", self.data, vtable)
        if vtable_size < 4 or vtable_size % 2:
            raise _Invalid(f"{what}'s vtable has an invalid size {vtable_size}")
        self.check(vtable, vtable_size, f"{what}'s vtable")
        if object_size < 4:
            raise _Invalid(f"{what} has an invalid size {object_size}")
        self.check(pos, object_size, what)
        fields = struct.unpack_from(f"<{(vtable_size - 4) // 2}H", self.data, vtable + 4)
        for field in fields:
            if field and not 4 <= field < object_size:
                raise _Invalid(
                    f"{what} has a field at offset {field}, outside its {object_size} bytes"
                )
        return _Table(self, pos, fields, what)


class _Table:
    def __init__(self, buffer: _Buffer, pos: int, fields: tuple[int, ...], what: str):
        self.buffer = buffer
        self.pos = pos
        self.fields = fields
        self.what = what

    def _field(self, cls: type, accessor: str) -> tuple[int, str]:
        index = (_slot(cls, accessor) - 4) // 2
        offset = self.fields[index] if index < len(self.fields) else 0
        field = re.sub(r"(?<!^)(?=[A-Z])", "_", accessor).lower()  # the schema's name
        return (self.pos + offset if offset else 0), f"{self.what}'s {field}"

    def scalar(self, cls: type, accessor: str, fmt: str, default: int = 0) -> int:
        pos, what = self._field(cls, accessor)
        return self.buffer.scalar(fmt, pos, what) if pos else default

    def table(self, cls: type, accessor: str, name: str | None = None) -> _Table | None:
        pos, what = self._field(cls, accessor)
        if not pos:
            return None
        return self.buffer.table(self.buffer.uoffset(pos, what), name or what)

    def vector(self, cls: type, accessor: str, element_bytes: int) -> tuple[int, int]:
        """(position of the first element, length); (0, 0) if the field is absent."""
        pos, what = self._field(cls, accessor)
        if not pos:
            return 0, 0
        start = self.buffer.uoffset(pos, what)
        length = self.buffer.scalar("<I", start, f"{what}'s length")
        if length > _MAX_BUFFER_SIZE // element_bytes:
            raise _Invalid(f"{what} claims {length} elements")
        self.buffer.check(start + 4, length * element_bytes, what)
        return start + 4, length

    def values(self, cls: type, accessor: str, fmt: str) -> tuple:
        start, length = self.vector(cls, accessor, struct.calcsize(fmt))
        return struct.unpack_from(f"<{length}{fmt}", self.buffer.data, start) if length else ()

    def string(self, cls: type, accessor: str) -> bytes | None:
        pos, what = self._field(cls, accessor)
        if not pos:
            return None
        start, length = self.vector(cls, accessor, 1)
        self.buffer.check(start + length, 1, f"{what}'s terminator")
        if self.buffer.data[start + length] != 0:
            raise _Invalid(f"{what} is not a terminated string")
        return bytes(self.buffer.data[start : start + length])

    def tables(self, cls: type, accessor: str, name: str) -> list[_Table]:
        start, length = self.vector(cls, accessor, 4)
        return [
            self.buffer.table(self.buffer.uoffset(start + 4 * i, f"{name} {i}"), f"{name} {i}")
            for i in range(length)
        ]


def verify(flatbuffer: bytes, source: str | None = None) -> None:
    """Check that `flatbuffer` is a structurally valid single-subgraph TFLite model before
    any interpreter reads it; raise `FlatbufferError` naming the first problem.

    Checked: the 'TFL3' identifier and schema version 3; that every table, vtable, vector
    and string the TFLite interpreter reads lies inside the file (and is aligned); that
    every index is in range (operator codes of operators, tensors of operators, subgraph
    inputs/outputs and signatures, buffers of tensors and metadata); exactly one subgraph,
    with inputs and outputs; non-negative tensor shapes of at most `MAX_TENSOR_BYTES`; and
    that a non-empty constant buffer holds exactly shape x element-size bytes; builtin
    options of a known type that the generated reader can parse, and none on a custom
    operator; custom options that parse as a FlexBuffer (a map for `LceBconv2d` and
    `LceBMaxPool2d`). Not checked: what the values mean (strides, LCE's `channels_in`, which
    tensor feeds which input), which only the interpreter knows: it rejects much of that
    when it prepares the model, and `bench.benchmark` runs it in a child process because
    it crashes on the rest.

    With `source` (the file's name) the message names the file and the fix; without, it is
    the bare problem, for callers that add both (`ienet bench` adds the path).
    """
    try:
        _verify(bytes(flatbuffer))
    except _Invalid as problem:
        message = str(problem)
        if source is not None:
            message = f"{source}: {message} (write one with `ienet export`)"
        raise FlatbufferError(message) from None


def _verify(data: bytes) -> None:
    if len(data) < 8 or not schema.Model.ModelBufferHasIdentifier(data, 0):
        raise _Invalid("not a TFLite flatbuffer (no 'TFL3' identifier)")
    if len(data) > _MAX_BUFFER_SIZE:
        raise _Invalid(f"corrupt TFLite flatbuffer: {len(data)} bytes, over the 2 GiB limit")
    try:
        _verify_model(_Buffer(data))
    except _Invalid as problem:
        raise _Invalid(f"corrupt TFLite flatbuffer: {problem}") from None


def _verify_model(buffer: _Buffer) -> None:
    M = schema.Model
    model = buffer.table(buffer.uoffset(0, "the root offset"), "the model")
    version = model.scalar(M, "Version", "<I")
    if version != _SUPPORTED_SCHEMA_VERSION:
        raise _Invalid(f"schema version {version}, expected {_SUPPORTED_SCHEMA_VERSION}")
    model.string(M, "Description")

    buffers = model.tables(M, "Buffers", "buffer")
    buffer_sizes = [_verify_buffer(buffer, table) for table in buffers]
    if not buffers:
        raise _Invalid("no buffers (the first buffer must be the empty sentinel)")

    def buffer_index(index: int, what: str) -> int:
        if not 0 <= index < len(buffers):
            raise _Invalid(f"{what} uses buffer {index}, but the model has {len(buffers)}")
        return index

    opcodes = [_verify_opcode(table) for table in model.tables(M, "OperatorCodes", "operator code")]
    subgraphs = model.tables(M, "Subgraphs", "subgraph")
    if len(subgraphs) != 1:
        raise _Invalid(f"{len(subgraphs)} subgraphs, expected exactly 1")
    tensors = _verify_subgraph(subgraphs[0], opcodes, buffer_sizes, buffer_index)

    for index in model.values(M, "MetadataBuffer", "i"):
        buffer_index(index, "the metadata_buffer list")
    for table in model.tables(M, "Metadata", "metadata"):
        table.string(schema.Metadata, "Name")
        buffer_index(table.scalar(schema.Metadata, "Buffer", "<I"), table.what)
    for table in model.tables(M, "SignatureDefs", "signature"):
        S = schema.SignatureDef
        table.string(S, "SignatureKey")
        if table.scalar(S, "SubgraphIndex", "<I") != 0:
            raise _Invalid(f"{table.what} refers to a subgraph other than the only one")
        for accessor in ("Inputs", "Outputs"):
            for entry in table.tables(S, accessor, f"{table.what}'s {accessor.lower()}"):
                entry.string(schema.TensorMap, "Name")
                index = entry.scalar(schema.TensorMap, "TensorIndex", "<I")
                if index >= tensors:
                    raise _Invalid(f"{entry.what} names tensor {index} of {tensors}")


def _verify_buffer(buffer: _Buffer, table: _Table) -> int | None:
    """The byte size of a buffer's constant data (None: large-model external data)."""
    B = schema.Buffer
    _, length = table.vector(B, "Data", 1)
    offset = table.scalar(B, "Offset", "<Q")
    size = table.scalar(B, "Size", "<Q")
    if offset > 1:  # data after the flatbuffer (models over 2 GiB)
        if offset + size > buffer.size:
            raise _Invalid(
                f"{table.what}'s data (bytes {offset}..{offset + size}) lies outside the file"
            )
        return size
    return length


def _verify_opcode(table: _Table) -> tuple[str, bool]:
    """The operator's name and whether it is a custom one."""
    C = schema.OperatorCode
    custom = table.string(C, "CustomCode")
    code = _builtin_code(
        table.scalar(C, "BuiltinCode", "<i"), table.scalar(C, "DeprecatedBuiltinCode", "<b")
    )
    if code not in _BUILTIN_NAMES:
        raise _Invalid(f"{table.what} has an unknown builtin operator {code}")
    if code == schema.BuiltinOperator.CUSTOM:
        if not custom:
            raise _Invalid(f"{table.what} is a custom operator without a name")
        return custom.decode(errors="replace"), True
    return _BUILTIN_NAMES[code], False


def _verify_subgraph(
    subgraph: _Table, opcodes: list[tuple[str, bool]], buffer_sizes, buffer_index
) -> int:
    """Verify the only subgraph; the number of its tensors."""
    G = schema.SubGraph
    subgraph.string(G, "Name")
    tensors = subgraph.tables(G, "Tensors", "tensor")
    for table in tensors:
        _verify_tensor(table, buffer_sizes, buffer_index)

    def tensor_indices(table: _Table, cls: type, accessor: str, optional: bool = False) -> tuple:
        indices = table.values(cls, accessor, "i")
        for index in indices:
            if not (0 <= index < len(tensors) or (optional and index == -1)):
                raise _Invalid(
                    f"{table.what}'s {accessor.lower()} use tensor {index}, but the subgraph "
                    f"has {len(tensors)}"
                )
        return indices

    for accessor in ("Inputs", "Outputs"):
        if not tensor_indices(subgraph, G, accessor):
            raise _Invalid(f"the subgraph has no {accessor.lower()}")
    Op = schema.Operator
    for table in subgraph.tables(G, "Operators", "operator"):
        index = table.scalar(Op, "OpcodeIndex", "<I")
        if index >= len(opcodes):
            raise _Invalid(
                f"{table.what} uses operator code {index}, but the model has {len(opcodes)}"
            )
        name, custom = opcodes[index]
        table.what = f"{table.what} ({name})"
        tensor_indices(table, Op, "Inputs", optional=True)
        tensor_indices(table, Op, "Outputs")
        tensor_indices(table, Op, "Intermediates", optional=True)
        table.vector(Op, "MutatingVariableInputs", 1)
        start, length = table.vector(Op, "CustomOptions", 1)
        if custom:
            _verify_custom_options(table, name, table.buffer.data[start : start + length])
        if table.scalar(Op, "CustomOptionsFormat", "<b") != schema.CustomOptionsFormat.FLEXBUFFERS:
            raise _Invalid(f"{table.what} has an unknown custom options format")
        offset = table.scalar(Op, "LargeCustomOptionsOffset", "<Q")
        size = table.scalar(Op, "LargeCustomOptionsSize", "<Q")
        if offset > 1 and offset + size > table.buffer.size:
            raise _Invalid(f"{table.what}'s large custom options lie outside the file")
        for accessor, kinds, creator in (
            ("BuiltinOptions", _BUILTIN_OPTIONS, schema.BuiltinOptionsCreator),
            ("BuiltinOptions2", _BUILTIN_OPTIONS_2, schema.BuiltinOptions2Creator),
        ):
            _verify_union(table, Op, accessor, kinds, creator)
            if custom and table.scalar(Op, f"{accessor}Type", "<B"):
                raise _Invalid(f"{table.what} is a custom operator with builtin options")
    return len(tensors)


def _verify_custom_options(table: _Table, name: str, options: bytes) -> None:
    """A custom operator's options: a FlexBuffer (LCE parses it without checks)."""
    parsed = None
    if options:
        try:
            parsed = flexbuffers.Loads(options)
        except Exception:  # the reader raises assorted errors on corrupt data
            raise _Invalid(f"{table.what}'s custom options are not a valid FlexBuffer") from None
    if name in _NEEDS_OPTIONS_MAP and not isinstance(parsed, dict):
        raise _Invalid(f"{table.what} lacks its custom options (a FlexBuffer map)")


def _verify_union(table: _Table, cls: type, accessor: str, kinds: dict, creator) -> None:
    """A union field: a known type, and a table the generated object API can read."""
    kind = table.scalar(cls, f"{accessor}Type", "<B")
    if kind not in kinds:
        raise _Invalid(f"{table.what} has an unknown {accessor} type {kind}")
    options = table.table(cls, accessor, f"{table.what}'s {kinds[kind]}")
    if kind and options is None:
        raise _Invalid(f"{table.what} lacks its {kinds[kind]}")
    if options is not None and kind:
        try:  # its own vectors (RESHAPE's new_shape, ...); Python raises where C++ would crash
            creator(kind, Table(table.buffer.data, options.pos))
        except Exception:
            raise _Invalid(f"{options.what} is corrupt") from None


def _verify_tensor(table: _Table, buffer_sizes, buffer_index) -> None:
    T = schema.Tensor
    name = table.string(T, "Name")
    if name:
        table.what = f"{table.what} ('{name.decode(errors='replace')[:40]}')"
    shape = table.values(T, "Shape", "i")
    if any(d < 0 for d in shape):
        raise _Invalid(f"{table.what} has a negative dimension in shape {_dims(shape)}")
    table.values(T, "ShapeSignature", "i")
    kind = table.scalar(T, "Type", "<b")
    if kind not in _TENSOR_TYPES:
        raise _Invalid(f"{table.what} has an unknown type {kind}")
    element_bytes = _ELEMENT_BYTES.get(_TENSOR_TYPES[kind])
    elements = math.prod(shape)
    if elements * (element_bytes or 1) > MAX_TENSOR_BYTES:
        raise _Invalid(f"{table.what} of shape {_dims(shape)} is larger than 2 GiB")
    data_bytes = buffer_sizes[buffer_index(table.scalar(T, "Buffer", "<I"), table.what)]
    sparsity = table.table(T, "Sparsity")
    if data_bytes and element_bytes and sparsity is None and data_bytes != elements * element_bytes:
        raise _Invalid(
            f"{table.what} of shape {_dims(shape)} and type {_TENSOR_TYPES[kind]} needs "
            f"{elements * element_bytes} bytes, but its buffer holds {data_bytes}"
        )
    quantization = table.table(T, "Quantization")
    if quantization is not None:
        _verify_quantization(quantization, shape, table.what)
    if sparsity is not None:
        _verify_sparsity(sparsity)
    for variant in table.tables(T, "VariantTensors", f"{table.what}'s variant subtype"):
        variant.values(schema.VariantSubType, "Shape", "i")
        variant.scalar(schema.VariantSubType, "Type", "<b")


def _verify_quantization(table: _Table, shape: tuple, tensor: str) -> None:
    Q = schema.QuantizationParameters
    table.vector(Q, "Min", 4)
    table.vector(Q, "Max", 4)
    _, scales = table.vector(Q, "Scale", 4)
    _, zero_points = table.vector(Q, "ZeroPoint", 8)
    if scales > 1 or zero_points > 1:
        dimension = table.scalar(Q, "QuantizedDimension", "<i")
        if (
            not 0 <= dimension < len(shape)
            or scales != shape[dimension]
            or (zero_points not in (0, scales))
        ):
            raise _Invalid(
                f"{tensor}'s quantization ({scales} scales, {zero_points} zero points along "
                f"axis {dimension}) does not fit its shape {_dims(shape)}"
            )
    kind = table.scalar(Q, "DetailsType", "<B")
    if kind not in _QUANTIZATION_DETAILS:
        raise _Invalid(f"{tensor}'s quantization details have an unknown type {kind}")
    details = table.table(Q, "Details", f"{tensor}'s quantization details")
    if details is not None and kind == schema.QuantizationDetails.CustomQuantization:
        details.vector(schema.CustomQuantization, "Custom", 1)


def _verify_sparsity(table: _Table) -> None:
    P = schema.SparsityParameters
    table.vector(P, "TraversalOrder", 4)
    table.vector(P, "BlockMap", 4)
    D = schema.DimensionMetadata
    for dimension in table.tables(P, "DimMetadata", f"{table.what}'s dimension"):
        for accessor in ("ArraySegments", "ArrayIndices"):
            kind = dimension.scalar(D, f"{accessor}Type", "<B")
            if kind not in _SPARSE_INDEX_VECTORS:
                raise _Invalid(f"{dimension.what} has an unknown {accessor} type {kind}")
            vector = dimension.table(D, accessor)
            if vector is not None and kind:
                name = _SPARSE_INDEX_VECTORS[kind]
                element_bytes = {"Int32Vector": 4, "Uint16Vector": 2, "Uint8Vector": 1}[name]
                vector.vector(getattr(schema, name), "Values", element_bytes)
