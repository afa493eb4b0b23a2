// tokenizer.json's pipeline, step for step as the `tokenizers` library runs it: split out added tokens,
// pre-tokenize the rest, BPE each word, apply the post-processor's template; decode through ByteLevel.
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <memory>
#include <optional>
#include <queue>
#include <sstream>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "nlohmann/json.hpp"
#include "pad/status_macros.h"
#include "pad/tokenizer.h"
#include "pad/utf8.h"
#include "tokenizer/pre_tokenizer.h"

namespace pad {
namespace {

using Json = nlohmann::json;

// Ids above this are surely a corrupt file, and would make our id-indexed tables huge.
constexpr int64_t kMaxId = (int64_t{1} << 24) - 1;

// tokenizers' BPE cache: words up to this many bytes, up to this many words.
constexpr size_t kCacheMaxWordBytes = 256;
constexpr size_t kCacheCapacity = 10000;

struct AddedToken {
  std::string content;
  int32_t id = 0;
  bool single_word = false;
  bool lstrip = false;
  bool rstrip = false;
  bool normalized = true;
  bool special = false;
};

// Finds added tokens leftmost-longest, as tokenizers' Aho-Corasick automaton (MatchKind::LeftmostLongest)
// does: the match starting leftmost wins, and among those the longest.
class AddedTokenTrie {
 public:
  void Insert(std::string_view content, int index) {
    int node = 0;
    for (unsigned char b : content) {
      auto it = nodes_[node].children.find(b);
      if (it == nodes_[node].children.end()) {
        nodes_.push_back({});
        it = nodes_[node].children.emplace(b, static_cast<int>(nodes_.size()) - 1).first;
      }
      node = it->second;
    }
    nodes_[node].token = index;
  }

  bool empty() const { return nodes_[0].children.empty(); }

  // The first match at or after `from`: sets [*start, *end) and returns the token's index, or -1.
  int Find(std::string_view text, size_t from, size_t* start, size_t* end) const {
    for (size_t i = from; i < text.size(); ++i) {
      int node = 0, best = -1;
      size_t best_end = 0;
      for (size_t j = i; j < text.size(); ++j) {
        auto it = nodes_[node].children.find(static_cast<unsigned char>(text[j]));
        if (it == nodes_[node].children.end()) break;
        node = it->second;
        if (nodes_[node].token >= 0) {
          best = nodes_[node].token;
          best_end = j + 1;
        }
      }
      if (best >= 0) {
        *start = i;
        *end = best_end;
        return best;
      }
    }
    return -1;
  }

 private:
  struct Node {
    absl::flat_hash_map<unsigned char, int> children;
    int token = -1;
  };
  std::vector<Node> nodes_ = std::vector<Node>(1);
};

// A run of the input: an added token (id >= 0) or text still to be tokenized (id < 0).
struct Segment {
  std::string_view text;
  int32_t id;
};

// One item of a TemplateProcessing template: the sequence itself, or fixed special-token ids.
struct TemplateItem {
  bool is_sequence;
  std::vector<int32_t> ids;
};

absl::Status Prefixed(const std::string& prefix, const absl::Status& status) {
  return absl::Status(status.code(), absl::StrCat(prefix, ": ", status.message()));
}

absl::Status Invalid(absl::string_view field, absl::string_view why) {
  return absl::InvalidArgumentError(absl::StrCat(field, ": ", why));
}

std::string Quoted(absl::string_view s) { return Json(std::string(s)).dump(); }

absl::StatusOr<bool> OptionalBool(const Json& object, const char* key, bool fallback,
                                  absl::string_view field) {
  auto it = object.find(key);
  if (it == object.end() || it->is_null()) return fallback;
  if (!it->is_boolean()) return Invalid(absl::StrCat(field, ".", key), "expected a boolean");
  return it->get<bool>();
}

absl::StatusOr<int32_t> IdValue(const Json& value, absl::string_view field) {
  if (!value.is_number_integer()) return Invalid(field, "expected an integer id");
  const int64_t id = value.get<int64_t>();
  if (id < 0 || id > kMaxId) return Invalid(field, absl::StrCat("id ", id, " out of range"));
  return static_cast<int32_t>(id);
}

// The type of a component, or nullopt when it is null/absent.
absl::StatusOr<std::optional<std::string>> ComponentType(const Json& root, const char* key) {
  auto it = root.find(key);
  if (it == root.end() || it->is_null()) return std::nullopt;
  if (!it->is_object()) return Invalid(key, "expected an object or null");
  auto type = it->find("type");
  if (type == it->end() || !type->is_string()) {
    return Invalid(absl::StrCat(key, ".type"), "expected a string");
  }
  return type->get<std::string>();
}

}  // namespace

class TokenizerImpl {
 public:
  static absl::StatusOr<std::unique_ptr<TokenizerImpl>> Parse(std::string_view text);

