// Pre-tokenizers of tokenizer.json (ByteLevel, Split, Digits, Sequence) and the regex engine behind them.
#ifndef PAD_TOKENIZER_PRE_TOKENIZER_H_
#define PAD_TOKENIZER_PRE_TOKENIZER_H_

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"

struct pcre2_real_code_8;

namespace pad {

// Rewrites an Oniguruma pattern (Ruby syntax, as `tokenizers` compiles it) into PCRE2 syntax with the
// same meaning: \s and \S become explicit White_Space classes (PCRE2's \s also has U+180E), \h and \H
// hex-digit classes (PCRE2's \h is horizontal space), general categories such as \p{L} gain the
// characters Unicode 15 and 16 added (see unicode_tables.h), and Ruby's (?m) becomes (?s). \w, \d and
// \b keep PCRE2's meaning. Errors on constructs PCRE2 cannot express (nested classes, &&).
absl::StatusOr<std::string> TranslateOnigPattern(std::string_view pattern);

// A compiled PCRE2 pattern (UTF, Unicode properties). Immutable and safe to share between threads.
class Regex {
 public:
  // `pattern` is in Oniguruma syntax; see TranslateOnigPattern.
  static absl::StatusOr<Regex> Compile(std::string_view pattern);

  // Appends the [start, end) byte ranges of successive matches in `text` (valid UTF-8), as the onig
  // crate's find_iter yields them: an empty match right where the previous match ended is skipped.
  // INVALID_ARGUMENT when PCRE2 gives up on `text` (its match or heap limit), rather than a match missed.
  absl::Status FindAll(std::string_view text, std::vector<std::pair<size_t, size_t>>* matches) const;

  // Whether the pattern matches `text` starting exactly at byte `offset`.
  absl::StatusOr<bool> MatchesAt(std::string_view text, size_t offset) const;

 private:
  explicit Regex(std::shared_ptr<pcre2_real_code_8> code) : code_(std::move(code)) {}
  // Runs one search from `offset`; false when there is no match.
  absl::StatusOr<bool> Search(std::string_view text, size_t offset, bool anchored, size_t* start,
                              size_t* end) const;

  std::shared_ptr<pcre2_real_code_8> code_;
};

// The GPT-2 byte-to-character table: byte b stands for the character ByteLevelChar(b) (UTF-8), and
// ByteLevelByte(c) is the byte of character c, or -1 when c is not in the table.
const std::string& ByteLevelChar(unsigned char b);
int ByteLevelByte(char32_t c);

// One step of pre-tokenization. Immutable and safe to share between threads.
class PreTokenizer {
 public:
  virtual ~PreTokenizer() = default;
  // Splits each of `pieces` further (ByteLevel also maps bytes to its alphabet); empty pieces drop out.
  // INVALID_ARGUMENT when a pattern gives up on the text (Regex::FindAll).
  virtual absl::Status PreTokenize(std::vector<std::string>* pieces) const = 0;
};

// Builds the pre-tokenizer that `config` (a tokenizer.json "pre_tokenizer" object) describes. Errors
// name `field` and the offending member; an unsupported type is UNIMPLEMENTED.
absl::StatusOr<std::unique_ptr<PreTokenizer>> ParsePreTokenizer(const nlohmann::json& config,
                                                                const std::string& field);

}  // namespace pad

#endif  // PAD_TOKENIZER_PRE_TOKENIZER_H_
