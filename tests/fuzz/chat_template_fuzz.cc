// Chat templates: any Jinja text is recognised or refused (never a crash), and any message contents and
// roles render through the templates we know or are refused naming the field. The input's first byte
// picks what is fuzzed.
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "pad/chat_template.h"

namespace {

const pad::ChatTemplate* chat_ml = nullptr;  // SmolLM2's, from $PAD_FUZZ_MODEL or models/

}  // namespace

extern "C" int LLVMFuzzerInitialize(int* /*argc*/, char*** /*argv*/) {
  const char* dir = std::getenv("PAD_FUZZ_MODEL");
  auto loaded = pad::ChatTemplate::FromModelDir(dir != nullptr ? dir : "models/SmolLM2-135M-Instruct");
  if (!loaded.ok()) std::abort();
  chat_ml = new pad::ChatTemplate(*std::move(loaded));
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const std::string_view rest(reinterpret_cast<const char*>(data) + 1, size - 1);
  if (data[0] % 2 == 0) {
    auto parsed = pad::ChatTemplate::FromTemplate(rest, "<s>");
    if (parsed.ok()) (void)parsed->Apply({{"user", "hi"}}, /*add_generation_prompt=*/true);
    return 0;
  }
  // Messages: the rest split at NUL bytes into role, content, role, content, ...
  std::vector<std::string> parts(1);
  for (char c : rest) {
    if (c == '\0') {
      parts.emplace_back();
    } else {
      parts.back().push_back(c);
    }
  }
  std::vector<pad::ChatMessage> messages;
  for (size_t i = 0; i + 1 < parts.size(); i += 2) messages.push_back({parts[i], parts[i + 1]});
  (void)chat_ml->Apply(messages, /*add_generation_prompt=*/data[0] & 2);
  return 0;
}
