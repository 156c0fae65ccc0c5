"""`ienet bench` on damaged files: verified before the LCE interpreter sees them, and the
interpreter itself run in a child process, so no input can crash the caller.

Before this guard, 7 of 150 fuzzed copies of an exported model killed the process with a
segmentation fault and 30 raised a raw traceback.
"""

from __future__ import annotations

import collections
import struct
import time

import numpy as np
import pytest
from tensorflow.lite.python import schema_py_generated as schema

from ienet_tf.errors import IENetError, UsageError
from ienet_tf.export import bench
from ienet_tf.export.flatbuffer import FlatbufferError, read_graph, verify


@pytest.fixture(scope="module")
def tflite() -> bytes:
    """The demo convnet (IE-Net, K=2, 8x8x1 inputs), converted once (~3 s)."""
    import tensorflow as tf

    from ienet_tf import export, models

    tf.keras.utils.set_random_seed(0)
    flatbuffer, histogram = export.convert(
        models.build("convnet", "ienet", num_classes=10, input_shape=(8, 8, 1))
    )
    assert histogram["LceBconv2d"] == 3
    return flatbuffer


def _operators(flatbuffer: bytes, name: str) -> list:
    model = schema.Model.GetRootAsModel(flatbuffer, 0)
    subgraph = model.Subgraphs(0)
    found = []
    for i in range(subgraph.OperatorsLength()):
        op = subgraph.Operators(i)
        code = model.OperatorCodes(op.OpcodeIndex())
        if (code.CustomCode() or b"").decode() == name:
            found.append(op)
    return found


def _with_first_input(flatbuffer: bytes, op_name: str, tensor: int) -> bytes:
    """`flatbuffer` with the first input of the first `op_name` operator set to `tensor`."""
    op = _operators(flatbuffer, op_name)[0]
    position = op._tab.Vector(op._tab.Offset(6))  # Operator.inputs
    data = bytearray(flatbuffer)
    data[position : position + 4] = struct.pack("<i", tensor)
    return bytes(data)


