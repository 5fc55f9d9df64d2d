// Safetensors: exact round trips of every dtype, the on-disk layout, FP8 decoding against
// hand-worked bytes, one specific error per malformed header, and sharded indexes.
#include "io/safetensors.h"

#include <gtest/gtest.h>
#include <torch/version.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <nlohmann/json.hpp>

#include "tmpdir.h"

using namespace fluxtrain;
using fluxtrain::testing::error_of;
using fluxtrain::testing::read_bytes;
using fluxtrain::testing::TempDir;
using fluxtrain::testing::write_bytes;
namespace fs = std::filesystem;

namespace {

// Same dtype, shape and bytes (so -0.0, NaN payloads and every BF16/F16 bit pattern count).
bool bit_equal(const torch::Tensor& a, const torch::Tensor& b) {
  if (a.scalar_type() != b.scalar_type() || a.sizes() != b.sizes()) return false;
  torch::Tensor x = a.contiguous(), y = b.contiguous();
  return std::memcmp(x.data_ptr(), y.data_ptr(), size_t(x.numel()) * x.element_size()) == 0;
}

std::string le64(uint64_t v) {
  std::string s(8, '\0');
  for (int i = 0; i < 8; ++i) s[i] = char((v >> (8 * i)) & 0xff);
  return s;
}

// A safetensors file from a header string and a data buffer, exactly as given.
void write_raw(const std::string& path, const std::string& header, const std::string& data) {
  write_bytes(path, le64(header.size()) + header + data);
}

float from_bits(uint32_t bits) {
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

}  // namespace

TEST(Safetensors, RoundTripsEveryDtypeExactly) {
  TempDir tmp;
  torch::manual_seed(0);
  const float inf = std::numeric_limits<float>::infinity();
  const float nan = std::numeric_limits<float>::quiet_NaN();
  NamedTensors tensors = {
      {"f64", torch::tensor({1.0, -0.0, 1e-300, 1.7976931348623157e308, M_PI}, torch::kDouble)},
      {"f32", torch::randn({4, 5})},
      {"f32.special", torch::tensor({inf, -inf, nan, -0.0f, from_bits(1)})},  // 1 = denormal
      {"f16", torch::tensor({65504.0f, -0.0f, 5.960464477539063e-08f, 0.333251953125f, inf},
                            torch::kHalf)},
      {"bf16", torch::randn({3, 7}).to(torch::kBFloat16)},
      {"bf16.special", torch::tensor({3.3895313892515355e38f, -inf, 9.183549615799121e-41f, 1.0f},
                                     torch::kBFloat16)},
      {"i64", torch::tensor({std::numeric_limits<int64_t>::min(), int64_t(0),
                             std::numeric_limits<int64_t>::max()})},
      {"i32", torch::tensor({std::numeric_limits<int32_t>::min(), -1, 7}, torch::kInt)},
      {"i16", torch::tensor({-32768, 32767, 0}, torch::kShort)},
      {"i8", torch::tensor({-128, 127, 5}, torch::kChar)},
      {"u8", torch::arange(256, torch::kInt).to(torch::kByte).reshape({16, 16})},
      {"bool", torch::tensor({true, false, true, true})},
      {"scalar", torch::tensor(2.5f)},
      {"empty", torch::zeros({0, 3})},
      {"transposed", torch::arange(6, torch::kFloat).reshape({2, 3}).t()},  // not contiguous
  };
  std::map<std::string, std::string> meta = {{"format", "pt"}, {"note", "über ✓"}};
  const std::string path = tmp / "all.safetensors";
  save_safetensors(path, tensors, meta);

  SafetensorsFile f(path);
  EXPECT_EQ(f.path(), path);
  EXPECT_EQ(f.metadata(), meta);
  EXPECT_EQ(f.size(), tensors.size());
  for (const auto& [name, t] : tensors) {
    ASSERT_TRUE(f.contains(name)) << name;
    torch::Tensor back = f.load(name);
    EXPECT_TRUE(bit_equal(back, t.contiguous())) << name << "\n" << back << "\n" << t;
    EXPECT_EQ(f.info(name).shape, t.sizes().vec()) << name;
    EXPECT_EQ(f.info(name).dtype, safetensors_dtype_name(t.scalar_type())) << name;
  }
  EXPECT_TRUE(
      torch::equal(f.load("transposed"), torch::tensor({{0.f, 3.f}, {1.f, 4.f}, {2.f, 5.f}})));
  EXPECT_EQ(f.load("scalar").dim(), 0);
  EXPECT_FALSE(f.contains("nope"));

  // names() follow the data offsets, and every tensor starts aligned to its element size.
  uint64_t prev = 0;
  for (const auto& name : f.names()) {
    const TensorInfo& ti = f.info(name);
    EXPECT_GE(ti.begin, prev) << name;
    EXPECT_EQ(ti.begin % safetensors_dtype_size(ti.dtype), 0u) << name;
    prev = ti.begin;
  }
}

TEST(Safetensors, LoadConvertsDtypeOnRequest) {
  TempDir tmp;
  torch::Tensor bf = torch::randn({5, 3}).to(torch::kBFloat16);
  torch::Tensor f32 = torch::randn({4});
  save_safetensors(tmp / "x.safetensors", {{"bf", bf}, {"f32", f32}});
  SafetensorsFile f(tmp / "x.safetensors");
  EXPECT_TRUE(bit_equal(f.load("bf", torch::kFloat), bf.to(torch::kFloat)));
  EXPECT_TRUE(bit_equal(f.load("f32", torch::kBFloat16), f32.to(torch::kBFloat16)));
  EXPECT_TRUE(bit_equal(f.load("f32", torch::kDouble), f32.to(torch::kDouble)));
  // Moving the object keeps the mapping.
  SafetensorsFile g = std::move(f);
  EXPECT_TRUE(bit_equal(g.load("bf"), bf));
}

TEST(SafetensorsGpu, LoadsOntoCuda) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  TempDir tmp;
  torch::Tensor bf = torch::randn({64, 33}).to(torch::kBFloat16);
  torch::Tensor f32 = torch::randn({17});
  save_safetensors(tmp / "x.safetensors", {{"bf", bf}, {"f32", f32}});
  SafetensorsFile f(tmp / "x.safetensors");
  torch::Tensor a = f.load("bf", torch::kFloat, torch::kCUDA);
  torch::Tensor b = f.load("f32", torch::kBFloat16, torch::kCUDA);
  EXPECT_TRUE(a.is_cuda() && b.is_cuda());
  EXPECT_TRUE(bit_equal(a.cpu(), bf.to(torch::kFloat)));
  EXPECT_TRUE(bit_equal(b.cpu(), f32.to(torch::kBFloat16)));
  // Tensors saved from the GPU are copied back to the CPU for writing.
  save_safetensors(tmp / "y.safetensors", {{"a", a}});
  EXPECT_TRUE(bit_equal(SafetensorsFile(tmp / "y.safetensors").load("a"), bf.to(torch::kFloat)));
}

