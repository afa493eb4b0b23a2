// Parsing any tokenizer.json: a tokenizer or an error, never a crash; a parsed one encodes a fixed text.
#include <cstdint>
#include <string_view>

#include "pad/tokenizer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto tokenizer = pad::Tokenizer::FromJson(std::string_view(reinterpret_cast<const char*>(data), size));
  if (tokenizer.ok()) {
    (void)(*tokenizer)->Encode("Hello world! 123 <|im_start|> héllo", /*add_special_tokens=*/true);
  }
  return 0;
}
