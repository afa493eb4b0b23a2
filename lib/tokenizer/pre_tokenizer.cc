#include "tokenizer/pre_tokenizer.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <algorithm>
#include <array>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "pad/status_macros.h"
#include "pad/utf8.h"
#include "tokenizer/unicode_tables.h"

namespace pad {
namespace {

// Oniguruma's \s with a Unicode encoding is exactly White_Space; PCRE2's (with PCRE2_UCP) also has
// U+180E, so we spell the set out.
constexpr absl::string_view kSpaceItems =
    "\\t\\n\\x0B\\f\\r\\x20\\x{85}\\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}\\x{202F}"
    "\\x{205F}\\x{3000}";
// Ruby's \h is a hex digit, not PCRE2's horizontal space.
constexpr absl::string_view kHexItems = "0-9a-fA-F";

// Length of the UTF-8 character that starts at `s[i]` (1 for stray bytes, so we always advance).
size_t CharLen(std::string_view s, size_t i) {
  const size_t n = utf8::SequenceLength(static_cast<uint8_t>(s[i]));
  return i + n <= s.size() ? n : 1;
}

// Builds the PCRE2 text of a class with complemented members such as \S or \P{L} (`negated_sets`, each
// given positively). PCRE2 10.42 cannot nest classes, so a union with a complement becomes an
// alternation, and a negated class lookaheads.
std::string ClassWithComplements(bool negated, const std::string& items,
                                 const std::vector<std::string>& negated_sets) {
  std::vector<std::string> parts;
  if (!negated) {
    if (!items.empty()) parts.push_back(absl::StrCat("[", items, "]"));
    for (const std::string& set : negated_sets) parts.push_back(absl::StrCat("[^", set, "]"));
    return absl::StrCat("(?:", absl::StrJoin(parts, "|"), ")");
  }
  // Not (items or non-A or non-B) = not items, and A, and B.
  std::string out = "(?:";
  if (!items.empty()) absl::StrAppend(&out, "(?![", items, "])");
  for (size_t k = 0; k + 1 < negated_sets.size(); ++k) absl::StrAppend(&out, "(?=[", negated_sets[k], "])");
  absl::StrAppend(&out, "[", negated_sets.back(), "])");
  return out;
}

void DeletePcre2Code(pcre2_code* code) { pcre2_code_free(code); }

// A Unicode property escape (\p{X}, \P{X}, \p{^X}, \pX) starting at `p[i]`.
struct Property {
  size_t length;  // bytes of the escape
  bool negated;
  std::string items;  // class items for the positive property, with Oniguruma's extra code points
};

// Parses the escape at `p[i]` if it names a general category whose members differ between PCRE2 and
// Oniguruma; other escapes are copied as they are.
std::optional<Property> CategoryEscape(std::string_view p, size_t i) {
  if (i + 2 >= p.size() || p[i] != '\\' || (p[i + 1] != 'p' && p[i + 1] != 'P')) return std::nullopt;
  bool negated = p[i + 1] == 'P';
  std::string_view name;
  size_t length;
  if (p[i + 2] == '{') {
    const size_t close = p.find('}', i + 3);
    if (close == std::string_view::npos) return std::nullopt;
    name = p.substr(i + 3, close - i - 3);
    length = close + 1 - i;
  } else {
    name = p.substr(i + 2, 1);
    length = 3;
  }
  if (!name.empty() && name[0] == '^') {
    negated = !negated;
    name.remove_prefix(1);
  }
  for (const CategoryAddition& addition : kCategoryAdditions) {
    if (name == addition.category) {
      return Property{length, negated, absl::StrCat("\\p{", utf8::AsAbsl(name), "}", addition.items)};
    }
  }
  return std::nullopt;
}

}  // namespace

absl::StatusOr<std::string> TranslateOnigPattern(std::string_view p) {
  std::string out;
  out.reserve(p.size() * 2);
  size_t i = 0;
  while (i < p.size()) {
    const char c = p[i];
    if (c == '\\') {
      if (i + 1 >= p.size()) return absl::InvalidArgumentError("pattern ends with a lone backslash");
      if (std::optional<Property> property = CategoryEscape(p, i)) {
        absl::StrAppend(&out, property->negated ? "[^" : "[", property->items, "]");
        i += property->length;
        continue;
      }
      const char e = p[i + 1];
      switch (e) {
        case 's':
          absl::StrAppend(&out, "[", kSpaceItems, "]");
          break;
        case 'S':
          absl::StrAppend(&out, "[^", kSpaceItems, "]");
          break;
        case 'h':
          absl::StrAppend(&out, "[", kHexItems, "]");
          break;
        case 'H':
          absl::StrAppend(&out, "[^", kHexItems, "]");
          break;
        default:
          out.push_back('\\');
          out.append(p.substr(i + 1, CharLen(p, i + 1)));
      }
      i += 1 + CharLen(p, i + 1);
      continue;
    }
    if (c == '(' && i + 1 < p.size() && p[i + 1] == '?') {
      // Option groups: Ruby's (?m) is dot-matches-newline, which PCRE2 spells (?s).
      size_t j = i + 2;
      while (j < p.size() && (p[j] == 'i' || p[j] == 'm' || p[j] == 'x' || p[j] == '-')) ++j;
      if (j > i + 2 && j < p.size() && (p[j] == ')' || p[j] == ':')) {
        out.append("(?");
        for (size_t k = i + 2; k < j; ++k) out.push_back(p[k] == 'm' ? 's' : p[k]);
        i = j;
        continue;
      }
      out.append("(?");
      i += 2;
      continue;
    }
    if (c != '[') {
      const size_t n = CharLen(p, i);
      out.append(p.substr(i, n));
      i += n;
      continue;
    }
    // A character class.
    ++i;
    bool negated = false;
    if (i < p.size() && p[i] == '^') {
      negated = true;
      ++i;
    }
    std::string items;
    std::vector<std::string> negated_sets;
    if (i < p.size() && p[i] == ']') {  // a leading ']' is literal in both syntaxes
      items.append("\\]");
      ++i;
    }
    bool closed = false;
    while (i < p.size()) {
      const char d = p[i];
      if (d == ']') {
        closed = true;
        ++i;
        break;
      }
      if (d == '\\') {
        if (i + 1 >= p.size()) return absl::InvalidArgumentError("pattern ends with a lone backslash");
        if (std::optional<Property> property = CategoryEscape(p, i)) {
          if (property->negated) {
            negated_sets.push_back(std::move(property->items));
          } else {
            items.append(property->items);
          }
          i += property->length;
          continue;
        }
        const char e = p[i + 1];
        if (e == 's') {
          items.append(kSpaceItems.data(), kSpaceItems.size());
        } else if (e == 'h') {
          items.append(kHexItems.data(), kHexItems.size());
        } else if (e == 'S') {
          negated_sets.emplace_back(kSpaceItems);
        } else if (e == 'H') {
          negated_sets.emplace_back(kHexItems);
        } else {
          items.push_back('\\');
          items.append(p.substr(i + 1, CharLen(p, i + 1)));
        }
        i += 1 + CharLen(p, i + 1);
        continue;
      }
      if (d == '[') {
        if (i + 1 < p.size() && p[i + 1] == ':') {
          const size_t end = p.find(":]", i + 2);
          if (end == std::string_view::npos) {
            return absl::InvalidArgumentError(absl::StrCat("unterminated POSIX class at offset ", i));
          }
          items.append(p.substr(i, end + 2 - i));
          i = end + 2;
          continue;
        }
        return absl::InvalidArgumentError(
            absl::StrCat("nested character class at offset ", i, " is not supported"));
      }
      if (d == '&' && i + 1 < p.size() && p[i + 1] == '&') {
        return absl::InvalidArgumentError(
            absl::StrCat("character class intersection at offset ", i, " is not supported"));
      }
      const size_t n = CharLen(p, i);
      items.append(p.substr(i, n));
      i += n;
    }
    if (!closed) return absl::InvalidArgumentError("unterminated character class");
    if (negated_sets.empty()) {
      absl::StrAppend(&out, negated ? "[^" : "[", items, "]");
    } else {
      out.append(ClassWithComplements(negated, items, negated_sets));
    }
  }
  return out;
}

absl::StatusOr<Regex> Regex::Compile(std::string_view pattern) {
  PAD_ASSIGN_OR_RETURN(std::string translated, TranslateOnigPattern(pattern));
  int error = 0;
  PCRE2_SIZE offset = 0;
  // Ruby's ^ and $ always match at line breaks, hence MULTILINE.
  pcre2_code* code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(translated.data()), translated.size(),
                                   PCRE2_UTF | PCRE2_UCP | PCRE2_MULTILINE, &error, &offset, nullptr);
  if (code == nullptr) {
    std::array<PCRE2_UCHAR, 256> message;
    pcre2_get_error_message(error, message.data(), message.size());
    return absl::InvalidArgumentError(
        absl::StrCat("cannot compile regex: ", reinterpret_cast<const char*>(message.data()), " at offset ",
                     offset, " of ", translated));
  }
  // JIT is an optimisation only; without it pcre2_match interprets.
  pcre2_jit_compile(code, PCRE2_JIT_COMPLETE);
  return Regex(std::shared_ptr<pcre2_code>(code, DeletePcre2Code));
}

