// Loading a PEFT adapter whose adapter_config.json is any text, beside a valid adapter_model.safetensors for
// a one-layer model: an adapter or an error naming the file and field, never a crash or an exception.
#include <ATen/ATen.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>

#include "pad/lora.h"

namespace {

// adapter_model.safetensors with rank-2 LoRA on q_proj of layer 0: A [2, 8] and B [8, 2], float32 zeros.
std::string TinyAdapterWeights() {
  const std::string prefix = "base_model.model.model.layers.0.self_attn.q_proj.";
  const std::string header =
      "{\"" + prefix + "lora_A.weight\":{\"dtype\":\"F32\",\"shape\":[2,8],\"data_offsets\":[0,64]},\"" +
      prefix + "lora_B.weight\":{\"dtype\":\"F32\",\"shape\":[8,2],\"data_offsets\":[64,128]}}";
  std::string file(8, '\0');
  const uint64_t length = header.size();
  std::memcpy(&file[0], &length, 8);
  return file + header + std::string(128, '\0');
}

void Write(const std::string& path, const void* data, size_t size) {
  FILE* file = std::fopen(path.c_str(), "wb");
  if (file == nullptr) return;
  std::fwrite(data, 1, size, file);
  std::fclose(file);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::string dir = [] {
    std::string d = "/tmp/adapter_config_fuzz." + std::to_string(getpid());
    mkdir(d.c_str(), 0755);
    const std::string weights = TinyAdapterWeights();
    Write(d + "/adapter_model.safetensors", weights.data(), weights.size());
    return d;
  }();
  static const pad::LlamaConfig config = [] {
    pad::LlamaConfig c;
    c.vocab_size = 16;
    c.hidden_size = 8;
    c.intermediate_size = 16;
    c.num_hidden_layers = 1;
    c.num_attention_heads = 2;
    c.num_key_value_heads = 1;
    c.head_dim = 4;
    return c;
  }();
  Write(dir + "/adapter_config.json", data, size);
  (void)pad::LoraAdapter::Load(dir, config, pad::ModelOptions());
  return 0;
}
