"""`arm_trace`, the instruction counting of `ienet verify-arm --trace` and of
benchmarks/arm_instructions.py: its trace counter and invoke/op segmentation on a synthetic
qemu log, the category rules, the short names and the per-invoke summary. The runs on the
real runtime are in test_arm.py (`verify_arm(..., trace=True)`) and
tests/benchmarks/test_arm_instructions.py (the benchmark's smoke mode)."""

from __future__ import annotations

import random

import pytest

from ienet_tf.export import arm_trace

MAIN, INVOKE, INNER, RETURN = 0x400000, 0x400100, 0x400200, 0x400008
OP, KERNEL_A, KERNEL_B, OP_RETURN = 0x400300, 0x400400, 0x400500, 0x400120


def _block(pc: int, size: int, host: int, name: str) -> str:
    """A TB as `-d in_asm` prints it, then its first `-d exec` line."""
    lines = [f"0x{pc + 4 * i:08x}:  d503201f  nop      " for i in range(size)]
    return "----------------\nIN: " + name + "\n" + "\n".join(lines) + "\n\n" + _exec(pc, host)


def _exec(pc: int, host: int) -> str:
    return f"Trace 0: 0x{host:x} [0000000001009331/{pc:016x}/00000001/00000200] sym\n"


def _synthetic_log() -> str:
    """main (2 instructions), two invokes, each back to the return site (4)."""
    log = _block(MAIN, 2, 0x7F00, "main")
    log += _block(INVOKE, 3, 0x7F10, "invoke") + _block(INNER, 5, 0x7F20, "inner")
    log += _exec(INNER, 0x7F20) + _block(RETURN, 4, 0x7F30, "main")
    log += _exec(INVOKE, 0x7F10) + _exec(INNER, 0x7F20) * 3 + _exec(RETURN, 0x7F30)
    return log


def _fed(data: bytes, markers: dict[int, str], seed: int = 0) -> arm_trace.TraceCounter:
    """`data` fed to a counter in random pieces of 1-60 bytes."""
    rng = random.Random(seed)
    counter = arm_trace.TraceCounter(markers)
    at = 0
    while at < len(data):
        step = rng.randint(1, 60)
        counter.feed(data[at : at + step])
        at += step
    counter.finish()
    return counter


def test_the_counter_adds_tb_sizes_per_segment_whatever_the_pieces():
    data = _synthetic_log().encode()
    for seed in range(20):
        counter = _fed(data, {INVOKE: "invoke", RETURN: "outside"}, seed)
        kinds = [kind for kind, _ in counter.segments]
        assert kinds == ["outside", "invoke", "outside", "invoke", "outside"]
        totals = [sum(n for _, n in counter.counts(i).values()) for i in range(len(kinds))]
        assert totals == [2, 3 + 5 + 5, 4, 3 + 3 * 5, 4]
        assert counter.counts(3) == {INVOKE: [1, 3], INNER: [3, 15]}
        assert counter.blocks == 4 and counter.conflicts == 0


def test_a_tb_executed_without_its_in_asm_block_is_an_error():
    counter = arm_trace.TraceCounter({})
    counter.feed(_exec(INNER, 0x7F20).encode())
    counter.finish()
    with pytest.raises(ValueError, match="never printed"):
        counter.counts(0)


def _op_log() -> str:
    """main (2), one invoke (3) running two ops through OpInvoke (2 each): kernel A (5),
    back in the op loop (1), kernel B (7, twice), the loop (1), back in main (4)."""
    log = _block(MAIN, 2, 0x7F00, "main") + _block(INVOKE, 3, 0x7F10, "invoke")
    log += _block(OP, 2, 0x7F40, "OpInvoke") + _block(KERNEL_A, 5, 0x7F50, "a")
    log += _block(OP_RETURN, 1, 0x7F60, "loop")
    log += _exec(OP, 0x7F40) + _block(KERNEL_B, 7, 0x7F70, "b") + _exec(KERNEL_B, 0x7F70)
    log += _exec(OP_RETURN, 0x7F60) + _block(RETURN, 4, 0x7F30, "main")
    return log


def _symbols() -> arm_trace.Symbols:
    rows = [
        (MAIN, 0x100, "main"),
        (INVOKE, 0x100, "tflite::Subgraph::Invoke()"),
        (OP, 0x100, arm_trace.OP_INVOKE),
        (KERNEL_A, 0x100, "void compute_engine::core::bgemm::BinaryKernelNeon8x4<float>(int)"),
        (KERNEL_B, 0x100, "tflite::optimized_ops::AddElementwise(int, float const*)"),
    ]
    return arm_trace.Symbols(
        tuple(r[0] for r in rows), tuple(r[0] + r[1] for r in rows), tuple(r[2] for r in rows)
    )