  absl::StatusOr<std::vector<int32_t>> Encode(std::string_view text, bool add_special_tokens) const;
  std::string Decode(absl::Span<const int32_t> ids, bool skip_special_tokens) const;

  std::string TokenBytes(int32_t id) const { return Known(id) ? token_bytes_[id] : std::string(); }
  std::optional<int32_t> TokenToId(std::string_view token) const {
    if (auto it = added_ids_.find(utf8::AsAbsl(token)); it != added_ids_.end()) return it->second;
    if (auto it = vocab_.find(utf8::AsAbsl(token)); it != vocab_.end()) return it->second;
    return std::nullopt;
  }
  bool IsSpecial(int32_t id) const { return Known(id) && special_[id]; }
  int32_t vocab_size() const { return static_cast<int32_t>(token_bytes_.size()); }

 private:
  absl::Status ParseModel(const Json& model);
  absl::Status ParseAddedTokens(const Json& root);
  absl::Status ParsePostProcessor(const Json& root);
  absl::Status ParseDecoder(const Json& root);
  void BuildIdTables();

  bool Known(int32_t id) const { return id >= 0 && id < vocab_size() && known_[id]; }

  // Splits `segments`' plain text on the tokens in `trie`, honouring single_word/lstrip/rstrip.
  absl::Status SplitOnAddedTokens(const AddedTokenTrie& trie, std::vector<Segment>* segments) const;
  // The BPE ids of one pre-tokenized word.
  void TokenizeWord(const std::string& word, std::vector<int32_t>* ids) const;
  std::vector<int32_t> MergeWord(std::string_view word) const;
  absl::StatusOr<bool> IsWordChar(std::string_view text, size_t pos) const {
    return word_char_->MatchesAt(text, pos);
  }

  // The BPE model.
  absl::flat_hash_map<std::string, int32_t> vocab_;
  // (left id << 32 | right id) -> (rank, merged id).
  absl::flat_hash_map<uint64_t, std::pair<int32_t, int32_t>> merges_;
  std::optional<int32_t> unk_id_;
  bool fuse_unk_ = false;
  bool byte_fallback_ = false;
  bool ignore_merges_ = false;

  std::vector<AddedToken> added_;
  absl::flat_hash_map<std::string, int32_t> added_ids_;  // content -> id
  absl::flat_hash_set<std::string> special_contents_;
  AddedTokenTrie non_normalized_trie_, normalized_trie_;  // values index added_
  std::optional<Regex> word_char_;

  std::unique_ptr<PreTokenizer> pre_tokenizer_;  // null: each text segment is one word
  std::vector<TemplateItem> single_template_;    // empty: add_special_tokens adds nothing

  // Indexed by id.
  std::vector<std::string> token_bytes_;  // what the ByteLevel decoder makes of the token
  std::vector<bool> known_;
  std::vector<bool> special_;

