// Writes the seed corpus for safetensors_fuzz: valid files from the project's own writer (every
// dtype, scalars, empty tensors, metadata, several tensors) and a few hand-made headers (FP8, gaps,
// padding). Usage: safetensors_seeds DIR
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>

#include "io/safetensors.h"

using namespace fluxtrain;
namespace fs = std::filesystem;

static void write_raw(const fs::path& path, const std::string& header, const std::string& data) {
  std::string bytes(8, '\0');
  for (int i = 0; i < 8; ++i) bytes[i] = char((uint64_t(header.size()) >> (8 * i)) & 0xff);
  std::ofstream(path, std::ios::binary) << bytes << header << data;
}

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: safetensors_seeds DIR\n");
    return 2;
  }
  const fs::path dir = argv[1];
  fs::create_directories(dir);
  torch::manual_seed(0);
  auto save = [&](const std::string& name, const NamedTensors& t,
                  const std::map<std::string, std::string>& meta = {}) {
    save_safetensors((dir / (name + ".safetensors")).string(), t, meta);
  };
  save("f32", {{"w", torch::randn({2, 3})}});
  save("bf16_meta",
       {{"double_blocks.0.img_attn.qkv.weight", torch::randn({6, 2}).to(torch::kBFloat16)}},
       {{"format", "pt"}});
  save("all_dtypes", {{"f64", torch::randn({2}, torch::kDouble)},
                      {"f32", torch::randn({3})},
                      {"f16", torch::randn({2, 2}).to(torch::kHalf)},
                      {"bf16", torch::randn({4}).to(torch::kBFloat16)},
                      {"i64", torch::arange(3)},
                      {"i32", torch::arange(3, torch::kInt)},
                      {"i16", torch::arange(3, torch::kShort)},
                      {"i8", torch::arange(3, torch::kChar)},
                      {"u8", torch::arange(5, torch::kByte)},
                      {"bool", torch::tensor({true, false})}});
  save("scalar_empty", {{"s", torch::tensor(1.5f)}, {"e", torch::zeros({0, 4})}});
  save("many", {{"a", torch::ones({1})}, {"b", torch::ones({2, 1})}, {"c", torch::ones({1, 1, 3})}},
       {{"a", "b"}, {"c", "d"}});
  save("empty", {});
  write_raw(dir / "fp8.safetensors",
            R"({"a":{"dtype":"F8_E4M3","shape":[4],"data_offsets":[0,4]},)"
            R"("b":{"dtype":"F8_E5M2","shape":[2,2],"data_offsets":[4,8]}})",
            std::string("\x38\x7e\x01\xb8\x3c\x7b\x7c\xfc", 8));
  write_raw(dir / "gaps.safetensors",
            R"({"a": {"dtype": "F32", "shape": [0], "data_offsets": [4, 4]},  )"
            R"("b": {"dtype": "I16", "shape": [1,1], "data_offsets": [6, 8]}}     )",
            std::string(8, '\x11'));
  std::printf("%s\n", dir.c_str());
  return 0;
}