TEST(Safetensors, WrittenLayoutFollowsTheSpec) {
  TempDir tmp;
  const std::string path = tmp / "small.safetensors";
  save_safetensors(
      path, {{"b", torch::tensor({1.0f, -2.0f})}, {"a", torch::tensor({1, 2, 3}, torch::kChar)}},
      {{"format", "pt"}});
  const std::string bytes = read_bytes(path);
  ASSERT_GE(bytes.size(), 8u);
  uint64_t n = 0;
  for (int i = 0; i < 8; ++i) n |= uint64_t(uint8_t(bytes[i])) << (8 * i);  // little-endian
  EXPECT_EQ(n % 8, 0u);
  ASSERT_EQ(bytes.size(), 8 + n + 8 + 3);  // header, 2 floats, 3 int8
  const std::string header = bytes.substr(8, n);
  const std::string json_text =
      R"({"__metadata__":{"format":"pt"},"b":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
      R"("a":{"dtype":"I8","shape":[3],"data_offsets":[8,11]}})";
  EXPECT_EQ(header, json_text + std::string(n - json_text.size(), ' '));
  auto j = nlohmann::json::parse(header);
  EXPECT_TRUE(j.is_object());
  EXPECT_EQ(j["b"]["data_offsets"], nlohmann::json::array({0, 8}));
  // 1.0f = 0x3f800000, -2.0f = 0xc0000000, little-endian; then 1, 2, 3.
  EXPECT_EQ(bytes.substr(8 + n), std::string("\x00\x00\x80\x3f\x00\x00\x00\xc0\x01\x02\x03", 11));
  // No temporary file is left beside it.
  int files = 0;
  for (auto& e : fs::directory_iterator(tmp.str())) files += e.is_regular_file();
  EXPECT_EQ(files, 1);
}

