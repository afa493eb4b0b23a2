#include "pad/model_config.h"

#include <gtest/gtest.h>

namespace pad {
namespace {

constexpr char kLlama31[] = R"({
  "architectures": ["LlamaForCausalLM"], "hidden_act": "silu", "vocab_size": 128256, "hidden_size": 4096,
  "intermediate_size": 14336, "num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 8,
  "max_position_embeddings": 131072, "rms_norm_eps": 1e-05, "rope_theta": 500000.0,
  "rope_scaling": {"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                   "original_max_position_embeddings": 8192, "rope_type": "llama3"},
  "tie_word_embeddings": false, "eos_token_id": [128001, 128008, 128009]})";

TEST(LlamaConfig, ParsesLlama31) {
  auto config = LlamaConfig::FromJson(kLlama31);
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->head_dim, 128);
  EXPECT_EQ(config->num_key_value_heads, 8);
  EXPECT_EQ(config->rope.type, "llama3");
  EXPECT_DOUBLE_EQ(config->rope.theta, 500000.0);
  EXPECT_DOUBLE_EQ(config->rope.factor, 8.0);
  EXPECT_EQ(config->rope.original_max_position_embeddings, 8192);
  EXPECT_EQ(config->eos_token_ids, (std::vector<int32_t>{128001, 128008, 128009}));
}

TEST(LlamaConfig, ParsesTransformers5RopeParameters) {
  auto config = LlamaConfig::FromJson(R"({"architectures": ["LlamaForCausalLM"], "vocab_size": 10,
      "hidden_size": 8, "intermediate_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2,
      "rope_parameters": {"rope_theta": 100000.0, "rope_type": "default"}, "eos_token_id": 2})");
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->rope.type, "default");
  EXPECT_DOUBLE_EQ(config->rope.theta, 100000.0);
  EXPECT_EQ(config->num_key_value_heads, 2);
  EXPECT_EQ(config->head_dim, 4);
  EXPECT_EQ(config->eos_token_ids, (std::vector<int32_t>{2}));
}

TEST(LlamaConfig, RejectsUnknownArchitecture) {
  auto config = LlamaConfig::FromJson(R"({"architectures": ["GPT2LMHeadModel"], "vocab_size": 10})");
  EXPECT_EQ(config.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(config.status().message(),
            "config.json: architectures \"GPT2LMHeadModel\" is not supported (LlamaForCausalLM, "
            "MistralForCausalLM)");
}

TEST(LlamaConfig, NamesMissingAndBadFields) {
  auto missing = LlamaConfig::FromJson(R"({"architectures": ["LlamaForCausalLM"], "vocab_size": 10})");
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(missing.status().message(), "config.json: hidden_size is missing");

  auto bad = LlamaConfig::FromJson(R"({"architectures": ["LlamaForCausalLM"], "vocab_size": "many"})");
  EXPECT_EQ(bad.status().message(), "config.json: vocab_size must be an integer");

  auto heads = LlamaConfig::FromJson(R"({"architectures": ["LlamaForCausalLM"], "vocab_size": 10,
      "hidden_size": 8, "intermediate_size": 16, "num_hidden_layers": 1, "num_attention_heads": 4,
      "num_key_value_heads": 3})");
  EXPECT_EQ(heads.status().message(), "config.json: num_key_value_heads must divide num_attention_heads");

  auto rope = LlamaConfig::FromJson(R"({"architectures": ["LlamaForCausalLM"], "vocab_size": 10,
      "hidden_size": 8, "intermediate_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2,
      "rope_scaling": {"rope_type": "yarn", "factor": 4.0}})");
  EXPECT_EQ(rope.status().message(),
            "config.json: rope_scaling.rope_type \"yarn\" is not supported (default, llama3)");

  EXPECT_EQ(LlamaConfig::FromJson("not json").status().message(), "config.json: not a JSON object");
}

// Sizes a hostile or broken config.json gives: each refused naming the field, before anything is sized
// from them (a KV slot's bytes are layers * heads * head_dim * positions).
TEST(LlamaConfig, RefusesSizesOutOfRange) {
  const std::string base = R"({"architectures": ["LlamaForCausalLM"], "vocab_size": 10, "hidden_size": 8,
      "intermediate_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2)";
  EXPECT_EQ(LlamaConfig::FromJson(base + R"(, "head_dim": 0})").status().message(),
            "config.json: head_dim must be positive");
  EXPECT_EQ(LlamaConfig::FromJson(base + R"(, "head_dim": 1000000})").status().message(),
            "config.json: head_dim must be at most 4096");
  EXPECT_EQ(LlamaConfig::FromJson(base + R"(, "max_position_embeddings": 18446744073709551615})")
                .status()
                .message(),
            "config.json: max_position_embeddings must be at most 4194304");
  EXPECT_EQ(LlamaConfig::FromJson(R"({"architectures": ["LlamaForCausalLM"], "vocab_size": 10,
      "hidden_size": 8, "intermediate_size": 16, "num_hidden_layers": 1, "num_attention_heads": 16})")
                .status()
                .message(),
            "config.json: num_attention_heads must not exceed hidden_size (each head needs a width)");
  // An end-of-sequence id past int32 used to wrap to another token (4294967298 to 2).
  for (const char* eos : {"4294967298", "[2, 4294967298]", "-1", "2.5"}) {
    EXPECT_EQ(LlamaConfig::FromJson(base + R"(, "eos_token_id": )" + eos + "}").status().message(),
              "config.json: eos_token_id must hold token ids, integers in [0, 4194304]")
        << eos;
  }
  auto fine = LlamaConfig::FromJson(base + R"(, "eos_token_id": [2, 3]})");
  ASSERT_TRUE(fine.ok()) << fine.status();
  EXPECT_EQ(fine->eos_token_ids, (std::vector<int32_t>{2, 3}));
}

TEST(LlamaConfig, MissingDirectory) {
  auto config = LlamaConfig::FromModelDir("/nonexistent");
  EXPECT_EQ(config.status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(config.status().message(), "/nonexistent/config.json: cannot open");
}

}  // namespace
}  // namespace pad
