#include "pad/device_memory.h"

#include <gtest/gtest.h>

#include <fstream>
#include <string>

namespace pad {
namespace {

constexpr int64_t kGiB = int64_t{1} << 30;

// Issue 10's H100: 80 GiB, 16.1 GB of Llama-3-8B weights and a shared-backbone PRM loaded, 2k context.
TEST(PlanKvBlocksTest, FillsTheShareLeftAfterWeightsAndReserve) {
  const DeviceMemory memory{80 * kGiB - 16 * kGiB, 80 * kGiB};
  const int64_t block = 32 << 20;  // 256 tokens x 128 KiB (32 layers x 8 KV heads x 128 x 2 x bf16)
  const KvPlan plan = PlanKvBlocks(memory, 0.9, 2 * kGiB, block, 4096);
  // 0.9 x 80 = 72 GiB, less 16 in use and 2 reserved: 54 GiB, 1728 blocks of 32 MiB.
  EXPECT_EQ(plan.budget_bytes, 54 * kGiB);
  EXPECT_EQ(plan.blocks, 1728);
  EXPECT_NE(plan.ToString().find("1728 blocks of 32.00 MiB"), std::string::npos) << plan.ToString();
}

TEST(PlanKvBlocksTest, CapsAtMaxBlocks) {
  EXPECT_EQ(PlanKvBlocks({70 * kGiB, 80 * kGiB}, 0.9, 0, 1 << 20, 64).blocks, 64);
}

TEST(PlanKvBlocksTest, NoneFitWhenOthersUseTheShare) {
  // Another process holds 75 of 80 GiB: 0.9 x 80 - 75 < 0.
  const KvPlan plan = PlanKvBlocks({5 * kGiB, 80 * kGiB}, 0.9, 0, 1 << 20, 64);
  EXPECT_EQ(plan.budget_bytes, 0);
  EXPECT_EQ(plan.blocks, 0);
}

TEST(QueryDeviceMemoryTest, HostMemoryIsProcMeminfo) {
  auto memory = QueryDeviceMemory(c10::Device(c10::kCPU));
  ASSERT_TRUE(memory.ok()) << memory.status();
  std::ifstream meminfo("/proc/meminfo");
  std::string key;
  int64_t kib = 0;
  meminfo >> key >> kib;
  ASSERT_EQ(key, "MemTotal:");
  EXPECT_EQ(memory->total_bytes, kib * 1024);
  EXPECT_GT(memory->free_bytes, 0);
  EXPECT_LE(memory->free_bytes, memory->total_bytes);
}

TEST(QueryDeviceMemoryTest, CudaWithoutAGpuIsAnErrorNotACrash) {
  auto memory = QueryDeviceMemory(c10::Device(c10::kCUDA, 0));
  if (memory.ok()) {  // a machine with a GPU
    EXPECT_GT(memory->total_bytes, 0);
  } else {
    EXPECT_EQ(memory.status().code(), absl::StatusCode::kUnavailable) << memory.status();
  }
}

}  // namespace
}  // namespace pad