  mutable absl::Mutex cache_mu_;
  mutable absl::flat_hash_map<std::string, std::vector<int32_t>> cache_ ABSL_GUARDED_BY(cache_mu_);
};

absl::StatusOr<std::unique_ptr<TokenizerImpl>> TokenizerImpl::Parse(std::string_view text) {
  Json root;
  try {
    root = Json::parse(text);
  } catch (const Json::parse_error& e) {
    return absl::InvalidArgumentError(absl::StrCat("invalid JSON at byte ", e.byte));
  } catch (const Json::exception& e) {  // e.g. a number too large for a double (found by fuzzing)
    return absl::InvalidArgumentError(absl::StrCat("invalid JSON: ", e.what()));
  }
  if (!root.is_object()) return absl::InvalidArgumentError("expected a JSON object");
  auto impl = std::make_unique<TokenizerImpl>();
  try {
    PAD_ASSIGN_OR_RETURN(std::optional<std::string> normalizer, ComponentType(root, "normalizer"));
    if (normalizer.has_value()) {
      return absl::UnimplementedError(
          absl::StrCat("normalizer: unsupported ", Quoted(*normalizer), " (only null is supported)"));
    }
    for (const char* key : {"truncation", "padding"}) {
      if (auto it = root.find(key); it != root.end() && !it->is_null()) {
        return absl::UnimplementedError(absl::StrCat(key, ": unsupported (only null is supported)"));
      }
    }
    auto model = root.find("model");
    if (model == root.end() || !model->is_object()) return Invalid("model", "missing");
    PAD_RETURN_IF_ERROR(impl->ParseModel(*model));
    PAD_RETURN_IF_ERROR(impl->ParseAddedTokens(root));
    if (auto it = root.find("pre_tokenizer"); it != root.end() && !it->is_null()) {
      PAD_ASSIGN_OR_RETURN(impl->pre_tokenizer_, ParsePreTokenizer(*it, "pre_tokenizer"));
    }
    impl->BuildIdTables();
    PAD_RETURN_IF_ERROR(impl->ParsePostProcessor(root));
    PAD_RETURN_IF_ERROR(impl->ParseDecoder(root));
  } catch (const Json::exception& e) {
    // Only reachable through a type we failed to check; still an error value, not a crash.
    return absl::InvalidArgumentError(e.what());
  }
  // The regex crate's Unicode \w, which decides what single_word calls a word.
  PAD_ASSIGN_OR_RETURN(impl->word_char_,
                       Regex::Compile("[\\p{Alphabetic}\\p{M}\\p{Nd}\\p{Pc}\\p{Join_Control}]"));
  return impl;
}

absl::Status TokenizerImpl::ParseModel(const Json& model) {
  auto type = model.find("type");
  if (type == model.end() || !type->is_string()) return Invalid("model.type", "expected a string");
  if (*type != "BPE") {
    return absl::UnimplementedError(
        absl::StrCat("model.type: unsupported ", Quoted(type->get<std::string>()), " (only BPE)"));
  }
  if (auto it = model.find("dropout"); it != model.end() && !it->is_null()) {
    if (!it->is_number() || it->get<double>() != 0.0) {
      return absl::UnimplementedError("model.dropout: unsupported (only null or 0)");
    }
  }
  for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"}) {
    auto it = model.find(key);
    if (it == model.end() || it->is_null()) continue;
    if (!it->is_string()) return Invalid(absl::StrCat("model.", key), "expected a string or null");
    if (!it->get_ref<const std::string&>().empty()) {
      return absl::UnimplementedError(absl::StrCat("model.", key, ": unsupported (only empty or null)"));
    }
  }
  PAD_ASSIGN_OR_RETURN(fuse_unk_, OptionalBool(model, "fuse_unk", false, "model"));
  PAD_ASSIGN_OR_RETURN(byte_fallback_, OptionalBool(model, "byte_fallback", false, "model"));
  PAD_ASSIGN_OR_RETURN(ignore_merges_, OptionalBool(model, "ignore_merges", false, "model"));

  auto vocab = model.find("vocab");
  if (vocab == model.end() || !vocab->is_object()) return Invalid("model.vocab", "expected an object");
  vocab_.reserve(vocab->size());
  for (const auto& [token, id_json] : vocab->items()) {
    PAD_ASSIGN_OR_RETURN(int32_t id, IdValue(id_json, absl::StrCat("model.vocab[", Quoted(token), "]")));
    vocab_[token] = id;
  }
  if (auto it = model.find("unk_token"); it != model.end() && !it->is_null()) {
    if (!it->is_string()) return Invalid("model.unk_token", "expected a string or null");
    auto unk = vocab_.find(it->get_ref<const std::string&>());
    if (unk == vocab_.end()) {
      return Invalid("model.unk_token", absl::StrCat(Quoted(it->get<std::string>()), " is not in the vocab"));
    }
    unk_id_ = unk->second;
  }

