// Small file helpers: the shared JSON reader's one-line errors.
#include "io/files.h"

#include <gtest/gtest.h>

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

}  // namespace
}  // namespace fluxtrain
