// Safetensors reading (mmap, validated header), writing and sharded indexes (see safetensors.h).
#include "io/safetensors.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <torch/version.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <limits>
#include <nlohmann/json.hpp>
#include <set>

#include "core/errors.h"
#include "io/files.h"

namespace fluxtrain {

std::string diffusers_weights_in(const std::string& dir) {
  for (const char* name : {kDiffusersWeights, kDiffusersIndex}) {
    const std::string path = (std::filesystem::path(dir) / name).string();
    if (is_file(path)) return path;
  }
  return "";
}
namespace fs = std::filesystem;
using json = nlohmann::json;

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "safetensors data is little-endian");

#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 1)
#define FLUXTRAIN_HAS_FLOAT8 1
#endif

namespace {

constexpr uint64_t kMaxHeaderBytes = 100'000'000;

struct DtypeEntry {
  const char* name;
  size_t size;
  torch::ScalarType load_as;  // what load() returns without a requested dtype
};

// Every dtype fluxtrain reads. F8 types decode to float32 (libtorch 1.13 has no float8 dtype).
const std::array<DtypeEntry, 12> kDtypes = {{
    {"F64", 8, torch::kDouble},
    {"F32", 4, torch::kFloat},
    {"F16", 2, torch::kHalf},
    {"BF16", 2, torch::kBFloat16},
    {"F8_E4M3", 1, torch::kFloat},
    {"F8_E5M2", 1, torch::kFloat},
    {"I64", 8, torch::kLong},
    {"I32", 4, torch::kInt},
    {"I16", 2, torch::kShort},
    {"I8", 1, torch::kChar},
    {"U8", 1, torch::kByte},
    {"BOOL", 1, torch::kBool},
}};

const DtypeEntry* find_dtype(const std::string& name) {
  for (const auto& d : kDtypes)
    if (name == d.name) return &d;
  return nullptr;
}

std::string known_dtypes() {
  std::string s;
  for (const auto& d : kDtypes) s += (s.empty() ? "" : ", ") + std::string(d.name);
  return s;
}

// 256-entry tables: FP8 byte -> float32.
std::array<float, 256> make_e4m3_table() {
  std::array<float, 256> t{};
  for (int b = 0; b < 256; ++b) {
    int sign = b >> 7, exp = (b >> 3) & 0xf, mant = b & 7;
    float v;
    if (exp == 0xf && mant == 7)
      v = std::numeric_limits<float>::quiet_NaN();  // E4M3FN: no infinities, one NaN pattern
    else if (exp == 0)
      v = std::ldexp(float(mant) / 8.0f, -6);  // subnormal
    else
      v = std::ldexp(1.0f + float(mant) / 8.0f, exp - 7);
    t[b] = sign ? -v : v;
  }
  return t;
}

std::array<float, 256> make_e5m2_table() {
  std::array<float, 256> t{};
  for (int b = 0; b < 256; ++b) {
    int sign = b >> 7, exp = (b >> 2) & 0x1f, mant = b & 3;
    float v;
    if (exp == 0x1f)
      v = mant == 0 ? std::numeric_limits<float>::infinity()
                    : std::numeric_limits<float>::quiet_NaN();
    else if (exp == 0)
      v = std::ldexp(float(mant) / 4.0f, -14);
    else
      v = std::ldexp(1.0f + float(mant) / 4.0f, exp - 15);
    t[b] = sign ? -v : v;
  }
  return t;
}

const std::array<float, 256>& fp8_table(const std::string& dtype) {
  static const std::array<float, 256> e4m3 = make_e4m3_table();
  static const std::array<float, 256> e5m2 = make_e5m2_table();
  if (dtype == "F8_E4M3") return e4m3;
  if (dtype == "F8_E5M2") return e5m2;
  throw std::invalid_argument("not an FP8 dtype: " + dtype);
}

std::string shape_str(const std::vector<int64_t>& shape) {
  return fmt::format("[{}]", fmt::join(shape, ", "));
}

const char* json_type(const json& j) {
  switch (j.type()) {
    case json::value_t::object:
      return "an object";
    case json::value_t::array:
      return "an array";
    case json::value_t::string:
      return "a string";
    case json::value_t::boolean:
      return "a boolean";
    case json::value_t::null:
      return "null";
    default:
      return "a number";
  }
}

// A JSON value for an error message, cut short if long.
std::string brief(const json& j) {
  std::string s = j.dump();
  if (s.size() > 60) s = s.substr(0, 57) + "...";
  return s;
}

bool as_nonneg_int(const json& j, uint64_t& out) {
  if (!j.is_number_integer()) return false;
  if (j.is_number_unsigned()) {
    out = j.get<uint64_t>();
    return true;
  }
  int64_t v = j.get<int64_t>();
  if (v < 0) return false;
  out = uint64_t(v);
  return true;
}

}  // namespace

