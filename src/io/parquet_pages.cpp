// Decoding one parquet column chunk (see parquet_pages.h): page headers (Thrift), page bodies
// decompressed (snappy, gzip, zstd) to exactly the size the header gives, definition levels and
// dictionary indices in the RLE/bit-packed hybrid, PLAIN values. Every count and length is
// checked against the bytes it lives in and every allocation against the read's memory limit.
#include "io/parquet_pages.h"

#include <fmt/format.h>
#include <snappy-c.h>
#include <zlib.h>
#include <zstd.h>

#include <algorithm>
#include <cstring>
#include <optional>
#include <string_view>

#include "core/errors.h"
#include "io/thrift_compact.h"

namespace fluxtrain::parquet_detail {
namespace {

using thrift::CompactReader;
using thrift::Field;

// The bytes one read may still allocate.
class Budget {
 public:
  Budget(uint64_t limit, const std::string& context) : limit_(limit), left_(limit), ctx_(context) {}
  void take(uint64_t n, const char* what) {
    if (n > left_) fail(what);
    left_ -= n;
  }
  // `count` items of `each` bytes, without overflowing the product.
  void take_n(uint64_t count, uint64_t each, const char* what) {
    if (each > 0 && count > left_ / each) fail(what);
    left_ -= count * each;
  }

