// IDX files: a small one written here byte by byte, plain and gzip'd (zlib); bad magic, other
// element types, truncation of header, data and gzip stream, trailing bytes; and the real
// Fashion-MNIST test set where Debian's dataset-fashion-mnist package has installed it.
#include "io/idx.h"

#include <gtest/gtest.h>
#include <zlib.h>

#include <filesystem>

#include "tmpdir.h"

using namespace fluxtrain;
using fluxtrain::testing::error_of;
using fluxtrain::testing::TempDir;
using fluxtrain::testing::write_bytes;

namespace {

std::string be32(uint32_t v) {
  return {char(v >> 24), char((v >> 16) & 0xff), char((v >> 8) & 0xff), char(v & 0xff)};
}

// An IDX file of unsigned bytes: magic 00 00 08 <ndim>, sizes, data.
std::string idx_bytes(const std::vector<uint32_t>& shape, const std::string& data, int type = 8) {
  std::string s = {0, 0, char(type), char(shape.size())};
  for (uint32_t d : shape) s += be32(d);
  return s + data;
}

void write_gz(const std::string& path, const std::string& bytes) {
  gzFile f = gzopen(path.c_str(), "wb9");
  ASSERT_NE(f, nullptr);
  ASSERT_EQ(gzwrite(f, bytes.data(), unsigned(bytes.size())), int(bytes.size()));
  ASSERT_EQ(gzclose(f), Z_OK);
}

std::string counting(size_t n) {
  std::string s;
  for (size_t i = 0; i < n; ++i) s.push_back(char((i * 7 + 3) % 256));
  return s;
}

}  // namespace

TEST(Idx, ReadsPlainAndGzippedFiles) {
  TempDir tmp;
  const std::string data = counting(2 * 3 * 4);
  const std::string bytes = idx_bytes({2, 3, 4}, data);
  write_bytes(tmp / "a-idx3-ubyte", bytes);
  write_gz(tmp / "a-idx3-ubyte.gz", bytes);
  for (const std::string name : {"a-idx3-ubyte", "a-idx3-ubyte.gz"}) {
    IdxArray a = read_idx(tmp / name);
    EXPECT_EQ(a.shape, (std::vector<int64_t>{2, 3, 4})) << name;
    EXPECT_EQ(std::string(a.data.begin(), a.data.end()), data) << name;
  }
  EXPECT_GT(std::filesystem::file_size(tmp / "a-idx3-ubyte.gz"), 0u);
  EXPECT_NE(std::filesystem::file_size(tmp / "a-idx3-ubyte.gz"), bytes.size());

  // Labels: one dimension. Sizes are big-endian: 0x00000102 = 258.
  IdxArray l = parse_idx(idx_bytes({258}, counting(258)), "labels");
  EXPECT_EQ(l.shape, (std::vector<int64_t>{258}));
  EXPECT_EQ(l.data.size(), 258u);
  EXPECT_EQ(l.data[257], uint8_t((257 * 7 + 3) % 256));
  // A zero-sized dimension holds no data.
  EXPECT_EQ(parse_idx(idx_bytes({0, 28, 28}, ""), "empty").shape,
            (std::vector<int64_t>{0, 28, 28}));
}

