#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "pad/tokenizer.h"
#include "pad/utf8.h"
#include "tokenizer/pre_tokenizer.h"

namespace pad {
namespace {

using ::testing::ElementsAre;
using ::testing::ElementsAreArray;
using Json = nlohmann::json;

// Token b (0..255) is byte b, so a test can write any byte sequence as ids; 256 is a special token.
std::unique_ptr<Tokenizer> ByteTokenizer() {
  Json vocab = Json::object();
  for (int b = 0; b < 256; ++b) vocab[ByteLevelChar(static_cast<unsigned char>(b))] = b;
  const Json json = {
      {"added_tokens",
       {{{"id", 256},
         {"content", "<s>"},
         {"single_word", false},
         {"lstrip", false},
         {"rstrip", false},
         {"normalized", false},
         {"special", true}}}},
      {"pre_tokenizer", {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", true}}},
      {"decoder", {{"type", "ByteLevel"}}},
      {"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", Json::array()}}}};
  absl::StatusOr<std::unique_ptr<Tokenizer>> tokenizer = Tokenizer::FromJson(json.dump());
  EXPECT_TRUE(tokenizer.ok()) << tokenizer.status();
  return tokenizer.ok() ? std::move(tokenizer).value() : nullptr;
}

std::vector<int32_t> BytesToIds(const std::string& bytes) {
  std::vector<int32_t> ids;
  for (unsigned char b : bytes) ids.push_back(b);
  return ids;
}

// Every Add result, then Finish's.
std::vector<std::string> Deltas(const Tokenizer& tokenizer, const std::vector<int32_t>& ids,
                                bool skip = false) {
  IncrementalDecoder decoder(&tokenizer, skip);
  std::vector<std::string> deltas;
  for (int32_t id : ids) deltas.push_back(decoder.Add(id));
  deltas.push_back(decoder.Finish());
  return deltas;
}

const std::string kFffd = "\uFFFD";

TEST(IncrementalDecoder, HoldsBackSplitCharacters) {
  auto tokenizer = ByteTokenizer();
  ASSERT_NE(tokenizer, nullptr);
  EXPECT_THAT(Deltas(*tokenizer, BytesToIds("a\xC3\xA9")), ElementsAre("a", "", "\xC3\xA9", ""));
  EXPECT_THAT(Deltas(*tokenizer, BytesToIds("\xF0\x9F\x98\x80!")),
              ElementsAre("", "", "", "\xF0\x9F\x98\x80", "!", ""));
}

// Expected strings are what Rust's String::from_utf8_lossy (and Python's errors="replace") make of the
// bytes: one U+FFFD per maximal ill-formed subpart.
TEST(IncrementalDecoder, InvalidSequencesBecomeReplacementCharacters) {
  auto tokenizer = ByteTokenizer();
  ASSERT_NE(tokenizer, nullptr);
  // A lead byte followed by a non-continuation: the lead byte alone is replaced, once the next arrives.
  EXPECT_THAT(Deltas(*tokenizer, BytesToIds("\xC3"
                                            "a")),
              ElementsAre("", kFffd + "a", ""));
  // E0 80 cannot start a character (E0 needs A0..BF next): two subparts.
  EXPECT_THAT(Deltas(*tokenizer, BytesToIds("\xE0\x80")), ElementsAre("", kFffd + kFffd, ""));
  // Surrogates are ill-formed in UTF-8: ED A0 80 is three subparts.
  EXPECT_THAT(Deltas(*tokenizer, BytesToIds("\xED\xA0\x80")), ElementsAre("", kFffd + kFffd, kFffd, ""));
  // Bytes that never start anything.
  EXPECT_THAT(Deltas(*tokenizer, BytesToIds("\xC0\xC1\xF5\xFF\x80")),
              ElementsAre(kFffd, kFffd, kFffd, kFffd, kFffd, ""));
  // Beyond U+10FFFF.
  EXPECT_THAT(Deltas(*tokenizer, BytesToIds("\xF4\x90\x80\x80")),
              ElementsAre("", kFffd + kFffd, kFffd, kFffd, ""));
  // A truncated character at the end is one subpart, emitted by Finish.
  EXPECT_THAT(Deltas(*tokenizer, BytesToIds("x\xF0\x9F\x98")), ElementsAre("x", "", "", "", kFffd));
}

TEST(IncrementalDecoder, SkippedSpecialTokensDoNotBreakCharacters) {
  auto tokenizer = ByteTokenizer();
  ASSERT_NE(tokenizer, nullptr);
  const std::vector<int32_t> ids = {0xC3, 256, 0xA9};
  EXPECT_THAT(Deltas(*tokenizer, ids, /*skip=*/true), ElementsAre("", "", "\xC3\xA9", ""));
  EXPECT_EQ(tokenizer->Decode(ids, true), "\xC3\xA9");
  EXPECT_THAT(Deltas(*tokenizer, ids, /*skip=*/false), ElementsAre("", kFffd + "<s>", kFffd, ""));
  EXPECT_EQ(tokenizer->Decode(ids, false), kFffd + "<s>" + kFffd);
}

TEST(IncrementalDecoder, ConcatenationEqualsDecode) {
  auto tokenizer = ByteTokenizer();
  ASSERT_NE(tokenizer, nullptr);
  // Every sequence of up to three bytes from a set that covers each lead and continuation class.
  const std::vector<int32_t> bytes = {'a',  0x80, 0x9F, 0xA0, 0xBF, 0xC2, 0xDF, 0xE0,
                                      0xED, 0xEF, 0xF0, 0xF4, 0xF5, 0xC0, 256};
  for (int32_t a : bytes) {
    for (int32_t b : bytes) {
      for (int32_t c : bytes) {
        for (bool skip : {false, true}) {
          const std::vector<int32_t> ids = {a, b, c, 0x80};
          std::string joined;
          for (const std::string& delta : Deltas(*tokenizer, ids, skip)) {
            EXPECT_TRUE(utf8::IsValid(delta));
            joined += delta;
          }
          EXPECT_EQ(joined, tokenizer->Decode(ids, skip)) << a << " " << b << " " << c;
        }
      }
    }
  }
}

TEST(Utf8, AppendLossyStopsBeforeACompletablePrefix) {
  std::string out;
  EXPECT_EQ(utf8::AppendLossy("ab\xE2\x82", /*final=*/false, &out), 2u);
  EXPECT_EQ(out, "ab");
  out.clear();
  EXPECT_EQ(utf8::AppendLossy("ab\xE2\x82", /*final=*/true, &out), 4u);
  EXPECT_EQ(out, "ab" + kFffd);
}

}  // namespace
}  // namespace pad