absl::StatusOr<bool> Regex::Search(std::string_view text, size_t offset, bool anchored, size_t* start,
                                   size_t* end) const {
  // Match data is per call so that one Regex serves any number of threads.
  std::unique_ptr<pcre2_match_data, void (*)(pcre2_match_data*)> data(
      pcre2_match_data_create_from_pattern(code_.get(), nullptr), pcre2_match_data_free);
  const uint32_t options = PCRE2_NO_UTF_CHECK | (anchored ? PCRE2_ANCHORED : 0);
  int rc = pcre2_match(code_.get(), reinterpret_cast<PCRE2_SPTR>(text.data()), text.size(), offset, options,
                       data.get(), nullptr);
  if (rc == PCRE2_ERROR_JIT_STACKLIMIT) {
    // The interpreter keeps its backtracking state on the heap and has no such limit.
    rc = pcre2_match(code_.get(), reinterpret_cast<PCRE2_SPTR>(text.data()), text.size(), offset,
                     options | PCRE2_NO_JIT, data.get(), nullptr);
  }
  if (rc == PCRE2_ERROR_NOMATCH) return false;
  if (rc < 0) {
    // The match, depth or heap limit: a text the pattern backtracks on too long. Reading it as "no match"
    // would tokenize the text differently from tokenizers, silently.
    std::array<PCRE2_UCHAR, 256> message;
    pcre2_get_error_message(rc, message.data(), message.size());
    return absl::InvalidArgumentError(
        absl::StrCat("text: the tokenizer's pre-tokenizer pattern gave up at byte ", offset, ": ",
                     reinterpret_cast<const char*>(message.data())));
  }
  const PCRE2_SIZE* ovector = pcre2_get_ovector_pointer(data.get());
  *start = ovector[0];
  *end = ovector[1];
  return true;
}

