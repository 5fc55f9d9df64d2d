// A focused reader of parquet files as Hugging Face `datasets` exports them (written by pyarrow):
// flat or struct-nested columns (repeated ones, lists and maps, are listed but not read), data
// pages v1 and v2, PLAIN and dictionary encodings, UNCOMPRESSED/SNAPPY/GZIP/ZSTD pages. The
// footer is read and checked at open; column chunks are decoded on request, one row group at a
// time. Every malformed or unsupported input is a one-line UserError naming the file (and the
// row group, column and page).
#pragma once
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace fluxtrain {

// One leaf of the schema (a column the file stores values for).
struct ParquetColumn {
  std::string path;           // dotted: "image.bytes", "text"
  std::string physical_type;  // "BYTE_ARRAY", "INT32", "INT64", "BOOLEAN", "FLOAT", "DOUBLE", ...
  int max_definition_level = 0;  // OPTIONAL and REPEATED fields on the path (0: never null)
  int max_repetition_level = 0;  // > 0 inside a repeated field (a list): such columns are
                                 // listed, and reading them is a UserError
  bool utf8 = false;             // a string (converted type UTF8 or logical type STRING)
  int type_length = 0;           // FIXED_LEN_BYTE_ARRAY's byte width
};

namespace parquet_detail {
struct FileData;      // the mapping (parquet_pages.h)
struct ColumnValues;  // a decoded column chunk (parquet_pages.h)
// One column chunk's metadata, checked at open.
struct ChunkMeta {
  int physical_type = 0;  // parquet's Type enum
  int codec = 0;          // parquet's CompressionCodec enum
  int64_t num_values = 0;
  uint64_t begin = 0, end = 0;  // the chunk's pages: a byte range inside the file
};
}  // namespace parquet_detail

// A parquet file, memory-mapped read-only (or bytes held in memory). Opening reads the footer
// and checks it: both magics, the footer length, the schema tree, every row group's column
// chunks against the schema (types, paths, value counts, byte ranges inside the file). Reads are
// const and safe to call concurrently; copies share the mapping.
class ParquetReader {
 public:
  explicit ParquetReader(const std::string& path);
  // The same reader over a whole file's bytes; `name` stands for the path in error messages.
  static ParquetReader from_bytes(std::string bytes, const std::string& name = "<memory>");
  ~ParquetReader();
  ParquetReader(const ParquetReader&);
  ParquetReader& operator=(const ParquetReader&);
  ParquetReader(ParquetReader&&) noexcept;
  ParquetReader& operator=(ParquetReader&&) noexcept;

  const std::string& path() const { return path_; }
  int64_t num_rows() const { return num_rows_; }
  int num_row_groups() const { return int(row_groups_.size()); }
  // UserError if g is out of range.
  int64_t row_group_rows(int g) const;
  // The schema's leaves in file order.
  const std::vector<ParquetColumn>& columns() const { return columns_; }
  bool has_column(const std::string& path) const;
  // UserError naming the columns there are if there is no such column.
  const ParquetColumn& column(const std::string& path) const;
  // The footer's key/value metadata (pyarrow's "ARROW:schema", datasets' "huggingface", ...).
  const std::vector<std::pair<std::string, std::string>>& key_value_metadata() const {
    return metadata_;
  }
  const std::string& created_by() const { return created_by_; }
  uint64_t file_bytes() const;

  // One value per row of row group g; nullopt where the value (or a struct above it) is null.
  // read_strings: BYTE_ARRAY and FIXED_LEN_BYTE_ARRAY leaves (the bytes as stored).
  std::vector<std::optional<std::string>> read_strings(int row_group,
                                                       const std::string& column) const;
  // INT32 and INT64 leaves, as int64.
  std::vector<std::optional<int64_t>> read_ints(int row_group, const std::string& column) const;
  // FLOAT and DOUBLE leaves, as double.
  std::vector<std::optional<double>> read_doubles(int row_group, const std::string& column) const;
  // BOOLEAN leaves.
  std::vector<std::optional<bool>> read_bools(int row_group, const std::string& column) const;

  // The most bytes one read may allocate (decompressed pages and values); a column whose
  // decoding would need more is a UserError. Default: 256 MiB + 64 × the file size.
  uint64_t memory_limit() const { return memory_limit_; }
  void set_memory_limit(uint64_t bytes) { memory_limit_ = bytes; }

 private:
  ParquetReader() = default;
  void parse_footer();
  // The chunk of `column` in `row_group` decoded, after checking that `reader` (the read_*
  // method's name) reads its physical type.
  parquet_detail::ColumnValues decode(int row_group, const std::string& column,
                                      const char* reader) const;

  std::string path_;
  std::shared_ptr<const parquet_detail::FileData> file_;
  int64_t num_rows_ = 0;
  std::vector<ParquetColumn> columns_;
  struct RowGroup {
    int64_t num_rows = 0;
    std::vector<parquet_detail::ChunkMeta> chunks;  // one per column, in columns_ order
  };
  std::vector<RowGroup> row_groups_;
  std::vector<std::pair<std::string, std::string>> metadata_;
  std::string created_by_;
  std::vector<std::pair<std::string, int>> column_index_;  // sorted by path
  uint64_t memory_limit_ = 0;
};

}  // namespace fluxtrain
