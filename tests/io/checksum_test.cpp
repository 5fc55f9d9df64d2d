// XXH64: reference digests (from the xxHash library), streaming in any pieces, whole files.
#include "io/checksum.h"

#include <gtest/gtest.h>

#include <string>

#include "tmpdir.h"

using namespace fluxtrain;
using fluxtrain::testing::TempDir;
using fluxtrain::testing::write_bytes;

namespace {
uint64_t xxh64(const std::string& s) {
  Xxh64 h;
  h.update(s.data(), s.size());
  return h.digest();
}
std::string pattern(size_t n) {  // byte i = (7 i + 3) mod 256
  std::string s(n, '\0');
  for (size_t i = 0; i < n; ++i) s[i] = char((i * 7 + 3) & 255);
  return s;
}
}  // namespace

TEST(Checksum, MatchesReferenceXxh64) {
  // Digests computed with libxxhash 0.8.1's XXH64(data, len, 0).
  EXPECT_EQ(xxh64(""), 0xef46db3751d8e999ULL);
  EXPECT_EQ(xxh64("a"), 0xd24ec4f1a98c6e5bULL);
  EXPECT_EQ(xxh64("abc"), 0x44bc2cf5ad770999ULL);
  EXPECT_EQ(xxh64("0123456789abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"),
            0x4d5c1ea57e188ac2ULL);
  EXPECT_EQ(xxh64(pattern(100003)), 0x924a64f3ae9ea839ULL);
  EXPECT_EQ(hex64(0x924a64f3ae9ea839ULL), "924a64f3ae9ea839");
  EXPECT_EQ(hex64(1), "0000000000000001");
}

TEST(Checksum, StreamingInPiecesEqualsOneShot) {
  const std::string data = pattern(100003);
  for (size_t piece : {1, 3, 7, 31, 32, 33, 4096, 65537}) {
    Xxh64 h;
    for (size_t at = 0; at < data.size(); at += piece)
      h.update(data.data() + at, std::min(piece, data.size() - at));
    EXPECT_EQ(h.digest(), 0x924a64f3ae9ea839ULL) << piece;
    EXPECT_EQ(h.bytes(), data.size());
  }
}

TEST(Checksum, WholeFile) {
  TempDir tmp;
  write_bytes(tmp / "f", pattern(100003));
  FileDigest d = file_xxh64(tmp / "f");
  EXPECT_EQ(d.bytes, 100003u);
  EXPECT_EQ(d.xxh64, 0x924a64f3ae9ea839ULL);
}