absl::Status Regex::FindAll(std::string_view text, std::vector<std::pair<size_t, size_t>>* matches) const {
  size_t from = 0;
  bool have_last = false;
  size_t last_end = 0;
  while (from <= text.size()) {
    size_t s, e;
    PAD_ASSIGN_OR_RETURN(const bool found, Search(text, from, /*anchored=*/false, &s, &e));
    if (!found) break;
    if (s == e && have_last && last_end == e) {
      from += from < text.size() ? CharLen(text, from) : 1;
      continue;
    }
    from = e;
    have_last = true;
    last_end = e;
    matches->emplace_back(s, e);
  }
  return absl::OkStatus();
}

absl::StatusOr<bool> Regex::MatchesAt(std::string_view text, size_t offset) const {
  size_t s, e;
  return Search(text, offset, /*anchored=*/true, &s, &e);
}

namespace {

struct ByteLevelTables {
  std::array<std::string, 256> chars;
  std::array<int, 512> bytes;  // every character of the table is below U+0200
};

const ByteLevelTables& Tables() {
  static const ByteLevelTables* tables = [] {
    auto* t = new ByteLevelTables;
    t->bytes.fill(-1);
    int n = 0;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
      const char32_t c = printable ? b : 256 + n++;
      utf8::Append(c, &t->chars[b]);
      t->bytes[c] = b;
    }
    return t;
  }();
  return *tables;
}

// How the matches of a Split pattern become pieces (tokenizers' SplitDelimiterBehavior).
enum class Behavior { kRemoved, kIsolated, kMergedWithPrevious, kMergedWithNext, kContiguous };