def test_the_op_markers_cut_an_invoke_into_its_ops():
    markers = {INVOKE: "invoke", RETURN: "outside", OP: "op", OP_RETURN: "between"}
    for seed in range(10):
        counter = _fed(_op_log().encode(), markers, seed)
        invokes, outside = arm_trace.invokes_of(counter, _symbols(), per_op=True)
        assert outside == 2 + 4 and len(invokes) == 1
        invoke = invokes[0]
        assert invoke["instructions"] == 3 + (2 + 5) + 1 + (2 + 2 * 7) + 1
        assert [op["instructions"] for op in invoke["ops"]] == [2 + 5, 2 + 2 * 7]
        assert invoke["ops"][1]["functions"] == {
            arm_trace.OP_INVOKE: 2,
            "tflite::optimized_ops::AddElementwise(int, float const*)": 14,
        }
        assert sum(invoke["functions"].values()) == invoke["instructions"]
    # without op markers: the same invoke, whole
    counter = _fed(_op_log().encode(), {INVOKE: "invoke", RETURN: "outside"})
    invokes, outside = arm_trace.invokes_of(counter, _symbols())
    assert outside == 6 and invokes[0]["instructions"] == 28 and "ops" not in invokes[0]


def test_the_summary_keeps_the_kernels_and_names_the_ops():
    counter = _fed(_op_log().encode(), {INVOKE: "invoke", RETURN: "outside", OP: "op",
                                        OP_RETURN: "between"})  # fmt: skip
    invokes, _ = arm_trace.invokes_of(counter, _symbols(), per_op=True)
    trace = arm_trace.Trace(invokes * 2, 6, 7, 0, 0.0, {})
    found = arm_trace.summarize(trace, ["LceBconv2d", "ADD"])
    assert found.instructions == found.first_invoke_instructions == 28
    assert found.categories["LCE binary conv (LceBconv2d)"] == 5
    assert sum(found.categories.values()) == 28
    assert [(k.function, k.category, k.instructions) for k in found.kernels] == [
        ("bgemm::BinaryKernelNeon8x4<float>", "bconv", 5)
    ]
    assert [(op.index, op.op, op.instructions) for op in found.ops] == [
        (0, "LceBconv2d", 7),
        (1, "ADD", 16),
    ]
    assert found.ops[1].functions[0].function == "optimized_ops::AddElementwise"
    # op names that do not match the ops counted (another subgraph?): no per-op counts
    assert arm_trace.summarize(trace, ["ADD"]).ops is None
    assert arm_trace.summarize(trace, None).ops is None


@pytest.mark.parametrize(
    ("function", "expected"),
    [
        ("void compute_engine::core::bgemm::BinaryKernelNeon8x4<float>(int)", "LCE binary conv"),
        ("void tflite::optimized_ops::ExtractPatchIntoBufferColumn<int>(int)", "LCE binary conv"),
        ("void ruy::detail::CreatePackedMatrix<int, int>(ruy::Side)", "LCE binary conv"),
        ("void compute_engine::core::bitpacking::bitpack_bitfield<float>(float const*, int*)",
         "LCE bitpacking"),
        ("ruy::KernelFloatNeon(ruy::KernelParamsFloat<8, 8> const&)", "float conv"),
        ("void tflite::optimized_ops::ExtractPatchIntoBufferColumn<float>(int)", "float conv"),
        ("tflite::optimized_ops::AddElementwise(int, float const*)", "elementwise"),
        ("tflite::optimized_ops::AveragePool(tflite::PoolParams const&)", "pool"),
        ("__memcpy_sve", "libc"),
        ("[plt]", "libc"),
        ("tflite::Subgraph::Invoke()", "runtime"),
        ("ruy::TrMul(ruy::Ctx*, ruy::TrMulParams*)", "runtime"),
    ],
)  # fmt: skip
def test_functions_fall_into_the_documented_categories(function, expected):
    assert arm_trace.category(function).startswith(expected)


@pytest.mark.parametrize(
    ("function", "expected"),
    [
        ("void compute_engine::core::bgemm::BinaryKernelNeon8x4<float>(compute_engine::core::"
         "bgemm::BinaryKernelParams<float, 8, 4> const&)", "bgemm::BinaryKernelNeon8x4<float>"),
        ("void compute_engine::core::bgemm::RunRuyPack<(ruy::Path)16, ruy::FixedKernelLayout<"
         "(ruy::Order)0, 4, 4> >(ruy::Tuning, ruy::EMat const&)", "bgemm::RunRuyPack<…>"),
        ("void compute_engine::core::bitpacking::bitpack_aarch64_4x32<float>(float const*, "
         "unsigned long, int*, float) [clone .isra.0]", "bitpacking::bitpack_aarch64_4x32<float>"),
        ("std::pair<float const*, float*> tflite::optimized_ops::ReduceImpl<float>(float const*)",
         "optimized_ops::ReduceImpl<float>"),
        ("ruy::KernelFloatNeon(ruy::KernelParamsFloat<8, 8> const&)", "ruy::KernelFloatNeon"),
        ("operator new(unsigned long)", "operator new"),
        ("compute_engine::tflite::QuantizeEval(TfLiteContext*, TfLiteNode*)",
         "compute_engine::tflite::QuantizeEval"),
        ("tflite::(anonymous namespace)::UnresolvedOpInvoke(TfLiteContext*, TfLiteNode*)",
         "(anonymous namespace)::UnresolvedOpInvoke"),
        ("__memcpy_sve", "__memcpy_sve"),
        ("[plt]", "[plt]"),
    ],
)  # fmt: skip
def test_short_names_drop_return_types_parameters_and_outer_namespaces(function, expected):
    assert arm_trace.short_name(function) == expected
