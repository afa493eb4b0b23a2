// Any sequence of token ids, in or out of the vocabulary, streams through the incremental decoder to
// exactly Decode(ids), in whole UTF-8 pieces. The ids are the input read as little-endian int32s.
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "pad/tokenizer.h"
#include "pad/utf8.h"
#include "tests/fuzz/smollm2.h"

namespace {

const pad::Tokenizer* tokenizer = nullptr;

}  // namespace

extern "C" int LLVMFuzzerInitialize(int* /*argc*/, char*** /*argv*/) {
  tokenizer = SmolLM2Tokenizer();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::vector<int32_t> ids(size / 4);
  if (!ids.empty()) std::memcpy(ids.data(), data, ids.size() * 4);
  for (int32_t& id : ids) id %= tokenizer->vocab_size() + 16;  // mostly in the vocabulary, some past it
  for (bool skip : {false, true}) {
    pad::IncrementalDecoder stream(tokenizer, skip);
    std::string streamed;
    for (int32_t id : ids) {
      const std::string piece = stream.Add(id);
      if (!pad::utf8::IsValid(piece)) std::abort();
      streamed += piece;
    }
    streamed += stream.Finish();
    if (streamed != tokenizer->Decode(ids, skip)) std::abort();
  }
  return 0;
}
