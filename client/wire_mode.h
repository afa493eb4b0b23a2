// The pad.v1 decoding mode of a name as the flags of our clients spell it ("pad", "vanilla",
// "preference_prompt", "genarm"): the enum value's own name, less its prefix, in lower case.
#ifndef PAD_CLIENT_WIRE_MODE_H_
#define PAD_CLIENT_WIRE_MODE_H_

#include <cstdlib>
#include <iostream>
#include <string>

#include "absl/strings/ascii.h"
#include "pad/v1/pad.pb.h"

namespace pad::client {

// Ends the process, naming the flag, for a name no mode has.
inline pad::v1::DecodingMode WireModeOrDie(const std::string& flag, const std::string& name) {
  pad::v1::DecodingMode mode;
  if (name.empty() || !pad::v1::DecodingMode_Parse("DECODING_MODE_" + absl::AsciiStrToUpper(name), &mode) ||
      mode == pad::v1::DECODING_MODE_UNSPECIFIED) {
    std::cerr << "--" << flag << ": unknown mode \"" << name
              << "\" (pad, vanilla, preference_prompt, genarm)\n";
    std::exit(2);
  }
  return mode;
}

}  // namespace pad::client

#endif  // PAD_CLIENT_WIRE_MODE_H_