// A run of the input and whether the pattern matched it; runs cover the input in order.
struct Run {
  size_t start, end;
  bool is_match;
};

// Turns the matches of a pattern into the runs that tokenizers' Pattern::find_matches returns.
std::vector<Run> RunsFromMatches(size_t size, const std::vector<std::pair<size_t, size_t>>& matches,
                                 bool invert) {
  std::vector<Run> runs;
  if (size == 0) return {{0, 0, invert}};
  size_t prev = 0;
  for (const auto& [s, e] : matches) {
    if (prev != s) runs.push_back({prev, s, invert});
    runs.push_back({s, e, !invert});
    prev = e;
  }
  if (prev != size) runs.push_back({prev, size, invert});
  return runs;
}

// Appends the non-empty pieces `runs` make of `text` under `behavior`, as NormalizedString::split does.
void SplitByRuns(std::string_view text, const std::vector<Run>& runs, Behavior behavior,
                 std::vector<std::string>* out) {
  struct Piece {
    size_t start, end;
    bool remove;
  };
  std::vector<Piece> pieces;
  switch (behavior) {
    case Behavior::kIsolated:
      for (const Run& r : runs) pieces.push_back({r.start, r.end, false});
      break;
    case Behavior::kRemoved:
      for (const Run& r : runs) pieces.push_back({r.start, r.end, r.is_match});
      break;
    case Behavior::kContiguous: {
      bool previous_match = false;
      for (const Run& r : runs) {
        if (r.is_match == previous_match && !pieces.empty()) {
          pieces.back().end = r.end;
        } else {
          pieces.push_back({r.start, r.end, false});
        }
        previous_match = r.is_match;
      }
      break;
    }
    case Behavior::kMergedWithPrevious: {
      bool previous_match = false;
      for (const Run& r : runs) {
        if (r.is_match && !previous_match && !pieces.empty()) {
          pieces.back().end = r.end;
        } else {
          pieces.push_back({r.start, r.end, false});
        }
        previous_match = r.is_match;
      }
      break;
    }
    case Behavior::kMergedWithNext: {
      bool previous_match = false;
      for (auto it = runs.rbegin(); it != runs.rend(); ++it) {
        if (it->is_match && !previous_match && !pieces.empty()) {
          pieces.back().start = it->start;
        } else {
          pieces.push_back({it->start, it->end, false});
        }
        previous_match = it->is_match;
      }
      std::reverse(pieces.begin(), pieces.end());
      break;
    }
  }
  for (const Piece& p : pieces) {
    if (!p.remove && p.end > p.start) out->emplace_back(text.substr(p.start, p.end - p.start));
  }
}

// Something that finds the matches a Split or Digits pre-tokenizer splits on.
class Matcher {
 public:
  virtual ~Matcher() = default;
  virtual absl::Status FindAll(std::string_view text,
                               std::vector<std::pair<size_t, size_t>>* matches) const = 0;
};

class RegexMatcher : public Matcher {
 public:
  explicit RegexMatcher(Regex regex) : regex_(std::move(regex)) {}
  absl::Status FindAll(std::string_view text,
                       std::vector<std::pair<size_t, size_t>>* matches) const override {
    return regex_.FindAll(text, matches);
  }

 private:
  Regex regex_;
};

// A literal pattern; tokenizers finds it with an escaped regex, i.e. non-overlapping from the left.
class LiteralMatcher : public Matcher {
 public:
  explicit LiteralMatcher(std::string literal) : literal_(std::move(literal)) {}
  absl::Status FindAll(std::string_view text,
                       std::vector<std::pair<size_t, size_t>>* matches) const override {
    if (literal_.empty()) return absl::OkStatus();  // tokenizers: an empty pattern matches nothing
    for (size_t pos = text.find(literal_); pos != std::string_view::npos;
         pos = text.find(literal_, pos + literal_.size())) {
      matches->emplace_back(pos, pos + literal_.size());
    }
    return absl::OkStatus();
  }

 private:
  std::string literal_;
};

class SplitPreTokenizer : public PreTokenizer {
 public:
  SplitPreTokenizer(std::unique_ptr<Matcher> matcher, Behavior behavior, bool invert)
      : matcher_(std::move(matcher)), behavior_(behavior), invert_(invert) {}

