// Small file helpers: the shared JSON reader's one-line errors, opening files for mapping, and
// the files a data path names.
#include "io/files.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "test_util.h"

namespace fluxtrain {
namespace {

TEST(ReadJsonFile, ParsesAndNamesTheFileInEveryError) {
  const auto dir = testing::fresh_temp_dir("read_json");
  const std::string p = (dir / "config.json").string();
  std::ofstream(p) << R"({"a": [1, 2]})";
  EXPECT_EQ(read_json_file(p)["a"][1].get<int>(), 2);
  EXPECT_EQ(testing::error_of([&] { read_json_file((dir / "none.json").string()); }),
            (dir / "none.json").string() + ": no such file");
  std::ofstream(p, std::ios::trunc) << R"({"a" 1})";
  EXPECT_EQ(testing::error_of([&] { read_json_file(p); }),
            p + ": not valid JSON (syntax error at byte 6 of 7)");
  std::ofstream(p, std::ios::trunc) << R"({"a": )";
  EXPECT_EQ(testing::error_of([&] { read_json_file(p); }),
            p + ": not valid JSON (unexpected end after 6 bytes)");
  std::ofstream(p, std::ios::trunc) << R"({"a": 1e400})";
  EXPECT_EQ(testing::error_of([&] { read_json_file(p); }),
            p + ": not valid JSON (number overflow parsing '1e400')");
}

TEST(OpenRegularFile, GivesTheSizeAndNamesWhatIsWrong) {
  testing::TempDir tmp;
  std::ofstream(tmp / "a.bin") << "12345";
  const OpenedFile f = open_regular_file(tmp / "a.bin", "a .bin file");
  EXPECT_GE(f.fd, 0);
  EXPECT_EQ(f.size, 5u);
  ::close(f.fd);
  EXPECT_EQ(testing::error_of([&] { open_regular_file(tmp / "none.bin", "a .bin file"); }),
            tmp / "none.bin" + ": no such file");
  EXPECT_EQ(testing::error_of([&] { open_regular_file(tmp.path().string(), "a .bin file"); }),
            tmp.path().string() + ": is a directory, expected a .bin file");
}

TEST(FilesMatching, AFileADirectoryOrAGlobSorted) {
  testing::TempDir tmp;
  std::filesystem::create_directories(tmp.path() / "d" / "sub");
  for (const char* f : {"d/b.tar", "d/a.tar", "d/notes.txt", "d/sub/c.tar"})
    std::ofstream(tmp / f) << "x";
  const std::string d = tmp / "d";
  EXPECT_EQ(files_matching(tmp / "d/b.tar", ".tar", false),
            (std::vector<std::string>{d + "/b.tar"}));
  EXPECT_EQ(files_matching(d, ".tar", false),
            (std::vector<std::string>{d + "/a.tar", d + "/b.tar"}));
  EXPECT_EQ(files_matching(d, ".tar", true),
            (std::vector<std::string>{d + "/a.tar", d + "/b.tar", d + "/sub/c.tar"}));
  EXPECT_EQ(files_matching(d + "/?.t*", ".tar", false),
            (std::vector<std::string>{d + "/a.tar", d + "/b.tar"}));
  EXPECT_TRUE(files_matching(d + "/z*.tar", ".tar", false).empty());
  EXPECT_TRUE(files_matching(tmp / "missing", ".tar", false).empty());
}

}  // namespace
}  // namespace fluxtrain
