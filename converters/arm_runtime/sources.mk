# The translation units of ienet-lce-runner, relative to their source roots (the layout of
# ../shared/third_party/lce-arm-runtime-src.tar.xz: TFLite of TF 2.10, LCE v0.16.0, ruy,
# flatbuffers). A change here changes the build key: the runner is rebuilt.

# The TFLite interpreter core: model loading, graph, memory planning, CPU backend.
TFLITE_SRCS := \
	tensorflow/lite/allocation.cc \
	tensorflow/lite/arena_planner.cc \
	tensorflow/lite/c/common.cc \
	tensorflow/lite/core/api/error_reporter.cc \
	tensorflow/lite/core/api/flatbuffer_conversions.cc \
	tensorflow/lite/core/api/op_resolver.cc \
	tensorflow/lite/core/api/tensor_utils.cc \
	tensorflow/lite/core/subgraph.cc \
	tensorflow/lite/experimental/resource/resource_variable.cc \
	tensorflow/lite/experimental/resource/static_hashtable.cc \
	tensorflow/lite/external_cpu_backend_context.cc \
	tensorflow/lite/graph_info.cc \
	tensorflow/lite/interpreter.cc \
	tensorflow/lite/interpreter_builder.cc \
	tensorflow/lite/interpreter_experimental.cc \
	tensorflow/lite/minimal_logging.cc \
	tensorflow/lite/minimal_logging_default.cc \
	tensorflow/lite/mmap_allocation.cc \
	tensorflow/lite/model_builder.cc \
	tensorflow/lite/mutable_op_resolver.cc \
	tensorflow/lite/profiling/platform_profiler.cc \
	tensorflow/lite/profiling/root_profiler.cc \
	tensorflow/lite/schema/schema_utils.cc \
	tensorflow/lite/signature_runner.cc \
	tensorflow/lite/simple_memory_arena.cc \
	tensorflow/lite/stderr_reporter.cc \
	tensorflow/lite/string_util.cc \
	tensorflow/lite/tensorflow_profiler_logger_shim.cc \
	tensorflow/lite/tflite_with_xnnpack_optional.cc \
	tensorflow/lite/util.cc \
	tensorflow/lite/kernels/cpu_backend_context.cc \
	tensorflow/lite/kernels/cpu_backend_gemm_eigen.cc \
	tensorflow/lite/kernels/eigen_support.cc \
	tensorflow/lite/kernels/kernel_util.cc \
	tensorflow/lite/kernels/internal/quantization_util.cc \
	tensorflow/lite/kernels/internal/tensor_utils.cc \
	tensorflow/lite/kernels/internal/utils/sparsity_format_converter.cc \
	tensorflow/lite/kernels/internal/optimized/cpu_check.cc \
	tensorflow/lite/kernels/internal/optimized/neon_tensor_utils.cc \
	tensorflow/lite/kernels/internal/optimized/sse_tensor_utils.cc \
	tensorflow/lite/kernels/internal/reference/portable_tensor_utils.cc

# The kernel files of the builtins ienet_lce_runner.cc registers.
TFLITE_KERNEL_SRCS := $(addprefix tensorflow/lite/kernels/, \
	activations.cc add.cc add_n.cc concatenation.cc conv.cc depthwise_conv.cc \
	dequantize.cc fully_connected.cc maximum_minimum.cc mul.cc pad.cc pooling.cc \
	quantize.cc reduce.cc reshape.cc strided_slice.cc sub.cc tile.cc)

# LCE's custom operators (LceBconv2d, LceBMaxPool2d, LceQuantize, LceDequantize).
LCE_SRCS := $(addprefix larq_compute_engine/tflite/kernels/, bconv2d.cc bmaxpool.cc quantization.cc)

# ruy, TFLite's matrix multiplication backend (-DTFLITE_WITH_RUY): all but its tests and
# benchmark. The x86 AVX paths compile to stubs without -mavx flags: ruy's portable C++
# path runs on the host build.
RUY_SRCS := $(addprefix ruy/, \
	allocator.cc apply_multiplier.cc block_map.cc blocking_counter.cc context.cc \
	context_get_ctx.cc cpuinfo.cc ctx.cc denormal.cc frontend.cc have_built_path_for_avx.cc \
	have_built_path_for_avx2_fma.cc have_built_path_for_avx512.cc kernel_arm32.cc \
	kernel_arm64.cc kernel_avx.cc kernel_avx2_fma.cc kernel_avx512.cc pack_arm.cc pack_avx.cc \
	pack_avx2_fma.cc pack_avx512.cc pmu.cc prepacked_cache.cc prepare_packed_matrices.cc \
	system_aligned_alloc.cc thread_pool.cc trmul.cc tune.cc wait.cc \
	profiler/instrumentation.cc)

FLATBUFFERS_SRCS := src/util.cpp