  absl::Status PreTokenize(std::vector<std::string>* pieces) const override {
    std::vector<std::string> out;
    std::vector<std::pair<size_t, size_t>> matches;
    for (const std::string& piece : *pieces) {
      matches.clear();
      PAD_RETURN_IF_ERROR(matcher_->FindAll(piece, &matches));
      SplitByRuns(piece, RunsFromMatches(piece.size(), matches, invert_), behavior_, &out);
    }
    *pieces = std::move(out);
    return absl::OkStatus();
  }

 private:
  std::unique_ptr<Matcher> matcher_;
  Behavior behavior_;
  bool invert_;
};

constexpr std::string_view kGpt2Pattern =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

class ByteLevelPreTokenizer : public PreTokenizer {
 public:
  ByteLevelPreTokenizer(bool add_prefix_space, std::optional<Regex> regex)
      : add_prefix_space_(add_prefix_space), regex_(std::move(regex)) {}

  absl::Status PreTokenize(std::vector<std::string>* pieces) const override {
    std::vector<std::string> split;
    std::vector<std::pair<size_t, size_t>> matches;
    std::string prefixed;
    for (const std::string& piece : *pieces) {
      std::string_view text = piece;
      // tokenizers prepends to every non-empty piece, not only the first of the input.
      if (add_prefix_space_ && !piece.empty() && piece[0] != ' ') {
        prefixed = absl::StrCat(" ", piece);
        text = prefixed;
      }
      if (regex_.has_value()) {
        matches.clear();
        PAD_RETURN_IF_ERROR(regex_->FindAll(text, &matches));
        SplitByRuns(text, RunsFromMatches(text.size(), matches, false), Behavior::kIsolated, &split);
      } else if (!text.empty()) {
        split.emplace_back(text);
      }
    }
    const ByteLevelTables& tables = Tables();
    pieces->clear();
    for (const std::string& s : split) {
      std::string mapped;
      mapped.reserve(s.size() * 2);
      for (unsigned char b : s) mapped.append(tables.chars[b]);
      pieces->push_back(std::move(mapped));
    }
    return absl::OkStatus();
  }

 private:
  bool add_prefix_space_;
  std::optional<Regex> regex_;
};

class SequencePreTokenizer : public PreTokenizer {
 public:
  explicit SequencePreTokenizer(std::vector<std::unique_ptr<PreTokenizer>> steps)
      : steps_(std::move(steps)) {}
  absl::Status PreTokenize(std::vector<std::string>* pieces) const override {
    for (const auto& step : steps_) PAD_RETURN_IF_ERROR(step->PreTokenize(pieces));
    return absl::OkStatus();
  }

 private:
  std::vector<std::unique_ptr<PreTokenizer>> steps_;
};

absl::StatusOr<bool> GetBool(const nlohmann::json& config, const char* key, bool fallback,
                             const std::string& field) {
  auto it = config.find(key);
  if (it == config.end() || it->is_null()) return fallback;
  if (!it->is_boolean()) {
    return absl::InvalidArgumentError(absl::StrCat(field, ".", key, ": expected a boolean"));
  }
  return it->get<bool>();
}

absl::StatusOr<Behavior> ParseBehavior(const nlohmann::json& config, const std::string& field) {
  auto it = config.find("behavior");
  if (it == config.end() || !it->is_string()) {
    return absl::InvalidArgumentError(absl::StrCat(field, ".behavior: expected a string"));
  }
  const std::string& b = it->get_ref<const std::string&>();
  if (b == "Removed") return Behavior::kRemoved;
  if (b == "Isolated") return Behavior::kIsolated;
  if (b == "MergedWithPrevious") return Behavior::kMergedWithPrevious;
  if (b == "MergedWithNext") return Behavior::kMergedWithNext;
  if (b == "Contiguous") return Behavior::kContiguous;
  return absl::InvalidArgumentError(absl::StrCat(field, ".behavior: unknown value \"", b, "\""));
}

absl::StatusOr<Regex> CompileField(std::string_view pattern, const std::string& field) {
  absl::StatusOr<Regex> regex = Regex::Compile(pattern);
  if (!regex.ok()) return absl::InvalidArgumentError(absl::StrCat(field, ": ", regex.status().message()));
  return regex;
}

}  // namespace