  auto merges = model.find("merges");
  if (merges == model.end() || !merges->is_array()) return Invalid("model.merges", "expected an array");
  merges_.reserve(merges->size());
  const bool as_strings = !merges->empty() && (*merges)[0].is_string();
  for (size_t rank = 0; rank < merges->size(); ++rank) {
    const Json& merge = (*merges)[rank];
    const std::string field = absl::StrCat("model.merges[", rank, "]");
    std::string left, right;
    if (as_strings && merge.is_string()) {
      const std::string& line = merge.get_ref<const std::string&>();
      const size_t space = line.find(' ');
      if (space == std::string::npos || line.find(' ', space + 1) != std::string::npos) {
        return Invalid(field, "expected \"left right\" with exactly one space");
      }
      left = line.substr(0, space);
      right = line.substr(space + 1);
    } else if (!as_strings && merge.is_array() && merge.size() == 2 && merge[0].is_string() &&
               merge[1].is_string()) {
      left = merge[0].get<std::string>();
      right = merge[1].get<std::string>();
    } else {
      return Invalid(field, as_strings ? "expected a string like the merges before it"
                                       : "expected a pair of strings [left, right]");
    }
    auto l = vocab_.find(left), r = vocab_.find(right), m = vocab_.find(left + right);
    for (const auto& [it, token] : {std::pair{l, &left}, std::pair{r, &right}}) {
      if (it == vocab_.end()) {
        return Invalid(field, absl::StrCat("token ", Quoted(*token), " is not in the vocab"));
      }
    }
    if (m == vocab_.end()) {
      return Invalid(field, absl::StrCat("merged token ", Quoted(left + right), " is not in the vocab"));
    }
    // Like tokenizers' HashMap collect, a repeated pair keeps its last rank.
    merges_[(static_cast<uint64_t>(l->second) << 32) | static_cast<uint32_t>(r->second)] = {
        static_cast<int32_t>(rank), m->second};
  }
  return absl::OkStatus();
}

absl::Status TokenizerImpl::ParseAddedTokens(const Json& root) {
  auto list = root.find("added_tokens");
  if (list == root.end() || list->is_null()) return absl::OkStatus();
  if (!list->is_array()) return Invalid("added_tokens", "expected an array");
  int32_t max_added_id = -1;
  for (size_t k = 0; k < list->size(); ++k) {
    const Json& entry = (*list)[k];
    const std::string field = absl::StrCat("added_tokens[", k, "]");
    if (!entry.is_object()) return Invalid(field, "expected an object");
    AddedToken token;
    auto content = entry.find("content");
    if (content == entry.end() || !content->is_string()) {
      return Invalid(field + ".content", "expected a string");
    }
    token.content = content->get<std::string>();
    // The "id" field is only checked for its type: like tokenizers' AddedVocabulary::add_tokens, a token
    // takes its id from the vocabulary, or else the next one after the vocabulary and earlier tokens.
    auto id = entry.find("id");
    if (id == entry.end()) return Invalid(field + ".id", "missing");
    PAD_RETURN_IF_ERROR(IdValue(*id, field + ".id").status());
    PAD_ASSIGN_OR_RETURN(token.single_word, OptionalBool(entry, "single_word", false, field));
    PAD_ASSIGN_OR_RETURN(token.lstrip, OptionalBool(entry, "lstrip", false, field));
    PAD_ASSIGN_OR_RETURN(token.rstrip, OptionalBool(entry, "rstrip", false, field));
    PAD_ASSIGN_OR_RETURN(token.normalized, OptionalBool(entry, "normalized", true, field));
    PAD_ASSIGN_OR_RETURN(token.special, OptionalBool(entry, "special", false, field));
    if (token.content.empty()) continue;  // tokenizers ignores these
    if (token.special) special_contents_.insert(token.content);
    if (auto it = added_ids_.find(token.content); it != added_ids_.end()) {
      // A repeated content keeps its id and takes the later flags.
      token.id = it->second;
      for (AddedToken& existing : added_) {
        if (existing.content == token.content) existing = token;
      }
      continue;
    }
    if (auto it = vocab_.find(token.content); it != vocab_.end()) {
      token.id = it->second;
    } else {
      const int32_t vocab_len = static_cast<int32_t>(vocab_.size());
      token.id = max_added_id < 0 ? vocab_len : (max_added_id >= vocab_len ? max_added_id + 1 : vocab_len);
    }
    max_added_id = std::max(max_added_id, token.id);
    added_ids_.emplace(token.content, token.id);
    added_.push_back(std::move(token));
  }
  for (size_t k = 0; k < added_.size(); ++k) {
    (added_[k].normalized ? normalized_trie_ : non_normalized_trie_).Insert(added_[k].content, k);
  }
  return absl::OkStatus();
}

