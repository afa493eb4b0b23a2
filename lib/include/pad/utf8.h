// UTF-8 helpers: the tokenizer's encoder and decoders, and the server's check of request strings.
#ifndef PAD_UTF8_H_
#define PAD_UTF8_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "absl/strings/string_view.h"

namespace pad {
namespace utf8 {

// Debian's abseil has its own string_view type; StrCat and hash-map lookups need it.
inline absl::string_view AsAbsl(std::string_view s) { return absl::string_view(s.data(), s.size()); }

inline constexpr std::string_view kReplacement = "\xEF\xBF\xBD";  // U+FFFD

// How long the sequence starting at `s[i]` is and whether it is well formed, by the rules of Unicode's
// Table 3-7 (no overlongs, no surrogates, nothing past U+10FFFF). `consumed` is the length of the
// maximal well-formed prefix (at least 1); `complete` says whether it is a whole character.
// `truncated` says the bytes ran out while the prefix was still valid.
struct SequenceInfo {
  size_t consumed;
  bool complete;
  bool truncated;
};

inline SequenceInfo Inspect(std::string_view s, size_t i) {
  const auto b0 = static_cast<uint8_t>(s[i]);
  if (b0 < 0x80) return {1, true, false};
  size_t need;
  uint8_t lo = 0x80, hi = 0xBF;  // the range allowed for the second byte
  if (b0 >= 0xC2 && b0 <= 0xDF) {
    need = 2;
  } else if (b0 >= 0xE0 && b0 <= 0xEF) {
    need = 3;
    if (b0 == 0xE0) lo = 0xA0;
    if (b0 == 0xED) hi = 0x9F;
  } else if (b0 >= 0xF0 && b0 <= 0xF4) {
    need = 4;
    if (b0 == 0xF0) lo = 0x90;
    if (b0 == 0xF4) hi = 0x8F;
  } else {
    return {1, false, false};
  }
  size_t k = 1;
  for (; k < need; ++k) {
    if (i + k >= s.size()) return {k, false, true};
    const auto b = static_cast<uint8_t>(s[i + k]);
    const uint8_t l = k == 1 ? lo : 0x80, h = k == 1 ? hi : 0xBF;
    if (b < l || b > h) return {k, false, false};
  }
  return {need, true, false};
}

// True when `s` is entirely well-formed UTF-8.
inline bool IsValid(std::string_view s) {
  for (size_t i = 0; i < s.size();) {
    const SequenceInfo info = Inspect(s, i);
    if (!info.complete) return false;
    i += info.consumed;
  }
  return true;
}

// Appends `s` to `out` with each maximal ill-formed subpart replaced by one U+FFFD, as Rust's
// String::from_utf8_lossy (and so `tokenizers`' decode) does. When `final` is false, a trailing
// prefix that more bytes could still complete is left alone. Returns how many bytes were consumed.
inline size_t AppendLossy(std::string_view s, bool final, std::string* out) {
  size_t i = 0;
  while (i < s.size()) {
    const SequenceInfo info = Inspect(s, i);
    if (info.complete) {
      out->append(s.data() + i, info.consumed);
    } else if (info.truncated && !final) {
      break;
    } else {
      out->append(kReplacement);
    }
    i += info.consumed;
  }
  return i;
}

// Decodes the code point at `s[i]`, which must start a well-formed sequence; sets `*len`.
inline char32_t DecodeAt(std::string_view s, size_t i, size_t* len) {
  const auto b0 = static_cast<uint8_t>(s[i]);
  if (b0 < 0x80) {
    *len = 1;
    return b0;
  }
  size_t n = b0 >= 0xF0 ? 4 : b0 >= 0xE0 ? 3 : 2;
  char32_t c = b0 & (0x7F >> n);
  for (size_t k = 1; k < n; ++k) c = (c << 6) | (static_cast<uint8_t>(s[i + k]) & 0x3F);
  *len = n;
  return c;
}

// Byte length of the (valid) sequence whose lead byte is `b0`.
inline size_t SequenceLength(uint8_t b0) { return b0 < 0x80 ? 1 : b0 >= 0xF0 ? 4 : b0 >= 0xE0 ? 3 : 2; }

inline void Append(char32_t c, std::string* out) {
  if (c < 0x80) {
    out->push_back(static_cast<char>(c));
  } else if (c < 0x800) {
    out->push_back(static_cast<char>(0xC0 | (c >> 6)));
    out->push_back(static_cast<char>(0x80 | (c & 0x3F)));
  } else if (c < 0x10000) {
    out->push_back(static_cast<char>(0xE0 | (c >> 12)));
    out->push_back(static_cast<char>(0x80 | ((c >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (c & 0x3F)));
  } else {
    out->push_back(static_cast<char>(0xF0 | (c >> 18)));
    out->push_back(static_cast<char>(0x80 | ((c >> 12) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | ((c >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (c & 0x3F)));
  }
}

// Unicode White_Space, which is what Rust's char::is_whitespace, the regex crate's \s and
// Oniguruma's \s all mean.
inline bool IsWhiteSpace(char32_t c) {
  return (c >= 0x09 && c <= 0x0D) || c == 0x20 || c == 0x85 || c == 0xA0 || c == 0x1680 ||
         (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F ||
         c == 0x3000;
}

}  // namespace utf8
}  // namespace pad

#endif  // PAD_UTF8_H_
