// Tar reading: archives written here byte by byte (ustar with a name prefix, old GNU with a long
// name, pax path/size, base-256 sizes, directories and links), and every kind of damage a shard
// can have (bad checksum, a size that is not a number, a bad pax record, a truncated last
// member or header): reported with the file and byte offset, the members before still readable.
#include "io/tar.h"

#include <gtest/gtest.h>

#include <filesystem>

#include "fixtures/tar_fixture.h"
#include "tmpdir.h"

using namespace fluxtrain;
using fluxtrain::testing::error_of;
using fluxtrain::testing::TempDir;
using fluxtrain::testing::write_bytes;

namespace {

using fixtures::file_entry;
using fixtures::header;
using fixtures::kTarEnd;
using fixtures::octal;
using fixtures::padded;
using fixtures::pax_record;
using fixtures::put;
using fixtures::set_checksum;
using Format = fixtures::TarFormat;
const std::string& kEnd = kTarEnd;

std::vector<std::string> names(const std::vector<TarMember>& ms) {
  std::vector<std::string> out;
  for (const auto& m : ms) out.push_back(m.name);
  return out;
}

}  // namespace

TEST(Tar, UstarMembersInOrderWithOffsetsAndData) {
  const std::string a = "hello", b(700, 'b'), c = "";
  const std::string tar = file_entry("000001.jpg", a) + file_entry("000001.txt", b) +
                          file_entry("000002.json", c) + kEnd;
  TarListing l = scan_tar_bytes(tar, "s.tar");
  EXPECT_EQ(l.error, "");
  ASSERT_EQ(names(l.members),
            (std::vector<std::string>{"000001.jpg", "000001.txt", "000002.json"}));
  EXPECT_EQ(l.members[0].size, 5);
  EXPECT_EQ(l.members[0].data_offset, 512);
  EXPECT_EQ(l.members[0].header_offset, 0);
  EXPECT_EQ(l.members[1].size, 700);
  EXPECT_EQ(l.members[1].header_offset, 1024);
  EXPECT_EQ(l.members[1].data_offset, 1536);
  EXPECT_EQ(l.members[2].header_offset, 1536 + 1024);
  EXPECT_EQ(l.members[2].size, 0);
  EXPECT_TRUE(l.skipped.empty());
  EXPECT_EQ(read_tar_member_bytes(tar, l.members[0], "s.tar"), a);
  EXPECT_EQ(read_tar_member_bytes(tar, l.members[1], "s.tar"), b);
  EXPECT_EQ(read_tar_member_bytes(tar, l.members[2], "s.tar"), c);

  // The same from a file: list_tar, read_tar_member and TarReader agree.
  TempDir tmp;
  write_bytes(tmp / "s.tar", tar);
  std::vector<TarMember> ms = list_tar(tmp / "s.tar");
  ASSERT_EQ(ms.size(), 3u);
  EXPECT_EQ(read_tar_member(tmp / "s.tar", ms[1]), b);
  TarReader reader(tmp / "s.tar");
  ASSERT_EQ(reader.members().size(), 3u);
  EXPECT_EQ(reader.read(reader.members()[0]), a);
  EXPECT_EQ(reader.read(reader.members()[1]), b);
  EXPECT_EQ(reader.listing().error, "");

  // Without the end-of-archive blocks, or with only one, it reads the same.
  EXPECT_EQ(names(list_tar_bytes(tar.substr(0, tar.size() - 1024), "s.tar")), names(ms));
  EXPECT_EQ(names(list_tar_bytes(tar.substr(0, tar.size() - 512), "s.tar")), names(ms));
  // An empty file is an empty archive.
  EXPECT_TRUE(list_tar_bytes("", "e.tar").empty());
}