void TokenizerImpl::BuildIdTables() {
  int32_t size = 0;
  for (const auto& [token, id] : vocab_) size = std::max(size, id + 1);
  for (const AddedToken& token : added_) size = std::max(size, token.id + 1);
  token_bytes_.assign(size, std::string());
  known_.assign(size, false);
  special_.assign(size, false);
  std::vector<const std::string*> strings(size, nullptr);
  for (const auto& [token, id] : vocab_) strings[id] = &token;
  for (const AddedToken& token : added_) strings[token.id] = &token.content;  // added tokens win
  for (int32_t id = 0; id < size; ++id) {
    if (strings[id] == nullptr) continue;
    const std::string& s = *strings[id];
    known_[id] = true;
    special_[id] = special_contents_.contains(s);
    // ByteLevel decoding: a token whose characters are all in the byte alphabet stands for those bytes;
    // any other token (e.g. one with a plain space) stands for its own UTF-8.
    std::string bytes;
    bool all_mapped = true;
    for (size_t i = 0; i < s.size() && all_mapped;) {
      const utf8::SequenceInfo info = utf8::Inspect(s, i);
      size_t len = 1;
      const int b = info.complete ? ByteLevelByte(utf8::DecodeAt(s, i, &len)) : -1;
      if (b < 0) {
        all_mapped = false;
      } else {
        bytes.push_back(static_cast<char>(b));
      }
      i += info.consumed;
    }
    token_bytes_[id] = all_mapped ? bytes : s;
  }
}

absl::Status TokenizerImpl::ParsePostProcessor(const Json& root) {
  PAD_ASSIGN_OR_RETURN(std::optional<std::string> type, ComponentType(root, "post_processor"));
  if (!type.has_value()) return absl::OkStatus();
  std::vector<std::pair<const Json*, std::string>> processors;
  const Json& config = root["post_processor"];
  if (*type == "Sequence") {
    auto list = config.find("processors");
    if (list == config.end() || !list->is_array()) {
      return Invalid("post_processor.processors", "expected an array");
    }
    for (size_t k = 0; k < list->size(); ++k) {
      processors.emplace_back(&(*list)[k], absl::StrCat("post_processor.processors[", k, "]"));
    }
  } else {
    processors.emplace_back(&config, "post_processor");
  }
  for (const auto& [processor, field] : processors) {
    auto t = processor->find("type");
    if (!processor->is_object() || t == processor->end() || !t->is_string()) {
      return Invalid(field + ".type", "expected a string");
    }
    if (*t == "ByteLevel") continue;  // it only trims offsets
    if (*t != "TemplateProcessing") {
      return absl::UnimplementedError(absl::StrCat(field, ".type: unsupported ",
                                                   Quoted(t->get<std::string>()),
                                                   " (supported: TemplateProcessing, ByteLevel, Sequence)"));
    }
    if (!single_template_.empty()) return absl::UnimplementedError(field + ": a second TemplateProcessing");
    auto single = processor->find("single");
    if (single == processor->end() || !single->is_array()) {
      return Invalid(field + ".single", "expected an array");
    }
    auto specials = processor->find("special_tokens");
    for (size_t k = 0; k < single->size(); ++k) {
      const Json& item = (*single)[k];
      const std::string item_field = absl::StrCat(field, ".single[", k, "]");
      if (item.contains("Sequence")) {
        single_template_.push_back({true, {}});
        continue;
      }
      auto special = item.find("SpecialToken");
      if (special == item.end() || !special->is_object() || !special->contains("id") ||
          !(*special)["id"].is_string()) {
        return Invalid(item_field, "expected {\"Sequence\": ...} or {\"SpecialToken\": {\"id\": ...}}");
      }
      const std::string& name = (*special)["id"].get_ref<const std::string&>();
      if (specials == processor->end() || !specials->is_object() || !specials->contains(name) ||
          !(*specials)[name].contains("ids") || !(*specials)[name]["ids"].is_array()) {
        return Invalid(item_field,
                       absl::StrCat("special token ", Quoted(name), " has no ids in special_tokens"));
      }
      TemplateItem fixed{false, {}};
      for (const Json& id : (*specials)[name]["ids"]) {
        PAD_ASSIGN_OR_RETURN(int32_t value,
                             IdValue(id, absl::StrCat(field, ".special_tokens.", name, ".ids")));
        fixed.ids.push_back(value);
      }
      single_template_.push_back(std::move(fixed));
    }
  }
  return absl::OkStatus();
}

