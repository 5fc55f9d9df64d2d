// The parquet reader's file and footer side (see parquet.h): the mapping, the magics and footer
// length, FileMetaData decoded from Thrift and checked (schema tree, row groups, column chunk
// metadata), and the typed reads over parquet_pages.cpp's chunk decoder.
#include "io/parquet.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <string_view>

#include "core/errors.h"
#include "io/files.h"
#include "io/parquet_pages.h"
#include "io/thrift_compact.h"

namespace fluxtrain {
namespace pd = parquet_detail;
using thrift::CompactReader;
using thrift::Field;

namespace parquet_detail {

std::string physical_type_name(int type) {
  static const char* names[] = {"BOOLEAN", "INT32",  "INT64",      "INT96",
                                "FLOAT",   "DOUBLE", "BYTE_ARRAY", "FIXED_LEN_BYTE_ARRAY"};
  if (type >= 0 && type < 8) return names[type];
  return fmt::format("type {}", type);
}

std::string codec_name(int codec) {
  static const char* names[] = {"UNCOMPRESSED", "SNAPPY", "GZIP", "LZO",
                                "BROTLI",       "LZ4",    "ZSTD", "LZ4_RAW"};
  if (codec >= 0 && codec < 8) return names[codec];
  return fmt::format("codec {}", codec);
}

std::string encoding_name(int encoding) {
  static const char* names[] = {"PLAIN",
                                "GROUP_VAR_INT",
                                "PLAIN_DICTIONARY",
                                "RLE",
                                "BIT_PACKED",
                                "DELTA_BINARY_PACKED",
                                "DELTA_LENGTH_BYTE_ARRAY",
                                "DELTA_BYTE_ARRAY",
                                "RLE_DICTIONARY",
                                "BYTE_STREAM_SPLIT",
                                "ALP"};
  if (encoding >= 0 && encoding < 11) return names[encoding];
  return fmt::format("encoding {}", encoding);
}

std::string page_type_name(int type) {
  static const char* names[] = {"DATA_PAGE", "INDEX_PAGE", "DICTIONARY_PAGE", "DATA_PAGE_V2"};
  if (type >= 0 && type < 4) return names[type];
  return fmt::format("page type {}", type);
}

FileData::~FileData() {
  if (map) ::munmap(map, size);
}

}  // namespace parquet_detail

namespace {

constexpr char kMagic[] = "PAR1";
constexpr int kMaxSchemaDepth = 16;  // nested structs beyond this are refused

struct SchemaElement {
  std::string name;
  int type = -1;  // -1: absent (a group)
  int type_length = 0;
  int repetition = -1;  // -1: absent
  int num_children = -1;
  bool utf8 = false;
};

struct RawChunk {
  bool has_meta = false;
  int type = -1, codec = -1;
  std::vector<std::string> path;
  int64_t num_values = -1, total_compressed = -1, data_page_offset = -1;
  int64_t dictionary_page_offset = -1;
};

struct RawRowGroup {
  int64_t num_rows = -1;
  std::vector<RawChunk> chunks;
};

std::string join_path(const std::vector<std::string>& parts) {
  std::string s;
  for (const auto& p : parts) s += (s.empty() ? "" : ".") + p;
  return s;
}

// A name for a one-line message: control characters as '?', cut short if long (names in a
// corrupt footer can be anything).
std::string shown(std::string_view s) {
  std::string out;
  for (char c : s.substr(0, 100)) out += (uint8_t(c) < 32 || c == 127) ? '?' : c;
  return s.size() > 100 ? out + "..." : out;
}

SchemaElement read_schema_element(CompactReader& r) {
  SchemaElement e;
  bool has_name = false;
  Field f;
  r.begin_struct();
  while (r.next_field(f)) {
    switch (f.id) {
      case 1:
        e.type = r.read_i32(f, "SchemaElement.type");
        break;
      case 2:
        e.type_length = r.read_i32(f, "SchemaElement.type_length");
        break;
      case 3:
        e.repetition = r.read_i32(f, "SchemaElement.repetition_type");
        break;
      case 4:
        e.name = std::string(r.read_binary(f, "SchemaElement.name"));
        has_name = true;
        break;
      case 5:
        e.num_children = r.read_i32(f, "SchemaElement.num_children");
        break;
      case 6:
        e.utf8 |= r.read_i32(f, "SchemaElement.converted_type") == 0;  // UTF8
        break;
      case 10: {  // LogicalType, a union: field 1 is StringType
        r.begin_struct_field(f, "SchemaElement.logicalType");
        Field u;
        while (r.next_field(u)) {
          if (u.id == 1) e.utf8 = true;
          r.skip(u.type);
        }
        break;
      }
      default:
        r.skip(f.type);
    }
  }
  if (!has_name) r.fail("a SchemaElement has no name");
  return e;
}

RawChunk read_column_chunk(CompactReader& r) {
  RawChunk c;
  Field f;
  r.begin_struct();
  while (r.next_field(f)) {
    if (f.id == 1) {
      std::string_view p = r.read_binary(f, "ColumnChunk.file_path");
      if (!p.empty())
        r.fail(fmt::format("a column chunk is in another file ('{}'), which is not supported",
                           shown(p)));
    } else if (f.id == 3) {
      c.has_meta = true;
      r.begin_struct_field(f, "ColumnChunk.meta_data");
      Field m;
      while (r.next_field(m)) {
        switch (m.id) {
          case 1:
            c.type = r.read_i32(m, "ColumnMetaData.type");
            break;
          case 2: {
            uint32_t n = r.begin_list(m, "ColumnMetaData.encodings", thrift::kI32);
            for (uint32_t i = 0; i < n; ++i) r.read_i32_element("ColumnMetaData.encodings");
            break;
          }
          case 3: {
            uint32_t n = r.begin_list(m, "ColumnMetaData.path_in_schema", thrift::kBinary);
            for (uint32_t i = 0; i < n; ++i)
              c.path.emplace_back(r.read_binary_element("ColumnMetaData.path_in_schema"));
            break;
          }
          case 4:
            c.codec = r.read_i32(m, "ColumnMetaData.codec");
            break;
          case 5:
            c.num_values = r.read_i64(m, "ColumnMetaData.num_values");
            break;
          case 7:
            c.total_compressed = r.read_i64(m, "ColumnMetaData.total_compressed_size");
            break;
          case 9:
            c.data_page_offset = r.read_i64(m, "ColumnMetaData.data_page_offset");
            break;
          case 11:
            c.dictionary_page_offset = r.read_i64(m, "ColumnMetaData.dictionary_page_offset");
            break;
          default:
            r.skip(m.type);
        }
      }
    } else if (f.id == 8 || f.id == 9) {
      r.fail("a column chunk is encrypted, which is not supported");
    } else {
      r.skip(f.type);
    }
  }
  return c;
}

RawRowGroup read_row_group(CompactReader& r) {
  RawRowGroup g;
  Field f;
  bool has_columns = false;
  r.begin_struct();
  while (r.next_field(f)) {
    if (f.id == 1) {
      has_columns = true;
      uint32_t n = r.begin_list(f, "RowGroup.columns", thrift::kStruct);
      for (uint32_t i = 0; i < n; ++i) g.chunks.push_back(read_column_chunk(r));
    } else if (f.id == 3) {
      g.num_rows = r.read_i64(f, "RowGroup.num_rows");
    } else {
      r.skip(f.type);
    }
  }
  if (!has_columns) r.fail("a RowGroup has no columns list");
  if (g.num_rows < 0) r.fail("a RowGroup has no num_rows or a negative one");
  return g;
}

// Builds the leaves of the schema tree under elements[i] (a group with `children` children),
// depth-first as the footer lists them. `path`: the names from the root's child down.
void build_leaves(const std::string& where, const std::vector<SchemaElement>& elements,
                  size_t& next, int children, std::vector<std::string>& path, int def_level,
                  int rep_level, std::vector<ParquetColumn>& leaves) {
  for (int c = 0; c < children; ++c) {
    if (next >= elements.size())
      user_error("{}: schema lists {} elements, fewer than its tree needs", where, elements.size());
    const SchemaElement& e = elements[next++];
    path.push_back(e.name);
    const std::string dotted = join_path(path);
    if (e.repetition < -1 || e.repetition > pd::kRepeated)
      user_error("{}: column '{}' has unknown repetition type {}", where, shown(dotted),
                 e.repetition);
    // A repeated field (a list, a map) is described, and refused when it is read.
    const int def = def_level + (e.repetition == pd::kRequired || e.repetition < 0 ? 0 : 1);
    const int rep = rep_level + (e.repetition == pd::kRepeated ? 1 : 0);
    if (e.num_children > 0) {
      if (int(path.size()) >= kMaxSchemaDepth)
        user_error("{}: schema nests deeper than {} levels at '{}'", where, kMaxSchemaDepth,
                   shown(dotted));
      build_leaves(where, elements, next, e.num_children, path, def, rep, leaves);
    } else {
      if (e.type < 0)
        user_error("{}: schema element '{}' has neither a type nor children", where, shown(dotted));
      if (e.type > pd::kFixedLenByteArray)
        user_error("{}: column '{}' has unknown physical type {}", where, shown(dotted), e.type);
      if (e.type == pd::kFixedLenByteArray && e.type_length < 0)
        user_error("{}: column '{}' has a negative type_length {}", where, shown(dotted),
                   e.type_length);
      ParquetColumn col;
      col.path = dotted;
      col.physical_type = pd::physical_type_name(e.type);
      col.max_definition_level = def;
      col.max_repetition_level = rep;
      col.utf8 = e.utf8;
      col.type_length = e.type == pd::kFixedLenByteArray ? e.type_length : 0;
      leaves.push_back(std::move(col));
    }
    path.pop_back();
  }
}

int physical_type_of(const ParquetColumn& c) {
  for (int t = 0; t < 8; ++t)
    if (c.physical_type == pd::physical_type_name(t)) return t;
  return -1;
}

}  // namespace

// ---------------------------------------------------------------------------------------------

ParquetReader::ParquetReader(const std::string& path) : path_(path) {
  const OpenedFile opened = open_regular_file(path, "a .parquet file");
  const int fd = opened.fd;
  auto file = std::make_shared<pd::FileData>();
  file->size = opened.size;
  if (file->size >= 12) {
    void* m = ::mmap(nullptr, file->size, PROT_READ, MAP_PRIVATE, fd, 0);
    int err = errno;
    if (m == MAP_FAILED) {
      ::close(fd);
      user_error("{}: mmap failed ({})", path, std::strerror(err));
    }
    file->map = m;
    file->data = static_cast<const uint8_t*>(m);
  }
  ::close(fd);
  file_ = std::move(file);
  parse_footer();
}

ParquetReader ParquetReader::from_bytes(std::string bytes, const std::string& name) {
  ParquetReader r;
  r.path_ = name;
  auto file = std::make_shared<pd::FileData>();
  file->owned = std::move(bytes);
  file->data = reinterpret_cast<const uint8_t*>(file->owned.data());
  file->size = file->owned.size();
  r.file_ = std::move(file);
  r.parse_footer();
  return r;
}

ParquetReader::~ParquetReader() = default;
ParquetReader::ParquetReader(const ParquetReader&) = default;
ParquetReader& ParquetReader::operator=(const ParquetReader&) = default;
ParquetReader::ParquetReader(ParquetReader&&) noexcept = default;
ParquetReader& ParquetReader::operator=(ParquetReader&&) noexcept = default;

uint64_t ParquetReader::file_bytes() const {
  return file_->size;
}

void ParquetReader::parse_footer() {
  const std::string& p = path_;
  const uint8_t* d = file_->data;
  const uint64_t size = file_->size;
  if (size < 12)
    user_error("{}: file is {} bytes, too short for a parquet file (truncated?)", p, size);
  if (std::memcmp(d, kMagic, 4) != 0)
    user_error("{}: does not start with the parquet magic PAR1 (not a parquet file?)", p);
  if (std::memcmp(d + size - 4, "PARE", 4) == 0)
    user_error("{}: the footer is encrypted (PARE), which is not supported", p);
  if (std::memcmp(d + size - 4, kMagic, 4) != 0)
    user_error("{}: does not end with the parquet magic PAR1 (truncated?)", p);
  uint32_t footer_len;
  std::memcpy(&footer_len, d + size - 8, 4);  // little-endian (x86, ARM)
  if (uint64_t(footer_len) > size - 12)
    user_error("{}: footer length {} goes past the start of the file ({} bytes; truncated?)", p,
               footer_len, size);
  const uint64_t footer_start = size - 8 - footer_len;
  memory_limit_ = (uint64_t(256) << 20) + 64 * size;

  // FileMetaData.
  CompactReader r(d + footer_start, footer_len, p + ": footer");
  std::vector<SchemaElement> schema;
  std::vector<RawRowGroup> groups;
  bool has_version = false, has_schema = false, has_rows = false, has_groups = false;
  Field f;
  r.begin_struct();
  while (r.next_field(f)) {
    switch (f.id) {
      case 1:
        r.read_i32(f, "FileMetaData.version");
        has_version = true;
        break;
      case 2: {
        has_schema = true;
        uint32_t n = r.begin_list(f, "FileMetaData.schema", thrift::kStruct);
        for (uint32_t i = 0; i < n; ++i) schema.push_back(read_schema_element(r));
        break;
      }
      case 3:
        num_rows_ = r.read_i64(f, "FileMetaData.num_rows");
        has_rows = true;
        break;
      case 4: {
        has_groups = true;
        uint32_t n = r.begin_list(f, "FileMetaData.row_groups", thrift::kStruct);
        for (uint32_t i = 0; i < n; ++i) groups.push_back(read_row_group(r));
        break;
      }
      case 5: {
        uint32_t n = r.begin_list(f, "FileMetaData.key_value_metadata", thrift::kStruct);
        for (uint32_t i = 0; i < n; ++i) {
          std::pair<std::string, std::string> kv;
          bool has_key = false;
          Field k;
          r.begin_struct();
          while (r.next_field(k)) {
            if (k.id == 1) {
              kv.first = std::string(r.read_binary(k, "KeyValue.key"));
              has_key = true;
            } else if (k.id == 2) {
              kv.second = std::string(r.read_binary(k, "KeyValue.value"));
            } else {
              r.skip(k.type);
            }
          }
          if (!has_key) r.fail("a KeyValue has no key");
          metadata_.push_back(std::move(kv));
        }
        break;
      }
      case 6:
        created_by_ = std::string(r.read_binary(f, "FileMetaData.created_by"));
        break;
      case 8:
      case 9:
        r.fail("the file is encrypted, which is not supported");
      default:
        r.skip(f.type);
    }
  }
  const char* missing = !has_version  ? "version"
                        : !has_schema ? "schema"
                        : !has_rows   ? "num_rows"
                        : !has_groups ? "row_groups"
                                      : nullptr;
  if (missing) user_error("{}: footer: FileMetaData has no {} (required)", p, missing);
  if (num_rows_ < 0) user_error("{}: footer: num_rows is negative ({})", p, num_rows_);

  // The schema tree: element 0 is the root group, its children follow depth-first.
  if (schema.empty()) user_error("{}: footer: the schema is empty", p);
  if (schema[0].num_children < 0)
    user_error("{}: footer: the schema root '{}' has no children count", p, shown(schema[0].name));
  size_t next = 1;
  std::vector<std::string> path;
  build_leaves(p + ": footer", schema, next, schema[0].num_children, path, 0, 0, columns_);
  if (next != schema.size())
    user_error("{}: footer: schema lists {} elements, but its tree has {}", p, schema.size(), next);
  for (size_t i = 0; i < columns_.size(); ++i) column_index_.emplace_back(columns_[i].path, i);
  std::sort(column_index_.begin(), column_index_.end());
  for (size_t i = 1; i < column_index_.size(); ++i)
    if (column_index_[i].first == column_index_[i - 1].first)
      user_error("{}: footer: two columns are named '{}'", p, shown(column_index_[i].first));

  // Row groups: one chunk per leaf, matching it, inside the data section.
  int64_t total_rows = 0;
  for (size_t g = 0; g < groups.size(); ++g) {
    RawRowGroup& rg = groups[g];
    if (rg.chunks.size() != columns_.size())
      user_error("{}: row group {} has {} column chunks, the schema has {} columns", p, g,
                 rg.chunks.size(), columns_.size());
    if (__builtin_add_overflow(total_rows, rg.num_rows, &total_rows))
      user_error("{}: footer: the row groups' row counts overflow", p);
    RowGroup out;
    out.num_rows = rg.num_rows;
    for (size_t c = 0; c < columns_.size(); ++c) {
      const RawChunk& rc = rg.chunks[c];
      const ParquetColumn& col = columns_[c];
      const std::string where = fmt::format("{}: row group {}, column '{}'", p, g, shown(col.path));
      if (!rc.has_meta) user_error("{}: the column chunk has no metadata", where);
      const char* missing_meta = rc.type < 0               ? "type"
                                 : rc.codec < 0            ? "codec"
                                 : rc.num_values < 0       ? "num_values"
                                 : rc.total_compressed < 0 ? "total_compressed_size"
                                 : rc.data_page_offset < 0 ? "data_page_offset"
                                                           : nullptr;
      if (missing_meta)
        user_error("{}: column metadata has no {} or a negative one", where, missing_meta);
      if (rc.type != physical_type_of(col))
        user_error("{}: the chunk stores {}, the schema says {}", where,
                   pd::physical_type_name(rc.type), col.physical_type);
      if (join_path(rc.path) != col.path)
        user_error("{}: the chunk's path_in_schema is '{}'", where, shown(join_path(rc.path)));
      if (col.max_repetition_level == 0 && rc.num_values != rg.num_rows)
        user_error("{}: the chunk holds {} values for {} rows", where, rc.num_values, rg.num_rows);
      // The chunk starts at its dictionary page when it has one (a 0 offset means none).
      int64_t begin = rc.data_page_offset;
      if (rc.dictionary_page_offset > 0 && rc.dictionary_page_offset < begin)
        begin = rc.dictionary_page_offset;
      int64_t end;
      if (begin < 4 || __builtin_add_overflow(begin, rc.total_compressed, &end) ||
          uint64_t(end) > footer_start)
        user_error("{}: the chunk's bytes [{}, {} + {}) are not inside the data section [4, {})",
                   where, begin, begin, rc.total_compressed, footer_start);
      pd::ChunkMeta m;
      m.physical_type = rc.type;
      m.codec = rc.codec;
      m.num_values = rc.num_values;
      m.begin = uint64_t(begin);
      m.end = uint64_t(end);
      out.chunks.push_back(m);
    }
    row_groups_.push_back(std::move(out));
  }
  if (total_rows != num_rows_)
    user_error("{}: footer: num_rows is {} but the row groups hold {}", p, num_rows_, total_rows);
}

int64_t ParquetReader::row_group_rows(int g) const {
  if (g < 0 || g >= num_row_groups())
    user_error("{}: row group {} is out of range (the file has {})", path_, g, num_row_groups());
  return row_groups_[size_t(g)].num_rows;
}

bool ParquetReader::has_column(const std::string& path) const {
  auto it = std::lower_bound(column_index_.begin(), column_index_.end(),
                             std::pair<std::string, int>(path, -1));
  return it != column_index_.end() && it->first == path;
}

const ParquetColumn& ParquetReader::column(const std::string& path) const {
  auto it = std::lower_bound(column_index_.begin(), column_index_.end(),
                             std::pair<std::string, int>(path, -1));
  if (it == column_index_.end() || it->first != path) {
    std::string names;
    for (const auto& c : columns_) names += (names.empty() ? "" : ", ") + shown(c.path);
    if (names.size() > 200) names = names.substr(0, 197) + "...";
    user_error("{}: no column '{}' (columns: {})", path_, shown(path), names);
  }
  return columns_[size_t(it->second)];
}

pd::ColumnValues ParquetReader::decode(int row_group, const std::string& column_path,
                                       const char* reader) const {
  const ParquetColumn& col = column(column_path);
  row_group_rows(row_group);  // range check
  const size_t index = size_t(&col - columns_.data());
  const int t = physical_type_of(col);
  const std::string_view r(reader);
  const bool ok = r == "read_strings"   ? (t == pd::kByteArray || t == pd::kFixedLenByteArray)
                  : r == "read_ints"    ? (t == pd::kInt32 || t == pd::kInt64)
                  : r == "read_doubles" ? (t == pd::kFloat || t == pd::kDouble)
                                        : t == pd::kBoolean;
  if (!ok) {
    const char* wants = r == "read_strings"   ? "BYTE_ARRAY and FIXED_LEN_BYTE_ARRAY"
                        : r == "read_ints"    ? "INT32 and INT64"
                        : r == "read_doubles" ? "FLOAT and DOUBLE"
                                              : "BOOLEAN";
    user_error("{}: column '{}' is {}; {} reads {} columns", path_, shown(col.path),
               col.physical_type, reader, wants);
  }
  if (col.max_repetition_level > 0)
    user_error("{}: column '{}' is a repeated field (lists are not supported)", path_,
               shown(col.path));
  const std::string context =
      fmt::format("{}: row group {}, column '{}'", path_, row_group, shown(col.path));
  return pd::decode_chunk(*file_, row_groups_[size_t(row_group)].chunks[index], col, memory_limit_,
                          context);
}

namespace {
template <typename T, typename V>
std::vector<std::optional<T>> assemble(const std::vector<uint8_t>& present,
                                       std::vector<V>& values) {
  std::vector<std::optional<T>> out;
  out.reserve(present.size());
  size_t k = 0;
  for (uint8_t p : present) {
    if (p)
      out.emplace_back(T(std::move(values[k++])));
    else
      out.emplace_back(std::nullopt);
  }
  return out;
}
}  // namespace

std::vector<std::optional<std::string>> ParquetReader::read_strings(
    int row_group, const std::string& column) const {
  pd::ColumnValues v = decode(row_group, column, "read_strings");
  return assemble<std::string>(v.present, v.strings);
}

std::vector<std::optional<int64_t>> ParquetReader::read_ints(int row_group,
                                                             const std::string& column) const {
  pd::ColumnValues v = decode(row_group, column, "read_ints");
  return assemble<int64_t>(v.present, v.ints);
}

std::vector<std::optional<double>> ParquetReader::read_doubles(int row_group,
                                                               const std::string& column) const {
  pd::ColumnValues v = decode(row_group, column, "read_doubles");
  return assemble<double>(v.present, v.doubles);
}

std::vector<std::optional<bool>> ParquetReader::read_bools(int row_group,
                                                           const std::string& column) const {
  pd::ColumnValues v = decode(row_group, column, "read_bools");
  return assemble<bool>(v.present, v.ints);
}

}  // namespace fluxtrain
