// tokenizer_probe MODEL_DIR: answers JSON requests, one per stdin line, with one JSON line each, so that
// tests/python/test_tokenizer.py can compare many strings with `tokenizers` and transformers cheaply.
//
//   {"op": "encode", "text": "...", "add_special_tokens": true}  -> {"ids": [...]}
//     ("text_hex" instead of "text" passes arbitrary bytes)
//   {"op": "decode", "ids": [...], "skip_special_tokens": false}  -> {"text": "..."}
//   {"op": "stream", "ids": [...], "skip_special_tokens": false}  -> {"deltas_hex": ["..", ...]}
//     (every IncrementalDecoder::Add result, then Finish's, as hex bytes)
//   {"op": "chat", "messages": [{"role": .., "content": ..}], "add_generation_prompt": true}
//     -> {"text": "..."}
//   {"op": "info"}  -> {"vocab_size": N, "chat_template": "ok" or the load error}
// Failures come back as {"error": {"code": "INVALID_ARGUMENT", "message": "..."}}.
#include <cstdint>
#include <iostream>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/escaping.h"
#include "nlohmann/json.hpp"
#include "pad/chat_template.h"
#include "pad/tokenizer.h"

namespace {

using Json = nlohmann::json;

Json ErrorJson(const absl::Status& status) {
  return {{"error",
           {{"code", absl::StatusCodeToString(status.code())}, {"message", std::string(status.message())}}}};
}

Json Handle(const Json& request, const pad::Tokenizer& tokenizer,
            const absl::StatusOr<pad::ChatTemplate>& chat_template) {
  const std::string op = request.value("op", "");
  if (op == "encode") {
    const std::string text = request.contains("text_hex")
                                 ? absl::HexStringToBytes(request["text_hex"].get<std::string>())
                                 : request["text"].get<std::string>();
    absl::StatusOr<std::vector<int32_t>> ids =
        tokenizer.Encode(text, request.value("add_special_tokens", false));
    if (!ids.ok()) return ErrorJson(ids.status());
    return {{"ids", *ids}};
  }
  if (op == "decode") {
    const auto ids = request["ids"].get<std::vector<int32_t>>();
    return {{"text", tokenizer.Decode(ids, request.value("skip_special_tokens", false))}};
  }
  if (op == "stream") {
    pad::IncrementalDecoder decoder(&tokenizer, request.value("skip_special_tokens", false));
    Json deltas = Json::array();
    for (int32_t id : request["ids"].get<std::vector<int32_t>>()) {
      deltas.push_back(absl::BytesToHexString(decoder.Add(id)));
    }
    deltas.push_back(absl::BytesToHexString(decoder.Finish()));
    return {{"deltas_hex", deltas}};
  }
  if (op == "chat") {
    if (!chat_template.ok()) return ErrorJson(chat_template.status());
    std::vector<pad::ChatMessage> messages;
    for (const Json& m : request["messages"]) {
      messages.push_back({m.at("role").get<std::string>(), m.at("content").get<std::string>()});
    }
    absl::StatusOr<std::string> text =
        chat_template->Apply(messages, request.value("add_generation_prompt", false));
    if (!text.ok()) return ErrorJson(text.status());
    return {{"text", *text}};
  }
  if (op == "info") {
    return {{"vocab_size", tokenizer.vocab_size()},
            {"chat_template", chat_template.ok() ? "ok" : std::string(chat_template.status().message())}};
  }
  return ErrorJson(absl::InvalidArgumentError("op: unknown \"" + op + "\""));
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::cerr << "usage: tokenizer_probe MODEL_DIR < requests.jsonl\n";
    return 2;
  }
  const std::string model_dir = argv[1];
  absl::StatusOr<std::unique_ptr<pad::Tokenizer>> tokenizer =
      pad::Tokenizer::FromFile(model_dir + "/tokenizer.json");
  if (!tokenizer.ok()) {
    std::cerr << tokenizer.status() << "\n";
    return 1;
  }
  const absl::StatusOr<pad::ChatTemplate> chat_template = pad::ChatTemplate::FromModelDir(model_dir);
  std::ios::sync_with_stdio(false);
  std::string line;
  while (std::getline(std::cin, line)) {
    if (line.empty()) continue;
    Json response;
    try {
      response = Handle(Json::parse(line), **tokenizer, chat_template);
      std::cout << response.dump() << '\n';
    } catch (const Json::exception& e) {
      // A malformed request, or output that is not valid UTF-8 (dump refuses it): report, keep going.
      std::cout << ErrorJson(absl::InternalError(e.what())).dump() << '\n';
    }
  }
  return 0;
}