TEST(Tar, UstarPrefixOldGnuAndV7Names) {
  std::string tar = header("file.txt", 3, '0', Format::ustar, "deep/dir") + padded("abc") +
                    file_entry("gnu.txt", "gg", Format::gnu) +
                    file_entry("v7.txt", "v", Format::v7);
  // A v7 header with type '\0' is a regular file.
  std::string v7 = header("v7b.txt", 1, '\0', Format::v7);
  tar += v7 + padded("w") + kEnd;
  TarListing l = scan_tar_bytes(tar, "p.tar");
  EXPECT_EQ(l.error, "");
  EXPECT_EQ(names(l.members),
            (std::vector<std::string>{"deep/dir/file.txt", "gnu.txt", "v7.txt", "v7b.txt"}));
  EXPECT_EQ(read_tar_member_bytes(tar, l.members[0], "p.tar"), "abc");
  EXPECT_EQ(read_tar_member_bytes(tar, l.members[3], "p.tar"), "w");
}

TEST(Tar, GnuLongName) {
  const std::string long_name = std::string(150, 'n') + "/" + std::string(60, 'm') + ".jpg";
  const std::string tar = header("././@LongLink", int64_t(long_name.size() + 1), 'L', Format::gnu) +
                          padded(long_name + '\0') +
                          header(long_name.substr(0, 100), 4, '0', Format::gnu) + padded("data") +
                          file_entry("short.txt", "s", Format::gnu) + kEnd;
  TarListing l = scan_tar_bytes(tar, "l.tar");
  EXPECT_EQ(l.error, "");
  ASSERT_EQ(names(l.members), (std::vector<std::string>{long_name, "short.txt"}));
  EXPECT_EQ(l.members[0].header_offset, 0);  // where its first (long-name) header starts
  EXPECT_EQ(l.members[0].data_offset, 512 + 512 + 512);
  EXPECT_EQ(read_tar_member_bytes(tar, l.members[0], "l.tar"), "data");
  EXPECT_EQ(read_tar_member_bytes(tar, l.members[1], "l.tar"), "s");
}

TEST(Tar, PaxPathAndSizeOverrideTheHeader) {
  const std::string path = "ünïcode/" + std::string(120, 'p') + ".png";
  const std::string records = pax_record("mtime", "1700000000.5") + pax_record("path", path) +
                              pax_record("size", "6") + pax_record("SCHILY.xattr.k", "v=w");
  const std::string global = pax_record("comment", "made by hand");
  // The header itself says size 0 and a short name; the pax records win.
  const std::string tar = header("pax_global_header", int64_t(global.size()), 'g') +
                          padded(global) + header("PaxHeaders/x", int64_t(records.size()), 'x') +
                          padded(records) + header("short", 0, '0') + padded("sixsix") +
                          file_entry("after.txt", "after") + kEnd;
  TarListing l = scan_tar_bytes(tar, "x.tar");
  EXPECT_EQ(l.error, "");
  ASSERT_EQ(names(l.members), (std::vector<std::string>{path, "after.txt"}));
  EXPECT_EQ(l.members[0].size, 6);
  EXPECT_EQ(l.members[0].header_offset, 1024);  // the 'x' header (after the global one)
  EXPECT_EQ(read_tar_member_bytes(tar, l.members[0], "x.tar"), "sixsix");
  EXPECT_EQ(read_tar_member_bytes(tar, l.members[1], "x.tar"), "after");
  EXPECT_TRUE(l.skipped.empty());  // global headers are not entries
}

TEST(Tar, Base256Size) {
  std::string h = header("big.bin", 0, '0');
  std::string field(12, '\0');
  field[0] = char(0x80);
  field[10] = 0x02;  // 0x0203 = 515 bytes
  field[11] = 0x03;
  put(h, 124, field);
  set_checksum(h);
  const std::string data(515, 'z');
  const std::string tar = h + padded(data) + kEnd;
  std::vector<TarMember> ms = list_tar_bytes(tar, "b.tar");
  ASSERT_EQ(ms.size(), 1u);
  EXPECT_EQ(ms[0].size, 515);
  EXPECT_EQ(read_tar_member_bytes(tar, ms[0], "b.tar"), data);
}

