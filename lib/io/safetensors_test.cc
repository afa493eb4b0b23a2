#include "pad/safetensors.h"

#include <ATen/ATen.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>

#include "absl/strings/str_cat.h"

namespace pad {
namespace {

using ::testing::HasSubstr;

class SafetensorsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char pattern[] = "/tmp/safetensors_test_XXXXXX";
    dir_ = mkdtemp(pattern);
  }
  void TearDown() override { std::system(absl::StrCat("rm -rf ", dir_).c_str()); }

  // Writes a file: 8-byte little-endian header length, the header, then `data`.
  std::string Write(const std::string& name, const std::string& header, const std::string& data) {
    const std::string path = dir_ + "/" + name;
    std::ofstream out(path, std::ios::binary);
    uint64_t size = header.size();
    for (int i = 0; i < 8; ++i) out.put(static_cast<char>((size >> (8 * i)) & 0xff));
    out << header << data;
    return path;
  }
  static std::string Floats(std::vector<float> values) {
    return std::string(reinterpret_cast<const char*>(values.data()), values.size() * sizeof(float));
  }

  std::string dir_;
};

TEST_F(SafetensorsTest, LoadsAndConvertsF32) {
  const std::string path = Write(
      "model.safetensors", R"({"w":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]},"__metadata__":{}})",
      Floats({1, 2, 3, 4.5}));
  auto checkpoint = Checkpoint::OpenFile(path);
  ASSERT_TRUE(checkpoint.ok()) << checkpoint.status();
  auto w = (*checkpoint)->Load("w", {2, 2}, at::TensorOptions().dtype(at::kBFloat16));
  ASSERT_TRUE(w.ok()) << w.status();
  EXPECT_EQ(w->scalar_type(), at::kBFloat16);
  EXPECT_FLOAT_EQ(w->to(at::kFloat)[1][1].item<float>(), 4.5f);
}

TEST_F(SafetensorsTest, LoadsUnalignedBf16) {
  // A 1-byte pad in the header puts the data at an odd offset.
  const uint16_t one_bf16 = 0x3f80, two_bf16 = 0x4000;
  std::string data(reinterpret_cast<const char*>(&one_bf16), 2);
  data.append(reinterpret_cast<const char*>(&two_bf16), 2);
  const std::string path =
      Write("x.safetensors", R"({"b":{"dtype":"BF16","shape":[2],"data_offsets":[0,4]}} )", data);
  auto checkpoint = Checkpoint::OpenFile(path);
  ASSERT_TRUE(checkpoint.ok()) << checkpoint.status();
  auto b = (*checkpoint)->Load("b", {2}, at::TensorOptions().dtype(at::kFloat));
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_FLOAT_EQ(b->sum().item<float>(), 3.0f);
}

TEST_F(SafetensorsTest, TruncatedData) {
  const std::string path = Write(
      "model.safetensors", R"({"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})", Floats({1, 2}));
  auto checkpoint = Checkpoint::OpenFile(path);
  EXPECT_EQ(checkpoint.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(checkpoint.status().message(), HasSubstr(path + ": tensor w: data_offsets [0, 16) outside"));
  EXPECT_THAT(checkpoint.status().message(), HasSubstr("truncated"));
}

