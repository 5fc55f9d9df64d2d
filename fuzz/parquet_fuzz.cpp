// libFuzzer target for the parquet reader: each input is a whole file, opened with
// ParquetReader::from_bytes, then every column of every row group is read with the read_*
// method of its type (and with a mismatched one). A UserError is the expected answer to a
// malformed file; anything else (another exception type, a crash, a sanitizer report, a hang, a
// huge allocation) is a bug. Built by -DFLUXTRAIN_FUZZ=ON with clang; see scripts/fuzz.sh.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>

#include "core/errors.h"
#include "io/parquet.h"

using namespace fluxtrain;

namespace {

[[noreturn]] void bug(const char* kind, const char* what) {
  std::fprintf(stderr, "parquet_fuzz: %s escaped the reader: %s\n", kind, what);
  std::abort();
}

template <typename V>
size_t check_rows(const V& values, const ParquetReader& r, int g, const ParquetColumn& c) {
  if (int64_t(values.size()) != r.row_group_rows(g))
    bug("inconsistency", ("row count differs from the footer for " + c.path).c_str());
  size_t n = 0;
  for (const auto& v : values) n += v.has_value();
  return n;
}

// Reads one column chunk; a UserError (a corrupt page) is expected and ends only that read.
size_t read_column(const ParquetReader& r, int g, const ParquetColumn& c) {
  size_t total = 0;
  try {
    const std::string& t = c.physical_type;
    if (t == "BYTE_ARRAY" || t == "FIXED_LEN_BYTE_ARRAY") {
      auto v = r.read_strings(g, c.path);
      total += check_rows(v, r, g, c);
      for (const auto& s : v)
        if (s) total += s->size() ? uint8_t((*s)[s->size() - 1]) : 0;  // ASan checks the bytes
    } else if (t == "INT32" || t == "INT64") {
      total += check_rows(r.read_ints(g, c.path), r, g, c);
    } else if (t == "FLOAT" || t == "DOUBLE") {
      total += check_rows(r.read_doubles(g, c.path), r, g, c);
    } else if (t == "BOOLEAN") {
      total += check_rows(r.read_bools(g, c.path), r, g, c);
    }
  } catch (const UserError&) {
  }
  try {
    r.read_bools(g, c.path);  // the wrong reader for most columns: a UserError, or a read
  } catch (const UserError&) {
  }
  return total;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    ParquetReader r =
        ParquetReader::from_bytes(std::string(reinterpret_cast<const char*>(data), size), "fuzz");
    // Inputs are small: a lower limit keeps each one fast while still exercising the check.
    r.set_memory_limit(64u << 20);
    size_t total = 0;
    int64_t rows = 0;
    for (int g = 0; g < r.num_row_groups(); ++g) {
      rows += r.row_group_rows(g);
      for (const ParquetColumn& c : r.columns()) {
        if (!r.has_column(c.path)) bug("inconsistency", ("has_column misses " + c.path).c_str());
        total += read_column(r, g, c);
      }
    }
    if (rows != r.num_rows()) bug("inconsistency", "row groups do not add up to num_rows");
    try {
      r.read_strings(r.num_row_groups(), r.columns().empty() ? "x" : r.columns()[0].path);
      bug("inconsistency", "a read past the last row group did not throw");
    } catch (const UserError&) {
    }
    if (total == 42) std::fputc(' ', stderr);  // keep the reads from being optimised away
  } catch (const UserError&) {
    // The expected answer to a malformed file.
  } catch (const std::exception& e) {
    bug("std::exception", e.what());
  } catch (...) {
    bug("unknown exception", "");
  }
  return 0;
}
