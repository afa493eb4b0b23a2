// How much memory a device has, and how many KV cache blocks fit in a share of it.
#ifndef PAD_DEVICE_MEMORY_H_
#define PAD_DEVICE_MEMORY_H_

#include <c10/core/Device.h>

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"

namespace pad {

struct DeviceMemory {
  int64_t free_bytes = 0;   // not in use by anyone, this process included
  int64_t total_bytes = 0;  // the device's capacity
};

// A CUDA device's memory as the CUDA runtime reports it (cudaMemGetInfo), or for the CPU the host's
// (/proc/meminfo: MemAvailable, MemTotal). UNAVAILABLE when neither can be read.
absl::StatusOr<DeviceMemory> QueryDeviceMemory(const c10::Device& device);

// The KV blocks per cache that fit when this server may use `fraction` of the device's memory: of that
// share, what is in use already (the loaded weights; other processes' memory too) and `reserve_bytes`
// (activations, workspace, CUDA graphs) are taken, and the rest holds blocks of `block_bytes` each (one block
// in every cache). At most `max_blocks`; 0 when none fit.
struct KvPlan {
  int64_t blocks = 0;
  int64_t block_bytes = 0;   // one block in every cache
  int64_t budget_bytes = 0;  // what was left for the caches
  DeviceMemory memory;
  double fraction = 0.0;
  int64_t reserve_bytes = 0;
  std::string ToString() const;
};
KvPlan PlanKvBlocks(const DeviceMemory& memory, double fraction, int64_t reserve_bytes, int64_t block_bytes,
                    int64_t max_blocks);

}  // namespace pad

#endif  // PAD_DEVICE_MEMORY_H_
