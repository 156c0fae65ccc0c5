// ienet-lce-runner: run an exported .tflite on the Larq Compute Engine kernels.
//
// Built static for aarch64 (run it on a device, or under qemu-aarch64-static) and for the
// x86-64 host from the same sources; see converters/arm_runtime/Makefile and
// docs/guide/arm.md. `ienet verify-arm` drives it.
//
//   ienet-lce-runner MODEL.tflite --info
//       the model's input and output tensors as one JSON line (nothing runs)
//   ienet-lce-runner MODEL.tflite --inputs IN.bin --outputs OUT.bin [--count N]
//                    [--mode default|reference|indirect] [--threads T]
//       run N samples: IN.bin holds N samples, each the raw bytes of every input tensor
//       in order; OUT.bin gets the raw bytes of every output tensor per sample. Prints one
//       JSON line with the timings.
//   ienet-lce-runner --builtins
//       the registered builtin operators and their version ranges, one JSON line
//
// Errors: a line on stderr (TFLite's own error lines before it) and exit code 1; 2 for a
// wrong command line.

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "larq_compute_engine/tflite/kernels/lce_ops_register.h"
#include "tensorflow/lite/interpreter.h"
#include "tensorflow/lite/kernels/builtin_op_kernels.h"
#include "tensorflow/lite/model.h"
#include "tensorflow/lite/mutable_op_resolver.h"