 private:
  [[noreturn]] void fail(const char* what) const {
    user_error("{}: {} would take the read past its memory limit of {} bytes (corrupt file?)", ctx_,
               what, limit_);
  }
  uint64_t limit_, left_;
  const std::string& ctx_;
};

uint32_t load_le32(const uint8_t* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

uint64_t load_le64(const uint8_t* p) {
  uint64_t v;
  std::memcpy(&v, p, 8);
  return v;
}

int bit_width(uint32_t max_value) {
  int w = 0;
  while (w < 32 && (uint64_t(1) << w) <= max_value) ++w;
  return w;
}

// Decodes `count` values of `width` bits (0..32) from the RLE/bit-packed hybrid in [p, p + n)
// into out[0, count). A bit-packed run may end early when the values read fit in what is left.
void decode_hybrid(const uint8_t* p, size_t n, int width, uint32_t count, uint32_t* out,
                   const std::string& ctx, const char* what) {
  const uint64_t mask = width == 32 ? 0xffffffffull : (uint64_t(1) << width) - 1;
  size_t pos = 0;
  uint32_t done = 0;
  while (done < count) {
    if (pos >= n) user_error("{}: {} end after {} of {} values", ctx, what, done, count);
    uint64_t h = 0;
    for (int i = 0;; ++i) {
      if (i == 5) user_error("{}: {}: a run header varint is longer than 5 bytes", ctx, what);
      if (pos >= n) user_error("{}: {}: a run header is cut off", ctx, what);
      uint8_t b = p[pos++];
      h |= uint64_t(b & 0x7f) << (7 * i);
      if (!(b & 0x80)) break;
    }
    if (h > 0xffffffffull) user_error("{}: {}: a run header overflows 32 bits", ctx, what);
    const uint64_t left = count - done;
    if (h & 1) {  // bit-packed: (h >> 1) groups of 8 values, `width` bytes per group
      const uint64_t groups = h >> 1;
      if (groups == 0) user_error("{}: {}: an empty bit-packed run", ctx, what);
      const uint64_t take = std::min<uint64_t>(groups * 8, left);
      const uint64_t need = (take * uint64_t(width) + 7) / 8;
      if (need > n - pos)
        user_error("{}: {}: a bit-packed run needs {} bytes, {} are left", ctx, what, need,
                   n - pos);
      const uint8_t* q = p + pos;
      for (uint64_t j = 0; j < take; ++j) {
        const uint64_t bit = j * uint64_t(width);
        const size_t byte = size_t(bit >> 3);
        const int shift = int(bit & 7);
        const int nbytes = (shift + width + 7) / 8;
        uint64_t acc = 0;
        for (int k = 0; k < nbytes; ++k) acc |= uint64_t(q[byte + size_t(k)]) << (8 * k);
        out[done + j] = uint32_t((acc >> shift) & mask);
      }
      pos += size_t(std::min<uint64_t>(groups * uint64_t(width), n - pos));
      done += uint32_t(take);
    } else {  // a run of (h >> 1) copies of one value stored in ceil(width / 8) bytes
      const uint64_t run = h >> 1;
      if (run == 0) user_error("{}: {}: an RLE run of length 0", ctx, what);
      const size_t vbytes = size_t(width + 7) / 8;
      if (vbytes > n - pos) user_error("{}: {}: an RLE run's value is cut off", ctx, what);
      uint64_t v = 0;
      for (size_t k = 0; k < vbytes; ++k) v |= uint64_t(p[pos + k]) << (8 * k);
      pos += vbytes;
      if (v > mask)
        user_error("{}: {}: an RLE run's value {} does not fit in {} bits", ctx, what, v, width);
      const uint64_t take = std::min(run, left);
      std::fill(out + done, out + done + take, uint32_t(v));
      done += uint32_t(take);
    }
  }
}

// Appends `count` PLAIN-encoded values of the column's type from [p, p + n) to `out`.
void decode_plain(const ParquetColumn& col, int type, const uint8_t* p, size_t n, uint32_t count,
                  ColumnValues& out, Budget& budget, const std::string& ctx) {
  auto need = [&](uint64_t width, const char* name) {
    if (uint64_t(count) * width > n)
      user_error("{}: {} {} values need {} bytes, the page holds {}", ctx, count, name,
                 uint64_t(count) * width, n);
  };
  switch (type) {
    case kByteArray: {
      need(4, "BYTE_ARRAY");  // each at least its length
      size_t pos = 0;
      for (uint32_t i = 0; i < count; ++i) {
        if (n - pos < 4)
          user_error("{}: BYTE_ARRAY value {} of {}: its length is cut off", ctx, i, count);
        const uint32_t len = load_le32(p + pos);
        pos += 4;
        if (len > n - pos)
          user_error("{}: BYTE_ARRAY value {} of {} has length {}, more than the {} bytes left",
                     ctx, i, count, len, n - pos);
        budget.take(len, "a BYTE_ARRAY value");
        out.strings.emplace_back(reinterpret_cast<const char*>(p + pos), len);
        pos += len;
      }
      return;
    }
    case kFixedLenByteArray: {
      const uint64_t w = uint64_t(col.type_length);
      need(w, "FIXED_LEN_BYTE_ARRAY");
      budget.take_n(uint64_t(count), uint64_t(w), "FIXED_LEN_BYTE_ARRAY values");
      for (uint32_t i = 0; i < count; ++i)
        out.strings.emplace_back(reinterpret_cast<const char*>(p + i * w), size_t(w));
      return;
    }
    case kInt32:
      need(4, "INT32");
      for (uint32_t i = 0; i < count; ++i) out.ints.push_back(int32_t(load_le32(p + 4 * i)));
      return;
    case kInt64:
      need(8, "INT64");
      for (uint32_t i = 0; i < count; ++i) out.ints.push_back(int64_t(load_le64(p + 8 * i)));
      return;
    case kFloat:
      need(4, "FLOAT");
      for (uint32_t i = 0; i < count; ++i) {
        float f;
        std::memcpy(&f, p + 4 * i, 4);
        out.doubles.push_back(f);
      }
      return;
    case kDouble:
      need(8, "DOUBLE");
      for (uint32_t i = 0; i < count; ++i) {
        double d;
        std::memcpy(&d, p + 8 * i, 8);
        out.doubles.push_back(d);
      }
      return;
    case kBoolean:
      if ((uint64_t(count) + 7) / 8 > n)
        user_error("{}: {} BOOLEAN values need {} bytes, the page holds {}", ctx, count,
                   (uint64_t(count) + 7) / 8, n);
      for (uint32_t i = 0; i < count; ++i) out.ints.push_back((p[i / 8] >> (i % 8)) & 1);
      return;
    default:
      user_error("{}: {} values are not supported", ctx, physical_type_name(type));
  }
}

// Decompresses a page body to exactly `expected` bytes (in `buffer`, or the input itself when
// it is not compressed).
std::string_view decompress(int codec, const uint8_t* src, size_t n, uint64_t expected,
                            std::string& buffer, Budget& budget, const std::string& ctx) {
  const char* s = reinterpret_cast<const char*>(src);
  if (codec == kUncompressed) {
    if (n != expected)
      user_error("{}: an uncompressed page holds {} bytes, its header says {}", ctx, n, expected);
    return {s, n};
  }
  const std::string name = codec_name(codec);
  // Sizes the compressed data states itself are checked before the buffer is allocated.
  if (codec == kSnappy) {
    size_t len = 0;
    if (snappy_uncompressed_length(s, n, &len) != SNAPPY_OK)
      user_error("{}: corrupt snappy data (bad length header)", ctx);
    if (len != expected)
      user_error("{}: SNAPPY data decompresses to {} bytes, the page header says {}", ctx, len,
                 expected);
  } else if (codec == kZstd) {
    if (n == 0 && expected == 0) return {};
    // One frame that records its size: a size other than the header's is named as such.
    const unsigned long long content = ZSTD_getFrameContentSize(s, n);
    if (content != ZSTD_CONTENTSIZE_UNKNOWN && content != ZSTD_CONTENTSIZE_ERROR &&
        content != expected && ZSTD_findFrameCompressedSize(s, n) == n)
      user_error("{}: ZSTD data decompresses to {} bytes, the page header says {}", ctx, content,
                 expected);
  }
  budget.take(expected, "a decompressed page");
  buffer.assign(size_t(expected), '\0');
  char* dst = buffer.data();
  size_t got = 0;
  if (codec == kSnappy) {
    got = size_t(expected);
    if (snappy_uncompress(s, n, dst, &got) != SNAPPY_OK) user_error("{}: corrupt snappy data", ctx);
  } else if (codec == kZstd) {
    got = ZSTD_decompress(dst, size_t(expected), s, n);
    if (ZSTD_isError(got)) user_error("{}: corrupt zstd data ({})", ctx, ZSTD_getErrorName(got));
  } else if (codec == kGzip) {
    z_stream z{};
    if (inflateInit2(&z, 15 + 32) != Z_OK)  // 32: a gzip or zlib header, detected
      user_error("{}: cannot start a gzip decoder", ctx);
    struct End {
      z_stream* z;
      ~End() { inflateEnd(z); }
    } end{&z};
    z.next_in = const_cast<Bytef*>(src);
    z.avail_in = uInt(n);
    z.next_out = reinterpret_cast<Bytef*>(dst);
    z.avail_out = uInt(expected);
    while (true) {
      int ret = inflate(&z, Z_NO_FLUSH);
      if (ret == Z_STREAM_END) {
        if (z.avail_in == 0) break;
        if (inflateReset(&z) != Z_OK) user_error("{}: corrupt gzip data", ctx);
        continue;  // another gzip member
      }
      if (ret == Z_OK) continue;
      if (ret == Z_BUF_ERROR) {
        if (z.avail_out == 0)
          user_error("{}: GZIP data decompresses to more than the {} bytes the page header says",
                     ctx, expected);
        user_error("{}: corrupt gzip data (truncated)", ctx);
      }
      user_error("{}: corrupt gzip data ({})", ctx, z.msg ? z.msg : "error " + std::to_string(ret));
    }
    got = size_t(expected) - z.avail_out;
  } else {
    user_error("{}: codec {} is not supported (UNCOMPRESSED, SNAPPY, GZIP or ZSTD)", ctx, name);
  }
  if (got != expected)
    user_error("{}: {} data decompresses to {} bytes, the page header says {}", ctx, name, got,
               expected);
  return {dst, size_t(expected)};
}

struct PageHeader {
  int type = -1;
  int64_t uncompressed = -1, compressed = -1;
  // DATA_PAGE / DATA_PAGE_V2 / DICTIONARY_PAGE
  bool has_v1 = false, has_v2 = false, has_dict = false;
  int64_t num_values = -1, num_nulls = -1, num_rows = -1;
  int encoding = -1, def_encoding = -1;
  int64_t def_bytes = -1, rep_bytes = -1;
  bool v2_compressed = true;
};

PageHeader read_page_header(CompactReader& r) {
  PageHeader h;
  Field f;
  r.begin_struct();
  while (r.next_field(f)) {
    switch (f.id) {
      case 1:
        h.type = r.read_i32(f, "PageHeader.type");
        break;
      case 2:
        h.uncompressed = r.read_i32(f, "PageHeader.uncompressed_page_size");
        break;
      case 3:
        h.compressed = r.read_i32(f, "PageHeader.compressed_page_size");
        break;
      case 5:
      case 7:
      case 8: {
        const bool v1 = f.id == 5, dict = f.id == 7;
        (v1 ? h.has_v1 : dict ? h.has_dict : h.has_v2) = true;
        r.begin_struct_field(f, v1     ? "PageHeader.data_page_header"
                                : dict ? "PageHeader.dictionary_page_header"
                                       : "PageHeader.data_page_header_v2");
        Field g;
        while (r.next_field(g)) {
          const int id = g.id;
          if (id == 1) {
            h.num_values = r.read_i32(g, "num_values");
          } else if (v1 && id == 2) {
            h.encoding = r.read_i32(g, "DataPageHeader.encoding");
          } else if (v1 && id == 3) {
            h.def_encoding = r.read_i32(g, "DataPageHeader.definition_level_encoding");
          } else if (dict && id == 2) {
            h.encoding = r.read_i32(g, "DictionaryPageHeader.encoding");
          } else if (!v1 && !dict && id >= 2 && id <= 7) {
            if (id == 2) h.num_nulls = r.read_i32(g, "DataPageHeaderV2.num_nulls");
            if (id == 3) h.num_rows = r.read_i32(g, "DataPageHeaderV2.num_rows");
            if (id == 4) h.encoding = r.read_i32(g, "DataPageHeaderV2.encoding");
            if (id == 5)
              h.def_bytes = r.read_i32(g, "DataPageHeaderV2.definition_levels_byte_length");
            if (id == 6)
              h.rep_bytes = r.read_i32(g, "DataPageHeaderV2.repetition_levels_byte_length");
            if (id == 7) h.v2_compressed = r.read_bool(g, "DataPageHeaderV2.is_compressed");
          } else {
            r.skip(g.type);
          }
        }
        break;
      }
      default:
        r.skip(f.type);
    }
  }
  return h;
}

// The state of one chunk's decoding.
struct ChunkDecoder {
  const FileData& file;
  const ChunkMeta& chunk;
  const ParquetColumn& col;
  Budget& budget;
  std::string page_ctx;
  ColumnValues& out;
  bool has_dictionary = false;
  ColumnValues dictionary;  // its strings/ints/doubles hold the entries
  std::string buffer;       // the current page decompressed
  std::string dict_buffer;
  std::vector<uint32_t> scratch;  // levels, then indices

  size_t dictionary_size() const {
    return dictionary.strings.size() + dictionary.ints.size() + dictionary.doubles.size();
  }

  // Definition levels of `count` values in [p, p + n): appends present flags, returns how many
  // are defined.
  uint32_t levels(const uint8_t* p, size_t n, uint32_t count) {
    const uint32_t max = uint32_t(col.max_definition_level);
    scratch.resize(count);
    decode_hybrid(p, n, bit_width(max), count, scratch.data(), page_ctx, "definition levels");
    uint32_t defined = 0;
    for (uint32_t i = 0; i < count; ++i) {
      if (scratch[i] > max)
        user_error("{}: definition level {} is over the column's maximum {}", page_ctx, scratch[i],
                   max);
      defined += scratch[i] == max;
      out.present.push_back(scratch[i] == max);
    }
    return defined;
  }

  void values(int encoding, const uint8_t* p, size_t n, uint32_t count) {
    const int type = chunk.physical_type;
    if (encoding == kPlain) {
      decode_plain(col, type, p, n, count, out, budget, page_ctx);
    } else if (encoding == kPlainDictionary || encoding == kRleDictionary) {
      if (!has_dictionary)
        user_error("{}: the page is {} but the chunk has no dictionary page", page_ctx,
                   encoding_name(encoding));
      if (count == 0) return;
      if (n < 1) user_error("{}: dictionary indices are missing", page_ctx);
      const int width = p[0];
      if (width > 32) user_error("{}: dictionary index bit width {} is over 32", page_ctx, width);
      scratch.resize(count);
      decode_hybrid(p + 1, n - 1, width, count, scratch.data(), page_ctx, "dictionary indices");
      const size_t size = dictionary_size();
      for (uint32_t i = 0; i < count; ++i) {
        const uint32_t k = scratch[i];
        if (k >= size)
          user_error("{}: dictionary index {} is out of range (the dictionary has {} entries)",
                     page_ctx, k, size);
        if (!dictionary.strings.empty()) {
          budget.take(dictionary.strings[k].size(), "a dictionary value");
          out.strings.push_back(dictionary.strings[k]);
        } else if (!dictionary.ints.empty()) {
          out.ints.push_back(dictionary.ints[k]);
        } else {
          out.doubles.push_back(dictionary.doubles[k]);
        }
      }
    } else if (encoding == kRle && type == kBoolean) {
      if (n < 4) user_error("{}: RLE booleans: the length prefix is cut off", page_ctx);
      const uint32_t len = load_le32(p);
      if (len > n - 4)
        user_error("{}: RLE booleans have length {}, more than the {} bytes left", page_ctx, len,
                   n - 4);
      scratch.resize(count);
      decode_hybrid(p + 4, len, 1, count, scratch.data(), page_ctx, "RLE booleans");
      for (uint32_t i = 0; i < count; ++i) out.ints.push_back(scratch[i]);
    } else {
      user_error("{}: encoding {} is not supported (PLAIN, RLE_DICTIONARY, PLAIN_DICTIONARY{})",
                 page_ctx, encoding_name(encoding), type == kBoolean ? ", RLE" : "");
    }
  }

  void dictionary_page(const PageHeader& h, const uint8_t* body, bool seen_data) {
    if (!h.has_dict) user_error("{}: a DICTIONARY_PAGE without a dictionary_page_header", page_ctx);
    if (has_dictionary) user_error("{}: a second dictionary page", page_ctx);
    if (seen_data) user_error("{}: a dictionary page after data pages", page_ctx);
    if (h.num_values < 0) user_error("{}: the dictionary page has no num_values", page_ctx);
    if (h.encoding != kPlain && h.encoding != kPlainDictionary)
      user_error("{}: dictionary page encoding {} is not supported (PLAIN)", page_ctx,
                 encoding_name(h.encoding));
    if (chunk.physical_type == kBoolean)
      user_error("{}: a dictionary page for a BOOLEAN column", page_ctx);
    std::string_view v = decompress(chunk.codec, body, size_t(h.compressed),
                                    uint64_t(h.uncompressed), dict_buffer, budget, page_ctx);
    const uint64_t width = chunk.physical_type == kByteArray ? 4 : 1;  // bytes per entry, at least
    if (uint64_t(h.num_values) * width > v.size() && chunk.physical_type != kFixedLenByteArray)
      user_error("{}: the dictionary claims {} entries in {} bytes", page_ctx, h.num_values,
                 v.size());
    budget.take_n(uint64_t(h.num_values), sizeof(std::string), "the dictionary");
    decode_plain(col, chunk.physical_type, reinterpret_cast<const uint8_t*>(v.data()), v.size(),
                 uint32_t(h.num_values), dictionary, budget, page_ctx);
    has_dictionary = true;
  }

  // Returns the number of values (levels) the page holds.
  uint32_t data_page(const PageHeader& h, const uint8_t* body, uint64_t values_left) {
    const bool v2 = h.type == kDataPageV2;
    if (v2 ? !h.has_v2 : !h.has_v1)
      user_error("{}: a {} without its {}", page_ctx, page_type_name(h.type),
                 v2 ? "data_page_header_v2" : "data_page_header");
    if (h.num_values < 0) user_error("{}: the page has no num_values", page_ctx);
    if (uint64_t(h.num_values) > values_left)
      user_error("{}: the page holds {} values, more than the {} left of the chunk's {}", page_ctx,
                 h.num_values, values_left, chunk.num_values);
    if (h.encoding < 0) user_error("{}: the page has no encoding", page_ctx);
    const uint32_t count = uint32_t(h.num_values);
    const int max_def = col.max_definition_level;
    uint32_t defined = count;
    std::string_view vals;
    if (!v2) {
      std::string_view page = decompress(chunk.codec, body, size_t(h.compressed),
                                         uint64_t(h.uncompressed), buffer, budget, page_ctx);
      const uint8_t* p = reinterpret_cast<const uint8_t*>(page.data());
      size_t pos = 0;
      if (max_def > 0) {
        if (h.def_encoding != kRle)
          user_error("{}: definition levels encoded {} are not supported (RLE)", page_ctx,
                     encoding_name(h.def_encoding));
        if (page.size() < 4) user_error("{}: the definition levels' length is cut off", page_ctx);
        const uint32_t len = load_le32(p);
        if (len > page.size() - 4)
          user_error("{}: definition levels of {} bytes run past the page's {}", page_ctx, len,
                     page.size() - 4);
        defined = levels(p + 4, len, count);
        pos = 4 + size_t(len);
      } else {
        out.present.insert(out.present.end(), count, 1);
      }
      vals = page.substr(pos);
    } else {
      if (h.num_nulls < 0 || h.num_rows < 0 || h.def_bytes < 0 || h.rep_bytes < 0)
        user_error("{}: DATA_PAGE_V2 header lacks num_nulls, num_rows or level lengths", page_ctx);
      if (h.rep_bytes != 0)
        user_error("{}: {} bytes of repetition levels in a column that is not repeated", page_ctx,
                   h.rep_bytes);
      if (h.def_bytes > h.compressed || h.def_bytes > h.uncompressed)
        user_error("{}: definition levels of {} bytes run past the page's {}", page_ctx,
                   h.def_bytes, std::min(h.compressed, h.uncompressed));
      if (h.num_rows != h.num_values)
        user_error("{}: num_rows {} differs from num_values {} in a column that is not repeated",
                   page_ctx, h.num_rows, h.num_values);
      if (max_def > 0) {
        defined = levels(body, size_t(h.def_bytes), count);
      } else {
        if (h.def_bytes != 0)
          user_error("{}: {} bytes of definition levels in a column that has none", page_ctx,
                     h.def_bytes);
        out.present.insert(out.present.end(), count, 1);
      }
      if (int64_t(count - defined) != h.num_nulls)
        user_error("{}: num_nulls is {} but the definition levels hold {} nulls", page_ctx,
                   h.num_nulls, count - defined);
      const uint8_t* vp = body + h.def_bytes;
      const size_t vn = size_t(h.compressed - h.def_bytes);
      const uint64_t vexpected = uint64_t(h.uncompressed - h.def_bytes);
      vals = decompress(h.v2_compressed ? chunk.codec : int(kUncompressed), vp, vn, vexpected,
                        buffer, budget, page_ctx);
    }
    values(h.encoding, reinterpret_cast<const uint8_t*>(vals.data()), vals.size(), defined);
    return count;
  }
};

}  // namespace

ColumnValues decode_chunk(const FileData& file, const ChunkMeta& chunk, const ParquetColumn& col,
                          uint64_t memory_limit, const std::string& context) {
  Budget budget(memory_limit, context);
  const int codec = chunk.codec;
  if (codec != kUncompressed && codec != kSnappy && codec != kGzip && codec != kZstd)
    user_error("{}: codec {} is not supported (UNCOMPRESSED, SNAPPY, GZIP or ZSTD)", context,
               codec_name(codec));
  if (chunk.physical_type == kInt96) user_error("{}: INT96 values are not supported", context);
  // Per row: its present flag, a level or index, the value and its optional in the result.
  const uint64_t per_row = 1 + 4 + 2 * (sizeof(std::optional<std::string>) + sizeof(std::string));
  budget.take_n(uint64_t(chunk.num_values), per_row, "the rows");

  ColumnValues out;
  out.present.reserve(size_t(chunk.num_values));
  ChunkDecoder d{file, chunk, col, budget, context, out};
  uint64_t pos = chunk.begin, done = 0;
  const uint64_t total = uint64_t(chunk.num_values);
  bool seen_data = false;
  for (int page = 0; done < total; ++page) {
    d.page_ctx = fmt::format("{}, page {} (at byte {})", context, page, pos);
    if (pos >= chunk.end)
      user_error("{}: the chunk ends after {} of its {} values", d.page_ctx, done, total);
    CompactReader r(file.data + pos, size_t(chunk.end - pos), d.page_ctx + ": page header");
    PageHeader h = read_page_header(r);
    if (h.type < 0 || h.uncompressed < 0 || h.compressed < 0)
      user_error("{}: the page header lacks its type or sizes", d.page_ctx);
    const uint64_t body_at = pos + r.position();
    if (uint64_t(h.compressed) > chunk.end - body_at)
      user_error("{}: a page of {} bytes runs past the end of the column chunk ({} bytes left)",
                 d.page_ctx, h.compressed, chunk.end - body_at);
    const uint8_t* body = file.data + body_at;
    if (h.type == kDictionaryPage) {
      d.dictionary_page(h, body, seen_data);
    } else if (h.type == kDataPage || h.type == kDataPageV2) {
      done += d.data_page(h, body, total - done);
      seen_data = true;
    } else if (h.type != kIndexPage) {
      user_error("{}: unknown page type {}", d.page_ctx, h.type);
    }
    pos = body_at + uint64_t(h.compressed);
  }
  return out;
}

}  // namespace fluxtrain::parquet_detail
