// Opening any file as safetensors: a checkpoint whose every tensor then loads (the header's offsets and
// shapes checked against the file), or an error naming the file, never a crash or a read past the mapping.
#include <ATen/ATen.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <string>

#include "pad/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::string path = "/tmp/safetensors_fuzz." + std::to_string(getpid()) + ".safetensors";
  FILE* file = std::fopen(path.c_str(), "wb");
  if (file == nullptr) return 0;
  std::fwrite(data, 1, size, file);
  std::fclose(file);
  auto checkpoint = pad::Checkpoint::OpenFile(path);
  if (checkpoint.ok()) {
    for (const std::string& name : (*checkpoint)->Names()) {
      auto shape = (*checkpoint)->Shape(name);
      if (!shape.ok()) continue;
      int64_t elements = 1;
      for (int64_t d : *shape) elements *= d;
      if (elements > (int64_t{1} << 20)) continue;  // the header was checked against the file's size
      (void)(*checkpoint)->Load(name, *shape, at::TensorOptions().dtype(at::kFloat));
    }
  }
  return 0;
}