absl::Status TokenizerImpl::ParseDecoder(const Json& root) {
  PAD_ASSIGN_OR_RETURN(std::optional<std::string> type, ComponentType(root, "decoder"));
  if (type == "ByteLevel") return absl::OkStatus();
  return absl::UnimplementedError(
      absl::StrCat("decoder: unsupported ", type ? Quoted(*type) : "null", " (only ByteLevel)"));
}

absl::Status TokenizerImpl::SplitOnAddedTokens(const AddedTokenTrie& trie,
                                               std::vector<Segment>* segments) const {
  if (trie.empty()) return absl::OkStatus();
  std::vector<Segment> out;
  for (const Segment& segment : *segments) {
    if (segment.id >= 0) {
      out.push_back(segment);
      continue;
    }
    // tokenizers' AddedVocabulary::find_matches, including its treatment of overlapping strips.
    const std::string_view s = segment.text;
    size_t start_offset = 0, pos = 0, start, stop;
    for (int k; (k = trie.Find(s, pos, &start, &stop)) >= 0;) {
      pos = stop;
      const AddedToken& token = added_[k];
      if (token.single_word) {
        bool word_before = false, word_after = false;
        if (start > 0) {
          size_t p = start - 1;
          while (p > 0 && (static_cast<uint8_t>(s[p]) & 0xC0) == 0x80) --p;
          PAD_ASSIGN_OR_RETURN(word_before, IsWordChar(s, p));
        }
        if (stop < s.size()) {
          PAD_ASSIGN_OR_RETURN(word_after, IsWordChar(s, stop));
        }
        if (word_before || word_after) continue;
      }
      if (token.lstrip) {
        size_t p = start;
        while (p > 0) {
          size_t q = p - 1;
          while (q > 0 && (static_cast<uint8_t>(s[q]) & 0xC0) == 0x80) --q;
          size_t len;
          if (!utf8::IsWhiteSpace(utf8::DecodeAt(s, q, &len))) break;
          p = q;
        }
        start = std::max(p, start_offset);
      }
      if (token.rstrip) {
        size_t len;
        while (stop < s.size() && utf8::IsWhiteSpace(utf8::DecodeAt(s, stop, &len))) stop += len;
      }
      if (start_offset < start) out.push_back({s.substr(start_offset, start - start_offset), -1});
      out.push_back({s.substr(start, stop - start), token.id});
      start_offset = stop;
    }
    if (start_offset < s.size()) out.push_back({s.substr(start_offset), -1});
  }
  *segments = std::move(out);
  return absl::OkStatus();
}

