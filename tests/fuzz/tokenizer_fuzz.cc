// Encoding any text: valid UTF-8 is encoded, and its ids stream through the incremental decoder to exactly
// Decode(ids); when every byte of the text has a byte token, decode(encode(s)) == s (SmolLM2's vocabulary
// lacks a few, such as \x04, which `tokenizers` drops too: fuzzing found this). Anything else is refused
// with INVALID_ARGUMENT. SmolLM2's tokenizer.json, from $PAD_FUZZ_TOKENIZER or the project's models/.
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>
#include <string_view>

#include "pad/tokenizer.h"
#include "pad/utf8.h"
#include "tests/fuzz/smollm2.h"

namespace {

const pad::Tokenizer* tokenizer = nullptr;
bool has_byte_token[256] = {};

}  // namespace

extern "C" int LLVMFuzzerInitialize(int* /*argc*/, char*** /*argv*/) {
  tokenizer = SmolLM2Tokenizer();
  for (int32_t id = 0; id < tokenizer->vocab_size(); ++id) {
    const std::string bytes = tokenizer->TokenBytes(id);
    if (bytes.size() == 1 && !tokenizer->IsSpecial(id)) has_byte_token[static_cast<uint8_t>(bytes[0])] = true;
  }
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  auto ids = tokenizer->Encode(text, /*add_special_tokens=*/false);
  if (!pad::utf8::IsValid(text)) {
    if (ids.ok() || ids.status().code() != absl::StatusCode::kInvalidArgument) std::abort();
    return 0;
  }
  if (!ids.ok()) std::abort();
  const std::string decoded = tokenizer->Decode(*ids, /*skip_special_tokens=*/false);
  bool every_byte_has_a_token = true;
  for (uint8_t byte : text) every_byte_has_a_token &= has_byte_token[byte];
  if (every_byte_has_a_token && decoded != text) std::abort();
  pad::IncrementalDecoder stream(tokenizer, /*skip_special_tokens=*/false);
  std::string streamed;
  for (int32_t id : *ids) streamed += stream.Add(id);
  streamed += stream.Finish();
  if (streamed != decoded) std::abort();
  return 0;
}
