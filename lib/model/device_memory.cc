#include "pad/device_memory.h"

#include <dlfcn.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <map>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace pad {
namespace {

// The CUDA runtime's C functions, found in this process: LibTorch's CUDA build loads libcudart, and this way
// the library needs no CUDA headers and no LibTorch version's own memory API.
using CudaSetDevice = int (*)(int);
using CudaMemGetInfo = int (*)(size_t*, size_t*);

absl::StatusOr<DeviceMemory> CudaMemory(int index) {
  auto set_device = reinterpret_cast<CudaSetDevice>(dlsym(RTLD_DEFAULT, "cudaSetDevice"));
  auto mem_get_info = reinterpret_cast<CudaMemGetInfo>(dlsym(RTLD_DEFAULT, "cudaMemGetInfo"));
  if (set_device == nullptr || mem_get_info == nullptr) {
    return absl::UnavailableError("device memory: the CUDA runtime is not loaded in this process");
  }
  size_t free = 0, total = 0;
  if (const int error = set_device(index); error != 0) {
    return absl::UnavailableError(absl::StrCat("device memory: cudaSetDevice(", index, ") failed: ", error));
  }
  if (const int error = mem_get_info(&free, &total); error != 0) {
    return absl::UnavailableError(absl::StrCat("device memory: cudaMemGetInfo failed: ", error));
  }
  return DeviceMemory{static_cast<int64_t>(free), static_cast<int64_t>(total)};
}

absl::StatusOr<DeviceMemory> HostMemory() {
  std::ifstream meminfo("/proc/meminfo");
  std::map<std::string, int64_t> kib;
  std::string line;
  while (std::getline(meminfo, line)) {
    std::istringstream fields(line);
    std::string key;
    int64_t value = 0;
    if (fields >> key >> value) kib[key] = value;
  }
  if (!kib.count("MemTotal:") || !kib.count("MemAvailable:")) {
    return absl::UnavailableError("device memory: /proc/meminfo has no MemTotal and MemAvailable");
  }
  return DeviceMemory{kib["MemAvailable:"] * 1024, kib["MemTotal:"] * 1024};
}

std::string Gib(int64_t bytes) { return absl::StrFormat("%.2f GiB", bytes / 1073741824.0); }

}  // namespace

absl::StatusOr<DeviceMemory> QueryDeviceMemory(const c10::Device& device) {
  if (device.is_cpu()) return HostMemory();
  if (device.is_cuda()) return CudaMemory(device.has_index() ? device.index() : 0);
  return absl::UnimplementedError(absl::StrCat("device memory: ", device.str(), " is neither cpu nor cuda"));
}

KvPlan PlanKvBlocks(const DeviceMemory& memory, double fraction, int64_t reserve_bytes, int64_t block_bytes,
                    int64_t max_blocks) {
  KvPlan plan;
  plan.memory = memory;
  plan.fraction = fraction;
  plan.reserve_bytes = reserve_bytes;
  plan.block_bytes = block_bytes;
  const int64_t used = memory.total_bytes - memory.free_bytes;
  const int64_t share = static_cast<int64_t>(std::floor(fraction * static_cast<double>(memory.total_bytes)));
  plan.budget_bytes = std::max<int64_t>(0, share - used - reserve_bytes);
  plan.blocks = block_bytes > 0 ? std::min(max_blocks, plan.budget_bytes / block_bytes) : 0;
  return plan;
}

std::string KvPlan::ToString() const {
  return absl::StrCat(fraction, " of ", Gib(memory.total_bytes), " is ",
                      Gib(static_cast<int64_t>(fraction * memory.total_bytes)), "; in use ",
                      Gib(memory.total_bytes - memory.free_bytes), ", reserved for activations ",
                      Gib(reserve_bytes), ", left for the KV caches ", Gib(budget_bytes), ": ", blocks,
                      " blocks of ", absl::StrFormat("%.2f MiB", block_bytes / 1048576.0));
}

}  // namespace pad