TEST(Tar, DirectoriesAndLinksAreListedAsSkipped) {
  const std::string tar = header("imgs/", 0, '5') + header("imgs/link.jpg", 0, '2') +
                          header("imgs/hard.jpg", 0, '1') +
                          header("old-dir/", 0, '\0', Format::v7) + header("fifo", 0, '6') +
                          file_entry("imgs/a.jpg", "AAAA") + header("weird", 3, 'Z') +
                          padded("zzz") + file_entry("imgs/b.jpg", "B") + kEnd;
  TarListing l = scan_tar_bytes(tar, "d.tar");
  EXPECT_EQ(l.error, "");
  EXPECT_EQ(names(l.members), (std::vector<std::string>{"imgs/a.jpg", "imgs/b.jpg"}));
  EXPECT_EQ(read_tar_member_bytes(tar, l.members[1], "d.tar"), "B");
  std::vector<std::string> skipped;
  for (const auto& s : l.skipped) skipped.push_back(s.name + ": " + s.what);
  EXPECT_EQ(skipped, (std::vector<std::string>{"imgs/: directory", "imgs/link.jpg: symbolic link",
                                               "imgs/hard.jpg: hard link", "old-dir/: directory",
                                               "fifo: FIFO", "weird: unknown entry type"}));
  EXPECT_EQ(l.skipped[0].type, '5');
  EXPECT_EQ(l.skipped[1].header_offset, 512);
}

TEST(Tar, LongLinkNamesAndSparseFilesArePassedOver) {
  const std::string target = std::string(130, 't');
  const std::string sparse_pax = pax_record("GNU.sparse.major", "1") +
                                 pax_record("GNU.sparse.name", "holes.bin") +
                                 pax_record("GNU.sparse.realsize", "1000000");
  const std::string tar =
      header("././@LongLink", int64_t(target.size() + 1), 'K', Format::gnu) +
      padded(target + '\0') + header("link", 0, '2', Format::gnu) +  // a long symlink
      header("old-sparse.bin", 700, 'S', Format::gnu) + padded(std::string(700, 's')) +
      header("PaxHeaders/s", int64_t(sparse_pax.size()), 'x') + padded(sparse_pax) +
      header("GNUSparseFile.0/holes.bin", 10, '0') + padded("map+chunks") +
      file_entry("after.txt", "after") + kEnd;
  TarListing l = scan_tar_bytes(tar, "k.tar");
  EXPECT_EQ(l.error, "");
  ASSERT_EQ(names(l.members), (std::vector<std::string>{"after.txt"}));
  EXPECT_EQ(read_tar_member_bytes(tar, l.members[0], "k.tar"), "after");
  std::vector<std::string> skipped;
  for (const auto& s : l.skipped) skipped.push_back(s.name + ": " + s.what);
  EXPECT_EQ(skipped,
            (std::vector<std::string>{"link: symbolic link", "old-sparse.bin: GNU sparse file",
                                      "GNUSparseFile.0/holes.bin: GNU sparse file"}));
  EXPECT_EQ(l.skipped[0].header_offset, 0);  // from its long link name header
}