def _mutants(flatbuffer: bytes) -> list[tuple[str, bytes]]:
    """60 deterministic damaged copies."""
    rng = np.random.default_rng(20240611)
    size = len(flatbuffer)
    mutants = []
    for i in range(36):  # 1-3 bytes XOR-ed with a random non-zero byte
        data = bytearray(flatbuffer)
        for _ in range(int(rng.integers(1, 4))):
            data[int(rng.integers(size))] ^= int(rng.integers(1, 256))
        mutants.append((f"flip{i}", bytes(data)))
    for i in range(12):  # an aligned 32-bit word: offsets, lengths, indices, counts
        data = bytearray(flatbuffer)
        position = int(rng.integers(size // 4)) * 4
        value = int(rng.choice([0, 1, 2, 3, -1, 64, 1 << 20, -(1 << 30)]))
        data[position : position + 4] = struct.pack("<i", value)
        mutants.append((f"word{i}", bytes(data)))
    for cut in (4, 8, 100, size // 2, size - 16, size - 1):
        mutants.append((f"truncated{cut}", flatbuffer[:cut]))
    mutants.append(("zeroed header", bytes(8) + flatbuffer[8:]))
    mutants.append(("root offset past the end", struct.pack("<I", size + 64) + flatbuffer[4:]))
    mutants.append(("no identifier", flatbuffer[:4] + b"XXXX" + flatbuffer[8:]))
    # Semantic damage that passes the structural checks, for the interpreter (in the
    # child) to reject or crash on:
    renamed = flatbuffer.replace(b"stride_height", b"stride_heighX")  # an LCE option key
    assert renamed != flatbuffer
    mutants.append(("LCE option key renamed", renamed))
    mutants.append(("LceBconv2d input -1", _with_first_input(flatbuffer, "LceBconv2d", -1)))
    mutants.append(("LceBconv2d on the image", _with_first_input(flatbuffer, "LceBconv2d", 0)))
    return mutants


def test_damaged_files_never_crash_the_caller(tflite):
    """Each mutant benchmarks (harmless damage: weights, names) or raises one IENetError
    line; the process survives and nothing else escapes.

    Measured (convnet, TF 2.15.1, LCE 0.16.0): of the 60 mutants, 22 are rejected by
    `flatbuffer.verify`, 3 by the child-process guard (the interpreter rejects 2 and crashes
    with SIGSEGV on 1, 'LceBconv2d input -1'), and 35 run (their damage hit constant
    data, names or unused fields). Without the guard that SIGSEGV would kill pytest.
    """
    outcomes = collections.Counter()
    by_child = []
    for label, data in _mutants(tflite):
        try:
            result = bench.benchmark(data, label, runs=2, warmup=1)
        except FlatbufferError as error:
            outcomes["verify"] += 1
            message = str(error)
        except bench.InterpreterError as error:
            outcomes["child"] += 1
            by_child.append(label)
            message = str(error)
        else:
            outcomes["ran"] += 1
            assert 0 < result.min_ms <= result.median_ms <= result.max_ms, label
            continue
        assert "\n" not in message and message.startswith(f"{label}: "), message
        assert "ienet export" in message, message
    print(dict(outcomes), by_child)
    assert sum(outcomes.values()) == 60
    assert outcomes["verify"] >= 15 and outcomes["ran"] >= 15
    assert {"LCE option key renamed", "LceBconv2d input -1"} <= set(by_child)


def test_verify_accepts_the_export_and_names_the_problem(tflite):
    verify(tflite)
    assert read_graph(tflite).histogram()["LceBconv2d"] == 3
    subgraph = schema.Model.GetRootAsModel(tflite, 0).Subgraphs(0)
    ops = [subgraph.Operators(i) for i in range(subgraph.OperatorsLength())]
    index, op = next((i, op) for i, op in enumerate(ops) if op._tab.Offset(4))  # stored
    position = op._tab.Pos + op._tab.Offset(4)  # Operator.opcode_index
    damaged = bytearray(tflite)
    damaged[position : position + 4] = struct.pack("<I", 200)
    with pytest.raises(FlatbufferError) as caught:
        verify(bytes(damaged), "runs/x/model.tflite")
    message = str(caught.value)
    assert message.startswith(f"runs/x/model.tflite: corrupt TFLite flatbuffer: operator {index} ")
    assert "operator code 200, but the model has" in message
    assert "write one with `ienet export`" in message and "\n" not in message
    with pytest.raises(ValueError, match="operator code 200"):  # read_graph's contract
        read_graph(bytes(damaged))


def test_interpreter_errors_name_the_file_and_the_reason(tflite):
    renamed = tflite.replace(b"stride_height", b"stride_heighX")
    verify(renamed)  # structurally fine: only the interpreter can tell
    with pytest.raises(bench.InterpreterError) as caught:
        bench.benchmark(renamed, "m", runs=1, source="/data/m.tflite")
    message = str(caught.value)
    assert message.startswith("/data/m.tflite: the LCE interpreter rejected this file (")
    assert 'm["stride_height"]' in message and "\n" not in message


def _segfaulting_child():
    import os
    import signal

    os.kill(os.getpid(), signal.SIGSEGV)


def _hanging_child():
    import time

    time.sleep(60)


def _exiting_child():
    import sys

    print("boom: the child gave up", file=sys.stderr)
    sys.exit(3)


def test_a_child_that_exits_is_one_usage_error(tflite, monkeypatch):
    monkeypatch.setattr(bench, "_child_main", _exiting_child)
    with pytest.raises(bench.InterpreterError) as caught:
        bench.benchmark(tflite, "m")
    assert str(caught.value).startswith(
        "m: the LCE interpreter rejected this file (its process exited with code 3: boom: "
    )


def test_a_crash_in_the_interpreter_is_one_usage_error(tflite, monkeypatch):
    monkeypatch.setattr(bench, "_child_main", _segfaulting_child)
    with pytest.raises(UsageError) as caught:
        bench.benchmark(tflite, "m", source="runs/x/model.tflite")
    message = str(caught.value)
    assert message.startswith(
        "runs/x/model.tflite: the LCE interpreter crashed (signal 11, SIGSEGV) on this file; "
        "it is not a valid model"
    )
    assert "\n" not in message


def test_a_hung_interpreter_is_stopped(tflite, monkeypatch):
    monkeypatch.setattr(bench, "_child_main", _hanging_child)
    monkeypatch.setattr(bench, "STALL_TIMEOUT_S", 1.0)
    start = time.monotonic()
    with pytest.raises(bench.InterpreterError, match="made no progress for 1 s"):
        bench.benchmark(tflite, "m")
    assert time.monotonic() - start < 20


def test_timing_semantics_and_progress(tflite):
    seen = []
    result = bench.benchmark(
        tflite, "convnet", threads=2, runs=7, warmup=2, progress=lambda d, t: seen.append((d, t))
    )
    assert seen == [(i, 7) for i in range(1, 8)]
    assert result.model == "convnet" and result.tool == "lce-python-interpreter"
    assert result.threads == 2 and result.runs == 7 and result.size_bytes == len(tflite)
    assert 0 < result.min_ms <= result.median_ms <= result.max_ms
    assert result.min_ms <= result.mean_ms <= result.max_ms and result.std_ms >= 0
    # positional arguments, as `ienet bench` and benchmarks/export_bench.py pass them
    assert bench.benchmark(tflite, "m", 1, 1, 0, True).reference_bconv is True


@pytest.mark.parametrize(
    "settings, option",
    [
        ({"threads": 0}, "threads"),
        ({"threads": -1}, "threads"),
        ({"threads": bench.MAX_THREADS + 1}, "threads"),
        ({"threads": 1.5}, "threads"),
        ({"threads": True}, "threads"),
        ({"threads": "2"}, "threads"),
        ({"runs": 0}, "runs"),
        ({"runs": bench.MAX_RUNS + 1}, "runs"),
        ({"runs": None}, "runs"),
        ({"warmup": -1}, "warmup"),
        ({"warmup": bench.MAX_WARMUP + 1}, "warmup"),
    ],
)
def test_bad_settings(settings, option):
    with pytest.raises(UsageError, match=rf"^{option} must be an integer from \d+ to \d+, got "):
        bench.benchmark(b"checked before the file", "m", **settings)
    bench.check_settings(bench.MAX_THREADS, bench.MAX_RUNS, bench.MAX_WARMUP)
    bench.check_settings(1, 1, 0)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"not a model",
        b"PK\x03\x04" + bytes(60),  # a .keras / zip file
        b'{"model": "convnet"}\n',
        b"\x10\x00\x00\x00TFL3",  # the identifier and nothing else
        np.random.default_rng(0).bytes(4096),
    ],
    ids=["empty", "text", "zip", "json", "identifier only", "random"],
)
def test_not_a_flatbuffer(data):
    with pytest.raises(FlatbufferError) as caught:
        bench.benchmark(data, "m", runs=1, source="model.tflite")
    message = str(caught.value)
    assert isinstance(caught.value, IENetError) and "\n" not in message
    assert message.startswith("model.tflite: ") and "ienet export" in message


def test_cli_reports_a_crashing_file_in_one_line(tflite, tmp_path, capsys):
    from ienet_tf.cli import main

    path = tmp_path / "crash.tflite"
    path.write_bytes(_with_first_input(tflite, "LceBconv2d", -1))
    assert main(["bench", "--model", str(path), "--runs", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err
    assert err.startswith("ienet bench: error: ") and "crash.tflite" in err
    assert "crashed (signal 11, SIGSEGV)" in err
    assert main(["bench", "--model", str(path), "--threads", str(bench.MAX_THREADS + 1)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (
        f"ienet bench: error: threads must be an integer from 1 to {bench.MAX_THREADS}, "
        f"got {bench.MAX_THREADS + 1} (set --threads in that range)"
    )