namespace {

namespace builtin = ::tflite::ops::builtin;

struct Builtin {
  tflite::BuiltinOperator op;
  const char* name;
  TfLiteRegistration* (*registration)();
  int min_version;
  int max_version;
};

// The builtins the registry's float and binary + int8 exports use (every model family x
// fp / bireal / ienet / +el / +ir2net, float and int8, converted and listed: the 21 of
// third_party/README.md plus RELU_N1_TO_1, Bi-Real's hard tanh, and STRIDED_SLICE, which
// resnet18_cifar ienet+ir2net has), over the versions TFLite 2.10's BuiltinOpResolver
// (tensorflow/lite/kernels/register.cc) registers their kernels for. LCE 0.16's converter
// (TF 2.16) writes versions 1-4 of them for our models, all within these ranges. The second
// group comes free with the same kernel files (activations.cc, pad.cc, reduce.cc): a
// user's own model that uses them runs too.
#define IENET_BUILTIN(op, min, max) \
  {tflite::BuiltinOperator_##op, #op, builtin::Register_##op, min, max}
const Builtin kBuiltins[] = {
    IENET_BUILTIN(ADD, 1, 4),
    IENET_BUILTIN(ADD_N, 1, 1),
    IENET_BUILTIN(AVERAGE_POOL_2D, 1, 3),
    IENET_BUILTIN(CONCATENATION, 1, 3),
    IENET_BUILTIN(CONV_2D, 1, 6),
    IENET_BUILTIN(DEPTHWISE_CONV_2D, 1, 6),
    IENET_BUILTIN(DEQUANTIZE, 1, 5),
    IENET_BUILTIN(FULLY_CONNECTED, 1, 9),
    IENET_BUILTIN(MAXIMUM, 1, 4),
    IENET_BUILTIN(MAX_POOL_2D, 1, 3),
    IENET_BUILTIN(MEAN, 1, 3),
    IENET_BUILTIN(MINIMUM, 1, 4),
    IENET_BUILTIN(MUL, 1, 5),
    IENET_BUILTIN(PAD, 1, 4),
    IENET_BUILTIN(PRELU, 1, 1),
    IENET_BUILTIN(QUANTIZE, 1, 3),
    IENET_BUILTIN(RELU, 1, 3),
    IENET_BUILTIN(RELU_N1_TO_1, 1, 1),
    IENET_BUILTIN(RESHAPE, 1, 1),
    IENET_BUILTIN(SOFTMAX, 1, 3),
    IENET_BUILTIN(STRIDED_SLICE, 1, 6),
    IENET_BUILTIN(SUB, 1, 5),
    IENET_BUILTIN(TILE, 1, 3),
    // free with the kernel files above
    IENET_BUILTIN(HARD_SWISH, 1, 1),
    IENET_BUILTIN(LEAKY_RELU, 1, 2),
    IENET_BUILTIN(LOGISTIC, 1, 3),
    IENET_BUILTIN(PADV2, 1, 4),
    IENET_BUILTIN(REDUCE_MAX, 1, 3),
    IENET_BUILTIN(REDUCE_MIN, 1, 3),
    IENET_BUILTIN(RELU6, 1, 3),
    IENET_BUILTIN(SUM, 1, 2),
    IENET_BUILTIN(TANH, 1, 3),
};
#undef IENET_BUILTIN

const char kUsage[] =
    "usage: ienet-lce-runner MODEL.tflite (--info | --inputs IN.bin --outputs OUT.bin "
    "[--count N] [--mode default|reference|indirect] [--threads T]) | --builtins";

[[noreturn]] void Fail(const std::string& message, int code = 1) {
  std::cerr << "ienet-lce-runner: " << message << std::endl;
  std::exit(code);
}

std::string JsonString(const char* text) {
  std::string out = "\"";
  for (const char* c = text ? text : ""; *c; ++c) {
    if (*c == '"' || *c == '\\') {
      out += '\\';
      out += *c;
    } else if (static_cast<unsigned char>(*c) < 0x20) {
      char escaped[8];
      std::snprintf(escaped, sizeof(escaped), "\\u%04x", *c);
      out += escaped;
    } else {
      out += *c;
    }
  }
  return out + "\"";
}

std::string TensorJson(const TfLiteTensor* tensor) {
  std::ostringstream out;
  out << "{\"name\":" << JsonString(tensor->name)
      << ",\"type\":" << JsonString(TfLiteTypeGetName(tensor->type)) << ",\"shape\":[";
  for (int d = 0; d < tensor->dims->size; ++d) out << (d ? "," : "") << tensor->dims->data[d];
  out << "],\"bytes\":" << tensor->bytes;
  if (tensor->quantization.type == kTfLiteAffineQuantization) {
    // Like LCE's Python interpreter (input_scales, input_zero_points): the first channel's.
    out.precision(9);
    out << ",\"scale\":" << tensor->params.scale
        << ",\"zero_point\":" << tensor->params.zero_point;
  }
  return out.str() + "}";
}

std::string TensorsJson(const tflite::Interpreter& interpreter, const std::vector<int>& ids) {
  std::string out = "[";
  for (size_t i = 0; i < ids.size(); ++i) {
    out += (i ? "," : "") + TensorJson(interpreter.tensor(ids[i]));
  }
  return out + "]";
}

void PrintBuiltins() {
  std::cout << "{\"builtins\":{";
  for (size_t i = 0; i < sizeof(kBuiltins) / sizeof(kBuiltins[0]); ++i) {
    const auto& b = kBuiltins[i];
    std::cout << (i ? "," : "") << JsonString(b.name) << ":[" << b.min_version << ","
              << b.max_version << "]";
  }
  std::cout << "},\"custom\":[\"LceBconv2d\",\"LceBMaxPool2d\",\"LceDequantize\","
               "\"LceQuantize\"]}"
            << std::endl;
}

struct Options {
  std::string model, inputs, outputs, mode = "default";
  long count = 1;
  int threads = 1;
  bool info = false;
};

long ParseNumber(const std::string& option, const std::string& text, long low, long high) {
  char* end = nullptr;
  const long value = std::strtol(text.c_str(), &end, 10);
  if (text.empty() || *end || value < low || value > high) {
    Fail(option + " must be an integer from " + std::to_string(low) + " to " +
             std::to_string(high) + ", got '" + text + "'",
         2);
  }
  return value;
}

Options ParseOptions(int argc, char** argv) {
  Options options;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) Fail(arg + " needs a value; " + kUsage, 2);
      return argv[++i];
    };
    if (arg == "--builtins") {
      PrintBuiltins();
      std::exit(0);
    } else if (arg == "--info") {
      options.info = true;
    } else if (arg == "--inputs") {
      options.inputs = value();
    } else if (arg == "--outputs") {
      options.outputs = value();
    } else if (arg == "--mode") {
      options.mode = value();
    } else if (arg == "--count") {
      options.count = ParseNumber(arg, value(), 1, 1000000);
    } else if (arg == "--threads") {
      options.threads = static_cast<int>(ParseNumber(arg, value(), 1, 64));
    } else if (!arg.empty() && arg[0] != '-' && options.model.empty()) {
      options.model = arg;
    } else {
      Fail("unexpected argument '" + arg + "'; " + kUsage, 2);
    }
  }
  if (options.model.empty()) Fail(std::string("no model given; ") + kUsage, 2);
  if (options.mode != "default" && options.mode != "reference" && options.mode != "indirect") {
    Fail("--mode must be default, reference or indirect, got '" + options.mode + "'", 2);
  }
  if (!options.info && (options.inputs.empty() || options.outputs.empty())) {
    Fail(std::string("give --info, or --inputs and --outputs; ") + kUsage, 2);
  }
  return options;
}

}  // namespace