TEST(Idx, BadFilesNameTheProblem) {
  TempDir tmp;
  EXPECT_EQ(error_of([&] { read_idx(tmp / "none.gz"); }), tmp / "none.gz" + ": no such file");
  EXPECT_EQ(error_of([&] { parse_idx(std::string("\x01\x02\x08\x01", 4) + be32(1) + "x", "m"); }),
            "m: not an IDX file (bad magic 01 02 08 01)");
  EXPECT_EQ(error_of([&] { parse_idx(idx_bytes({1}, "abcd", 0x0D), "f"); }),
            "f: IDX element type 0x0d (float32) is not supported (only 0x08, unsigned byte)");
  EXPECT_EQ(error_of([&] { parse_idx(idx_bytes({1}, "a", 0x09), "s"); }),
            "s: IDX element type 0x09 (int8) is not supported (only 0x08, unsigned byte)");
  EXPECT_EQ(error_of([&] { parse_idx(idx_bytes({}, "a"), "z"); }), "z: IDX file has no dimensions");
  EXPECT_EQ(error_of([&] { parse_idx(std::string("\0\0", 2), "h"); }),
            "h: truncated IDX file (2 bytes; the header needs at least 4)");
  EXPECT_EQ(error_of([&] {
              parse_idx(idx_bytes({2, 3, 4}, "").substr(0, 10), "h");
            }),
            "h: truncated IDX file (10 bytes; the header of 3 dimensions needs 16)");
  EXPECT_EQ(error_of([&] {
              parse_idx(idx_bytes({2, 3, 4}, counting(20)), "d");
            }),
            "d: truncated IDX file (shape [2, 3, 4] needs 24 bytes of data, found 20)");
  EXPECT_EQ(error_of([&] {
              parse_idx(idx_bytes({2, 3}, counting(7)), "x");
            }),
            "x: IDX file is longer than shape [2, 3] needs (6 bytes of data; not IDX?)");
  EXPECT_EQ(error_of([&] {
              parse_idx(idx_bytes({0xffffffffu, 0xffffffffu, 0xffffffffu}, ""), "o");
            }),
            "o: IDX shape [4294967295, 4294967295, 4294967295] is too large (corrupt?)");

  // The same from files, plain and gzip'd.
  write_bytes(tmp / "t-idx1-ubyte", idx_bytes({100}, counting(60)));
  EXPECT_EQ(error_of([&] { read_idx(tmp / "t-idx1-ubyte"); }),
            tmp / "t-idx1-ubyte" +
                ": truncated IDX file (shape [100] needs 100 bytes of data, found 60)");
  write_gz(tmp / "t-idx1-ubyte.gz", idx_bytes({100}, counting(60)));
  EXPECT_EQ(error_of([&] { read_idx(tmp / "t-idx1-ubyte.gz"); }),
            tmp / "t-idx1-ubyte.gz" +
                ": truncated IDX file (shape [100] needs 100 bytes of data, found 60)");
  write_gz(tmp / "w.gz", idx_bytes({1}, "a", 0x0C));
  EXPECT_EQ(
      error_of([&] { read_idx(tmp / "w.gz"); }),
      tmp / "w.gz" + ": IDX element type 0x0c (int32) is not supported (only 0x08, unsigned byte)");

  // A gzip stream cut short, and one whose data was damaged (the CRC no longer matches).
  write_gz(tmp / "full.gz", idx_bytes({4096}, counting(4096)));
  const std::string gz = fluxtrain::testing::read_bytes(tmp / "full.gz");
  write_bytes(tmp / "cut.gz", gz.substr(0, gz.size() / 2));
  EXPECT_EQ(error_of([&] { read_idx(tmp / "cut.gz"); }),
            tmp / "cut.gz" + ": truncated gzip data (unexpected end of file)");
  std::string bad = gz;
  bad[bad.size() - 6] ^= 0x55;  // inside the CRC-32 trailer
  write_bytes(tmp / "crc.gz", bad);
  EXPECT_EQ(error_of([&] { read_idx(tmp / "crc.gz"); }),
            tmp / "crc.gz" + ": corrupt gzip data (incorrect data check)");
}

TEST(Idx, FashionMnistTestSet) {
  const std::string dir = "/usr/share/datasets/fashion-mnist";
  const std::string images = dir + "/t10k-images-idx3-ubyte.gz";
  const std::string labels = dir + "/t10k-labels-idx1-ubyte.gz";
  if (!std::filesystem::exists(images) || !std::filesystem::exists(labels))
    GTEST_SKIP() << dir << " is not installed (Debian package dataset-fashion-mnist)";
  IdxArray x = read_idx(images);
  IdxArray y = read_idx(labels);
  EXPECT_EQ(x.shape, (std::vector<int64_t>{10000, 28, 28}));
  EXPECT_EQ(x.data.size(), 10000u * 28 * 28);
  EXPECT_EQ(y.shape, (std::vector<int64_t>{10000}));
  ASSERT_EQ(y.data.size(), 10000u);
  std::vector<int> per_class(10, 0);
  for (uint8_t v : y.data) {
    ASSERT_LE(v, 9);
    ++per_class[v];
  }
  EXPECT_EQ(per_class, std::vector<int>(10, 1000));  // the test set is balanced
  // Pixels span the whole range; the borders are mostly background (0).
  EXPECT_EQ(*std::max_element(x.data.begin(), x.data.end()), 255);
  EXPECT_EQ(*std::min_element(x.data.begin(), x.data.end()), 0);
  EXPECT_EQ(x.data[0], 0);
}