std::vector<int32_t> TokenizerImpl::MergeWord(std::string_view word) const {
  struct Symbol {
    int32_t id;
    int prev, next;
    bool alive;
  };
  std::vector<Symbol> symbols;
  symbols.reserve(word.size());
  auto add = [&symbols](int32_t id) {
    const int n = static_cast<int>(symbols.size());
    symbols.push_back({id, n - 1, n + 1, true});
  };
  // tokenizers' BPE::merge_word: unknown characters become (fused) unk, byte-fallback tokens, or nothing.
  std::optional<int32_t> pending_unk;
  for (size_t i = 0; i < word.size();) {
    const utf8::SequenceInfo info = utf8::Inspect(word, i);
    const std::string_view c = word.substr(i, info.consumed);
    i += info.consumed;
    if (auto it = vocab_.find(utf8::AsAbsl(c)); it != vocab_.end()) {
      if (pending_unk) add(*pending_unk);
      pending_unk.reset();
      add(it->second);
      continue;
    }
    if (byte_fallback_) {
      std::vector<int32_t> bytes;
      for (unsigned char b : c) {
        char name[8];
        std::snprintf(name, sizeof(name), "<0x%02X>", b);
        auto it = vocab_.find(name);
        if (it == vocab_.end()) break;
        bytes.push_back(it->second);
      }
      if (bytes.size() == c.size()) {
        for (int32_t id : bytes) add(id);
        continue;
      }
    }
    if (unk_id_) {
      if (pending_unk && !fuse_unk_) add(*pending_unk);
      pending_unk = *unk_id_;
    }
  }
  if (pending_unk) add(*pending_unk);
  if (symbols.empty()) return {};
  symbols.back().next = -1;

  // Lowest rank first, then leftmost: tokenizers' Word::merge_all with its BinaryHeap.
  struct Merge {
    int32_t rank;
    int pos;
    int32_t new_id;
    bool operator<(const Merge& o) const { return rank != o.rank ? rank > o.rank : pos > o.pos; }
  };
  auto lookup = [this](int32_t a, int32_t b) -> const std::pair<int32_t, int32_t>* {
    auto it = merges_.find((static_cast<uint64_t>(a) << 32) | static_cast<uint32_t>(b));
    return it == merges_.end() ? nullptr : &it->second;
  };
  std::priority_queue<Merge> queue;
  for (size_t k = 0; k + 1 < symbols.size(); ++k) {
    if (const auto* m = lookup(symbols[k].id, symbols[k + 1].id)) {
      queue.push({m->first, static_cast<int>(k), m->second});
    }
  }
  while (!queue.empty()) {
    const Merge top = queue.top();
    queue.pop();
    Symbol& current = symbols[top.pos];
    if (!current.alive || current.next < 0) continue;
    const int next_pos = current.next;
    const Symbol right = symbols[next_pos];
    // Stale entries (one side already merged into something else) no longer name this merge.
    const auto* m = lookup(current.id, right.id);
    if (m == nullptr || m->second != top.new_id) continue;
    current.id = top.new_id;
    current.next = right.next;
    symbols[next_pos].alive = false;
    if (right.next >= 0) symbols[right.next].prev = top.pos;
    if (current.prev >= 0) {
      if (const auto* p = lookup(symbols[current.prev].id, current.id)) {
        queue.push({p->first, current.prev, p->second});
      }
    }
    if (current.next >= 0) {
      if (const auto* n = lookup(current.id, symbols[current.next].id)) {
        queue.push({n->first, top.pos, n->second});
      }
    }
  }
  std::vector<int32_t> ids;
  for (const Symbol& s : symbols) {
    if (s.alive) ids.push_back(s.id);
  }
  return ids;
}

void TokenizerImpl::TokenizeWord(const std::string& word, std::vector<int32_t>* ids) const {
  if (word.empty()) return;
  if (ignore_merges_) {
    if (auto it = vocab_.find(word); it != vocab_.end()) {
      ids->push_back(it->second);
      return;
    }
  }
  const bool cacheable = word.size() < kCacheMaxWordBytes;
  if (cacheable) {
    absl::ReaderMutexLock lock(&cache_mu_);
    if (auto it = cache_.find(word); it != cache_.end()) {
      ids->insert(ids->end(), it->second.begin(), it->second.end());
      return;
    }
  }
  std::vector<int32_t> merged = MergeWord(word);
  ids->insert(ids->end(), merged.begin(), merged.end());
  if (cacheable) {
    absl::MutexLock lock(&cache_mu_);
    if (cache_.size() < kCacheCapacity) cache_.emplace(word, std::move(merged));
  }
}

