#include "pad/model_options.h"

#include <ATen/Context.h>

#include <string>

#include "absl/strings/str_cat.h"

namespace pad {

absl::StatusOr<c10::ScalarType> ParseDtype(absl::string_view name) {
  if (name == "float32" || name == "fp32") return c10::kFloat;
  if (name == "bfloat16" || name == "bf16") return c10::kBFloat16;
  if (name == "float16" || name == "fp16") return c10::kHalf;
  return absl::InvalidArgumentError(
      absl::StrCat("dtype \"", name, "\" is not one of float32, bfloat16, float16"));
}

absl::StatusOr<Quantization> ParseQuantization(absl::string_view name) {
  if (name == "none") return Quantization::kNone;
  if (name == "int8") return Quantization::kInt8;
  return absl::InvalidArgumentError(absl::StrCat("quantization \"", name, "\" is not one of none, int8"));
}

absl::StatusOr<c10::Device> ParseDevice(absl::string_view name) {
  try {
    c10::Device device{std::string(name)};
    if (device.is_cpu()) return device;
    if (device.is_cuda()) {
      if (!at::hasCUDA())
        return absl::UnavailableError(absl::StrCat("device \"", name, "\": no CUDA device"));
      return device;
    }
  } catch (const c10::Error&) {
  }
  return absl::InvalidArgumentError(absl::StrCat("device \"", name, "\" is not cpu, cuda or cuda:N"));
}

}  // namespace pad