TEST(Safetensors, DecodesFp8FromHandWorkedBytes) {
  TempDir tmp;
  const std::string e4m3("\x38\x7e\x01\xb8\x00\x80\x7f\xff\x08\x07\x3c", 11);
  const std::string e5m2("\x3c\x7b\x01\x7c\xfc\x7d\x04\xbc", 8);
  write_raw(tmp / "f8.safetensors",
            R"({"a":{"dtype":"F8_E4M3","shape":[11],"data_offsets":[0,11]},)"
            R"("b":{"dtype":"F8_E5M2","shape":[2,4],"data_offsets":[11,19]}})",
            e4m3 + e5m2);
  SafetensorsFile f(tmp / "f8.safetensors");
  torch::Tensor a = f.load("a");
  ASSERT_EQ(a.scalar_type(), torch::kFloat);
  auto av = a.accessor<float, 1>();
  EXPECT_EQ(av[0], 1.0f);                  // 0 0111 000: 2^(7-7)
  EXPECT_EQ(av[1], 448.0f);                // 0 1111 110: 1.75 * 2^8, the max
  EXPECT_EQ(av[2], std::ldexp(1.0f, -9));  // subnormal 1/8 * 2^-6
  EXPECT_EQ(av[3], -1.0f);                 // sign bit
  EXPECT_EQ(av[4], 0.0f);
  EXPECT_TRUE(std::signbit(av[5]) && av[5] == 0.0f);    // -0
  EXPECT_TRUE(std::isnan(av[6]) && std::isnan(av[7]));  // 0x7f, 0xff: the only NaNs
  EXPECT_EQ(av[8], std::ldexp(1.0f, -6));               // smallest normal
  EXPECT_EQ(av[9], std::ldexp(7.0f / 8.0f, -6));        // largest subnormal
  EXPECT_EQ(av[10], 1.5f);                              // 0 0111 100
  torch::Tensor b = f.load("b");
  EXPECT_EQ(b.sizes().vec(), (std::vector<int64_t>{2, 4}));
  std::vector<float> bv(b.data_ptr<float>(), b.data_ptr<float>() + 8);
  EXPECT_EQ(bv[0], 1.0f);                   // 0 01111 00
  EXPECT_EQ(bv[1], 57344.0f);               // 0 11110 11: 1.75 * 2^15
  EXPECT_EQ(bv[2], std::ldexp(1.0f, -16));  // subnormal 1/4 * 2^-14
  EXPECT_EQ(bv[3], std::numeric_limits<float>::infinity());
  EXPECT_EQ(bv[4], -std::numeric_limits<float>::infinity());
  EXPECT_TRUE(std::isnan(bv[5]));
  EXPECT_EQ(bv[6], std::ldexp(1.0f, -14));
  EXPECT_EQ(bv[7], -1.0f);
  // A requested dtype converts the decoded values.
  EXPECT_TRUE(bit_equal(f.load("a", torch::kBFloat16), a.to(torch::kBFloat16)));
}

TEST(Safetensors, Fp8TablesAreConsistent) {
  // E5M2 is the top byte of an IEEE half: byte b decodes like the half with bits b << 8.
  for (int b = 0; b < 256; ++b) {
    torch::Tensor h = torch::tensor({int16_t(uint16_t(b) << 8)}, torch::kShort).view(torch::kHalf);
    float want = h.to(torch::kFloat).item<float>();
    float got = decode_fp8("F8_E5M2", uint8_t(b));
    if (std::isnan(want))
      EXPECT_TRUE(std::isnan(got)) << b;
    else
      EXPECT_EQ(got, want) << b;
  }
  // E4M3: strictly increasing over 0x00..0x7e, mirrored by the sign bit.
  for (int b = 1; b <= 0x7e; ++b)
    EXPECT_LT(decode_fp8("F8_E4M3", uint8_t(b - 1)), decode_fp8("F8_E4M3", uint8_t(b))) << b;
  for (int b = 0; b <= 0x7e; ++b)
    EXPECT_EQ(decode_fp8("F8_E4M3", uint8_t(b | 0x80)), -decode_fp8("F8_E4M3", uint8_t(b))) << b;
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 1)
  // Where libtorch has float8, it must agree on every byte.
  torch::Tensor all = torch::arange(256, torch::kInt).to(torch::kByte);
  torch::Tensor ref = all.view(c10::ScalarType::Float8_e4m3fn).to(torch::kFloat);
  for (int b = 0; b < 256; ++b) {
    float want = ref[b].item<float>(), got = decode_fp8("F8_E4M3", uint8_t(b));
    if (std::isnan(want))
      EXPECT_TRUE(std::isnan(got)) << b;
    else
      EXPECT_EQ(got, want) << b;
  }
