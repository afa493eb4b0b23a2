// Byte-level BPE tokenizer read from a Hugging Face tokenizer.json, and a streaming decoder.
#ifndef PAD_TOKENIZER_H_
#define PAD_TOKENIZER_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"

namespace pad {

class TokenizerImpl;

// A tokenizer.json as the `tokenizers` library defines it: added/special tokens, an optional normalizer
// we reject if present, pre-tokenizers (ByteLevel, Split, Digits, Sequence), a BPE model, the
// TemplateProcessing post-processor and the ByteLevel decoder. Immutable after creation and safe to use
// from any number of threads at once.
class Tokenizer {
 public:
  // Parses tokenizer.json; errors name the file and the field that is wrong or unsupported.
  static absl::StatusOr<std::unique_ptr<Tokenizer>> FromFile(const std::string& path);
  static absl::StatusOr<std::unique_ptr<Tokenizer>> FromJson(std::string_view json);
  ~Tokenizer();

  // Token ids of `text` (UTF-8, else INVALID_ARGUMENT). Added tokens in the text are always recognised;
  // `add_special_tokens` applies the post-processor's template (e.g. Llama-3's BOS).
  absl::StatusOr<std::vector<int32_t>> Encode(std::string_view text, bool add_special_tokens) const;

  // Text of `ids`; byte sequences that are not valid UTF-8 become U+FFFD as in `tokenizers`. Ids outside
  // the vocabulary are skipped.
  std::string Decode(absl::Span<const int32_t> ids, bool skip_special_tokens) const;

  // The raw bytes a token stands for (added tokens: their content). Empty for an unknown id.
  std::string TokenBytes(int32_t id) const;

  std::optional<int32_t> TokenToId(std::string_view token) const;
  bool IsSpecial(int32_t id) const;
  // One past the largest id (vocabulary plus added tokens).
  int32_t vocab_size() const;

 private:
  explicit Tokenizer(std::unique_ptr<TokenizerImpl> impl);
  std::unique_ptr<TokenizerImpl> impl_;
};

// Turns a stream of token ids into text deltas that are always whole UTF-8: bytes of a character split
// across tokens are held back until the character completes. Bytes that can never complete a character
// come out as U+FFFD, as Decode would write them. One instance per stream; not thread-safe.
class IncrementalDecoder {
 public:
  // `tokenizer` must outlive the decoder.
  IncrementalDecoder(const Tokenizer* tokenizer, bool skip_special_tokens);

  // The text that `id` completes (possibly empty).
  std::string Add(int32_t id);
  // Whatever is held back, with incomplete bytes as U+FFFD. The concatenation of every Add and Finish
  // equals tokenizer->Decode(all ids).
  std::string Finish();

 private:
  const Tokenizer* tokenizer_;
  bool skip_special_tokens_;
  std::string pending_;  // bytes not yet emitted: a prefix of an incomplete UTF-8 character
};

}  // namespace pad

#endif  // PAD_TOKENIZER_H_
