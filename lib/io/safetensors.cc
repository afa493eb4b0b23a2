#include "pad/safetensors.h"

#include <ATen/ATen.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <limits>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "io/json_file.h"
#include "nlohmann/json.hpp"
#include "pad/status_macros.h"

namespace pad {

// A whole file mapped read-only; unmapped on destruction.
class MappedFile {
 public:
  static absl::StatusOr<std::unique_ptr<MappedFile>> Open(const std::string& path) {
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return absl::NotFoundError(absl::StrCat(path, ": ", std::strerror(errno)));
    struct stat st;
    if (::fstat(fd, &st) != 0) {
      ::close(fd);
      return absl::InternalError(absl::StrCat(path, ": fstat: ", std::strerror(errno)));
    }
    const uint64_t size = static_cast<uint64_t>(st.st_size);
    void* data = nullptr;
    if (size > 0) {
      data = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
      if (data == MAP_FAILED) {
        ::close(fd);
        return absl::InternalError(absl::StrCat(path, ": mmap: ", std::strerror(errno)));
      }
    }
    ::close(fd);
    return std::unique_ptr<MappedFile>(new MappedFile(path, static_cast<const uint8_t*>(data), size));
  }
  ~MappedFile() {
    if (data_ != nullptr) ::munmap(const_cast<uint8_t*>(data_), size_);
  }

  const std::string& path() const { return path_; }
  const uint8_t* data() const { return data_; }
  uint64_t size() const { return size_; }

 private:
  MappedFile(std::string path, const uint8_t* data, uint64_t size)
      : path_(std::move(path)), data_(data), size_(size) {}
  std::string path_;
  const uint8_t* data_;
  uint64_t size_;
};

namespace {

// Bytes per element of the safetensors dtypes; 0 for names the format does not define.
int64_t DtypeSize(const std::string& dtype) {
  static const std::map<std::string, int64_t> kSizes = {
      {"F64", 8}, {"F32", 4},  {"F16", 2}, {"BF16", 2}, {"I64", 8}, {"I32", 4},     {"I16", 2},    {"I8", 1},
      {"U8", 1},  {"BOOL", 1}, {"U16", 2}, {"U32", 4},  {"U64", 8}, {"F8_E4M3", 1}, {"F8_E5M2", 1}};
  auto it = kSizes.find(dtype);
  return it == kSizes.end() ? 0 : it->second;
}

absl::StatusOr<at::ScalarType> FloatScalarType(const std::string& dtype) {
  if (dtype == "F32") return at::kFloat;
  if (dtype == "F16") return at::kHalf;
  if (dtype == "BF16") return at::kBFloat16;
  return absl::InvalidArgumentError(absl::StrCat("dtype ", dtype, " is not a supported weight dtype"));
}

std::string ShapeString(absl::Span<const int64_t> shape) {
  return absl::StrCat("[", absl::StrJoin(shape, ", "), "]");
}

// Header of one file: little-endian u64 length, then that many bytes of JSON.
absl::Status ParseHeader(const MappedFile& file, std::map<std::string, TensorEntry>* entries) {
  const std::string& path = file.path();
  if (file.size() < 8) {
    return absl::DataLossError(absl::StrCat(path, ": truncated: ", file.size(), " bytes, no header"));
  }
  uint64_t header_size = 0;
  for (int i = 7; i >= 0; --i) header_size = (header_size << 8) | file.data()[i];
  if (header_size > file.size() - 8) {
    return absl::DataLossError(absl::StrCat(path, ": truncated: header of ", header_size,
                                            " bytes but file has ", file.size(), " bytes"));
  }
  const char* header_begin = reinterpret_cast<const char*>(file.data() + 8);
  nlohmann::json header = nlohmann::json::parse(header_begin, header_begin + header_size, nullptr,
                                                /*allow_exceptions=*/false);
  if (header.is_discarded() || !header.is_object()) {
    return absl::DataLossError(absl::StrCat(path, ": header is not a JSON object"));
  }
  const uint64_t data_begin = 8 + header_size;
  const uint64_t data_size = file.size() - data_begin;
  for (const auto& [name, info] : header.items()) {
    if (name == "__metadata__") continue;
    const std::string where = absl::StrCat(path, ": tensor ", name);
    if (!info.is_object() || !info.contains("dtype") || !info["dtype"].is_string() ||
        !info.contains("shape") || !info["shape"].is_array() || !info.contains("data_offsets") ||
        !info["data_offsets"].is_array() || info["data_offsets"].size() != 2) {
      return absl::DataLossError(absl::StrCat(where, ": header entry needs dtype, shape and data_offsets"));
    }
    TensorEntry entry;
    entry.dtype = info["dtype"].get<std::string>();
    const int64_t element_size = DtypeSize(entry.dtype);
    if (element_size == 0) {
      return absl::DataLossError(absl::StrCat(where, ": unknown dtype ", entry.dtype));
    }
    // Counted with overflow checks: a header's dimensions are anyone's numbers, and a product that wrapped
    // could match the bytes present while the shape asks for far more.
    uint64_t elements = 1;
    bool overflow = false;
    for (const auto& dim : info["shape"]) {
      if (!dim.is_number_unsigned()) {
        return absl::DataLossError(absl::StrCat(where, ": shape has a non-integer or negative dimension"));
      }
      const uint64_t size = dim.get<uint64_t>();
      overflow = overflow || size > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) ||
                 __builtin_mul_overflow(elements, size, &elements);
      entry.shape.push_back(static_cast<int64_t>(size));
    }
    uint64_t bytes = 0;
    if (overflow || __builtin_mul_overflow(elements, static_cast<uint64_t>(element_size), &bytes) ||
        bytes > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      return absl::DataLossError(
          absl::StrCat(where, ": shape ", info["shape"].dump(), " holds more bytes than any file"));
    }
    const auto& offsets = info["data_offsets"];
    if (!offsets[0].is_number_unsigned() || !offsets[1].is_number_unsigned()) {
      return absl::DataLossError(absl::StrCat(where, ": data_offsets must be non-negative integers"));
    }
    const uint64_t begin = offsets[0].get<uint64_t>(), end = offsets[1].get<uint64_t>();
    if (begin > end || end > data_size) {
      return absl::DataLossError(absl::StrCat(where, ": data_offsets [", begin, ", ", end,
                                              ") outside the data section of ", data_size,
                                              " bytes (truncated file?)"));
    }
    if (end - begin != bytes) {
      return absl::DataLossError(absl::StrCat(where, ": ", end - begin, " bytes of data for shape ",
                                              ShapeString(entry.shape), " of ", entry.dtype));
    }
    entry.file = &file;
    entry.begin = data_begin + begin;
    entry.size = end - begin;
    if (!entries->emplace(name, std::move(entry)).second) {
      return absl::DataLossError(absl::StrCat(where, ": appears in more than one file"));
    }
  }
  return absl::OkStatus();
}

}  // namespace

