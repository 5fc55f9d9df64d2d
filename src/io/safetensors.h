// Safetensors files: a memory-mapped reader that validates the header when it opens, a writer,
// and a reader for sharded checkpoints (*.safetensors.index.json).
#pragma once
#include <torch/torch.h>

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "io/checksum.h"

namespace fluxtrain {

// The weights file and shard index diffusers' save_pretrained writes for a model (transformer/,
// vae/, controlnet/).
inline constexpr const char* kDiffusersWeights = "diffusion_pytorch_model.safetensors";
inline constexpr const char* kDiffusersIndex = "diffusion_pytorch_model.safetensors.index.json";
// The one of them that is a file in `dir` (the single file first), or "" when neither is.
std::string diffusers_weights_in(const std::string& dir);

// One tensor's entry in a safetensors header.
struct TensorInfo {
  std::string dtype;           // "F32", "BF16", "F8_E4M3", ... (as written in the file)
  std::vector<int64_t> shape;  // [] for a scalar
  uint64_t begin = 0;          // byte range in the data buffer (after the header)
  uint64_t end = 0;
  int64_t numel() const;
  uint64_t nbytes() const { return end - begin; }
};

// Bytes per element of a safetensors dtype ("BF16" -> 2); 0 for an unknown name.
size_t safetensors_dtype_size(const std::string& dtype);
// The safetensors name of a torch dtype (kBFloat16 -> "BF16"); UserError if it has none.
std::string safetensors_dtype_name(torch::ScalarType dtype);
// The torch dtype that load() returns for a safetensors dtype (F8 types decode to kFloat).
torch::ScalarType safetensors_load_dtype(const std::string& dtype);
// Decodes one FP8 byte: E4M3FN (bias 7, no inf, 0x7f/0xff NaN, max 448) or E5M2 (IEEE-like,
// bias 15). `dtype` is "F8_E4M3" or "F8_E5M2".
float decode_fp8(const std::string& dtype, uint8_t byte);

// A safetensors file opened read-only with mmap. The header is parsed and checked at open
// (bounds, dtypes, shapes, sizes, overlaps); every problem is a one-line UserError naming the
// file and tensor. load() copies the bytes out, so tensors outlive the file. Movable, not
// copyable; concurrent load() calls are safe.
class SafetensorsFile {
 public:
  explicit SafetensorsFile(const std::string& path);
  // The same reader over a whole file's bytes held in memory (no mmap); `name` stands for the
  // path in error messages. Same checks and API (for fuzzing and tests).
  static SafetensorsFile from_bytes(std::string bytes, const std::string& name = "<memory>");
  ~SafetensorsFile();
  SafetensorsFile(SafetensorsFile&& other) noexcept;
  SafetensorsFile& operator=(SafetensorsFile&& other) noexcept;
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

  const std::string& path() const { return path_; }
  // Tensor names in file order (by data offset, then name).
  const std::vector<std::string>& names() const { return names_; }
  size_t size() const { return names_.size(); }
  bool contains(const std::string& name) const { return infos_.count(name) > 0; }
  // UserError if there is no such tensor.
  const TensorInfo& info(const std::string& name) const;
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  uint64_t file_bytes() const { return map_size_; }

  // An owned tensor with the stored values: the file's dtype (F8 types decoded to float32) or
  // `dtype` when given, on `device`.
  torch::Tensor load(const std::string& name, std::optional<torch::ScalarType> dtype = std::nullopt,
                     torch::Device device = torch::kCPU) const;
  // The raw bytes of a tensor inside the mapping (valid while this object lives).
  const uint8_t* data(const std::string& name) const;

 private:
  SafetensorsFile() = default;
  void close();
  void parse_header();

  std::string path_;
  void* map_ = nullptr;                       // the mmap, or owned_'s bytes
  std::shared_ptr<const std::string> owned_;  // set by from_bytes (shared: moves keep map_ valid)
  uint64_t map_size_ = 0;
  uint64_t data_start_ = 0;  // file offset of the data buffer
  std::vector<std::string> names_;
  std::unordered_map<std::string, TensorInfo> infos_;
  std::map<std::string, std::string> metadata_;
};

using NamedTensors = std::vector<std::pair<std::string, torch::Tensor>>;

// Writes a safetensors file readable by the Python library: contiguous little-endian CPU copies,
// tensors ordered by element size (largest first) then name so each is aligned, compact JSON
// header padded with spaces to a multiple of 8, `__metadata__` first when not empty. Written to
// a temporary file beside `path`, fsynced, then renamed over it. UserError on duplicate names,
// an unsupported dtype or a write failure.
void save_safetensors(const std::string& path, const NamedTensors& tensors,
                      const std::map<std::string, std::string>& metadata = {});

// The same file written straight to `path` (no temporary file, no rename) and fsynced; returns
// its size and XXH64, computed from the bytes as they are written. For checkpoints, which get
// their atomicity from the directory rename.
FileDigest write_safetensors(const std::string& path, const NamedTensors& tensors,
                             const std::map<std::string, std::string>& metadata = {});

// Tensors spread over shards by a `*.safetensors.index.json`
// ({"metadata": {...}, "weight_map": {name: shard file}}), or one plain .safetensors file.
// Shards are checked to exist at open and opened on first use; same read API as one file.
class ShardedSafetensors {
 public:
  explicit ShardedSafetensors(const std::string& path);

  const std::string& path() const { return path_; }
  // Sorted by name for an index; file order for a single file.
  const std::vector<std::string>& names() const { return names_; }
  size_t size() const { return names_.size(); }
  bool contains(const std::string& name) const;
  const TensorInfo& info(const std::string& name) const;
  // The index's "metadata" (non-string values as JSON text), or the single file's metadata.
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  // Shard file paths in first-use order of the weight map (one entry for a single file).
  const std::vector<std::string>& shard_paths() const { return shard_paths_; }
  torch::Tensor load(const std::string& name, std::optional<torch::ScalarType> dtype = std::nullopt,
                     torch::Device device = torch::kCPU) const;
  // The opened shard that holds `name`.
  const SafetensorsFile& shard_for(const std::string& name) const;

 private:
  std::string path_;
  std::vector<std::string> names_;
  std::unordered_map<std::string, size_t> shard_of_;  // name -> index into shard_paths_
  std::vector<std::string> shard_paths_;
  std::map<std::string, std::string> metadata_;
  mutable std::mutex mutex_;
  mutable std::vector<std::unique_ptr<SafetensorsFile>> shards_;
};

}  // namespace fluxtrain
