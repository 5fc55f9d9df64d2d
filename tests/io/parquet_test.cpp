// Parquet reader: a file written out byte by byte (so the fixture writer and the reader cannot
// share a mistake), round trips through the fixture writer for every codec × page version ×
// encoding, nulls at the struct and leaf levels, row groups and pages, and one specific one-line
// error per malformed or unsupported file.
#include "io/parquet.h"

#include <gtest/gtest.h>
#include <snappy-c.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <limits>

#include "fixtures/parquet_fixture.h"
#include "tmpdir.h"

using namespace fluxtrain;
using namespace fluxtrain::fixtures;
using fluxtrain::testing::error_of;
using fluxtrain::testing::TempDir;
using fluxtrain::testing::write_bytes;
using Strings = std::vector<std::optional<std::string>>;
using Ints = std::vector<std::optional<int64_t>>;

namespace {

std::string bytes(std::initializer_list<int> b) {
  std::string s;
  for (int x : b) s += char(uint8_t(x));
  return s;
}

// A parquet file written out by hand: one optional UTF8 column "text" holding "hi", null, "yo"
// in one row group: a dictionary page (PLAIN "hi", "yo") and one v1 data page (definition
// levels, then RLE_DICTIONARY indices), uncompressed. Thrift compact: a field header byte is
// (field id delta << 4) | type with types 5 = i32, 6 = i64, 8 = binary, 9 = list, 12 = struct;
// integers are zigzag varints (n -> 2n for n >= 0); a list header byte is (size << 4) | type.
std::string hand_worked_file() {
  std::string f = "PAR1";  // [0, 4): magic
  // [4, 17): PageHeader of the dictionary page.
  f += bytes({0x15, 0x04,  // 1: type (i32) = 2 DICTIONARY_PAGE
              0x15, 0x18,  // 2: uncompressed_page_size = 12
              0x15, 0x18,  // 3: compressed_page_size = 12
              0x4C,        // 7 (delta 4): dictionary_page_header (struct)
              0x15, 0x04,  //   1: num_values = 2
              0x15, 0x00,  //   2: encoding = 0 PLAIN
              0x00,        //   stop
              0x00});      // stop
  // [17, 29): the dictionary, PLAIN BYTE_ARRAYs: 4-byte little-endian length, then the bytes.
  f += bytes({0x02, 0x00, 0x00, 0x00, 'h', 'i', 0x02, 0x00, 0x00, 0x00, 'y', 'o'});
  // [29, 46): PageHeader of the data page.
  f += bytes({0x15, 0x00,  // 1: type = 0 DATA_PAGE
              0x15, 0x12,  // 2: uncompressed_page_size = 9
              0x15, 0x12,  // 3: compressed_page_size = 9
              0x2C,        // 5 (delta 2): data_page_header (struct)
              0x15, 0x06,  //   1: num_values = 3 (rows, nulls included)
              0x15, 0x10,  //   2: encoding = 8 RLE_DICTIONARY
              0x15, 0x06,  //   3: definition_level_encoding = 3 RLE
              0x15, 0x06,  //   4: repetition_level_encoding = 3 RLE
              0x00,        //   stop
              0x00});      // stop
  // [46, 55): the data page.
  f += bytes({0x02, 0x00, 0x00, 0x00,  // definition levels: 2 bytes of RLE/bit-packed hybrid
              0x03,                    //   bit-packed run header: (1 group of 8) << 1 | 1
              0x05,                    //   levels 1, 0, 1 at 1 bit each, LSB first: 0b101
              0x01,                    // dictionary index bit width: 1
              0x03,                    //   bit-packed run of 1 group
              0x02});                  //   indices 0, 1 (for the 2 defined rows): 0b10
  // [55, 126): the footer, FileMetaData.
  f += bytes({0x15, 0x02,                                   // 1: version = 1
              0x19, 0x2C,                                   // 2: schema, list of 2 structs
              0x48, 0x06, 's',  'c',  'h',  'e', 'm', 'a',  //   4: name = "schema"
              0x15, 0x02,                                   //   5: num_children = 1
              0x00,                                         //   stop
              0x15, 0x0C,                                   //   1: type = 6 BYTE_ARRAY
              0x25, 0x02,                                   //   3: repetition_type = 1 OPTIONAL
              0x18, 0x04, 't',  'e',  'x',  't',            //   4: name = "text"
              0x25, 0x00,                                   //   6: converted_type = 0 UTF8
              0x00,                                         //   stop
              0x16, 0x06,                                   // 3: num_rows (i64) = 3
              0x19, 0x1C,                                   // 4: row_groups, list of 1 struct
              0x19, 0x1C,                                   //   1: columns, list of 1 struct
              0x26, 0x08,                                   //     2: file_offset = 4
              0x1C,                                         //     3: meta_data (struct)
              0x15, 0x0C,                                   //       1: type = 6 BYTE_ARRAY
              0x19, 0x35, 0x00, 0x06, 0x10,                 //       2: encodings [0, 3, 8]
              0x19, 0x18, 0x04, 't',  'e',  'x', 't',       //       3: path_in_schema ["text"]
              0x15, 0x00,                                   //       4: codec = 0 UNCOMPRESSED
              0x16, 0x06,                                   //       5: num_values = 3
              0x16, 0x66,                                   //       6: total_uncompressed = 51
              0x16, 0x66,                                   //       7: total_compressed = 51
              0x26, 0x3A,                                   //       9: data_page_offset = 29
              0x26, 0x08,                                   //       11: dictionary_page_offset = 4
              0x00,                                         //       stop
              0x00,                                         //     stop
              0x16, 0x66,                                   //   2: total_byte_size = 51
              0x16, 0x06,                                   //   3: num_rows = 3
              0x00,                                         //   stop
              0x00});                                       // stop
  f += bytes({0x47, 0x00, 0x00, 0x00});                     // [126, 130): footer length 71
  f += "PAR1";                                              // [130, 134)
  return f;
}

// The hand-worked file with byte `at` changed from `was` (checked) to `now`.
std::string patched(size_t at, int was, int now) {
  std::string f = hand_worked_file();
  EXPECT_EQ(uint8_t(f.at(at)), uint8_t(was)) << "byte " << at;
  f[at] = char(uint8_t(now));
  return f;
}

// The hand-worked file's pages [0, 55) with another footer.
std::string with_footer(const std::string& footer) {
  std::string f = hand_worked_file().substr(0, 55) + footer;
  for (int i = 0; i < 4; ++i) f += char((footer.size() >> (8 * i)) & 0xff);
  return f + "PAR1";
}

const char* kName = "hand.parquet";

std::string from_hex(const std::string& hex) {
  std::string f;
  for (size_t i = 0; i + 1 < hex.size(); i += 2)
    f += char(std::stoi(hex.substr(i, 2), nullptr, 16));
  return f;
}

std::string open_error(const std::string& file) {
  return error_of([&] { ParquetReader::from_bytes(file, kName); });
}

std::string read_error(const std::string& file, const std::string& column = "text") {
  return error_of([&] { ParquetReader::from_bytes(file, kName).read_strings(0, column); });
}

std::string image(int i) {
  std::string s = "\x89PNG\r\n\x1a\n";
  for (int k = 0; k < 20 + 7 * i; ++k) s += char((i * 31 + k * 7) & 0xff);
  return s;
}

// Rows with every kind of null: the whole image, its bytes, its path, the text.
std::vector<HfImageTextRow> hf_rows(int n) {
  std::vector<HfImageTextRow> rows;
  for (int i = 0; i < n; ++i) {
    HfImageTextRow r;
    r.image_null = i % 7 == 3;
    if (i % 5 != 2) r.image_bytes = image(i % 4);  // repeats, so dictionaries have work
    if (i % 3 != 1) r.image_path = "img_" + std::to_string(i % 6) + ".png";
    if (i % 4 != 3) r.text = "a drawing of pokemon number " + std::to_string(i % 9);
    rows.push_back(r);
  }
  return rows;
}

void expect_hf(const ParquetReader& r, const std::vector<HfImageTextRow>& rows,
               const std::string& what) {
  size_t row = 0;
  for (int g = 0; g < r.num_row_groups(); ++g) {
    Strings b = r.read_strings(g, "image.bytes");
    Strings p = r.read_strings(g, "image.path");
    Strings t = r.read_strings(g, "text");
    ASSERT_EQ(int64_t(b.size()), r.row_group_rows(g)) << what;
    ASSERT_EQ(p.size(), b.size()) << what;
    ASSERT_EQ(t.size(), b.size()) << what;
    for (size_t i = 0; i < b.size(); ++i, ++row) {
      const HfImageTextRow& e = rows.at(row);
      EXPECT_EQ(b[i], e.image_null ? std::nullopt : e.image_bytes) << what << " row " << row;
      EXPECT_EQ(p[i], e.image_null ? std::nullopt : e.image_path) << what << " row " << row;
      EXPECT_EQ(t[i], e.text) << what << " row " << row;
    }
  }
  EXPECT_EQ(row, rows.size()) << what;
}

const char* codec_str(ParquetCodec c) {
  switch (c) {
    case ParquetCodec::kUncompressed:
      return "uncompressed";
    case ParquetCodec::kSnappy:
      return "snappy";
    case ParquetCodec::kGzip:
      return "gzip";
    case ParquetCodec::kZstd:
      return "zstd";
  }
  return "?";
}

const ParquetCodec kCodecs[] = {ParquetCodec::kUncompressed, ParquetCodec::kSnappy,
                                ParquetCodec::kGzip, ParquetCodec::kZstd};

// A one-column file from the fixture writer (one page, no dictionary unless asked).
std::string one_column(ParquetCodec codec, int version, const std::vector<std::string>& values,
                       bool dictionary = false) {
  ParquetFixtureColumn c{"text", ParquetType::kString, true, {}};
  for (const auto& v : values) c.cells.emplace_back(v);
  ParquetWriteOptions o;
  o.codec = codec;
  o.data_page_version = version;
  o.dictionary = dictionary;
  return parquet_fixture_bytes({{c}, {}, {}}, o);
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Hand-worked bytes

TEST(Parquet, ReadsAHandWorkedFile) {
  const std::string f = hand_worked_file();
  ASSERT_EQ(f.size(), 134u);
  ParquetReader r = ParquetReader::from_bytes(f, kName);
  EXPECT_EQ(r.num_rows(), 3);
  EXPECT_EQ(r.num_row_groups(), 1);
  EXPECT_EQ(r.row_group_rows(0), 3);
  ASSERT_EQ(r.columns().size(), 1u);
  const ParquetColumn& c = r.columns()[0];
  EXPECT_EQ(c.path, "text");
  EXPECT_EQ(c.physical_type, "BYTE_ARRAY");
  EXPECT_EQ(c.max_definition_level, 1);
  EXPECT_EQ(c.max_repetition_level, 0);
  EXPECT_TRUE(c.utf8);
  EXPECT_TRUE(r.has_column("text"));
  EXPECT_FALSE(r.has_column("image.bytes"));
  EXPECT_EQ(r.read_strings(0, "text"), (Strings{"hi", std::nullopt, "yo"}));
}

TEST(Parquet, ReadsAHandWorkedPlainInt32File) {
  // One REQUIRED INT32 column "n" = 7, -1, 300 in one PLAIN v1 page (no levels: never null).
  std::string f = "PAR1";
  f += bytes({0x15, 0x00,              // [4, 21) PageHeader 1: type = DATA_PAGE
              0x15, 0x18,              //   2: uncompressed_page_size = 12
              0x15, 0x18,              //   3: compressed_page_size = 12
              0x2C,                    //   5: data_page_header
              0x15, 0x06,              //     1: num_values = 3
              0x15, 0x00,              //     2: encoding = PLAIN
              0x15, 0x06,              //     3: definition_level_encoding = RLE (unused: no levels)
              0x15, 0x06,              //     4: repetition_level_encoding = RLE
              0x00, 0x00});            //     stop, stop
  f += bytes({0x07, 0x00, 0x00, 0x00,  // [21, 33) 7
              0xFF, 0xFF, 0xFF, 0xFF,  //   -1
              0x2C, 0x01, 0x00, 0x00});            //   300
  f += bytes({0x15, 0x02,                          // [33, 87) footer: 1: version = 1
              0x19, 0x2C,                          // 2: schema, 2 elements
              0x48, 0x01, 's',  0x15, 0x02, 0x00,  //   name "s", num_children 1
              0x15, 0x02,                          //   1: type = 1 INT32
              0x25, 0x00,                          //   3: repetition = 0 REQUIRED
              0x18, 0x01, 'n',  0x00,              //   4: name "n"
              0x16, 0x06,                          // 3: num_rows = 3
              0x19, 0x1C, 0x19, 0x1C,              // 4: row groups [ {1: columns [ {
              0x26, 0x08,                          //   2: file_offset = 4
              0x1C,                                //   3: meta_data
              0x15, 0x02,                          //     1: type INT32
              0x19, 0x15, 0x00,                    //     2: encodings [PLAIN]
              0x19, 0x18, 0x01, 'n',               //     3: path_in_schema ["n"]
              0x15, 0x00,                          //     4: codec UNCOMPRESSED
              0x16, 0x06,                          //     5: num_values 3
              0x16, 0x3A, 0x16, 0x3A,              //     6, 7: sizes 29, 29
              0x26, 0x08,                          //     9: data_page_offset = 4
              0x00, 0x00,                          //   } }]
              0x16, 0x3A, 0x16, 0x06,              //   2: total_byte_size 29, 3: num_rows 3
              0x00, 0x00});                        // } ] stop
  f += bytes({0x36, 0x00, 0x00, 0x00}) + "PAR1";   // footer length 54
  ASSERT_EQ(f.size(), 95u);
  ParquetReader r = ParquetReader::from_bytes(f, "n.parquet");
  ASSERT_EQ(r.columns().size(), 1u);
  EXPECT_EQ(r.columns()[0].physical_type, "INT32");
  EXPECT_EQ(r.columns()[0].max_definition_level, 0);
  EXPECT_EQ(r.read_ints(0, "n"), (Ints{7, -1, 300}));
}

TEST(Parquet, FixtureWriterMatchesTheHandWorkedLayout) {
  // The fixture writes the same values with the same structure; the reader reads both alike.
  ParquetFixtureColumn c{"text", ParquetType::kString, true, {"hi", std::monostate{}, "yo"}};
  ParquetWriteOptions o;
  o.codec = ParquetCodec::kUncompressed;
  const std::string f = parquet_fixture_bytes({{c}, {}, {}}, o);
  // Its pages hold the hand-worked dictionary and data bodies.
  const std::string hand = hand_worked_file();
  EXPECT_NE(f.find(hand.substr(17, 12)), std::string::npos);  // the dictionary
  EXPECT_NE(f.find(hand.substr(46, 9)), std::string::npos);   // levels and indices
  EXPECT_EQ(ParquetReader::from_bytes(f).read_strings(0, "text"),
            ParquetReader::from_bytes(hand).read_strings(0, "text"));
}

TEST(Parquet, ReadsAFileWrittenByArrowRs) {
  // Written by the Rust parquet crate (arrow-rs, through parquet-wasm 0.6.1) from an Arrow table
  // {image: struct<bytes: binary, path: string>, text: string}: snappy, dictionary pages, v1 data
  // pages, two row groups (3 + 2 rows), page statistics, a page index after the row groups and
  // the ARROW:schema metadata: the fields a real writer adds that the fixture does not.
  std::string hex =
      "504152311504151015144c15021500120000081c0400000089504e471500151215162c15061510150615061c"
      "3604280489504e47180489504e4711110000000920030000000312000002150c1935000610192805696d6167"
      "6505627974657315021606168401168c01263026001c3604280489504e47180489504e471111000015041524"
      "15284c15041500120000124405000000612e706e6705000000622e706e671500151415182c15061510150615"
      "061c36022805622e706e671805612e706e6711110000000a2403000000032200010302150c19350006101928"
      "05696d616765047061746815021606169e0116a601264426001c36022805622e706e671805612e706e671111"
      "00001504151a151e4c150415001200000d30050000006120636174000000001500151215162c150615101506"
      "15061c360228056120636174180011110000000920020000000305010302150c193500061019180474657874"
      "15021606168801169001263a26001c3602280561206361741800111100001504151e15224c15041500120000"
      "0f380300000078797a0400000089504e471500151215162c15041510150615061c580489504e47180378797a"
      "11110000000920020000000402010302150c1935000610192805696d61676505627974657315021604168c01"
      "169401263e26001c580489504e47180378797a111100001504151215164c1502150012000009200500000061"
      "2e706e671500151215162c15041510150615061c36022805612e706e671805612e706e671111000000092003"
      "0000000309000002150c1935000610192805696d616765047061746815021604168a01169201263226001c36"
      "022805612e706e671805612e706e67111100001504152415284c150415001200001244050000006120636174"
      "050000006120646f671500151215162c15041510150615061c58056120646f67180561206361741111000000"
      "0920020000000401010302150c1935000610191804746578741502160416980116a001264426001c58056120"
      "646f67180561206361741111000019110219180489504e4719180489504e4715021916040019110219180561"
      "2e706e67191805622e706e671502191602001911021918001918056120636174150219160200191102191803"
      "78797a19180489504e47150219160000191102191805612e706e67191805612e706e67150219160200191102"
      "19180561206361741918056120646f67150219160000191c1638155c16000000191c16c40215621600000019"
      "1c16ce04155616000000191c16ba06155616000000191c16a808156016000000191c16ba0a155c1600000015"
      "02195c480c6172726f775f736368656d6115040035021805696d616765150400150c25021805627974657300"
      "150c250218047061746825004c1c000000150c250218047465787425004c1c000000160a192c193c2694011c"
      "150c1935000610192805696d61676505627974657315021606168401168c01263826081c3604280489504e47"
      "180489504e4711110000168c0e151416f40b152e0026a6031c150c1935000610192805696d61676504706174"
      "6815021606169e0116a60126c4022680021c36022805622e706e671805612e706e671111000016a00e151616"
      "a20c15320026a4051c150c1935000610191804746578741502160616880116900126ce042694041c36022805"
      "612063617418001111000016b60e151616d40c15280016aa031606260816c203140000193c2690071c150c19"
      "35000610192805696d61676505627974657315021604168c0116940126ba0626fc051c580489504e47180378"
      "797a1111000016cc0e151616fc0c152c002688091c150c1935000610192805696d6167650470617468150216"
      "04168a0116920126a80826f6071c36022805612e706e671805612e706e671111000016e20e151616a80d1532"
      "0026960b1c150c1935000610191804746578741502160416980116a00126ba0a26f6091c58056120646f6718"
      "0561206361741111000016f80e151616da0d15320016ae03160426fc0516c603140200191c180c4152524f57"
      "3a736368656d6118d0022f2f2f2f2f2f514141414151414141414141414b414177414367414a414151414367"
      "4141414241414141414141515141434141494141414142414149414141414241414141414941414141774141"
      "41414241414141497a2f2f2f38554141414144414141414141414151554d414141414141414141487a2f2f2f"
      "3845414141416447563464414141414143302f2f2f2f4841414141417741414141414141454e654141414141"
      "4941414142454141414143414141414b7a2f2f2f2f592f2f2f2f464141414141774141414141414145464441"
      "414141414141414144492f2f2f2f424141414148426864476741414141414541415541424141446741504141"
      "5141414141494142414141414159414141414441414141414141415151514141414141414141414151414241"
      "4145414141414251414141474a356447567a414141414251414141476c745957646c4141414100181f706172"
      "717565742d72732028706172717565742d7761736d20302e362e3129193c1c00001c00001c00000099030000"
      "50415231";
  ParquetReader r = ParquetReader::from_bytes(from_hex(hex), "arrow-rs.parquet");
  EXPECT_EQ(r.created_by(), "parquet-rs (parquet-wasm 0.6.1)");
  ASSERT_EQ(r.num_row_groups(), 2);
  EXPECT_EQ(r.row_group_rows(0), 3);
  ASSERT_EQ(r.columns().size(), 3u);
  EXPECT_EQ(r.columns()[0].path, "image.bytes");
  EXPECT_EQ(r.columns()[0].max_definition_level, 2);
  EXPECT_TRUE(r.columns()[1].utf8);
  auto all = [&](const std::string& c) {
    Strings out;
    for (int g = 0; g < r.num_row_groups(); ++g)
      for (auto& v : r.read_strings(g, c)) out.push_back(v);
    return out;
  };
  EXPECT_EQ(all("image.bytes"), (Strings{"\x89PNG", std::nullopt, std::nullopt, "xyz", "\x89PNG"}));
  EXPECT_EQ(all("image.path"), (Strings{"a.png", std::nullopt, "b.png", std::nullopt, "a.png"}));
  EXPECT_EQ(all("text"), (Strings{"a cat", std::nullopt, "", "a cat", "a dog"}));
  EXPECT_EQ(r.key_value_metadata().at(0).first, "ARROW:schema");
}

TEST(Parquet, ListsColumnsOfAllKindsAndReadsTheOthers) {
  // Written by arrow-rs (parquet-wasm 0.6.1), zstd: {text: string, tags: list<string>, id: int64}
  // = ("a cat", ["cat"], 7), (null, null, 8), ("two dogs", ["dog", "dog"], 9). The list is
  // described (a repeated field: repetition level 1) and refused when read; the rest reads.
  const std::string hex =
      "504152311504152a153c4c1504150012000028b52ffd0048a900000500000061206361740800000074776f20"
      "646f67731500151215242c15061510150615061c3602280874776f20646f6773180561206361741111000000"
      "28b52ffd0048490000020000000305010302150c193500061019180474657874150c160616a80116cc012658"
      "26001c3602280874776f20646f677318056120636174111100001504151c152e4c1504150012000028b52ffd"
      "00487100000300000063617403000000646f671500152015322c15081510150615061c36022803646f671803"
      "636174111100000028b52ffd00488100000200000003080300000003f300010306150c193500061019380474"
      "616773046c697374046974656d150c1608169a0116be01264a26001c36022803646f67180363617411110000"
      "15041530153a4c1506150012000028b52ffd0048a5000060070008000900000000000000020060e001600115"
      "00151415262c15061510150615061c5808090000000000000018080700000000000000111100000028b52ffd"
      "004851000002000000060102032400150419350006101918026964150c160616b20116ce01265626001c1808"
      "0900000000000000180807000000000000003808090000000000000018080700000000000000111100001911"
      "02191805612063617419180874776f20646f6773150219160200191102191803636174191803646f67150219"
      "16020019110219180807000000000000001918080900000000000000150219160000191c1660157416000000"
      "191c168603157416000000191c16be051578160000001502196c480c6172726f775f736368656d6115060015"
      "0c250218047465787425004c1c0000003502180474616773150215064c3c000000350418046c697374150200"
      "150c250218046974656d25004c1c0000001504250218026964001606191c193c26d4011c150c193500061019"
      "180474657874150c160616a80116cc01266026081c3602280874776f20646f67731805612063617411110000"
      "16e408151416c40715380026fa031c150c193500061019380474616773046c697374046974656d150c160816"
      "9a0116be0126860326bc021c36022803646f6718036361741111000016f808151616fc07152a0026b6061c15"
      "0419350006101918026964150c160616b20116ce0126be0526e8041c18080900000000000000180807000000"
      "00000000380809000000000000001808070000000000000011110000168e09151616a608153e0016f4031606"
      "260816d804140000191c180c4152524f573a736368656d6118e0022f2f2f2f2f774142414141514141414141"
      "41414b414177414367414a414151414367414141424141414141414151514143414149414141414241414941"
      "4141414241414141414d414141436b414141415041414141415141414142342f2f2f2f474141414143414141"
      "4141414141454348414141414167414441414541417341434141414145414141414141414141424141414141"
      "414941414142705a41414172502f2f2f7867414141414d414141414141414244446741414141424141414143"
      "414141414b442f2f2f2f4d2f2f2f2f464141414141774141414141414145464441414141414141414143382f"
      "2f2f2f4241414141476c305a5730414141414142414141414852685a334d4141414141454141554142414144"
      "6741504141514141414149414241414141415941414141444141414141414141515551414141414141414141"
      "4151414241414541414141424141414148526c654851414141414100181f706172717565742d727320287061"
      "72717565742d7761736d20302e362e3129193c1c00001c00001c000000f302000050415231";
  ParquetReader r = ParquetReader::from_bytes(from_hex(hex), "lists.parquet");
  ASSERT_EQ(r.columns().size(), 3u);
  EXPECT_EQ(r.columns()[1].path, "tags.list.item");
  EXPECT_EQ(r.columns()[1].max_repetition_level, 1);
  EXPECT_EQ(r.columns()[1].max_definition_level, 3);  // tags optional, list repeated, item optional
  EXPECT_EQ(r.read_strings(0, "text"), (Strings{"a cat", std::nullopt, "two dogs"}));
  EXPECT_EQ(r.read_ints(0, "id"), (Ints{7, 8, 9}));
  EXPECT_EQ(error_of([&] { r.read_strings(0, "tags.list.item"); }),
            "lists.parquet: column 'tags.list.item' is a repeated field (lists are not supported)");
}

// ---------------------------------------------------------------------------------------------
// Round trips

TEST(Parquet, RoundTripsTheHuggingFaceLayoutInEveryCodecPageVersionAndEncoding) {
  const std::vector<HfImageTextRow> rows = hf_rows(40);
  const ParquetFixtureTable table = hf_image_text_table(rows);
  int files = 0;
  for (ParquetCodec codec : kCodecs)
    for (int version : {1, 2})
      for (int encoding : {0, 1, 2}) {  // PLAIN, RLE_DICTIONARY, PLAIN_DICTIONARY (format 1.0)
        ParquetWriteOptions o;
        o.codec = codec;
        o.data_page_version = version;
        o.dictionary = encoding != 0;
        o.legacy_dictionary = encoding == 2;
        o.row_group_rows = 16;  // 16 + 16 + 8 rows
        o.page_rows = 5;        // pages that cut across the runs
        const std::string what =
            fmt::format("{} v{} encoding {}", codec_str(codec), version, encoding);
        ParquetReader r = ParquetReader::from_bytes(parquet_fixture_bytes(table, o), what);
        ASSERT_EQ(r.num_rows(), 40) << what;
        ASSERT_EQ(r.num_row_groups(), 3) << what;
        EXPECT_EQ(r.row_group_rows(2), 8) << what;
        expect_hf(r, rows, what);
        ++files;
      }
  EXPECT_EQ(files, 24);
}

TEST(Parquet, DescribesTheHuggingFaceSchema) {
  ParquetReader r =
      ParquetReader::from_bytes(parquet_fixture_bytes(hf_image_text_table(hf_rows(3))));
  ASSERT_EQ(r.columns().size(), 3u);
  const auto& c = r.columns();
  EXPECT_EQ(c[0].path, "image.bytes");
  EXPECT_EQ(c[0].physical_type, "BYTE_ARRAY");
  EXPECT_EQ(c[0].max_definition_level, 2);  // image optional, bytes optional
  EXPECT_FALSE(c[0].utf8);
  EXPECT_EQ(c[1].path, "image.path");
  EXPECT_TRUE(c[1].utf8);
  EXPECT_EQ(c[1].max_definition_level, 2);
  EXPECT_EQ(c[2].path, "text");
  EXPECT_EQ(c[2].max_definition_level, 1);
  EXPECT_TRUE(c[2].utf8);
  EXPECT_TRUE(r.has_column("image.path"));
  EXPECT_FALSE(r.has_column("image"));
  ASSERT_EQ(r.key_value_metadata().size(), 1u);
  EXPECT_EQ(r.key_value_metadata()[0].first, "huggingface");
  EXPECT_EQ(r.created_by(), "fluxtrain parquet fixture");
}

TEST(Parquet, StructNullsAndLeafNullsAreBothNull) {
  // Definition levels of image.bytes: 0 = image null, 1 = image present but bytes null, 2 = set.
  std::vector<HfImageTextRow> rows(4);
  rows[0].image_null = true;
  rows[1].image_path = "only_path.png";
  rows[2].image_bytes = "BYTES";
  rows[2].image_path = "p.png";
  rows[2].text = "";
  rows[3].image_bytes = "";  // empty, not null
  for (ParquetCodec codec : kCodecs)
    for (int version : {1, 2}) {
      ParquetWriteOptions o;
      o.codec = codec;
      o.data_page_version = version;
      ParquetReader r =
          ParquetReader::from_bytes(parquet_fixture_bytes(hf_image_text_table(rows), o));
      EXPECT_EQ(r.read_strings(0, "image.bytes"),
                (Strings{std::nullopt, std::nullopt, "BYTES", ""}));
      EXPECT_EQ(r.read_strings(0, "image.path"),
                (Strings{std::nullopt, "only_path.png", "p.png", std::nullopt}));
      EXPECT_EQ(r.read_strings(0, "text"), (Strings{std::nullopt, std::nullopt, "", std::nullopt}));
    }
}

TEST(Parquet, RoundTripsIntsDoublesAndBooleans) {
  const int n = 300;
  ParquetFixtureTable t;
  ParquetFixtureColumn i32{"i32", ParquetType::kInt32, true, {}};
  ParquetFixtureColumn i64{"i64", ParquetType::kInt64, false, {}};
  ParquetFixtureColumn f32{"f32", ParquetType::kFloat, true, {}};
  ParquetFixtureColumn f64{"f64", ParquetType::kDouble, false, {}};
  ParquetFixtureColumn b{"flag", ParquetType::kBoolean, true, {}};
  ParquetFixtureColumn id{"meta.id", ParquetType::kInt64, true, {}};  // in a required struct
  Ints e32, e64, eid;
  std::vector<std::optional<double>> ef32, ef64;
  std::vector<std::optional<bool>> eb;
  for (int i = 0; i < n; ++i) {
    const bool null = i % 11 == 5;
    const int64_t v32 = i == 0   ? std::numeric_limits<int32_t>::min()
                        : i == 1 ? std::numeric_limits<int32_t>::max()
                                 : (i / 20) * (i % 2 ? -1 : 1);  // runs for RLE
    const int64_t v64 = i == 0   ? std::numeric_limits<int64_t>::min()
                        : i == 1 ? std::numeric_limits<int64_t>::max()
                                 : int64_t(i) * 1'000'000'007;
    i32.cells.push_back(null ? ParquetCell{} : ParquetCell{v32});
    e32.push_back(null ? std::nullopt : std::optional<int64_t>(v32));
    i64.cells.push_back(v64);
    e64.push_back(v64);
    const double fv = i == 2 ? -0.0 : i * 0.25 - 7;
    f32.cells.push_back(null ? ParquetCell{} : ParquetCell{fv});
    ef32.push_back(null ? std::nullopt : std::optional<double>(float(fv)));
    const double dv = i == 3 ? std::numeric_limits<double>::infinity() : std::sqrt(double(i));
    f64.cells.push_back(dv);
    ef64.push_back(dv);
    const bool bv = (i / 9) % 2 == 0 || i % 13 == 0;
    b.cells.push_back(i % 17 == 0 ? ParquetCell{} : ParquetCell{bv});
    eb.push_back(i % 17 == 0 ? std::nullopt : std::optional<bool>(bv));
    id.cells.push_back(i % 3 ? ParquetCell{int64_t(i)} : ParquetCell{});
    eid.push_back(i % 3 ? std::optional<int64_t>(i) : std::nullopt);
  }
  t.columns = {i32, i64, f32, f64, b, id};
  t.structs = {{"meta", false, {}}};
  for (ParquetCodec codec : kCodecs)
    for (int version : {1, 2})
      for (bool dictionary : {false, true}) {
        ParquetWriteOptions o;
        o.codec = codec;
        o.data_page_version = version;
        o.dictionary = dictionary;
        o.page_rows = 64;
        const std::string what =
            fmt::format("{} v{} dict {}", codec_str(codec), version, dictionary);
        ParquetReader r = ParquetReader::from_bytes(parquet_fixture_bytes(t, o), what);
        EXPECT_EQ(r.columns()[1].max_definition_level, 0) << what;
        EXPECT_EQ(r.columns()[5].path, "meta.id") << what;
        EXPECT_EQ(r.columns()[5].max_definition_level, 1) << what;  // the struct is required
        EXPECT_EQ(r.read_ints(0, "i32"), e32) << what;
        EXPECT_EQ(r.read_ints(0, "i64"), e64) << what;
        EXPECT_EQ(r.read_doubles(0, "f32"), ef32) << what;
        EXPECT_EQ(r.read_doubles(0, "f64"), ef64) << what;
        EXPECT_EQ(r.read_bools(0, "flag"), eb) << what;
        EXPECT_EQ(r.read_ints(0, "meta.id"), eid) << what;
        EXPECT_TRUE(std::signbit(*r.read_doubles(0, "f32")[2])) << what;
      }
}

TEST(Parquet, LargeDictionariesAndLongRuns) {
  // 1000 distinct strings (index bit width 10), long runs of one value, many pages.
  std::vector<HfImageTextRow> rows(5000);
  for (size_t i = 0; i < rows.size(); ++i) {
    if (i < 2000)
      rows[i].text = "caption " + std::to_string(i % 1000);
    else if (i < 4000)
      rows[i].text = "the same caption";
    // the rest: null text, null image (long runs of level 0)
    rows[i].image_null = i >= 4000;
    if (!rows[i].image_null) rows[i].image_bytes = std::string(1, char(i % 251));
  }
  for (int version : {1, 2}) {
    ParquetWriteOptions o;
    o.data_page_version = version;
    o.page_rows = 700;
    o.row_group_rows = 3000;
    ParquetReader r =
        ParquetReader::from_bytes(parquet_fixture_bytes(hf_image_text_table(rows), o));
    expect_hf(r, rows, "v" + std::to_string(version));
  }
}

TEST(Parquet, EmptyAndZeroRowFiles) {
  ParquetReader r = ParquetReader::from_bytes(parquet_fixture_bytes(hf_image_text_table({})));
  EXPECT_EQ(r.num_rows(), 0);
  ASSERT_EQ(r.num_row_groups(), 1);
  EXPECT_TRUE(r.read_strings(0, "text").empty());
  EXPECT_TRUE(r.read_strings(0, "image.bytes").empty());
}

TEST(Parquet, OpensFilesByPath) {
  TempDir tmp;
  const std::vector<HfImageTextRow> rows = hf_rows(12);
  const std::string p = tmp / "train-00000-of-00001.parquet";
  ParquetWriteOptions o;
  o.codec = ParquetCodec::kZstd;
  o.row_group_rows = 5;
  write_parquet_fixture(p, hf_image_text_table(rows), o);
  ParquetReader r(p);
  EXPECT_EQ(r.path(), p);
  EXPECT_EQ(r.file_bytes(), std::filesystem::file_size(p));
  expect_hf(r, rows, p);
  ParquetReader copy = r;  // copies share the mapping and outlive the original
  ParquetReader moved = std::move(r);
  expect_hf(copy, rows, "copy");
  expect_hf(moved, rows, "moved");

  EXPECT_EQ(error_of([&] { ParquetReader x(tmp / "missing.parquet"); }),
            tmp / "missing.parquet" + ": no such file");
  EXPECT_EQ(error_of([&] { ParquetReader x(tmp.str()); }),
            tmp.str() + ": is a directory, expected a .parquet file");
  write_bytes(tmp / "empty.parquet", "");
  EXPECT_EQ(error_of([&] { ParquetReader x(tmp / "empty.parquet"); }),
            tmp / "empty.parquet" + ": file is 0 bytes, too short for a parquet file (truncated?)");
}

TEST(Parquet, ReadsCheckTheColumnTypeNameAndRowGroup) {
  ParquetReader r = ParquetReader::from_bytes(hand_worked_file(), kName);
  EXPECT_EQ(error_of([&] { r.read_ints(0, "text"); }),
            "hand.parquet: column 'text' is BYTE_ARRAY; read_ints reads INT32 and INT64 columns");
  EXPECT_EQ(error_of([&] { r.read_strings(0, "caption"); }),
            "hand.parquet: no column 'caption' (columns: text)");
  EXPECT_EQ(error_of([&] { r.read_strings(1, "text"); }),
            "hand.parquet: row group 1 is out of range (the file has 1)");
  EXPECT_EQ(error_of([&] { r.row_group_rows(-1); }),
            "hand.parquet: row group -1 is out of range (the file has 1)");
}

// ---------------------------------------------------------------------------------------------
// Malformed files: one specific one-line error each

TEST(ParquetMalformed, TooShort) {
  EXPECT_EQ(open_error("PAR1PAR1"),
            "hand.parquet: file is 8 bytes, too short for a parquet file (truncated?)");
}

TEST(ParquetMalformed, Truncated) {
  const std::string f = hand_worked_file();
  EXPECT_EQ(open_error(f.substr(0, 100)),
            "hand.parquet: does not end with the parquet magic PAR1 (truncated?)");
}

TEST(ParquetMalformed, BadMagic) {
  std::string f = hand_worked_file();
  f[3] = '2';
  EXPECT_EQ(open_error(f),
            "hand.parquet: does not start with the parquet magic PAR1 (not a parquet file?)");
}

TEST(ParquetMalformed, EncryptedFooter) {
  std::string f = hand_worked_file();
  f.replace(f.size() - 4, 4, "PARE");
  EXPECT_EQ(open_error(f), "hand.parquet: the footer is encrypted (PARE), which is not supported");
}

TEST(ParquetMalformed, FooterLengthPastTheStart) {
  std::string f = patched(127, 0x00, 0x01);  // footer length 0x147 = 327 > 134 - 12
  EXPECT_EQ(open_error(f),
            "hand.parquet: footer length 327 goes past the start of the file (134 bytes; "
            "truncated?)");
}

TEST(ParquetMalformed, FooterCutShort) {
  EXPECT_EQ(open_error(with_footer(bytes({0x15}))),
            "hand.parquet: footer: truncated while reading FileMetaData.version (at byte 1 of 1)");
}

TEST(ParquetMalformed, FooterFieldOfTheWrongThriftType) {
  EXPECT_EQ(open_error(with_footer(bytes({0x15, 0x02, 0x15, 0x02, 0x00}))),
            "hand.parquet: footer: FileMetaData.schema has Thrift type i32, expected list (at "
            "byte 3 of 5)");
}

TEST(ParquetMalformed, FooterVarintTooLong) {
  EXPECT_EQ(open_error(with_footer(bytes({0x15, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01, 0x00}))),
            "hand.parquet: footer: varint for FileMetaData.version is longer than 5 bytes (at "
            "byte 6 of 8)");
}

TEST(ParquetMalformed, FooterListLongerThanTheFooter) {
  EXPECT_EQ(open_error(with_footer(bytes({0x15, 0x02, 0x19, 0xfc, 0xc0, 0x84, 0x3d, 0x00}))),
            "hand.parquet: footer: FileMetaData.schema claims 1000000 elements but only 1 bytes "
            "are left (at byte 7 of 8)");
}

TEST(ParquetMalformed, FooterNestedTooDeep) {
  std::string footer = bytes({0x15, 0x02});
  footer += char(0xEC);                               // field 15 (unknown): a struct...
  for (int i = 0; i < 40; ++i) footer += char(0x1C);  // ...holding a struct, 40 deep
  footer += std::string(41, '\0');
  EXPECT_EQ(open_error(with_footer(footer)),
            "hand.parquet: footer: Thrift structures nest deeper than 32 levels (at byte 34 of "
            "84)");
}

TEST(ParquetMalformed, FooterMissesARequiredField) {
  EXPECT_EQ(open_error(with_footer(bytes({0x15, 0x02, 0x00}))),
            "hand.parquet: footer: FileMetaData has no schema (required)");
}

TEST(ParquetMalformed, RepeatedField) {
  // text: repetition_type 1 OPTIONAL -> 2 REPEATED: listed, refused when read.
  ParquetReader r = ParquetReader::from_bytes(patched(73, 0x02, 0x04), kName);
  EXPECT_EQ(r.columns()[0].max_repetition_level, 1);
  EXPECT_EQ(error_of([&] { r.read_strings(0, "text"); }),
            "hand.parquet: column 'text' is a repeated field (lists are not supported)");
}

TEST(ParquetMalformed, NamesInMessagesStayOnOneLine) {
  std::string f = hand_worked_file();
  f[78] = '\n';  // the schema names the column "te\nt"; its chunk says "text"
  EXPECT_EQ(open_error(f),
            "hand.parquet: row group 0, column 'te?t': the chunk's path_in_schema is 'text'");
}

TEST(ParquetMalformed, RowCountsTooLargeToHold) {
  // 2^60 rows (zigzag 2^61: a 9-byte varint) in FileMetaData, the row group and the chunk: the
  // footer is consistent, the read refuses before allocating (and without overflowing).
  std::string footer = hand_worked_file().substr(55, 71);
  const std::string huge = bytes({0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x20});
  for (size_t at : {68u, 54u, 29u}) {  // RowGroup.num_rows, ColumnMetaData.num_values, num_rows
    ASSERT_EQ(footer[at], 0x06);
    footer.replace(at, 1, huge);
  }
  ParquetReader r = ParquetReader::from_bytes(with_footer(footer), kName);
  EXPECT_EQ(r.num_rows(), int64_t(1) << 60);
  EXPECT_EQ(error_of([&] { r.read_strings(0, "text"); }),
            fmt::format("hand.parquet: row group 0, column 'text': the rows would take the read "
                        "past its memory limit of {} bytes (corrupt file?)",
                        r.memory_limit()));
}

TEST(ParquetMalformed, SchemaTreeLargerThanItsList) {
  EXPECT_EQ(open_error(patched(68, 0x02, 0x04)),  // root num_children 1 -> 2
            "hand.parquet: footer: schema lists 2 elements, fewer than its tree needs");
}

TEST(ParquetMalformed, RowCountsDisagree) {
  EXPECT_EQ(open_error(patched(84, 0x06, 0x08)),  // FileMetaData.num_rows 3 -> 4
            "hand.parquet: footer: num_rows is 4 but the row groups hold 3");
  EXPECT_EQ(open_error(patched(109, 0x06, 0x08)),  // ColumnMetaData.num_values 3 -> 4
            "hand.parquet: row group 0, column 'text': the chunk holds 4 values for 3 rows");
}

TEST(ParquetMalformed, ChunkTypeDisagreesWithTheSchema) {
  EXPECT_EQ(open_error(patched(93, 0x0C, 0x02)),  // ColumnMetaData.type 6 -> 1 INT32
            "hand.parquet: row group 0, column 'text': the chunk stores INT32, the schema says "
            "BYTE_ARRAY");
}

TEST(ParquetMalformed, ChunkOutsideTheDataSection) {
  EXPECT_EQ(open_error(patched(113, 0x66, 0x68)),  // total_compressed_size 51 -> 52
            "hand.parquet: row group 0, column 'text': the chunk's bytes [4, 4 + 52) are not "
            "inside the data section [4, 55)");
}

TEST(ParquetMalformed, UnsupportedCodec) {
  EXPECT_EQ(read_error(patched(107, 0x00, 0x0E)),  // codec 0 -> 7 LZ4_RAW
            "hand.parquet: row group 0, column 'text': codec LZ4_RAW is not supported "
            "(UNCOMPRESSED, SNAPPY, GZIP or ZSTD)");
  EXPECT_EQ(read_error(patched(107, 0x00, 0x40)),  // codec 32
            "hand.parquet: row group 0, column 'text': codec codec 32 is not supported "
            "(UNCOMPRESSED, SNAPPY, GZIP or ZSTD)");
}

TEST(ParquetMalformed, PageHeaderPastTheChunk) {
  // total_compressed_size 51 -> 5: the chunk ends inside the first page header.
  EXPECT_EQ(read_error(patched(113, 0x66, 0x0A)),
            "hand.parquet: row group 0, column 'text', page 0 (at byte 4): page header: "
            "truncated while reading PageHeader.compressed_page_size (at byte 5 of 5)");
}

TEST(ParquetMalformed, PageBodyPastTheChunk) {
  // total_compressed_size 51 -> 20: the dictionary page's 12 bytes go past the chunk.
  EXPECT_EQ(read_error(patched(113, 0x66, 0x28)),
            "hand.parquet: row group 0, column 'text', page 0 (at byte 4): a page of 12 bytes "
            "runs past the end of the column chunk (7 bytes left)");
}

TEST(ParquetMalformed, DictionaryIndexOutOfRange) {
  // Index bit width 1 -> 2: the packed byte 0b10 now reads as index 2 of a 2-entry dictionary.
  EXPECT_EQ(read_error(patched(52, 0x01, 0x02)),
            "hand.parquet: row group 0, column 'text', page 1 (at byte 29): dictionary index 2 "
            "is out of range (the dictionary has 2 entries)");
}

TEST(ParquetMalformed, DictionaryIndexBitWidthOver32) {
  EXPECT_EQ(read_error(patched(52, 0x01, 33)),
            "hand.parquet: row group 0, column 'text', page 1 (at byte 29): dictionary index bit "
            "width 33 is over 32");
}

TEST(ParquetMalformed, NoDictionaryPage) {
  // The dictionary page's type DICTIONARY_PAGE -> INDEX_PAGE (skipped).
  EXPECT_EQ(read_error(patched(5, 0x04, 0x02)),
            "hand.parquet: row group 0, column 'text', page 1 (at byte 29): the page is "
            "RLE_DICTIONARY but the chunk has no dictionary page");
}

TEST(ParquetMalformed, UnsupportedEncoding) {
  EXPECT_EQ(read_error(patched(39, 0x10, 0x0A)),  // RLE_DICTIONARY -> 5 DELTA_BINARY_PACKED
            "hand.parquet: row group 0, column 'text', page 1 (at byte 29): encoding "
            "DELTA_BINARY_PACKED is not supported (PLAIN, RLE_DICTIONARY, PLAIN_DICTIONARY)");
}

TEST(ParquetMalformed, DefinitionLevelsPastThePage) {
  EXPECT_EQ(read_error(patched(46, 0x02, 0x64)),  // levels length 2 -> 100
            "hand.parquet: row group 0, column 'text', page 1 (at byte 29): definition levels "
            "of 100 bytes run past the page's 5");
}

TEST(ParquetMalformed, DefinitionLevelRunValueTooWide) {
  // The bit-packed run header 0x03 -> 0x06: an RLE run of 3 copies of the value 5 (1-bit levels).
  EXPECT_EQ(read_error(patched(50, 0x03, 0x06)),
            "hand.parquet: row group 0, column 'text', page 1 (at byte 29): definition levels: "
            "an RLE run's value 5 does not fit in 1 bits");
}

TEST(ParquetMalformed, FewerValuesThanTheChunkSays) {
  EXPECT_EQ(read_error(patched(37, 0x06, 0x04)),  // the data page's num_values 3 -> 2
            "hand.parquet: row group 0, column 'text', page 2 (at byte 55): the chunk ends after "
            "2 of its 3 values");
}

TEST(ParquetMalformed, MoreValuesThanTheChunkSays) {
  EXPECT_EQ(read_error(patched(37, 0x06, 0x08)),  // num_values 3 -> 4
            "hand.parquet: row group 0, column 'text', page 1 (at byte 29): the page holds 4 "
            "values, more than the 3 left of the chunk's 3");
}

TEST(ParquetMalformed, ByteArrayLengthPastThePage) {
  EXPECT_EQ(read_error(patched(17, 0x02, 0xC8)),  // the first dictionary entry's length 2 -> 200
            "hand.parquet: row group 0, column 'text', page 0 (at byte 4): BYTE_ARRAY value 0 "
            "of 2 has length 200, more than the 8 bytes left");
}

TEST(ParquetMalformed, UncompressedPageOfTheWrongSize) {
  EXPECT_EQ(read_error(patched(32, 0x12, 0x14)),  // uncompressed_page_size 9 -> 10
            "hand.parquet: row group 0, column 'text', page 1 (at byte 29): an uncompressed page "
            "holds 9 bytes, its header says 10");
}

TEST(ParquetMalformed, CorruptSnappyData) {
  const std::vector<std::string> values = {"hello snappy hello snappy hello snappy"};
  std::string f = one_column(ParquetCodec::kSnappy, 1, values);
  // The page body is snappy data: a varint length, then tagged elements. Break the first tag
  // (a literal) into a copy that reaches before the start of the output.
  const size_t body = f.find(bytes({0x30}));  // page body: uncompressed length 48
  ASSERT_NE(body, std::string::npos);
  f[body + 1] = char(0x05);  // tag: copy with 1-byte offset
  f[body + 2] = char(0xff);  //   offset 255 > what has been written
  EXPECT_EQ(read_error(f),
            "hand.parquet: row group 0, column 'text', page 0 (at byte 4): corrupt snappy data");
}

TEST(ParquetMalformed, SnappyDataOfTheWrongSize) {
  std::string f = one_column(ParquetCodec::kSnappy, 1, {"hello"});
  // Uncompressed page: 4 + 2 levels + 4 + 5 = 15 bytes; snappy's own length header says so too.
  const size_t body = f.find(bytes({0x0f, 0x38}));  // length 15, literal tag of 15 bytes
  ASSERT_NE(body, std::string::npos);
  f[body] = 0x0e;
  EXPECT_EQ(read_error(f),
            "hand.parquet: row group 0, column 'text', page 0 (at byte 4): SNAPPY data "
            "decompresses to 14 bytes, the page header says 15");
}

TEST(ParquetMalformed, CorruptZstdData) {
  std::string f = one_column(ParquetCodec::kZstd, 1, {"hello zstd"});
  const size_t magic = f.find(bytes({0x28, 0xb5, 0x2f, 0xfd}));
  ASSERT_NE(magic, std::string::npos);
  f[magic] = 0x29;
  EXPECT_EQ(read_error(f),
            "hand.parquet: row group 0, column 'text', page 0 (at byte 4): corrupt zstd data "
            "(Unknown frame descriptor)");
}

TEST(ParquetMalformed, ZstdDataOfTheWrongSize) {
  std::string f = one_column(ParquetCodec::kZstd, 2, {"hello zstd"});
  // v2 page header: uncompressed_page_size = levels (2) + values (14) = 16, zigzag 0x20.
  const size_t at = f.find(bytes({0x15, 0x06, 0x15, 0x20}));
  ASSERT_EQ(at, 4u);
  f[at + 3] = 0x22;  // 17
  EXPECT_EQ(read_error(f),
            "hand.parquet: row group 0, column 'text', page 0 (at byte 4): ZSTD data "
            "decompresses to 14 bytes, the page header says 15");
}

TEST(ParquetMalformed, CorruptGzipData) {
  std::string f = one_column(ParquetCodec::kGzip, 1, {"hello gzip"});
  const size_t magic = f.find(bytes({0x1f, 0x8b}));
  ASSERT_NE(magic, std::string::npos);
  f[magic + 2] = 0x07;  // compression method 8 (deflate) -> 7
  EXPECT_EQ(read_error(f),
            "hand.parquet: row group 0, column 'text', page 0 (at byte 4): corrupt gzip data "
            "(unknown compression method)");
}

TEST(ParquetMalformed, MemoryLimit) {
  ParquetReader r = ParquetReader::from_bytes(hand_worked_file(), kName);
  EXPECT_EQ(r.memory_limit(), (uint64_t(256) << 20) + 64 * 134);
  r.set_memory_limit(100);
  EXPECT_EQ(error_of([&] { r.read_strings(0, "text"); }),
            "hand.parquet: row group 0, column 'text': the rows would take the read past its "
            "memory limit of 100 bytes (corrupt file?)");
}