#endif
}

TEST(Safetensors, MalformedFilesGiveSpecificErrors) {
  TempDir tmp;
  const std::string p = tmp / "model.safetensors";
  auto open_error = [&](const std::string& header, const std::string& data) {
    write_raw(p, header, data);
    return error_of([&] { SafetensorsFile f(p); });
  };

  EXPECT_EQ(error_of([&] { SafetensorsFile f(tmp / "missing.safetensors"); }),
            tmp / "missing.safetensors" + ": no such file");

  write_bytes(p, std::string("\x10\x00\x00", 3));
  EXPECT_EQ(error_of([&] { SafetensorsFile f(p); }),
            p + ": file is 3 bytes, too short for a safetensors header (truncated?)");

  write_bytes(p, le64(1000) + "{}");
  EXPECT_EQ(error_of([&] { SafetensorsFile f(p); }),
            p + ": header length 1000 goes beyond the end of the file (10 bytes; truncated?)");

  write_bytes(p, le64(200'000'000) + "{}");
  EXPECT_EQ(error_of([&] { SafetensorsFile f(p); }),
            p + ": header length 200000000 is over the 100 MB limit (not a safetensors file?)");

  EXPECT_EQ(open_error(R"({"a": {"dtype": )", ""),
            p + ": header is not valid JSON (unexpected end after 16 bytes)");
  EXPECT_EQ(open_error(R"({"a" 1})", ""),
            p + ": header is not valid JSON (syntax error at byte 6 of 7)");
  EXPECT_EQ(open_error("[1, 2]", ""), p + ": header is an array, expected a JSON object");
  // Found by the fuzzer: a number too large for a double is nlohmann's out_of_range, not a
  // parse_error, and escaped as a non-user error.
  EXPECT_EQ(open_error(R"({"w": 1e400})", ""),
            p + ": header is not valid JSON (number overflow parsing '1e400')");

  EXPECT_EQ(open_error(R"({"w": [1]})", ""),
            p + ": tensor 'w': entry is an array, expected an object with dtype, shape and "
                "data_offsets");
  EXPECT_EQ(open_error(R"({"w": {"shape": [1], "data_offsets": [0, 4]}})", "abcd"),
            p + ": tensor 'w': dtype missing or not a string");
  EXPECT_EQ(open_error(R"({"w": {"dtype": "F128", "shape": [1], "data_offsets": [0, 16]}})",
                       std::string(16, '\0')),
            p + ": tensor 'w': unknown dtype 'F128' (expected one of F64, F32, F16, BF16, "
                "F8_E4M3, F8_E5M2, I64, I32, I16, I8, U8, BOOL)");
  EXPECT_EQ(open_error(R"({"w": {"dtype": "F32", "shape": [2, -1], "data_offsets": [0, 8]}})",
                       std::string(8, '\0')),
            p + ": tensor 'w': shape [2,-1] must hold non-negative integers");
  EXPECT_EQ(open_error(R"({"w": {"dtype": "F32", "shape": [2.5], "data_offsets": [0, 8]}})",
                       std::string(8, '\0')),
            p + ": tensor 'w': shape [2.5] must hold non-negative integers");
  EXPECT_EQ(open_error(R"({"w": {"dtype": "F32", "shape": 4, "data_offsets": [0, 16]}})",
                       std::string(16, '\0')),
            p + ": tensor 'w': shape missing or not a list");
  EXPECT_EQ(open_error(R"({"w": {"dtype": "F32", "shape": [1], "data_offsets": [4]}})",
                       std::string(8, '\0')),
            p + ": tensor 'w': data_offsets [4] must be [begin, end], two non-negative integers");
  EXPECT_EQ(open_error(R"({"w": {"dtype": "F32", "shape": [1], "data_offsets": [-4, 0]}})",
                       std::string(8, '\0')),
            p + ": tensor 'w': data_offsets [-4,0] must be [begin, end], two non-negative "
                "integers");
  EXPECT_EQ(open_error(R"({"w": {"dtype": "F32", "shape": [1]}})", ""),
            p + ": tensor 'w': data_offsets missing must be [begin, end], two non-negative "
                "integers");
  EXPECT_EQ(open_error(R"({"w": {"dtype": "F32", "shape": [1], "data_offsets": [8, 4]}})",
                       std::string(8, '\0')),
            p + ": tensor 'w': data_offsets [8, 4] have begin > end");
  EXPECT_EQ(open_error(R"({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}})",
                       std::string(12, '\0')),
            p + ": tensor 'w': data_offsets [0, 16] go beyond the data buffer (12 bytes; "
                "truncated?)");
  EXPECT_EQ(open_error(R"({"double_blocks.0.img_attn.qkv.weight": {"dtype": "BF16", )"
                       R"("shape": [8, 8], "data_offsets": [0, 100]}})",
                       std::string(100, '\0')),
            p + ": tensor 'double_blocks.0.img_attn.qkv.weight': data_offsets [0, 100] hold 100 "
                "bytes, but BF16 [8, 8] needs 128");
  EXPECT_EQ(open_error(R"({"w": {"dtype": "U8", "shape": [4294967296, 4294967296, 16], )"
                       R"("data_offsets": [0, 0]}})",
                       ""),
            p + ": tensor 'w': data_offsets [0, 0] hold 0 bytes, but U8 [4294967296, "
                "4294967296, 16] needs more than 2^64");
  EXPECT_EQ(open_error(R"({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}, )"
                       R"("b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}})",
                       std::string(12, '\0')),
            p + ": tensors 'a' [0, 8] and 'b' [4, 12] overlap");
  EXPECT_EQ(open_error(R"({"__metadata__": {"format": "pt", "step": 3}})", ""),
            p + ": __metadata__ 'step' is 3, expected a string");
  EXPECT_EQ(open_error(R"({"__metadata__": ["pt"]})", ""),
            p + ": __metadata__ is an array, expected an object of strings");

  // A good file cut short: its last tensor runs past the end.
  save_safetensors(p, {{"x", torch::ones({4})}, {"y", torch::ones({8})}});
  fs::resize_file(p, fs::file_size(p) - 4);
  EXPECT_EQ(error_of([&] { SafetensorsFile f(p); }),
            p + ": tensor 'y': data_offsets [16, 48] go beyond the data buffer (44 bytes; "
                "truncated?)");

  // Well-formed: empty tensors may share an offset, gaps are allowed, unknown names are errors.
  EXPECT_EQ(open_error(R"({"a": {"dtype": "F32", "shape": [0], "data_offsets": [4, 4]}, )"
                       R"("b": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}, )"
                       R"("c": {"dtype": "BOOL", "shape": [], "data_offsets": [9, 10]}})",
                       std::string(8, '\0') + std::string("\x00\x05", 2)),
            "");
  SafetensorsFile ok(p);
  EXPECT_EQ(ok.names(), (std::vector<std::string>{"a", "b", "c"}));
  EXPECT_TRUE(ok.load("c").item<bool>());  // any non-zero byte is true
  EXPECT_EQ(error_of([&] { ok.load("d"); }), p + ": no tensor named 'd' (the file has 3 tensors)");
}

