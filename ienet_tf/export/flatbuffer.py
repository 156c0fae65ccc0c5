"""Read a TFLite flatbuffer: its operators, how they connect, and where the bytes go."""

from __future__ import annotations

import collections
import dataclasses

from tensorflow.lite.python import schema_py_generated as schema

__all__ = ["Graph", "Operator", "read_graph"]

_BUILTIN_NAMES = {
    code: name for name, code in vars(schema.BuiltinOperator).items() if name.isupper()
}


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

    def producer(self, tensor: int) -> Operator | None:
        return next((op for op in self.operators if tensor in op.outputs), None)

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
    """Parse a flatbuffer; `ValueError` if it is not a TFLite model (or is truncated)."""
    if len(flatbuffer) < 8 or not schema.Model.ModelBufferHasIdentifier(flatbuffer, 0):
        raise ValueError("not a TFLite flatbuffer (no 'TFL3' identifier)")
    try:
        return _read(flatbuffer)
    except Exception as error:  # flatbuffers raises assorted errors on truncated data
        raise ValueError(f"corrupt TFLite flatbuffer ({type(error).__name__})") from None


def _read(flatbuffer: bytes) -> Graph:
    model = schema.Model.GetRootAsModel(flatbuffer, 0)
    names = []
    for i in range(model.OperatorCodesLength()):
        code = model.OperatorCodes(i)
        if code.CustomCode():
            names.append(code.CustomCode().decode())
        else:
            # Codes above 127 live only in `BuiltinCode`; older ones in the deprecated field.
            builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
            names.append(_BUILTIN_NAMES.get(builtin, f"BUILTIN_{builtin}"))
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
