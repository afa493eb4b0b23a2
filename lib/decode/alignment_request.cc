#include "pad/alignment_request.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "pad/field_error.h"

// No LibTorch here: the front doors' parsers (and their fuzzers) link this file alone.
namespace pad {

const char* DecodingModeName(DecodingMode mode) {
  switch (mode) {
    case DecodingMode::kPad:
      return "pad";
    case DecodingMode::kVanilla:
      return "vanilla";
    case DecodingMode::kPreferencePrompt:
      return "preference_prompt";
    case DecodingMode::kGenArm:
      return "genarm";
  }
  return "unknown";
}

absl::StatusOr<DecodingMode> ParseDecodingMode(absl::string_view name) {
  for (DecodingMode mode :
       {DecodingMode::kPad, DecodingMode::kVanilla, DecodingMode::kPreferencePrompt, DecodingMode::kGenArm}) {
    if (name == DecodingModeName(mode)) return mode;
  }
  return absl::InvalidArgumentError(absl::StrCat(
      QuotedForError(name), " is not \"pad\", \"vanilla\", \"preference_prompt\" or \"genarm\""));
}

std::string GuidelineText(const std::vector<std::string>& principles, const std::string& instruction) {
  return absl::StrCat(
      "[Guidelines] Your task is to generate response by considering the following principle. [Principles] ",
      absl::StrJoin(principles, " and "), " [Instruction] ", instruction);
}

}  // namespace pad