TEST(Safetensors, WriterRejectsBadInput) {
  TempDir tmp;
  const std::string p = tmp / "out.safetensors";
  EXPECT_EQ(error_of([&] {
              save_safetensors(p, {{"a", torch::ones(2)}, {"a", torch::ones(3)}});
            }),
            p + ": tensor 'a' given twice");
  EXPECT_EQ(error_of([&] {
              save_safetensors(p, {{"__metadata__", torch::ones(2)}});
            }),
            p + ": '__metadata__' cannot be a tensor name");
  EXPECT_EQ(
      error_of([&] {
        save_safetensors(p, {{"ok", torch::ones(2)}, {"z", torch::ones(2, torch::kComplexFloat)}});
      }),
      p + ": tensor 'z': dtype ComplexFloat cannot be stored in safetensors by fluxtrain "
          "(supported: F64, F32, F16, BF16, F8_E4M3, F8_E5M2, I64, I32, I16, I8, U8, BOOL)");
  // Nothing is left behind by a failed save, and an existing file is untouched.
  EXPECT_TRUE(fs::is_empty(tmp.str()));
  save_safetensors(p, {{"keep", torch::ones(3)}});
  EXPECT_NE(error_of([&] {
              save_safetensors(p, {{"a", torch::ones(2)}, {"a", torch::ones(2)}});
            }),
            "");
  EXPECT_EQ(SafetensorsFile(p).names(), std::vector<std::string>{"keep"});
  EXPECT_EQ(std::distance(fs::directory_iterator(tmp.str()), fs::directory_iterator()), 1);
}

