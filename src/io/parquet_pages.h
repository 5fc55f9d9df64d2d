// Internals of the parquet reader shared by parquet.cpp (footer, schema) and parquet_pages.cpp
// (pages: headers, decompression, levels, values): the parquet enums' names, the file's bytes,
// and the decoding of one column chunk.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "io/parquet.h"

namespace fluxtrain::parquet_detail {

// parquet.thrift's enums (the values fluxtrain names or reads).
enum PhysicalType {
  kBoolean = 0,
  kInt32 = 1,
  kInt64 = 2,
  kInt96 = 3,
  kFloat = 4,
  kDouble = 5,
  kByteArray = 6,
  kFixedLenByteArray = 7,
};
enum Codec { kUncompressed = 0, kSnappy = 1, kGzip = 2, kZstd = 6 };
enum Encoding {
  kPlain = 0,
  kPlainDictionary = 2,
  kRle = 3,
  kBitPacked = 4,
  kRleDictionary = 8,
};
enum PageType { kDataPage = 0, kIndexPage = 1, kDictionaryPage = 2, kDataPageV2 = 3 };
enum Repetition { kRequired = 0, kOptional = 1, kRepeated = 2 };

// "BYTE_ARRAY", "SNAPPY", "RLE_DICTIONARY", "DATA_PAGE_V2" ("type 9" etc. for unknown values).
std::string physical_type_name(int type);
std::string codec_name(int codec);
std::string encoding_name(int encoding);
std::string page_type_name(int type);

// The whole file: a read-only mapping, or bytes held in memory.
struct FileData {
  const uint8_t* data = nullptr;
  uint64_t size = 0;
  void* map = nullptr;  // set when data is an mmap (unmapped by the destructor)
  std::string owned;    // from_bytes' bytes
  FileData() = default;
  FileData(const FileData&) = delete;
  FileData& operator=(const FileData&) = delete;
  ~FileData();
};

// A decoded column chunk: which rows have a value, and the values of those rows in order (in
// the vector of the column's kind: strings for BYTE_ARRAY and FIXED_LEN_BYTE_ARRAY, ints for
// INT32, INT64 and BOOLEAN, doubles for FLOAT and DOUBLE).
struct ColumnValues {
  std::vector<uint8_t> present;  // one per row: 1 where the leaf is defined (not null)
  std::vector<std::string> strings;
  std::vector<int64_t> ints;
  std::vector<double> doubles;
};

// Decodes every page of `chunk` for the leaf `column`. `context` starts each error message
// ("x.parquet: row group 0, column 'text'"); at most `memory_limit` bytes are allocated.
ColumnValues decode_chunk(const FileData& file, const ChunkMeta& chunk, const ParquetColumn& column,
                          uint64_t memory_limit, const std::string& context);

}  // namespace fluxtrain::parquet_detail
