// What the tokenizer fuzz targets load: SmolLM2's tokenizer.json, from $PAD_FUZZ_TOKENIZER or the project's
// models/ directory (the targets run from the project root).
#ifndef PAD_TESTS_FUZZ_SMOLLM2_H_
#define PAD_TESTS_FUZZ_SMOLLM2_H_

#include <cstdlib>

#include "pad/tokenizer.h"

// Loaded once; aborts when it cannot be, since no input could then be tried.
inline const pad::Tokenizer* SmolLM2Tokenizer() {
  static const pad::Tokenizer* tokenizer = [] {
    const char* path = std::getenv("PAD_FUZZ_TOKENIZER");
    auto loaded =
        pad::Tokenizer::FromFile(path != nullptr ? path : "models/SmolLM2-135M-Instruct/tokenizer.json");
    if (!loaded.ok()) std::abort();
    return loaded->release();
  }();
  return tokenizer;
}

#endif  // PAD_TESTS_FUZZ_SMOLLM2_H_