Checkpoint::~Checkpoint() = default;

absl::Status Checkpoint::AddFile(const std::string& path) {
  PAD_ASSIGN_OR_RETURN(std::unique_ptr<MappedFile> file, MappedFile::Open(path));
  PAD_RETURN_IF_ERROR(ParseHeader(*file, &entries_));
  files_.push_back(std::move(file));
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<Checkpoint>> Checkpoint::OpenFile(const std::string& path) {
  std::unique_ptr<Checkpoint> checkpoint(new Checkpoint());
  PAD_RETURN_IF_ERROR(checkpoint->AddFile(path));
  return checkpoint;
}

absl::StatusOr<std::unique_ptr<Checkpoint>> Checkpoint::OpenDir(const std::string& dir) {
  const std::string index_path = dir + "/model.safetensors.index.json";
  if (!FileExists(index_path)) return OpenFile(dir + "/model.safetensors");

  PAD_ASSIGN_OR_RETURN(nlohmann::json index, ReadJsonFile(index_path));
  if (!index.contains("weight_map") || !index["weight_map"].is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(index_path, ": weight_map is missing or not an object"));
  }
  std::map<std::string, std::string> tensor_to_shard;
  for (const auto& [name, shard] : index["weight_map"].items()) {
    if (!shard.is_string()) {
      return absl::InvalidArgumentError(
          absl::StrCat(index_path, ": weight_map[", name, "] is not a file name"));
    }
    tensor_to_shard[name] = shard.get<std::string>();
  }
  std::unique_ptr<Checkpoint> checkpoint(new Checkpoint());
  std::map<std::string, bool> opened;
  for (const auto& [name, shard] : tensor_to_shard) {
    if (opened[shard]) continue;
    opened[shard] = true;
    PAD_RETURN_IF_ERROR(checkpoint->AddFile(dir + "/" + shard));
  }
  for (const auto& [name, shard] : tensor_to_shard) {
    auto it = checkpoint->entries_.find(name);
    if (it == checkpoint->entries_.end() || it->second.file->path() != dir + "/" + shard) {
      return absl::DataLossError(absl::StrCat(index_path, ": tensor ", name, " is not in ", shard));
    }
  }
  return checkpoint;
}

std::vector<std::string> Checkpoint::Names() const {
  std::vector<std::string> names;
  for (const auto& [name, entry] : entries_) names.push_back(name);
  return names;
}

absl::Status Checkpoint::Missing(const std::string& name) const {
  const std::string where = files_.size() == 1 ? files_[0]->path() : "checkpoint";
  return absl::NotFoundError(absl::StrCat(where, ": tensor ", name, " is missing"));
}

absl::StatusOr<std::vector<int64_t>> Checkpoint::Shape(const std::string& name) const {
  auto it = entries_.find(name);
  if (it == entries_.end()) return Missing(name);
  return it->second.shape;
}

absl::StatusOr<at::Tensor> Checkpoint::Load(const std::string& name, absl::Span<const int64_t> expected_shape,
                                            const at::TensorOptions& options) const {
  auto it = entries_.find(name);
  if (it == entries_.end()) return Missing(name);
  const TensorEntry& entry = it->second;
  const std::string where = absl::StrCat(entry.file->path(), ": tensor ", name);
  auto dtype = FloatScalarType(entry.dtype);
  if (!dtype.ok()) return absl::InvalidArgumentError(absl::StrCat(where, ": ", dtype.status().message()));
  if (!std::equal(entry.shape.begin(), entry.shape.end(), expected_shape.begin(), expected_shape.end())) {
    return absl::InvalidArgumentError(absl::StrCat(where, ": shape ", ShapeString(entry.shape), ", expected ",
                                                   ShapeString(expected_shape)));
  }
  try {
    // Copy out of the mapping first: the data of a tensor need not be aligned to its element size.
    at::Tensor host = at::empty(entry.shape, at::TensorOptions().dtype(*dtype));
    // A tensor with no elements has no data pointer, and memcpy's arguments must not be null.
    if (entry.size > 0) std::memcpy(host.data_ptr(), entry.file->data() + entry.begin, entry.size);
    return host.to(options);
  } catch (const c10::Error& e) {
    return absl::InternalError(absl::StrCat(where, ": ", e.what_without_backtrace()));
  }
}

}  // namespace pad