TEST(Safetensors, ShardedIndexLoadsAcrossShards) {
  TempDir tmp;
  torch::Tensor a = torch::randn({3, 2}), b = torch::arange(5), c = torch::ones({2}, torch::kHalf);
  save_safetensors(tmp / "m-00001-of-00002.safetensors", {{"a", a}, {"c", c}});
  save_safetensors(tmp / "m-00002-of-00002.safetensors", {{"b", b}});
  const std::string index = tmp / "m.safetensors.index.json";
  write_bytes(index, R"({"metadata": {"total_size": 40, "format": "pt"}, "weight_map": {
      "c": "m-00001-of-00002.safetensors", "b": "m-00002-of-00002.safetensors",
      "a": "m-00001-of-00002.safetensors"}})");
  ShardedSafetensors s(index);
  EXPECT_EQ(s.names(), (std::vector<std::string>{"a", "b", "c"}));
  EXPECT_EQ(s.shard_paths().size(), 2u);
  EXPECT_EQ(s.metadata().at("total_size"), "40");
  EXPECT_EQ(s.metadata().at("format"), "pt");
  EXPECT_TRUE(bit_equal(s.load("a"), a));
  EXPECT_TRUE(bit_equal(s.load("b"), b));
  EXPECT_TRUE(bit_equal(s.load("c", torch::kFloat), torch::ones({2})));
  EXPECT_EQ(s.info("b").dtype, "I64");
  EXPECT_EQ(s.shard_for("b").path(), tmp / "m-00002-of-00002.safetensors");
  EXPECT_FALSE(s.contains("d"));
  EXPECT_EQ(error_of([&] { s.load("d"); }), index + ": no tensor named 'd' (3 tensors listed)");

  // A single file works the same way.
  ShardedSafetensors one(tmp / "m-00002-of-00002.safetensors");
  EXPECT_EQ(one.names(), std::vector<std::string>{"b"});
  EXPECT_TRUE(bit_equal(one.load("b"), b));

  // Missing shard, wrong shard, bad index.
  write_bytes(index, R"({"weight_map": {"a": "m-00001-of-00002.safetensors",
                                         "z": "m-00003-of-00003.safetensors"}})");
  EXPECT_EQ(error_of([&] { ShardedSafetensors x(index); }),
            index + ": shard 'm-00003-of-00003.safetensors' (holding 'z') not found at " +
                (tmp / "m-00003-of-00003.safetensors"));
  write_bytes(index, R"({"weight_map": {"b": "m-00001-of-00002.safetensors"}})");
  ShardedSafetensors wrong(index);
  EXPECT_EQ(error_of([&] { wrong.load("b"); }), index + ": tensor 'b' is mapped to shard '" +
                                                    (tmp / "m-00001-of-00002.safetensors") +
                                                    "', which does not contain it");
  write_bytes(index, R"({"weight_map": ["a"]})");
  EXPECT_EQ(error_of([&] { ShardedSafetensors x(index); }),
            index + ": expected a JSON object with a \"weight_map\" object (tensor -> shard file)");
  write_bytes(index, R"({"weight_map": {"a": 1}})");
  EXPECT_EQ(error_of([&] { ShardedSafetensors x(index); }),
            index + ": weight_map['a'] is 1, expected a shard file name");
  write_bytes(index, "{");
  EXPECT_EQ(error_of([&] { ShardedSafetensors x(index); }),
            index + ": not valid JSON (unexpected end after 1 bytes)");
  EXPECT_EQ(error_of([&] { ShardedSafetensors x(tmp / "none.safetensors.index.json"); }),
            tmp / "none.safetensors.index.json" + ": no such file");
}

TEST(Safetensors, FromBytesIsTheSameReaderWithoutAFile) {
  TempDir tmp;
  const std::string p = tmp / "m.safetensors";
  save_safetensors(p, {{"x", torch::arange(6, torch::kFloat).reshape({2, 3})}}, {{"k", "v"}});
  std::ifstream in(p, std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  SafetensorsFile a = SafetensorsFile::from_bytes(bytes, "buf");
  SafetensorsFile b = std::move(a);  // the bytes move with it
  EXPECT_TRUE(torch::equal(b.load("x"), torch::arange(6, torch::kFloat).reshape({2, 3})));
  EXPECT_EQ(b.metadata().at("k"), "v");
  EXPECT_EQ(error_of([&] { SafetensorsFile::from_bytes(bytes.substr(0, 30), "buf"); }).substr(0, 5),
            "buf: ");
  EXPECT_EQ(error_of([&] { SafetensorsFile::from_bytes("1234", "buf"); }),
            "buf: file is 4 bytes, too short for a safetensors header (truncated?)");
}
