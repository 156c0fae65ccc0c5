// ienet_infer: classify images with an ienet-tf model (`ienet export`) on TFLite + the Larq
// Compute Engine (LCE) kernels.
//
//   ienet_infer MODEL.tflite IMAGES.f32
//
// IMAGES.f32 holds N images as raw little-endian float32, one after the other, each in the
// model's input layout (NHWC, e.g. 28x28x1) and normalised exactly as in training: what
// numpy writes with `images.astype("<f4").tofile("images.f32")` for the batch you would give
// the Keras model. N is the file size over one image's size. A binary + int8 model with int8
// input/output (`to_tflite(..., int8=True, int8_io=True)`) takes the same file: each image is
// quantized with the input tensor's scale and zero point, and the int8 logits dequantized.
//
// Prints one line per image, `image I: class C (logit L)`, then one JSON line
// {"images": N, "top1": [...], "mean_ms": ...}. Errors: one line on stderr
// (`ienet_infer: error: ...`, after TFLite's own lines, if any) and exit code 1; 2 for a
// wrong command line.
//
// Build: converters/README.md ("Run it from C++"): `make arm-example` cross-compiles it
// statically for aarch64 against the runtime of `ienet verify-arm`; CMakeLists.txt builds it
// against an LCE checkout.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "larq_compute_engine/tflite/kernels/lce_ops_register.h"
#include "tensorflow/lite/interpreter.h"
#include "tensorflow/lite/kernels/builtin_op_kernels.h"
#include "tensorflow/lite/kernels/kernel_util.h"
#include "tensorflow/lite/model.h"
#include "tensorflow/lite/mutable_op_resolver.h"

namespace {

int Fail(const std::string& message) {
  std::fprintf(stderr, "ienet_infer: error: %s\n", message.c_str());
  return 1;
}

// The TFLite builtins ienet-tf's exports use (float and binary + int8), up to the op
// versions TFLite 2.10 has kernels for. Registering only these keeps the binary small; to
// run any TFLite op instead, use tflite::ops::builtin::BuiltinOpResolver
// (tensorflow/lite/kernels/register.h), which links every kernel.
void AddIenetBuiltins(tflite::MutableOpResolver* resolver) {
  namespace ops = tflite::ops::builtin;
  const struct {
    tflite::BuiltinOperator op;
    TfLiteRegistration* (*registration)();
    int max_version;
  } builtins[] = {
      {tflite::BuiltinOperator_ADD, ops::Register_ADD, 4},
      {tflite::BuiltinOperator_ADD_N, ops::Register_ADD_N, 1},
      {tflite::BuiltinOperator_AVERAGE_POOL_2D, ops::Register_AVERAGE_POOL_2D, 3},
      {tflite::BuiltinOperator_CONCATENATION, ops::Register_CONCATENATION, 3},
      {tflite::BuiltinOperator_CONV_2D, ops::Register_CONV_2D, 6},
      {tflite::BuiltinOperator_DEPTHWISE_CONV_2D, ops::Register_DEPTHWISE_CONV_2D, 6},
      {tflite::BuiltinOperator_DEQUANTIZE, ops::Register_DEQUANTIZE, 5},
      {tflite::BuiltinOperator_FULLY_CONNECTED, ops::Register_FULLY_CONNECTED, 9},
      {tflite::BuiltinOperator_MAXIMUM, ops::Register_MAXIMUM, 4},
      {tflite::BuiltinOperator_MAX_POOL_2D, ops::Register_MAX_POOL_2D, 3},
      {tflite::BuiltinOperator_MEAN, ops::Register_MEAN, 3},
      {tflite::BuiltinOperator_MINIMUM, ops::Register_MINIMUM, 4},
      {tflite::BuiltinOperator_MUL, ops::Register_MUL, 5},
      {tflite::BuiltinOperator_PAD, ops::Register_PAD, 4},
      {tflite::BuiltinOperator_PRELU, ops::Register_PRELU, 1},
      {tflite::BuiltinOperator_QUANTIZE, ops::Register_QUANTIZE, 3},
      {tflite::BuiltinOperator_RELU, ops::Register_RELU, 3},
      {tflite::BuiltinOperator_RELU_N1_TO_1, ops::Register_RELU_N1_TO_1, 1},
      {tflite::BuiltinOperator_RESHAPE, ops::Register_RESHAPE, 1},
      {tflite::BuiltinOperator_SOFTMAX, ops::Register_SOFTMAX, 3},
      {tflite::BuiltinOperator_STRIDED_SLICE, ops::Register_STRIDED_SLICE, 6},
      {tflite::BuiltinOperator_SUB, ops::Register_SUB, 5},
      {tflite::BuiltinOperator_TILE, ops::Register_TILE, 3},
  };
  for (const auto& b : builtins) resolver->AddBuiltin(b.op, b.registration(), 1, b.max_version);
}

}  // namespace

