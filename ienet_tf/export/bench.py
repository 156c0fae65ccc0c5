"""Latency of converted models in the LCE interpreter, and the result schema that
`converters/lce_benchmark.py` (the on-device `lce_benchmark_model`) shares.

On x86 LCE has no optimized binary kernels: its `LceBconv2d` runs a generic (or, with
`reference_bconv=True`, the reference) kernel, often slower than the float TFLite path.
x86 timings measure correctness and relative cost between our own models, never the
speed-up of a binary network on ARM.
"""

from __future__ import annotations

import dataclasses
import platform
import statistics
import time
from collections.abc import Callable

import numpy as np

from ienet_tf.errors import UsageError

__all__ = ["X86_CAVEAT", "BenchResult", "benchmark"]

X86_CAVEAT = (
    "Note: LCE has no optimized binary kernels for x86; these timings are not the speed-up "
    "of a binary network on ARM. Measure on the device with converters/lce_benchmark.py."
)


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


def benchmark(
    flatbuffer: bytes,
    name: str = "model",
    threads: int = 1,
    runs: int = 50,
    warmup: int = 5,
    reference_bconv: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> BenchResult:
    """Time `runs` single-image inferences after `warmup` untimed ones."""
    from larq_compute_engine.tflite.python.interpreter import Interpreter

    if threads < 1 or runs < 1 or warmup < 0:
        raise UsageError(
            f"need threads >= 1, runs >= 1, warmup >= 0; got {threads}, {runs}, {warmup}."
        )
    interpreter = Interpreter(flatbuffer, num_threads=threads, use_reference_bconv=reference_bconv)
    shape = interpreter.input_shapes[0]
    image = np.random.default_rng(0).normal(size=(1, *shape[1:])).astype(np.float32)
    raw = interpreter.interpreter  # the C++ wrapper: no Python-side batching per call
    for _ in range(warmup):
        raw.predict([image])
    timings = []
    for i in range(runs):
        start = time.perf_counter()
        raw.predict([image])
        timings.append((time.perf_counter() - start) * 1e3)
        if progress:
            progress(i + 1, runs)
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