TEST(Tar, TruncatedLastMemberKeepsTheOnesBefore) {
  const std::string good = file_entry("a.jpg", "aaaa") + file_entry("a.txt", "caption");
  const std::string tar = good + header("b.jpg", 1000, '0') + std::string(100, 'x');
  TarListing l = scan_tar_bytes(tar, "t.tar");
  EXPECT_EQ(l.error,
            "t.tar: member 'b.jpg' at byte 2048 needs 1000 bytes of data but only 100 remain "
            "(truncated)");
  EXPECT_EQ(l.bad_member, "b.jpg");
  ASSERT_EQ(names(l.members), (std::vector<std::string>{"a.jpg", "a.txt"}));
  EXPECT_EQ(read_tar_member_bytes(tar, l.members[1], "t.tar"), "caption");
  EXPECT_EQ(error_of([&] { list_tar_bytes(tar, "t.tar"); }), l.error);

  // From a file: the same, and the members before it read.
  TempDir tmp;
  write_bytes(tmp / "t.tar", tar);
  TarListing f = scan_tar(tmp / "t.tar");
  EXPECT_EQ(f.error, tmp / "t.tar" +
                         ": member 'b.jpg' at byte 2048 needs 1000 bytes of data but only 100 "
                         "remain (truncated)");
  ASSERT_EQ(f.members.size(), 2u);
  EXPECT_EQ(read_tar_member(tmp / "t.tar", f.members[0]), "aaaa");
  EXPECT_EQ(error_of([&] { list_tar(tmp / "t.tar"); }), f.error);

  // Cut inside a header, and after an extension header with nothing following.
  EXPECT_EQ(scan_tar_bytes(good + std::string(300, 'h'), "h.tar").error,
            "h.tar: truncated header at byte 2048 (300 of 512 bytes)");
  EXPECT_EQ(scan_tar_bytes(good + std::string(300, '\0'), "z.tar").error, "");  // zero padding
  const std::string ln = "x/long.jpg";
  TarListing e = scan_tar_bytes(
      good + header("././@LongLink", 11, 'L', Format::gnu) + padded(ln + '\0'), "e.tar");
  EXPECT_EQ(e.error, "e.tar: extended header at byte 2048 is not followed by an entry (truncated)");
  EXPECT_EQ(e.members.size(), 2u);
  EXPECT_EQ(
      scan_tar_bytes(good + header("PaxHeaders/p", 5000, 'x') + std::string(512, 'r'), "p.tar")
          .error,
      "p.tar: pax header at byte 2048 needs 5000 bytes but only 512 remain (truncated)");

  // A file that shrank after it was listed.
  TarReader reader(tmp / "t.tar");
  std::filesystem::resize_file(tmp / "t.tar", 600);
  EXPECT_EQ(reader.read(reader.members()[0]), "aaaa");
  EXPECT_EQ(error_of([&] { reader.read(reader.members()[1]); }),
            tmp / "t.tar" +
                ": member 'a.txt' at byte 1024 runs past the end of the file "
                "(truncated?)");
}

TEST(Tar, BadChecksumStopsWithTheOffset) {
  std::string second = header("b.jpg", 2, '0');
  second[0] = 'c';  // the name changed after the checksum was computed
  const std::string tar = file_entry("a.jpg", "aa") + second + padded("bb") + kEnd;
  TarListing l = scan_tar_bytes(tar, "c.tar");
  int64_t sum = 0;
  std::string blanked = second;
  blanked.replace(148, 8, "        ");
  for (unsigned char ch : blanked) sum += ch;
  EXPECT_EQ(l.error, fmt::format("c.tar: bad header checksum at byte 1024 (stored {}, computed "
                                 "{}; corrupt)",
                                 sum - 'c' + 'b', sum));
  EXPECT_EQ(names(l.members), (std::vector<std::string>{"a.jpg"}));
  EXPECT_EQ(l.bad_member, "");

  // Not a tar file at all.
  EXPECT_EQ(scan_tar_bytes(std::string(512, 'j'), "j.tar").error,
            "j.tar: header at byte 0 has a checksum field that is not octal (not a tar file, or "
            "corrupt)");
}

TEST(Tar, SizeFieldThatIsNotANumber) {
  for (const std::string& field :
       {std::string("00000000a12\0", 12),
        std::string("\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xfe", 12),
        std::string("\xc0\0\0\0\0\0\0\0\0\0\0\x01", 12)}) {
    std::string h = header("n.jpg", 0, '0');
    put(h, 124, field);
    set_checksum(h);
    EXPECT_EQ(scan_tar_bytes(file_entry("ok", "1") + h + kEnd, "n.tar").error,
              "n.tar: header at byte 1024 has a size field that is not a number");
  }
  // Base-256 too large for int64.
  std::string h = header("n.jpg", 0, '0');
  put(h, 124, std::string("\x80\0\0\x01\0\0\0\0\0\0\0\0", 12));
  set_checksum(h);
  EXPECT_EQ(scan_tar_bytes(h + kEnd, "n.tar").error,
            "n.tar: header at byte 0 has a size field that is not a number");
}

