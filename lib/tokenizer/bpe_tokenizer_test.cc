#include <cstdint>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "pad/tokenizer.h"
#include "tokenizer/pre_tokenizer.h"

namespace pad {
namespace {

using ::testing::ElementsAre;
using ::testing::ElementsAreArray;
using Json = nlohmann::json;

// A small byte-level tokenizer: byte b has id b, six merges (ids 256..261) and three added tokens.
// Expected ids below come from `tokenizers` 0.23.3 run on this same JSON.
Json SmallTokenizer() {
  Json vocab = Json::object();
  for (int b = 0; b < 256; ++b) vocab[ByteLevelChar(static_cast<unsigned char>(b))] = b;
  const std::vector<std::pair<std::string, std::string>> merges = {{"Ġ", "t"}, {"h", "e"},   {"Ġt", "he"},
                                                                   {"Ġ", "Ġ"}, {"ĠĠ", "ĠĠ"}, {"1", "2"}};
  Json merge_list = Json::array();
  for (size_t k = 0; k < merges.size(); ++k) {
    vocab[merges[k].first + merges[k].second] = 256 + k;
    merge_list.push_back({merges[k].first, merges[k].second});
  }
  auto added = [](int id, const char* content, bool single_word, bool strip, bool normalized, bool special) {
    return Json{{"id", id},          {"content", content}, {"single_word", single_word},
                {"lstrip", strip},   {"rstrip", strip},    {"normalized", normalized},
                {"special", special}};
  };
  return Json{
      {"version", "1.0"},
      {"truncation", nullptr},
      {"padding", nullptr},
      // The ids in the file are not the ones tokenizers uses: it numbers new tokens from vocab.len().
      {"added_tokens",
       {added(300, "<|special|>", false, false, false, true), added(301, "<mask>", false, true, true, false),
        added(302, "word", true, false, false, false)}},
      {"normalizer", nullptr},
      {"pre_tokenizer",
       {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", true}, {"use_regex", true}}},
      {"post_processor",
       {{"type", "TemplateProcessing"},
        {"single",
         {{{"SpecialToken", {{"id", "<|special|>"}, {"type_id", 0}}}},
          {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}}},
        {"pair", Json::array()},
        {"special_tokens",
         {{"<|special|>", {{"id", "<|special|>"}, {"ids", {262}}, {"tokens", {"<|special|>"}}}}}}}},
      {"decoder",
       {{"type", "ByteLevel"}, {"add_prefix_space", true}, {"trim_offsets", true}, {"use_regex", true}}},
      {"model",
       {{"type", "BPE"},
        {"dropout", nullptr},
        {"unk_token", nullptr},
        {"continuing_subword_prefix", nullptr},
        {"end_of_word_suffix", nullptr},
        {"fuse_unk", false},
        {"byte_fallback", false},
        {"ignore_merges", false},
        {"vocab", vocab},
        {"merges", merge_list}}}};
}

std::unique_ptr<Tokenizer> Load(const Json& json) {
  absl::StatusOr<std::unique_ptr<Tokenizer>> tokenizer = Tokenizer::FromJson(json.dump());
  EXPECT_TRUE(tokenizer.ok()) << tokenizer.status();
  return tokenizer.ok() ? std::move(tokenizer).value() : nullptr;
}

std::vector<int32_t> Ids(const Tokenizer& tokenizer, const std::string& text,
                         bool add_special_tokens = false) {
  absl::StatusOr<std::vector<int32_t>> ids = tokenizer.Encode(text, add_special_tokens);
  EXPECT_TRUE(ids.ok()) << ids.status();
  return ids.ok() ? *ids : std::vector<int32_t>{};
}

absl::Status LoadError(const Json& json) {
  absl::StatusOr<std::unique_ptr<Tokenizer>> tokenizer = Tokenizer::FromJson(json.dump());
  return tokenizer.status();
}

TEST(Tokenizer, MergesByRank) {
  auto tokenizer = Load(SmallTokenizer());
  ASSERT_NE(tokenizer, nullptr);
  EXPECT_THAT(Ids(*tokenizer, "the the"), ElementsAre(116, 257, 258));
  EXPECT_THAT(Ids(*tokenizer, "  the"), ElementsAre(32, 258));
  EXPECT_THAT(Ids(*tokenizer, "    x"), ElementsAre(259, 32, 32, 120));
  EXPECT_THAT(Ids(*tokenizer, "12 1234"), ElementsAre(261, 32, 261, 51, 52));
  EXPECT_THAT(Ids(*tokenizer, "\xC3\xA9"), ElementsAre(195, 169));
  EXPECT_THAT(Ids(*tokenizer, ""), ElementsAre());
}

TEST(Tokenizer, AddedTokensTakeIdsAsTokenizersDoes) {
  auto tokenizer = Load(SmallTokenizer());
  ASSERT_NE(tokenizer, nullptr);
  EXPECT_EQ(tokenizer->TokenToId("<|special|>"), 262);
  EXPECT_EQ(tokenizer->TokenToId("<mask>"), 263);
  EXPECT_EQ(tokenizer->TokenToId("word"), 264);
  EXPECT_EQ(tokenizer->vocab_size(), 265);
  EXPECT_TRUE(tokenizer->IsSpecial(262));
  EXPECT_FALSE(tokenizer->IsSpecial(263));
  EXPECT_EQ(tokenizer->TokenBytes(258), " the");
  EXPECT_EQ(tokenizer->TokenBytes(262), "<|special|>");
  EXPECT_EQ(tokenizer->TokenBytes(9999), "");
}

TEST(Tokenizer, AddedTokenFlags) {
  auto tokenizer = Load(SmallTokenizer());
  ASSERT_NE(tokenizer, nullptr);
  EXPECT_THAT(Ids(*tokenizer, "<|special|>the"), ElementsAre(262, 116, 257));
  // lstrip and rstrip swallow Unicode White_Space on both sides.
  EXPECT_THAT(Ids(*tokenizer, "a <mask>  b"), ElementsAre(97, 263, 98));
  EXPECT_THAT(Ids(*tokenizer, "a\u2000<mask>\u0085b"), ElementsAre(97, 263, 98));
  // single_word: "word" only counts between non-word characters.
  EXPECT_THAT(Ids(*tokenizer, "xword word wordy word"),
              ElementsAre(120, 119, 111, 114, 100, 32, 264, 32, 119, 111, 114, 100, 121, 32, 264));
}

TEST(Tokenizer, TemplateAddsSpecialTokens) {
  auto tokenizer = Load(SmallTokenizer());
  ASSERT_NE(tokenizer, nullptr);
  EXPECT_THAT(Ids(*tokenizer, "the the", true), ElementsAre(262, 116, 257, 258));
  EXPECT_THAT(Ids(*tokenizer, "", true), ElementsAre(262));
}

TEST(Tokenizer, DecodeJoinsBytesAcrossTokens) {
  auto tokenizer = Load(SmallTokenizer());
  ASSERT_NE(tokenizer, nullptr);
  EXPECT_EQ(tokenizer->Decode({262, 258, 0xC3, 262, 0xA9}, true), " the\xC3\xA9");
  // The special token interrupts the character: C3 alone and A9 alone are each replaced.
  EXPECT_EQ(tokenizer->Decode({262, 258, 0xC3, 262, 0xA9}, false), "<|special|> the\uFFFD<|special|>\uFFFD");
  EXPECT_EQ(tokenizer->Decode({-1, 5000, 116}, false), "t");
}

TEST(Tokenizer, IgnoreMergesUsesWholeWords) {
  // "Ġthe" stays in the vocab, but only the merge that makes "Ġt" is left.
  Json json = SmallTokenizer();
  json["model"]["merges"] = Json::array({Json::array({"Ġ", "t"})});
  auto plain = Load(json);
  json["model"]["ignore_merges"] = true;
  auto ignoring = Load(json);
  ASSERT_NE(plain, nullptr);
  ASSERT_NE(ignoring, nullptr);
  EXPECT_THAT(Ids(*plain, " the"), ElementsAre(256, 104, 101));
  EXPECT_THAT(Ids(*ignoring, " the"), ElementsAre(258));
}

TEST(Tokenizer, MergesAsStrings) {
  Json json = SmallTokenizer();
  Json merges = Json::array();
  for (const Json& pair : json["model"]["merges"]) {
    merges.push_back(pair[0].get<std::string>() + " " + pair[1].get<std::string>());
  }
  json["model"]["merges"] = merges;
  auto tokenizer = Load(json);
  ASSERT_NE(tokenizer, nullptr);
  EXPECT_THAT(Ids(*tokenizer, "the the"), ElementsAre(116, 257, 258));
}

TEST(Tokenizer, LongWhitespaceRunsAreNotQuadratic) {
  auto tokenizer = Load(SmallTokenizer());
  ASSERT_NE(tokenizer, nullptr);
  // One pre-token of 200k spaces; a quadratic merge would take minutes.
  const std::string spaces(200000, ' ');
  const std::vector<int32_t> ids = Ids(*tokenizer, spaces);
  EXPECT_EQ(ids.size(), 50000u);
  EXPECT_EQ(tokenizer->Decode(ids, false), spaces);
}

TEST(Tokenizer, ConcurrentEncodesAgree) {
  auto tokenizer = Load(SmallTokenizer());
  ASSERT_NE(tokenizer, nullptr);
  std::vector<std::string> texts;
  for (int i = 0; i < 200; ++i) {
    texts.push_back("the " + std::to_string(i * 7919) + std::string(i % 9, ' ') + "word");
  }
  std::vector<std::vector<int32_t>> expected;
  for (const std::string& text : texts) expected.push_back(Ids(*tokenizer, text));
  // The word cache is shared; every thread must still see the same ids.
  std::vector<std::thread> threads;
  std::vector<int> mismatches(4, 0);
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int round = 0; round < 20; ++round) {
        for (size_t i = 0; i < texts.size(); ++i) {
          if (*tokenizer->Encode(texts[(i + t * 31) % texts.size()], false) !=
              expected[(i + t * 31) % texts.size()]) {
            ++mismatches[t];
          }
        }
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  EXPECT_THAT(mismatches, ElementsAre(0, 0, 0, 0));
}

TEST(Tokenizer, InvalidUtf8IsRejected) {
  auto tokenizer = Load(SmallTokenizer());
  ASSERT_NE(tokenizer, nullptr);
  for (const char* text : {"a\xC3", "a\xC0\xAF", "a\xED\xA0\x80", "a\xF4\x90\x80\x80", "a\xFF"}) {
    absl::StatusOr<std::vector<int32_t>> ids = tokenizer->Encode(text, false);
    EXPECT_EQ(ids.status(), absl::InvalidArgumentError("text: invalid UTF-8 at byte 1")) << text;
  }
}

TEST(TokenizerLoad, BadJson) {
  absl::StatusOr<std::unique_ptr<Tokenizer>> tokenizer = Tokenizer::FromJson("{not json");
  EXPECT_EQ(tokenizer.status(), absl::InvalidArgumentError("tokenizer.json: invalid JSON at byte 3"));
  tokenizer = Tokenizer::FromJson("[1, 2]");
  EXPECT_EQ(tokenizer.status(), absl::InvalidArgumentError("tokenizer.json: expected a JSON object"));
  // A number no double holds: nlohmann throws out_of_range, not parse_error (found by fuzzing; it ended
  // the process).
  tokenizer = Tokenizer::FromJson(R"({"version": 5E555})");
  EXPECT_EQ(tokenizer.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StartsWith(tokenizer.status().message(), "tokenizer.json: invalid JSON: "))
      << tokenizer.status();
}

TEST(TokenizerLoad, MissingFile) {
  absl::StatusOr<std::unique_ptr<Tokenizer>> tokenizer = Tokenizer::FromFile("/nonexistent/tokenizer.json");
  EXPECT_EQ(tokenizer.status(), absl::NotFoundError("/nonexistent/tokenizer.json: cannot open"));
}

TEST(TokenizerLoad, MissingModel) {
  Json json = SmallTokenizer();
  json.erase("model");
  EXPECT_EQ(LoadError(json), absl::InvalidArgumentError("tokenizer.json: model: missing"));
}

TEST(TokenizerLoad, UnsupportedModel) {
  Json json = SmallTokenizer();
  json["model"]["type"] = "WordPiece";
  EXPECT_EQ(LoadError(json),
            absl::UnimplementedError("tokenizer.json: model.type: unsupported \"WordPiece\" (only BPE)"));
}

TEST(TokenizerLoad, UnknownPreTokenizer) {
  Json json = SmallTokenizer();
  json["pre_tokenizer"] = {{"type", "Whitespace"}};
  EXPECT_EQ(
      LoadError(json),
      absl::UnimplementedError("tokenizer.json: pre_tokenizer.type: unsupported pre-tokenizer \"Whitespace\" "
                               "(supported: ByteLevel, Split, Digits, Sequence)"));
  json["pre_tokenizer"] = {
      {"type", "Sequence"},
      {"pretokenizers", {{{"type", "Digits"}, {"individual_digits", true}}, {{"type", "Metaspace"}}}}};
  EXPECT_EQ(LoadError(json),
            absl::UnimplementedError(
                "tokenizer.json: pre_tokenizer.pretokenizers[1].type: unsupported pre-tokenizer "
                "\"Metaspace\" (supported: ByteLevel, Split, Digits, Sequence)"));
}

TEST(TokenizerLoad, BadSplitRegex) {
  Json json = SmallTokenizer();
  json["pre_tokenizer"] = {
      {"type", "Split"}, {"pattern", {{"Regex", "[a-z"}}}, {"behavior", "Isolated"}, {"invert", false}};
  EXPECT_EQ(LoadError(json),
            absl::InvalidArgumentError(
                "tokenizer.json: pre_tokenizer.pattern.Regex: unterminated character class"));
  json["pre_tokenizer"]["pattern"] = {{"Regex", "a"}};
  json["pre_tokenizer"]["behavior"] = "Sideways";
  EXPECT_EQ(LoadError(json),
            absl::InvalidArgumentError("tokenizer.json: pre_tokenizer.behavior: unknown value \"Sideways\""));
}

TEST(TokenizerLoad, NormalizerIsRejected) {
  Json json = SmallTokenizer();
  json["normalizer"] = {{"type", "NFC"}};
  EXPECT_EQ(LoadError(json), absl::UnimplementedError(
                                 "tokenizer.json: normalizer: unsupported \"NFC\" (only null is supported)"));
}

TEST(TokenizerLoad, BadMerges) {
  Json json = SmallTokenizer();
  json["model"]["merges"] = Json::array({"Ġ t", "he"});
  EXPECT_EQ(LoadError(json),
            absl::InvalidArgumentError(
                "tokenizer.json: model.merges[1]: expected \"left right\" with exactly one space"));
  json["model"]["merges"] = Json::array({Json::array({"Ġ", "t"}), "h e"});
  EXPECT_EQ(LoadError(json),
            absl::InvalidArgumentError(
                "tokenizer.json: model.merges[1]: expected a pair of strings [left, right]"));
  json["model"]["merges"] = Json::array({Json::array({"Ġ", "t"}), Json::array({"h", "zz"})});
  EXPECT_EQ(LoadError(json),
            absl::InvalidArgumentError("tokenizer.json: model.merges[1]: token \"zz\" is not in the vocab"));
  json["model"]["merges"] = Json::array({Json::array({"x", "y"})});
  EXPECT_EQ(LoadError(json), absl::InvalidArgumentError(
                                 "tokenizer.json: model.merges[0]: merged token \"xy\" is not in the vocab"));
  json["model"]["merges"] = "Ġ t";
  EXPECT_EQ(LoadError(json), absl::InvalidArgumentError("tokenizer.json: model.merges: expected an array"));
}

TEST(TokenizerLoad, BadVocabAndAddedTokens) {
  Json json = SmallTokenizer();
  json["model"]["vocab"]["x"] = "seven";
  EXPECT_EQ(LoadError(json),
            absl::InvalidArgumentError("tokenizer.json: model.vocab[\"x\"]: expected an integer id"));
  json = SmallTokenizer();
  json["added_tokens"][1].erase("content");
  EXPECT_EQ(LoadError(json),
            absl::InvalidArgumentError("tokenizer.json: added_tokens[1].content: expected a string"));
}

TEST(TokenizerLoad, UnsupportedDecoderAndPostProcessor) {
  Json json = SmallTokenizer();
  json["decoder"] = nullptr;
  EXPECT_EQ(LoadError(json),
            absl::UnimplementedError("tokenizer.json: decoder: unsupported null (only ByteLevel)"));
  json = SmallTokenizer();
  json["post_processor"] = {{"type", "BertProcessing"}};
  EXPECT_EQ(LoadError(json),
            absl::UnimplementedError("tokenizer.json: post_processor.type: unsupported \"BertProcessing\" "
                                     "(supported: TemplateProcessing, ByteLevel, Sequence)"));
}

std::vector<std::string> PreTokenize(const Json& config, const std::string& text) {
  absl::StatusOr<std::unique_ptr<PreTokenizer>> pre_tokenizer = ParsePreTokenizer(config, "pre_tokenizer");
  EXPECT_TRUE(pre_tokenizer.ok()) << pre_tokenizer.status();
  std::vector<std::string> pieces = {text};
  if (pre_tokenizer.ok()) EXPECT_TRUE((*pre_tokenizer)->PreTokenize(&pieces).ok());
  return pieces;
}

Json Split(Json pattern, const char* behavior, bool invert) {
  return {{"type", "Split"}, {"pattern", pattern}, {"behavior", behavior}, {"invert", invert}};
}

// A pattern that backtracks past PCRE2's match limit on a text is an error naming where, not a missed
// match (which tokenized the text differently from tokenizers, silently).
TEST(PreTokenizer, PatternThatGivesUpIsAnError) {
  absl::StatusOr<std::unique_ptr<PreTokenizer>> pre_tokenizer =
      ParsePreTokenizer(Split({{"Regex", "(a+)+$"}}, "Isolated", false), "pre_tokenizer");
  ASSERT_TRUE(pre_tokenizer.ok()) << pre_tokenizer.status();
  std::vector<std::string> pieces = {std::string(40, 'a') + "!"};
  const absl::Status status = (*pre_tokenizer)->PreTokenize(&pieces);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(status.message(),
            "text: the tokenizer's pre-tokenizer pattern gave up at byte 0: match limit exceeded");
  pieces = {"b aa"};
  EXPECT_TRUE((*pre_tokenizer)->PreTokenize(&pieces).ok());
  EXPECT_THAT(pieces, ElementsAre("b ", "aa"));
}

// Expected pieces are what tokenizers' pre_tokenize_str returns.
TEST(PreTokenizer, SplitBehaviors) {
  const Json dash = {{"String", "-"}};
  const std::string text = "a-b--c-";
  EXPECT_THAT(PreTokenize(Split(dash, "Removed", false), text), ElementsAre("a", "b", "c"));
  EXPECT_THAT(PreTokenize(Split(dash, "Removed", true), text), ElementsAre("-", "-", "-", "-"));
  EXPECT_THAT(PreTokenize(Split(dash, "Isolated", false), text),
              ElementsAre("a", "-", "b", "-", "-", "c", "-"));
  EXPECT_THAT(PreTokenize(Split(dash, "MergedWithPrevious", false), text),
              ElementsAre("a-", "b-", "-", "c-"));
  EXPECT_THAT(PreTokenize(Split(dash, "MergedWithPrevious", true), text),
              ElementsAre("a", "-b", "-", "-c", "-"));
  EXPECT_THAT(PreTokenize(Split(dash, "MergedWithNext", false), text),
              ElementsAre("a", "-b", "-", "-c", "-"));
  EXPECT_THAT(PreTokenize(Split(dash, "MergedWithNext", true), text), ElementsAre("a-", "b-", "-", "c-"));
  EXPECT_THAT(PreTokenize(Split(dash, "Contiguous", false), text),
              ElementsAre("a", "-", "b", "--", "c", "-"));
}

TEST(PreTokenizer, RegexFollowsOniguruma) {
  // \s is White_Space: U+0085 and U+00A0 are in, U+180E is not (PCRE2's own \s has it).
  EXPECT_THAT(PreTokenize(Split({{"Regex", "\\s+"}}, "Isolated", false), "a\u0085b\u180Ec\u00A0 d"),
              ElementsAre("a", "\u0085", "b\u180Ec", "\u00A0 ", "d"));
  EXPECT_THAT(PreTokenize(Split({{"Regex", "[^\\S\\n]+"}}, "Isolated", false), "a \n\tb\u2028c"),
              ElementsAre("a", " ", "\n", "\t", "b", "\u2028", "c"));
  // Ruby's \h is a hex digit.
  EXPECT_THAT(PreTokenize(Split({{"Regex", "\\h+"}}, "Isolated", false), "xyzBEEFq 12"),
              ElementsAre("xyz", "BEEF", "q ", "12"));
  // Todhri letters are Unicode 16; PCRE2 10.42 does not know them.
  EXPECT_THAT(PreTokenize(Split({{"Regex", "\\p{L}+"}}, "Isolated", false), "1\U000105C0\U000105C1 2"),
              ElementsAre("1", "\U000105C0\U000105C1", " 2"));
  // Empty matches right after a match are skipped, as onig's find_iter does.
  EXPECT_THAT(PreTokenize(Split({{"Regex", "x*"}}, "Isolated", false), "axxbx"),
              ElementsAre("a", "xx", "b", "x"));
  // ^ is a line anchor and (?m) lets . match a newline, as in Ruby.
  EXPECT_THAT(PreTokenize(Split({{"Regex", "^b"}}, "Isolated", false), "ab\nbc"),
              ElementsAre("ab\n", "b", "c"));
  EXPECT_THAT(PreTokenize(Split({{"Regex", "(?m:a.b)"}}, "Isolated", false), "a\nb a.b"),
              ElementsAre("a\nb", " ", "a.b"));
}

TEST(PreTokenizer, Digits) {
  EXPECT_THAT(PreTokenize({{"type", "Digits"}, {"individual_digits", false}}, "ab123c4\u06635"),
              ElementsAre("ab", "123", "c", "4\u06635"));
  EXPECT_THAT(PreTokenize({{"type", "Digits"}, {"individual_digits", true}}, "ab123c4"),
              ElementsAre("ab", "1", "2", "3", "c", "4"));
}

TEST(PreTokenizer, ByteLevelMapsBytes) {
  EXPECT_THAT(
      PreTokenize({{"type", "ByteLevel"}, {"add_prefix_space", true}, {"use_regex", true}}, "Hi  there\n"),
      ElementsAre("ĠHi", "Ġ", "Ġthere", "Ċ"));
  EXPECT_THAT(
      PreTokenize({{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", false}}, "a b\xC3\xA9"),
      ElementsAre("aĠbÃ©"));
}

TEST(TranslateOnigPattern, ClassesWithComplements) {
  absl::StatusOr<std::string> translated = TranslateOnigPattern("[^\\S\\n]");
  ASSERT_TRUE(translated.ok());
  EXPECT_EQ(*translated,
            "(?:(?![\\n])[\\t\\n\\x0B\\f\\r\\x20\\x{85}\\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}"
            "\\x{202F}\\x{205F}\\x{3000}])");
  EXPECT_EQ(TranslateOnigPattern("[a[b]]").status(),
            absl::InvalidArgumentError("nested character class at offset 2 is not supported"));
}

// The small real model, when scripts/setup.sh has fetched it.
TEST(Tokenizer, SmolLM2) {
  const std::string path = "models/SmolLM2-135M-Instruct/tokenizer.json";
  if (!std::ifstream(path)) GTEST_SKIP() << path << " missing";
  absl::StatusOr<std::unique_ptr<Tokenizer>> tokenizer = Tokenizer::FromFile(path);
  ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
  // From tokenizers: Tokenizer.from_file(path).encode(text).ids
  EXPECT_THAT(Ids(**tokenizer, "Hello world, it's <|im_start|>  a test\n\n  x"),
              ElementsAreArray({19556, 905, 28, 357, 506, 216, 1, 216, 253, 1028, 8866, 1792}));
  EXPECT_EQ((*tokenizer)->TokenToId("<|im_start|>"), 1);
  EXPECT_TRUE((*tokenizer)->IsSpecial(1));
  EXPECT_EQ((*tokenizer)->vocab_size(), 49152);
}

}  // namespace
}  // namespace pad