const std::string& ByteLevelChar(unsigned char b) { return Tables().chars[b]; }

int ByteLevelByte(char32_t c) { return c < 512 ? Tables().bytes[c] : -1; }

absl::StatusOr<std::unique_ptr<PreTokenizer>> ParsePreTokenizer(const nlohmann::json& config,
                                                                const std::string& field) {
  if (!config.is_object()) return absl::InvalidArgumentError(absl::StrCat(field, ": expected an object"));
  auto type_it = config.find("type");
  if (type_it == config.end() || !type_it->is_string()) {
    return absl::InvalidArgumentError(absl::StrCat(field, ".type: expected a string"));
  }
  const std::string& type = type_it->get_ref<const std::string&>();
  if (type == "ByteLevel") {
    PAD_ASSIGN_OR_RETURN(bool add_prefix_space, GetBool(config, "add_prefix_space", true, field));
    PAD_ASSIGN_OR_RETURN(bool use_regex, GetBool(config, "use_regex", true, field));
    std::optional<Regex> regex;
    if (use_regex) {
      PAD_ASSIGN_OR_RETURN(regex, CompileField(kGpt2Pattern, field));
    }
    return std::make_unique<ByteLevelPreTokenizer>(add_prefix_space, std::move(regex));
  }
  if (type == "Split") {
    auto pattern_it = config.find("pattern");
    if (pattern_it == config.end() || !pattern_it->is_object() || pattern_it->size() != 1) {
      return absl::InvalidArgumentError(
          absl::StrCat(field, ".pattern: expected {\"Regex\": ...} or {\"String\": ...}"));
    }
    std::unique_ptr<Matcher> matcher;
    auto regex_it = pattern_it->find("Regex");
    auto string_it = pattern_it->find("String");
    if (regex_it != pattern_it->end() && regex_it->is_string()) {
      PAD_ASSIGN_OR_RETURN(Regex regex, CompileField(regex_it->get<std::string>(), field + ".pattern.Regex"));
      matcher = std::make_unique<RegexMatcher>(std::move(regex));
    } else if (string_it != pattern_it->end() && string_it->is_string()) {
      matcher = std::make_unique<LiteralMatcher>(string_it->get<std::string>());
    } else {
      return absl::InvalidArgumentError(
          absl::StrCat(field, ".pattern: expected {\"Regex\": ...} or {\"String\": ...}"));
    }
    PAD_ASSIGN_OR_RETURN(Behavior behavior, ParseBehavior(config, field));
    PAD_ASSIGN_OR_RETURN(bool invert, GetBool(config, "invert", false, field));
    return std::make_unique<SplitPreTokenizer>(std::move(matcher), behavior, invert);
  }
  if (type == "Digits") {
    PAD_ASSIGN_OR_RETURN(bool individual, GetBool(config, "individual_digits", false, field));
    // Rust's char::is_numeric is \p{N}; runs of digits merge under Contiguous exactly as \p{N}+ isolates.
    PAD_ASSIGN_OR_RETURN(Regex regex, CompileField(individual ? "\\p{N}" : "\\p{N}+", field));
    return std::make_unique<SplitPreTokenizer>(std::make_unique<RegexMatcher>(std::move(regex)),
                                               Behavior::kIsolated, false);
  }
  if (type == "Sequence") {
    auto it = config.find("pretokenizers");
    if (it == config.end() || !it->is_array()) {
      return absl::InvalidArgumentError(absl::StrCat(field, ".pretokenizers: expected an array"));
    }
    std::vector<std::unique_ptr<PreTokenizer>> steps;
    for (size_t k = 0; k < it->size(); ++k) {
      PAD_ASSIGN_OR_RETURN(auto step,
                           ParsePreTokenizer((*it)[k], absl::StrCat(field, ".pretokenizers[", k, "]")));
      steps.push_back(std::move(step));
    }
    return std::make_unique<SequencePreTokenizer>(std::move(steps));
  }
  return absl::UnimplementedError(absl::StrCat(field, ".type: unsupported pre-tokenizer \"", type,
                                               "\" (supported: ByteLevel, Split, Digits, Sequence)"));
}

}  // namespace pad