int64_t TensorInfo::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

size_t safetensors_dtype_size(const std::string& dtype) {
  const DtypeEntry* d = find_dtype(dtype);
  return d ? d->size : 0;
}

torch::ScalarType safetensors_load_dtype(const std::string& dtype) {
  const DtypeEntry* d = find_dtype(dtype);
  if (!d) user_error("unknown safetensors dtype '{}' (expected one of {})", dtype, known_dtypes());
  return d->load_as;
}

std::string safetensors_dtype_name(torch::ScalarType dtype) {
  switch (dtype) {
    case torch::kDouble:
      return "F64";
    case torch::kFloat:
      return "F32";
    case torch::kHalf:
      return "F16";
    case torch::kBFloat16:
      return "BF16";
    case torch::kLong:
      return "I64";
    case torch::kInt:
      return "I32";
    case torch::kShort:
      return "I16";
    case torch::kChar:
      return "I8";
    case torch::kByte:
      return "U8";
    case torch::kBool:
      return "BOOL";
#ifdef FLUXTRAIN_HAS_FLOAT8
    case c10::ScalarType::Float8_e4m3fn:
      return "F8_E4M3";
    case c10::ScalarType::Float8_e5m2:
      return "F8_E5M2";
#endif
    default:
      break;
  }
  user_error("dtype {} cannot be stored in safetensors by fluxtrain (supported: {})",
             c10::toString(dtype), known_dtypes());
}

float decode_fp8(const std::string& dtype, uint8_t byte) {
  return fp8_table(dtype)[byte];
}

// ---------------------------------------------------------------------------------------------
// SafetensorsFile

SafetensorsFile::SafetensorsFile(const std::string& path) : path_(path) {
  const OpenedFile opened = open_regular_file(path, "a .safetensors file");
  const int fd = opened.fd;
  map_size_ = opened.size;
  if (map_size_ < 8) {
    ::close(fd);
    user_error("{}: file is {} bytes, too short for a safetensors header (truncated?)", path,
               map_size_);
  }
  map_ = ::mmap(nullptr, map_size_, PROT_READ, MAP_PRIVATE, fd, 0);
  int err = errno;
  ::close(fd);
  if (map_ == MAP_FAILED) {
    map_ = nullptr;
    user_error("{}: mmap failed ({})", path, std::strerror(err));
  }
  try {
    parse_header();
  } catch (...) {
    close();
    throw;
  }
}

SafetensorsFile SafetensorsFile::from_bytes(std::string bytes, const std::string& name) {
  SafetensorsFile f;
  f.path_ = name;
  if (bytes.size() < 8)
    user_error("{}: file is {} bytes, too short for a safetensors header (truncated?)", name,
               bytes.size());
  f.owned_ = std::make_shared<const std::string>(std::move(bytes));
  f.map_ = const_cast<char*>(f.owned_->data());
  f.map_size_ = f.owned_->size();
  f.parse_header();
  return f;
}