int main(int argc, char* argv[]) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: ienet_infer MODEL.tflite IMAGES.f32\n");
    return 2;
  }
  const std::string model_path = argv[1], images_path = argv[2];

  // The model, verified: a damaged file is an error message, not a crash.
  auto model = tflite::FlatBufferModel::VerifyAndBuildFromFile(model_path.c_str());
  if (!model) return Fail(model_path + " is not a valid TFLite model");

  // The builtins plus LCE's custom ops (LceBconv2d, LceQuantize, LceDequantize,
  // LceBMaxPool2d).
  tflite::MutableOpResolver resolver;
  AddIenetBuiltins(&resolver);
  compute_engine::tflite::RegisterLCECustomOps(&resolver);

  std::unique_ptr<tflite::Interpreter> interpreter;
  if (tflite::InterpreterBuilder(*model, resolver)(&interpreter, /*num_threads=*/1) !=
          kTfLiteOk ||
      !interpreter || interpreter->AllocateTensors() != kTfLiteOk) {
    return Fail("cannot build an interpreter for " + model_path + " (see TFLite's message)");
  }
  if (interpreter->inputs().size() != 1 || interpreter->outputs().size() != 1) {
    return Fail("expected a model with one input and one output (a classifier)");
  }
  TfLiteTensor* input = interpreter->input_tensor(0);
  const TfLiteTensor* output = interpreter->output_tensor(0);
  for (const TfLiteTensor* t : {static_cast<const TfLiteTensor*>(input), output}) {
    if (t->type != kTfLiteFloat32 && t->type != kTfLiteInt8) {
      return Fail(std::string("tensor ") + t->name + " is " + TfLiteTypeGetName(t->type) +
                  ", not float32 or int8");
    }
  }
  const size_t pixels = tflite::NumElements(input);
  const size_t classes = tflite::NumElements(output);

  // The images: a whole number of float32 images, at least one.
  std::ifstream file(images_path, std::ios::binary | std::ios::ate);
  if (!file) return Fail("cannot read " + images_path);
  const size_t bytes = static_cast<size_t>(file.tellg()), image_bytes = pixels * sizeof(float);
  if (bytes == 0 || bytes % image_bytes != 0) {
    return Fail(images_path + " has " + std::to_string(bytes) + " bytes; it must hold one or " +
                "more images of " + std::to_string(pixels) + " float32 (" +
                std::to_string(image_bytes) + " bytes each)");
  }
  const size_t count = bytes / image_bytes;
  std::vector<float> images(count * pixels);
  file.seekg(0);
  if (!file.read(reinterpret_cast<char*>(images.data()), static_cast<std::streamsize>(bytes))) {
    return Fail("cannot read " + images_path);
  }

  std::vector<size_t> top1(count);
  double total_ms = 0;
  for (size_t n = 0; n < count; ++n) {
    const float* image = &images[n * pixels];
    if (input->type == kTfLiteFloat32) {
      std::copy(image, image + pixels, input->data.f);
    } else {  // int8 input: q = clamp(floor(x / scale + 0.5) + zero_point, -128, 127)
      for (size_t i = 0; i < pixels; ++i) {
        const float q = std::floor(image[i] / input->params.scale + 0.5f) +
                        input->params.zero_point;
        input->data.int8[i] = static_cast<int8_t>(std::min(127.0f, std::max(-128.0f, q)));
      }
    }
    const auto start = std::chrono::steady_clock::now();
    if (interpreter->Invoke() != kTfLiteOk) {
      return Fail("inference failed on image " + std::to_string(n));
    }
    total_ms += std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() -
                                                          start)
                    .count();
    std::vector<float> logits(classes);
    for (size_t i = 0; i < classes; ++i) {
      logits[i] = output->type == kTfLiteFloat32
                      ? output->data.f[i]
                      : (output->data.int8[i] - output->params.zero_point) *
                            output->params.scale;
    }
    top1[n] = std::max_element(logits.begin(), logits.end()) - logits.begin();
    std::printf("image %zu: class %zu (logit %.4f)\n", n, top1[n], logits[top1[n]]);
  }

  std::printf("{\"images\": %zu, \"top1\": [", count);
  for (size_t n = 0; n < count; ++n) std::printf("%s%zu", n ? ", " : "", top1[n]);
  std::printf("], \"mean_ms\": %.3f}\n", total_ms / count);
  return 0;
}