absl::StatusOr<std::vector<int32_t>> TokenizerImpl::Encode(std::string_view text,
                                                           bool add_special_tokens) const {
  for (size_t i = 0; i < text.size();) {
    const utf8::SequenceInfo info = utf8::Inspect(text, i);
    if (!info.complete) {
      return absl::InvalidArgumentError(absl::StrCat("text: invalid UTF-8 at byte ", i));
    }
    i += info.consumed;
  }
  // Tokens that match the raw text first, then those that match normalized text (we have no
  // normalizer, but the order still decides which token wins).
  std::vector<Segment> segments = {{text, -1}};
  PAD_RETURN_IF_ERROR(SplitOnAddedTokens(non_normalized_trie_, &segments));
  PAD_RETURN_IF_ERROR(SplitOnAddedTokens(normalized_trie_, &segments));

  std::vector<int32_t> ids;
  std::vector<std::string> words;
  for (const Segment& segment : segments) {
    if (segment.id >= 0) {
      ids.push_back(segment.id);
      continue;
    }
    words.assign(1, std::string(segment.text));
    if (pre_tokenizer_ != nullptr) {
      PAD_RETURN_IF_ERROR(pre_tokenizer_->PreTokenize(&words));
    }
    for (const std::string& word : words) TokenizeWord(word, &ids);
  }
  if (!add_special_tokens || single_template_.empty()) return ids;
  std::vector<int32_t> out;
  out.reserve(ids.size() + 4);
  for (const TemplateItem& item : single_template_) {
    const std::vector<int32_t>& part = item.is_sequence ? ids : item.ids;
    out.insert(out.end(), part.begin(), part.end());
  }
  return out;
}

std::string TokenizerImpl::Decode(absl::Span<const int32_t> ids, bool skip_special_tokens) const {
  // The ByteLevel decoder joins the bytes of all tokens before it repairs UTF-8, so a character split
  // around a special token still fails as a whole.
  std::string bytes;
  for (int32_t id : ids) {
    if (!Known(id) || (skip_special_tokens && special_[id])) continue;
    bytes.append(token_bytes_[id]);
  }
  std::string text;
  utf8::AppendLossy(bytes, /*final=*/true, &text);
  return text;
}

absl::StatusOr<std::unique_ptr<Tokenizer>> Tokenizer::FromFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat(path, ": cannot open"));
  std::stringstream buffer;
  buffer << in.rdbuf();
  absl::StatusOr<std::unique_ptr<TokenizerImpl>> impl = TokenizerImpl::Parse(buffer.str());
  if (!impl.ok()) return Prefixed(path, impl.status());
  return std::unique_ptr<Tokenizer>(new Tokenizer(std::move(impl).value()));
}

absl::StatusOr<std::unique_ptr<Tokenizer>> Tokenizer::FromJson(std::string_view json) {
  absl::StatusOr<std::unique_ptr<TokenizerImpl>> impl = TokenizerImpl::Parse(json);
  if (!impl.ok()) return Prefixed("tokenizer.json", impl.status());
  return std::unique_ptr<Tokenizer>(new Tokenizer(std::move(impl).value()));
}

Tokenizer::Tokenizer(std::unique_ptr<TokenizerImpl> impl) : impl_(std::move(impl)) {}
Tokenizer::~Tokenizer() = default;

absl::StatusOr<std::vector<int32_t>> Tokenizer::Encode(std::string_view text, bool add_special_tokens) const {
  return impl_->Encode(text, add_special_tokens);
}

std::string Tokenizer::Decode(absl::Span<const int32_t> ids, bool skip_special_tokens) const {
  return impl_->Decode(ids, skip_special_tokens);
}

std::string Tokenizer::TokenBytes(int32_t id) const { return impl_->TokenBytes(id); }
std::optional<int32_t> Tokenizer::TokenToId(std::string_view token) const { return impl_->TokenToId(token); }
bool Tokenizer::IsSpecial(int32_t id) const { return impl_->IsSpecial(id); }
int32_t Tokenizer::vocab_size() const { return impl_->vocab_size(); }

}  // namespace pad
