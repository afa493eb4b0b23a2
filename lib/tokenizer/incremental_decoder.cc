// Streaming decode. Rust's from_utf8_lossy decides each replacement from the bytes up to the point where
// a sequence fails, never from later ones, so emitting everything but a still-completable tail gives
// exactly the prefix of Decode(all ids).
#include <string>

#include "pad/tokenizer.h"
#include "pad/utf8.h"

namespace pad {

IncrementalDecoder::IncrementalDecoder(const Tokenizer* tokenizer, bool skip_special_tokens)
    : tokenizer_(tokenizer), skip_special_tokens_(skip_special_tokens) {}

std::string IncrementalDecoder::Add(int32_t id) {
  if (skip_special_tokens_ && tokenizer_->IsSpecial(id)) return std::string();
  pending_.append(tokenizer_->TokenBytes(id));
  std::string text;
  pending_.erase(0, utf8::AppendLossy(pending_, /*final=*/false, &text));
  return text;
}

std::string IncrementalDecoder::Finish() {
  std::string text;
  utf8::AppendLossy(pending_, /*final=*/true, &text);
  pending_.clear();
  return text;
}

}  // namespace pad
