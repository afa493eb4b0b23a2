// Reads Hugging Face safetensors checkpoints: one file or shards named by model.safetensors.index.json.
#ifndef PAD_SAFETENSORS_H_
#define PAD_SAFETENSORS_H_

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "pad/tensor_source.h"

namespace pad {

class MappedFile;

// Where one tensor's bytes lie, as the file's header says.
struct TensorEntry {
  std::string dtype;  // safetensors dtype name: "F32", "F16", "BF16", ...
  std::vector<int64_t> shape;
  const MappedFile* file = nullptr;
  uint64_t begin = 0;  // byte offset of the data within the file
  uint64_t size = 0;   // bytes
};

// A read-only, memory-mapped checkpoint. Opening validates every header (JSON, dtypes, shapes, offsets
// within the file); tensors are copied out only when loaded. Immutable after Open; any thread may Load.
class Checkpoint final : public TensorSource {
 public:
  // Opens <dir>/model.safetensors.index.json and its shards when present, else <dir>/model.safetensors.
  static absl::StatusOr<std::unique_ptr<Checkpoint>> OpenDir(const std::string& dir);
  // Opens one safetensors file.
  static absl::StatusOr<std::unique_ptr<Checkpoint>> OpenFile(const std::string& path);
  ~Checkpoint() override;

  bool Contains(const std::string& name) const override { return entries_.count(name) > 0; }
  std::vector<std::string> Names() const override;
  // The stored shape of `name`, or NOT_FOUND naming the file and tensor.
  absl::StatusOr<std::vector<int64_t>> Shape(const std::string& name) const override;

  // The tensor `name`, checked to have `expected_shape`, converted to `options`' dtype and device.
  // Floating dtypes F32, F16 and BF16 only. Errors name the file and the tensor.
  absl::StatusOr<at::Tensor> Load(const std::string& name, absl::Span<const int64_t> expected_shape,
                                  const at::TensorOptions& options) const override;

 private:
  Checkpoint() = default;
  absl::Status AddFile(const std::string& path);
  absl::Status Missing(const std::string& name) const;

  std::vector<std::unique_ptr<MappedFile>> files_;
  std::map<std::string, TensorEntry> entries_;
};

}  // namespace pad

#endif  // PAD_SAFETENSORS_H_
