// Writes the seed corpus for parquet_fuzz: valid files from the fixture writer in the layouts
// Hugging Face datasets use (image struct + text) for every codec × data page version ×
// encoding, flat files of every supported physical type, several row groups and pages, nulls,
// an empty table. Usage: parquet_seeds DIR
#include <cstdio>
#include <filesystem>
#include <string>

#include "fixtures/parquet_fixture.h"

using namespace fluxtrain::fixtures;
namespace fs = std::filesystem;

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: parquet_seeds DIR\n");
    return 2;
  }
  const fs::path dir = argv[1];
  fs::create_directories(dir);
  std::vector<HfImageTextRow> rows;
  for (int i = 0; i < 12; ++i) {
    HfImageTextRow r;
    r.image_null = i % 7 == 3;
    if (i % 5 != 2) r.image_bytes = std::string("\x89PNG\r\n\x1a\n") + std::string(i % 4, 'x');
    if (i % 3 != 1) r.image_path = "img_" + std::to_string(i % 3) + ".png";
    if (i % 4 != 3) r.text = "a caption " + std::to_string(i % 5);
    rows.push_back(r);
  }
  const ParquetFixtureTable hf = hf_image_text_table(rows);

  ParquetFixtureTable flat;
  ParquetFixtureColumn i32{"i32", ParquetType::kInt32, true, {}};
  ParquetFixtureColumn i64{"i64", ParquetType::kInt64, false, {}};
  ParquetFixtureColumn f32{"f32", ParquetType::kFloat, true, {}};
  ParquetFixtureColumn f64{"f64", ParquetType::kDouble, true, {}};
  ParquetFixtureColumn flag{"flag", ParquetType::kBoolean, true, {}};
  ParquetFixtureColumn id{"meta.id", ParquetType::kInt64, true, {}};
  for (int i = 0; i < 20; ++i) {
    i32.cells.push_back(i % 6 == 1 ? ParquetCell{} : ParquetCell{int64_t(i / 4 - 2)});
    i64.cells.push_back(int64_t(i) << 40);
    f32.cells.push_back(i % 5 ? ParquetCell{i * 0.5} : ParquetCell{});
    f64.cells.push_back(-1.0 / (i + 1));
    flag.cells.push_back(i % 7 ? ParquetCell{i % 3 == 0} : ParquetCell{});
    id.cells.push_back(i % 2 ? ParquetCell{int64_t(i)} : ParquetCell{});
  }
  flat.columns = {i32, i64, f32, f64, flag, id};
  flat.structs = {{"meta", false, {}}};

  const char* names[] = {"none", "snappy", "gzip", "zstd"};
  const ParquetCodec codecs[] = {ParquetCodec::kUncompressed, ParquetCodec::kSnappy,
                                 ParquetCodec::kGzip, ParquetCodec::kZstd};
  int n = 0;
  for (int c = 0; c < 4; ++c)
    for (int version : {1, 2})
      for (int enc : {0, 1, 2}) {
        ParquetWriteOptions o;
        o.codec = codecs[c];
        o.data_page_version = version;
        o.dictionary = enc != 0;
        o.legacy_dictionary = enc == 2;
        o.row_group_rows = enc == 1 ? 5 : 0;
        o.page_rows = enc == 0 ? 4 : 0;
        const std::string stem =
            std::string(names[c]) + "_v" + std::to_string(version) + "_e" + std::to_string(enc);
        write_parquet_fixture((dir / ("hf_" + stem + ".parquet")).string(), hf, o);
        write_parquet_fixture((dir / ("flat_" + stem + ".parquet")).string(), flat, o);
        n += 2;
      }
  write_parquet_fixture((dir / "empty.parquet").string(), hf_image_text_table({}));
  std::printf("%s (%d files)\n", dir.c_str(), n + 1);
  return 0;
}