void SafetensorsFile::parse_header() {
  const std::string& p = path_;
  uint64_t header_len;
  std::memcpy(&header_len, map_, 8);
  if (header_len > kMaxHeaderBytes)
    user_error("{}: header length {} is over the 100 MB limit (not a safetensors file?)", p,
               header_len);
  if (8 + header_len > map_size_)
    user_error("{}: header length {} goes beyond the end of the file ({} bytes; truncated?)", p,
               header_len, map_size_);
  data_start_ = 8 + header_len;
  const uint64_t buffer_size = map_size_ - data_start_;
  const char* text = static_cast<const char*>(map_) + 8;

  json header;
  try {
    header = json::parse(text, text + header_len);
  } catch (const json::parse_error& e) {
    user_error("{}: header is not valid JSON ({})", p, json_error_where(e, header_len));
  } catch (const json::exception& e) {  // e.g. out_of_range: a number too large for a double
    user_error("{}: header is not valid JSON ({})", p, json_reason(e));
  }
  if (!header.is_object())
    user_error("{}: header is {}, expected a JSON object", p, json_type(header));

  struct Range {
    uint64_t begin, end;
    const std::string* name;
  };
  std::vector<Range> ranges;
  for (auto it = header.begin(); it != header.end(); ++it) {
    const std::string& name = it.key();
    const json& e = it.value();
    if (name == "__metadata__") {
      if (!e.is_object())
        user_error("{}: __metadata__ is {}, expected an object of strings", p, json_type(e));
      for (auto m = e.begin(); m != e.end(); ++m) {
        if (!m.value().is_string())
          user_error("{}: __metadata__ '{}' is {}, expected a string", p, m.key(),
                     brief(m.value()));
        metadata_[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    if (!e.is_object())
      user_error(
          "{}: tensor '{}': entry is {}, expected an object with dtype, shape and "
          "data_offsets",
          p, name, json_type(e));
    TensorInfo ti;
    auto dt = e.find("dtype");
    if (dt == e.end() || !dt->is_string())
      user_error("{}: tensor '{}': dtype missing or not a string", p, name);
    ti.dtype = dt->get<std::string>();
    const DtypeEntry* d = find_dtype(ti.dtype);
    if (!d)
      user_error("{}: tensor '{}': unknown dtype '{}' (expected one of {})", p, name, ti.dtype,
                 known_dtypes());

    auto sh = e.find("shape");
    if (sh == e.end() || !sh->is_array())
      user_error("{}: tensor '{}': shape missing or not a list", p, name);
    for (const json& dim : *sh) {
      uint64_t v;
      if (!as_nonneg_int(dim, v) || v > uint64_t(std::numeric_limits<int64_t>::max()))
        user_error("{}: tensor '{}': shape {} must hold non-negative integers", p, name,
                   brief(*sh));
      ti.shape.push_back(int64_t(v));
    }

    auto off = e.find("data_offsets");
    uint64_t b = 0, en = 0;
    if (off == e.end() || !off->is_array() || off->size() != 2 || !as_nonneg_int((*off)[0], b) ||
        !as_nonneg_int((*off)[1], en))
      user_error("{}: tensor '{}': data_offsets {} must be [begin, end], two non-negative integers",
                 p, name, off == e.end() ? std::string("missing") : brief(*off));
    if (b > en)
      user_error("{}: tensor '{}': data_offsets [{}, {}] have begin > end", p, name, b, en);
    if (en > buffer_size)
      user_error(
          "{}: tensor '{}': data_offsets [{}, {}] go beyond the data buffer ({} bytes; "
          "truncated?)",
          p, name, b, en, buffer_size);
    ti.begin = b;
    ti.end = en;

    // Element count × size, without overflow.
    uint64_t need = d->size;
    bool overflow = false;
    for (int64_t dim : ti.shape) overflow |= __builtin_mul_overflow(need, uint64_t(dim), &need);
    if (overflow || need != en - b)
      user_error("{}: tensor '{}': data_offsets [{}, {}] hold {} bytes, but {} {} needs {}", p,
                 name, b, en, en - b, ti.dtype, shape_str(ti.shape),
                 overflow ? std::string("more than 2^64") : std::to_string(need));
    infos_.emplace(name, std::move(ti));
  }

  for (const auto& [name, ti] : infos_)
    if (ti.end > ti.begin) ranges.push_back({ti.begin, ti.end, &name});
  std::sort(ranges.begin(), ranges.end(), [](const Range& a, const Range& b) {
    return a.begin != b.begin ? a.begin < b.begin : *a.name < *b.name;
  });
  for (size_t i = 1; i < ranges.size(); ++i) {
    const Range& prev = ranges[i - 1];
    const Range& cur = ranges[i];
    if (cur.begin < prev.end)
      user_error("{}: tensors '{}' [{}, {}] and '{}' [{}, {}] overlap", p, *prev.name, prev.begin,
                 prev.end, *cur.name, cur.begin, cur.end);
  }

  names_.reserve(infos_.size());
  for (const auto& kv : infos_) names_.push_back(kv.first);
  std::sort(names_.begin(), names_.end(), [this](const std::string& a, const std::string& b) {
    const TensorInfo& x = infos_.at(a);
    const TensorInfo& y = infos_.at(b);
    return x.begin != y.begin ? x.begin < y.begin : a < b;
  });
}

SafetensorsFile::~SafetensorsFile() {
  close();
}

void SafetensorsFile::close() {
  if (map_ && !owned_) ::munmap(map_, map_size_);
  map_ = nullptr;
  owned_.reset();
}

SafetensorsFile::SafetensorsFile(SafetensorsFile&& o) noexcept
    : path_(std::move(o.path_)),
      map_(o.map_),
      owned_(std::move(o.owned_)),
      map_size_(o.map_size_),
      data_start_(o.data_start_),
      names_(std::move(o.names_)),
      infos_(std::move(o.infos_)),
      metadata_(std::move(o.metadata_)) {
  o.map_ = nullptr;
}

SafetensorsFile& SafetensorsFile::operator=(SafetensorsFile&& o) noexcept {
  if (this != &o) {
    close();
    path_ = std::move(o.path_);
    map_ = o.map_;
    owned_ = std::move(o.owned_);
    map_size_ = o.map_size_;
    data_start_ = o.data_start_;
    names_ = std::move(o.names_);
    infos_ = std::move(o.infos_);
    metadata_ = std::move(o.metadata_);
    o.map_ = nullptr;
  }
  return *this;
}

const TensorInfo& SafetensorsFile::info(const std::string& name) const {
  auto it = infos_.find(name);
  if (it == infos_.end())
    user_error("{}: no tensor named '{}' (the file has {} tensors)", path_, name, infos_.size());
  return it->second;
}

const uint8_t* SafetensorsFile::data(const std::string& name) const {
  return static_cast<const uint8_t*>(map_) + data_start_ + info(name).begin;
}

torch::Tensor SafetensorsFile::load(const std::string& name, std::optional<torch::ScalarType> dtype,
                                    torch::Device device) const {
  const TensorInfo& ti = info(name);
  const uint8_t* src = data(name);
  const uint64_t n = ti.nbytes();
  if (n >= (uint64_t(1) << 20)) {  // ask the kernel to read big tensors ahead of the copy
    const uintptr_t page = uintptr_t(::sysconf(_SC_PAGESIZE));
    uintptr_t start = reinterpret_cast<uintptr_t>(src) & ~(page - 1);
    ::madvise(reinterpret_cast<void*>(start), reinterpret_cast<uintptr_t>(src) + n - start,
              MADV_WILLNEED);
  }
  torch::Tensor t;
  if (ti.dtype == "F8_E4M3" || ti.dtype == "F8_E5M2") {
    const std::array<float, 256>& table = fp8_table(ti.dtype);
    t = torch::empty(ti.shape, torch::kFloat);
    float* out = t.data_ptr<float>();
    for (uint64_t i = 0; i < n; ++i) out[i] = table[src[i]];
  } else if (ti.dtype == "BOOL") {
    t = torch::empty(ti.shape, torch::kByte);
    if (n) std::memcpy(t.data_ptr(), src, n);
    t = t.ne(0);  // any non-zero byte is true; torch's bool must be exactly 0 or 1
  } else {
    t = torch::empty(ti.shape, find_dtype(ti.dtype)->load_as);
    if (n) std::memcpy(t.data_ptr(), src, n);
  }
  if (dtype && *dtype != t.scalar_type() && int64_t(c10::elementSize(*dtype)) < t.element_size())
    t = t.to(*dtype);  // narrow on the CPU before moving: fewer bytes to transfer
  if (t.device() != device) t = t.to(device);
  if (dtype && *dtype != t.scalar_type()) t = t.to(*dtype);
  return t;
}

// ---------------------------------------------------------------------------------------------
// Writing

namespace {

// Writes the file at `path`; errors about the tensors name `shown` (the path the caller asked for).
FileDigest write_file(const std::string& path, const std::string& shown,
                      const NamedTensors& tensors,
                      const std::map<std::string, std::string>& metadata) {
  struct Item {
    const std::string* name;
    std::string dtype;
    size_t elem;
  };
  std::set<std::string> seen;
  std::vector<Item> items;
  items.reserve(tensors.size());
  for (const auto& [name, tensor] : tensors) {
    if (name == "__metadata__") user_error("{}: '__metadata__' cannot be a tensor name", shown);
    if (!seen.insert(name).second) user_error("{}: tensor '{}' given twice", shown, name);
    if (!tensor.defined()) user_error("{}: tensor '{}' is undefined", shown, name);
    std::string dt;
    try {
      dt = safetensors_dtype_name(tensor.scalar_type());
    } catch (const UserError& e) {
      user_error("{}: tensor '{}': {}", shown, name, e.what());
    }
    items.push_back({&name, dt, safetensors_dtype_size(dt)});
  }
  // Largest elements first, then by name: every tensor starts at a multiple of its element size.
  std::vector<size_t> order(items.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    return items[a].elem != items[b].elem ? items[a].elem > items[b].elem
                                          : *items[a].name < *items[b].name;
  });

  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) {
    nlohmann::ordered_json m = nlohmann::ordered_json::object();
    for (const auto& [k, v] : metadata) m[k] = v;
    header["__metadata__"] = std::move(m);
  }
  uint64_t offset = 0;
  for (size_t i : order) {
    const torch::Tensor& t = tensors[i].second;
    uint64_t nbytes = uint64_t(t.numel()) * items[i].elem;
    nlohmann::ordered_json e = nlohmann::ordered_json::object();
    e["dtype"] = items[i].dtype;
    e["shape"] = t.sizes().vec();
    e["data_offsets"] = nlohmann::ordered_json::array({offset, offset + nbytes});
    header[*items[i].name] = std::move(e);
    offset += nbytes;
  }
  std::string text;
  try {
    text = header.dump();
  } catch (const nlohmann::json::exception& e) {
    user_error("{}: cannot write the header: tensor or metadata names must be UTF-8 ({})", shown,
               e.what());
  }
  while (text.size() % 8) text.push_back(' ');

  OutFile out(path);
  Xxh64 hash;
  auto put = [&](const void* p, size_t n) {
    out.write(p, n);
    hash.update(p, n);
  };
  uint64_t len = text.size();
  put(&len, 8);
  put(text.data(), text.size());
  for (size_t i : order) {
    const torch::Tensor& t = tensors[i].second;
    if (t.numel() == 0) continue;
    torch::Tensor c = t.detach().to(torch::kCPU).contiguous();
    put(c.data_ptr(), size_t(c.numel()) * items[i].elem);
  }
  out.sync();
  out.close();
  return {hash.bytes(), hash.digest()};
}

}  // namespace

FileDigest write_safetensors(const std::string& path, const NamedTensors& tensors,
                             const std::map<std::string, std::string>& metadata) {
  return write_file(path, path, tensors, metadata);
}

void save_safetensors(const std::string& path, const NamedTensors& tensors,
                      const std::map<std::string, std::string>& metadata) {
  std::string tmp = path + ".tmp-" + unique_suffix();
  try {
    write_file(tmp, path, tensors, metadata);
    if (::rename(tmp.c_str(), path.c_str()) != 0)
      user_error("{}: cannot rename {} into place ({})", path, tmp, std::strerror(errno));
  } catch (...) {
    ::unlink(tmp.c_str());
    throw;
  }
  fsync_dir(parent_dir(path));
}

// ---------------------------------------------------------------------------------------------
// ShardedSafetensors

ShardedSafetensors::ShardedSafetensors(const std::string& path) : path_(path) {
  const bool is_index = path.size() >= 5 && path.compare(path.size() - 5, 5, ".json") == 0;
  if (!is_index) {
    auto file = std::make_unique<SafetensorsFile>(path);
    names_ = file->names();
    metadata_ = file->metadata();
    for (const auto& n : names_) shard_of_[n] = 0;
    shard_paths_.push_back(path);
    shards_.push_back(std::move(file));
    return;
  }
  const json index = read_json_file(path);
  if (!index.is_object() || !index.contains("weight_map") || !index["weight_map"].is_object())
    user_error("{}: expected a JSON object with a \"weight_map\" object (tensor -> shard file)",
               path);
  if (index.contains("metadata")) {
    const json& m = index["metadata"];
    if (!m.is_object())
      user_error("{}: \"metadata\" is {}, expected an object", path, json_type(m));
    for (auto it = m.begin(); it != m.end(); ++it)
      metadata_[it.key()] =
          it.value().is_string() ? it.value().get<std::string>() : it.value().dump();
  }
  const fs::path dir = fs::path(path).parent_path();
  std::map<std::string, size_t> shard_index;
  const json& wm = index["weight_map"];
  for (auto it = wm.begin(); it != wm.end(); ++it) {
    if (!it.value().is_string() || it.value().get<std::string>().empty())
      user_error("{}: weight_map['{}'] is {}, expected a shard file name", path, it.key(),
                 brief(it.value()));
    const std::string shard = it.value().get<std::string>();
    auto found = shard_index.find(shard);
    if (found == shard_index.end()) {
      std::string shard_path = (dir / shard).string();
      std::error_code ec;
      if (!fs::is_regular_file(shard_path, ec))
        user_error("{}: shard '{}' (holding '{}') not found at {}", path, shard, it.key(),
                   shard_path);
      found = shard_index.emplace(shard, shard_paths_.size()).first;
      shard_paths_.push_back(shard_path);
    }
    shard_of_[it.key()] = found->second;
    names_.push_back(it.key());
  }
  shards_.resize(shard_paths_.size());
}

bool ShardedSafetensors::contains(const std::string& name) const {
  return shard_of_.count(name) > 0;
}

const SafetensorsFile& ShardedSafetensors::shard_for(const std::string& name) const {
  auto it = shard_of_.find(name);
  if (it == shard_of_.end())
    user_error("{}: no tensor named '{}' ({} tensors listed)", path_, name, names_.size());
  std::lock_guard<std::mutex> lock(mutex_);
  auto& shard = shards_[it->second];
  if (!shard) shard = std::make_unique<SafetensorsFile>(shard_paths_[it->second]);
  if (!shard->contains(name))
    user_error("{}: tensor '{}' is mapped to shard '{}', which does not contain it", path_, name,
               shard_paths_[it->second]);
  return *shard;
}

const TensorInfo& ShardedSafetensors::info(const std::string& name) const {
  return shard_for(name).info(name);
}

torch::Tensor ShardedSafetensors::load(const std::string& name,
                                       std::optional<torch::ScalarType> dtype,
                                       torch::Device device) const {
  return shard_for(name).load(name, dtype, device);
}

}  // namespace fluxtrain