TEST_F(SafetensorsTest, TruncatedHeader) {
  const std::string path = dir_ + "/short.safetensors";
  std::ofstream(path, std::ios::binary) << std::string("\x10\x00\x00", 3);
  auto checkpoint = Checkpoint::OpenFile(path);
  EXPECT_EQ(checkpoint.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(checkpoint.status().message(), path + ": truncated: 3 bytes, no header");

  const std::string long_header = Write("long.safetensors", "{}", "");
  std::fstream patch(long_header, std::ios::binary | std::ios::in | std::ios::out);
  patch.put('\x7f');  // claims a 127-byte header in a 10-byte file
  patch.close();
  checkpoint = Checkpoint::OpenFile(long_header);
  EXPECT_EQ(checkpoint.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(checkpoint.status().message(),
            long_header + ": truncated: header of 127 bytes but file has 10 bytes");
}

// Shapes whose element or byte counts wrap 64 bits: 2^62 F32 elements are 2^64 bytes, which wrapped to 0
// and matched an empty data section; a dimension past INT64_MAX became negative.
TEST_F(SafetensorsTest, ShapesTooLargeForAnyFile) {
  for (const std::string shape :
       {"[4611686018427387904]", "[2147483648,2147483648]", "[9223372036854775808,0]"}) {
    const std::string path = Write(
        "huge.safetensors", R"({"w":{"dtype":"F32","shape":)" + shape + R"(,"data_offsets":[0,0]}})", "");
    auto checkpoint = Checkpoint::OpenFile(path);
    EXPECT_EQ(checkpoint.status().code(), absl::StatusCode::kDataLoss) << shape;
    EXPECT_EQ(checkpoint.status().message(),
              path + ": tensor w: shape " + shape + " holds more bytes than any file");
  }
  // A zero dimension makes an empty tensor, whatever the others are.
  const std::string empty =
      Write("empty.safetensors", R"({"w":{"dtype":"F32","shape":[0,5],"data_offsets":[0,0]}})", "");
  EXPECT_TRUE(Checkpoint::OpenFile(empty).ok());
}

TEST_F(SafetensorsTest, BadHeaderJson) {
  const std::string path = Write("model.safetensors", R"({"w":{"dtype":"F32",)", "");
  auto checkpoint = Checkpoint::OpenFile(path);
  EXPECT_EQ(checkpoint.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(checkpoint.status().message(), path + ": header is not a JSON object");
}

TEST_F(SafetensorsTest, SizeDisagreesWithShape) {
  const std::string path =
      Write("model.safetensors", R"({"w":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", Floats({1, 2}));
  auto checkpoint = Checkpoint::OpenFile(path);
  EXPECT_EQ(checkpoint.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(checkpoint.status().message(), path + ": tensor w: 8 bytes of data for shape [3] of F32");
}

TEST_F(SafetensorsTest, UnknownAndUnsupportedDtypes) {
  std::string path =
      Write("a.safetensors", R"({"w":{"dtype":"F128","shape":[1],"data_offsets":[0,4]}})", Floats({1}));
  auto checkpoint = Checkpoint::OpenFile(path);
  EXPECT_EQ(checkpoint.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(checkpoint.status().message(), path + ": tensor w: unknown dtype F128");

  path = Write("b.safetensors", R"({"w":{"dtype":"I32","shape":[1],"data_offsets":[0,4]}})", Floats({1}));
  checkpoint = Checkpoint::OpenFile(path);
  ASSERT_TRUE(checkpoint.ok()) << checkpoint.status();
  auto w = (*checkpoint)->Load("w", {1}, at::TensorOptions());
  EXPECT_EQ(w.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(w.status().message(), path + ": tensor w: dtype I32 is not a supported weight dtype");
}

TEST_F(SafetensorsTest, MissingTensorAndShapeMismatch) {
  const std::string path =
      Write("model.safetensors", R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", Floats({1, 2}));
  auto checkpoint = Checkpoint::OpenFile(path);
  ASSERT_TRUE(checkpoint.ok());
  auto missing = (*checkpoint)->Load("model.norm.weight", {2}, at::TensorOptions());
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(missing.status().message(), path + ": tensor model.norm.weight is missing");
  auto mismatch = (*checkpoint)->Load("w", {2, 1}, at::TensorOptions());
  EXPECT_EQ(mismatch.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(mismatch.status().message(), path + ": tensor w: shape [2], expected [2, 1]");
}

TEST_F(SafetensorsTest, ShardedIndex) {
  Write("model-00001-of-00002.safetensors", R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})",
        Floats({1}));
  Write("model-00002-of-00002.safetensors", R"({"b":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})",
        Floats({2}));
  std::ofstream(dir_ + "/model.safetensors.index.json")
      << R"({"metadata":{},"weight_map":{"a":"model-00001-of-00002.safetensors","b":"model-00002-of-00002.safetensors"}})";
  auto checkpoint = Checkpoint::OpenDir(dir_);
  ASSERT_TRUE(checkpoint.ok()) << checkpoint.status();
  EXPECT_EQ((*checkpoint)->Names(), (std::vector<std::string>{"a", "b"}));
  EXPECT_FLOAT_EQ((*checkpoint)->Load("b", {1}, at::TensorOptions())->item<float>(), 2.0f);
}

TEST_F(SafetensorsTest, ShardNamedInIndexLacksTensor) {
  Write("model-00001-of-00001.safetensors", R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})",
        Floats({1}));
  std::ofstream(dir_ + "/model.safetensors.index.json")
      << R"({"weight_map":{"a":"model-00001-of-00001.safetensors","z":"model-00001-of-00001.safetensors"}})";
  auto checkpoint = Checkpoint::OpenDir(dir_);
  EXPECT_EQ(checkpoint.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(checkpoint.status().message(),
            dir_ + "/model.safetensors.index.json: tensor z is not in model-00001-of-00001.safetensors");
}

TEST_F(SafetensorsTest, MissingFile) {
  auto checkpoint = Checkpoint::OpenDir(dir_);
  EXPECT_EQ(checkpoint.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(checkpoint.status().message(), HasSubstr(dir_ + "/model.safetensors: No such file"));
}

}  // namespace
}  // namespace pad
