// Minimal inference with an ienet-tf model on ARM: TFLite + the LCE custom ops.
//
//   ienet_infer MODEL.tflite [INPUT.f32] [RUNS]
//
// INPUT.f32 is raw float32 data for one image, already normalised as in training (e.g.
// numpy's `image.astype("float32").tofile("input.f32")`); without it the input is zeros.
// A binary + int8 model exported with int8 input/output (`to_tflite(..., int8=True,
// int8_io=True)`) takes int8: the image is quantized with the input tensor's scale and zero
// point (q = floor(x / scale + 0.5) + zero_point, clamped to [-128, 127]) and the int8
// logits are dequantized. Prints the top-1 class and the median latency of RUNS
// invocations (default 20).
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <vector>

#include "larq_compute_engine/tflite/kernels/lce_ops_register.h"
#include "tensorflow/lite/interpreter.h"
#include "tensorflow/lite/kernels/register.h"
#include "tensorflow/lite/model.h"

#define CHECK_OR_EXIT(condition, message)                         \
  if (!(condition)) {                                             \
    std::fprintf(stderr, "ienet_infer: error: %s\n", (message)); \
    return 1;                                                     \
  }

int main(int argc, char* argv[]) {
  if (argc < 2 || argc > 4) {
    std::fprintf(stderr, "usage: ienet_infer MODEL.tflite [INPUT.f32] [RUNS]\n");
    return 2;
  }
  const int runs = argc == 4 ? std::max(1, std::atoi(argv[3])) : 20;

  auto model = tflite::FlatBufferModel::BuildFromFile(argv[1]);
  CHECK_OR_EXIT(model != nullptr, "cannot read the model file");

  // The builtin ops plus LceQuantize, LceBconv2d, LceDequantize, LceBMaxPool2d.
  tflite::ops::builtin::BuiltinOpResolver resolver;
  compute_engine::tflite::RegisterLCECustomOps(&resolver);

  std::unique_ptr<tflite::Interpreter> interpreter;
  tflite::InterpreterBuilder(*model, resolver)(&interpreter);
  CHECK_OR_EXIT(interpreter != nullptr, "cannot build the interpreter");
  interpreter->SetNumThreads(1);
  CHECK_OR_EXIT(interpreter->AllocateTensors() == kTfLiteOk, "cannot allocate tensors");

  TfLiteTensor* input = interpreter->input_tensor(0);
  CHECK_OR_EXIT(input->type == kTfLiteFloat32 || input->type == kTfLiteInt8,
                "the model input is neither float32 nor int8");
  const size_t input_size = input->bytes / (input->type == kTfLiteFloat32 ? 4 : 1);
  std::vector<float> image(input_size, 0.0f);
  if (argc >= 3) {
    const std::streamsize bytes = static_cast<std::streamsize>(input_size * sizeof(float));
    std::ifstream file(argv[2], std::ios::binary);
    CHECK_OR_EXIT(file.good(), "cannot open the input file");
    file.read(reinterpret_cast<char*>(image.data()), bytes);
    CHECK_OR_EXIT(file.gcount() == bytes, "the input file is smaller than the model input");
  }
  if (input->type == kTfLiteFloat32) {
    std::copy(image.begin(), image.end(), interpreter->typed_input_tensor<float>(0));
  } else {  // int8 input: quantize with the tensor's scale and zero point
    const float scale = input->params.scale;
    const int zero_point = input->params.zero_point;
    int8_t* data = interpreter->typed_input_tensor<int8_t>(0);
    for (size_t i = 0; i < input_size; ++i) {
      const float q = std::floor(image[i] / scale + 0.5f) + zero_point;
      data[i] = static_cast<int8_t>(std::min(127.0f, std::max(-128.0f, q)));
    }
  }

  std::vector<double> latencies_ms;
  for (int i = 0; i < runs; ++i) {
    const auto start = std::chrono::steady_clock::now();
    CHECK_OR_EXIT(interpreter->Invoke() == kTfLiteOk, "inference failed");
    const std::chrono::duration<double, std::milli> elapsed =
        std::chrono::steady_clock::now() - start;
    latencies_ms.push_back(elapsed.count());
  }
  std::sort(latencies_ms.begin(), latencies_ms.end());

  const TfLiteTensor* output = interpreter->output_tensor(0);
  CHECK_OR_EXIT(output->type == kTfLiteFloat32 || output->type == kTfLiteInt8,
                "the model output is neither float32 nor int8");
  const size_t classes = output->bytes / (output->type == kTfLiteFloat32 ? 4 : 1);
  std::vector<float> logits(classes);
  for (size_t i = 0; i < classes; ++i) {
    logits[i] = output->type == kTfLiteFloat32
                    ? interpreter->typed_output_tensor<float>(0)[i]
                    : (interpreter->typed_output_tensor<int8_t>(0)[i] -
                       output->params.zero_point) * output->params.scale;
  }
  const size_t top1 = std::max_element(logits.begin(), logits.end()) - logits.begin();
  std::printf("top-1 class: %zu (logit %.4f)\n", top1, logits[top1]);
  std::printf("median latency: %.2f ms over %d runs (1 thread)\n",
              latencies_ms[latencies_ms.size() / 2], runs);
  return 0;
}
