// Parsing any config.json: a LlamaConfig or an error naming the field, never a crash or an exception.
#include <cstdint>

#include "absl/strings/string_view.h"
#include "pad/model_config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  (void)pad::LlamaConfig::FromJson(absl::string_view(reinterpret_cast<const char*>(data), size));
  return 0;
}