TEST(Tar, PaxRecordsThatDoNotParse) {
  auto error_for = [](const std::string& records) {
    const std::string tar = file_entry("ok.txt", "ok") +
                            header("PaxHeaders/y", int64_t(records.size()), 'x') + padded(records) +
                            file_entry("y", "y") + kEnd;
    TarListing l = scan_tar_bytes(tar, "r.tar");
    EXPECT_EQ(names(l.members), (std::vector<std::string>{"ok.txt"}));
    return l.error;
  };
  EXPECT_EQ(error_for("abc path=x\n"),
            "r.tar: pax header at byte 1024: bad record length at offset 0 of the header data");
  EXPECT_EQ(error_for("99 path=x\n"),
            "r.tar: pax header at byte 1024: bad record length at offset 0 of the header data");
  EXPECT_EQ(error_for("2 path=x\n"),  // shorter than its own length prefix
            "r.tar: pax header at byte 1024: bad record length at offset 0 of the header data");
  EXPECT_EQ(error_for("11 path=xyz"),
            "r.tar: pax header at byte 1024: record at offset 0 does not end in a newline");
  EXPECT_EQ(error_for(pax_record("path", "a") + "10 path=xx"),  // "9 path=a\n", then a bad one
            "r.tar: pax header at byte 1024: record at offset 9 does not end in a newline");
  EXPECT_EQ(error_for("8 pathx\n"),
            "r.tar: pax header at byte 1024: record at offset 0 is not key=value");
  EXPECT_EQ(error_for(pax_record("size", "12k")),
            "r.tar: pax header at byte 1024: size record '12k' at offset 0 is not a number");
  // Trailing NULs after the records are allowed.
  const std::string ok = pax_record("path", "renamed") + std::string(7, '\0');
  const std::string tar =
      header("PaxHeaders/y", int64_t(ok.size()), 'x') + padded(ok) + file_entry("y", "y") + kEnd;
  EXPECT_EQ(names(list_tar_bytes(tar, "r.tar")), (std::vector<std::string>{"renamed"}));
}

TEST(Tar, MissingFile) {
  TempDir tmp;
  EXPECT_EQ(error_of([&] { list_tar(tmp / "none.tar"); }), tmp / "none.tar" + ": no such file");
  EXPECT_EQ(error_of([&] { TarReader r(tmp / "none.tar"); }), tmp / "none.tar" + ": no such file");
  EXPECT_EQ(error_of([&] { list_tar(tmp.str()); }),
            tmp.str() + ": is a directory, expected a .tar file");
}

TEST(Tar, ContainedPaths) {
  for (const std::string p : {"a.jpg", "a/b.jpg", "./a/b.jpg", "a//b", "a..b", "..a/b", "a/b/",
                              "a/./b", "...", "a/.../b"})
    EXPECT_TRUE(is_contained_path(p)) << p;
  for (const std::string p :
       {"", "../x", "a/../b", "a/..", "..", "/etc/passwd", "/", ".", "./", "././", "a/../../b"})
    EXPECT_FALSE(is_contained_path(p)) << p;
  EXPECT_FALSE(is_contained_path(std::string("a\0b", 3)));

  // A member named "../x" is listed as stored; the caller checks it.
  const std::string tar = file_entry("../x", "evil") + file_entry("ok.jpg", "fine") + kEnd;
  std::vector<TarMember> ms = list_tar_bytes(tar, "e.tar");
  ASSERT_EQ(names(ms), (std::vector<std::string>{"../x", "ok.jpg"}));
  EXPECT_FALSE(is_contained_path(ms[0].name));
  EXPECT_TRUE(is_contained_path(ms[1].name));
}