int main(int argc, char** argv) {
  const Options options = ParseOptions(argc, argv);

  // Verified: a damaged file is an error here, not a crash (ienet verifies it first too).
  auto model = tflite::FlatBufferModel::VerifyAndBuildFromFile(options.model.c_str());
  if (!model) Fail(options.model + ": not a valid TFLite flatbuffer");

  tflite::MutableOpResolver resolver;
  for (const auto& b : kBuiltins) {
    resolver.AddBuiltin(b.op, b.registration(), b.min_version, b.max_version);
  }
  // LCE's three LceBconv2d kernels: the optimized BGEMM (default; with TFLITE_WITH_RUY),
  // the reference one, or the indirect BGEMM.
  compute_engine::tflite::RegisterLCECustomOps(&resolver, options.mode == "reference",
                                               options.mode == "indirect");

  std::unique_ptr<tflite::Interpreter> interpreter;
  if (tflite::InterpreterBuilder(*model, resolver)(&interpreter, options.threads) !=
          kTfLiteOk ||
      !interpreter) {
    Fail(options.model + ": cannot build an interpreter (an operator this runner lacks?)");
  }
  if (interpreter->AllocateTensors() != kTfLiteOk) {
    Fail(options.model + ": cannot allocate its tensors");
  }
  const std::string tensors = "\"inputs\":" + TensorsJson(*interpreter, interpreter->inputs()) +
                              ",\"outputs\":" + TensorsJson(*interpreter, interpreter->outputs());
  if (options.info) {
    std::cout << "{" << tensors << "}" << std::endl;
    return 0;
  }

  size_t sample_in = 0, sample_out = 0;
  for (int id : interpreter->inputs()) sample_in += interpreter->tensor(id)->bytes;
  for (int id : interpreter->outputs()) sample_out += interpreter->tensor(id)->bytes;
  std::ifstream in(options.inputs, std::ios::binary | std::ios::ate);
  if (!in) Fail("cannot read " + options.inputs);
  const auto in_size = static_cast<size_t>(in.tellg());
  if (in_size != sample_in * options.count) {
    Fail(options.inputs + " has " + std::to_string(in_size) + " bytes; " +
         std::to_string(options.count) + " sample(s) of this model's inputs are " +
         std::to_string(sample_in * options.count));
  }
  in.seekg(0);
  std::ofstream out(options.outputs, std::ios::binary | std::ios::trunc);
  if (!out) Fail("cannot write " + options.outputs);

  std::vector<double> ms;
  for (long n = 0; n < options.count; ++n) {
    for (int id : interpreter->inputs()) {
      TfLiteTensor* tensor = interpreter->tensor(id);
      in.read(tensor->data.raw, static_cast<std::streamsize>(tensor->bytes));
    }
    if (!in) Fail("cannot read " + options.inputs);
    const auto start = std::chrono::steady_clock::now();
    if (interpreter->Invoke() != kTfLiteOk) {
      Fail(options.model + ": Invoke failed on sample " + std::to_string(n));
    }
    ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() -
                                                           start)
                     .count());
    for (int id : interpreter->outputs()) {
      const TfLiteTensor* tensor = interpreter->tensor(id);
      out.write(tensor->data.raw, static_cast<std::streamsize>(tensor->bytes));
    }
  }
  out.close();
  if (!out) Fail("cannot write " + options.outputs);
  double total = 0;
  for (double m : ms) total += m;
  std::cout << "{\"mode\":" << JsonString(options.mode.c_str()) << ",\"invokes\":" << ms.size()
            << ",\"mean_ms\":" << total / ms.size()
            << ",\"min_ms\":" << *std::min_element(ms.begin(), ms.end()) << "," << tensors
            << ",\"sample_bytes\":[" << sample_in << "," << sample_out << "]}" << std::endl;
  return 0;
}
