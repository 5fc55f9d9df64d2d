// The file sources a user trains on, on small datasets the tests write: image folders with
// metadata.jsonl / metadata.json / side-car captions / one instance prompt, DreamBooth's class
// folder, webdataset shards, Hugging Face parquet; and what each reports instead of using
// (absent, escaping, uncaptioned, undecodable, pickled, truncated).
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "data/image_dataset.h"
#include "data/image_folder.h"
#include "data/parquet_source.h"
#include "data/webdataset.h"
#include "fixtures/fixtures.h"
#include "fixtures/parquet_fixture.h"
#include "fixtures/tar_fixture.h"
#include "io/image.h"
#include "test_util.h"

using namespace fluxtrain;
namespace fs = std::filesystem;
using fluxtrain::testing::error_of;
using fluxtrain::testing::TempDir;

namespace {

// A PNG of `width` x `height` filled with one colour.
std::string png(int64_t width, int64_t height, uint8_t r = 200, uint8_t g = 40, uint8_t b = 10) {
  auto hwc = torch::empty({height, width, 3}, torch::kUInt8);
  hwc.select(2, 0).fill_(r);
  hwc.select(2, 1).fill_(g);
  hwc.select(2, 2).fill_(b);
  return encode_png(hwc);
}

std::vector<std::string> keys(const ImageSource& s) {
  std::vector<std::string> out;
  for (int64_t i = 0; i < s.size(); ++i) out.push_back(s.item(i).key);
  return out;
}

std::map<std::string, std::string> problems(const DataReport& r) {
  std::map<std::string, std::string> out;
  for (const auto& p : r.problems()) out[p.item] = p.reason;
  return out;
}

}  // namespace

TEST(ImageFolder, MetadataJsonlListsImagesAndCaptions) {
  TempDir tmp;
  const fs::path root = tmp.path() / "art";
  fixtures::write_text((root / "imgs" / "a.png").string(), png(8, 8));
  fixtures::write_text((root / "imgs" / "b.png").string(), png(8, 16));
  fixtures::write_text((root / "imgs" / "c.png").string(), png(8, 8));
  fixtures::write_text((root / "unlisted.png").string(), png(4, 4));
  fixtures::write_text((root / "model.ckpt").string(), "not unpickled");
  fixtures::write_text(tmp / "outside.png", png(4, 4));
  fixtures::write_text((root / "metadata.jsonl").string(),
                       "{\"file_name\": \"imgs/a.png\", \"text\": \"a red square\"}\n"
                       "{\"file_name\": \"imgs/b.png\", \"caption\": \"a tall one\"}\n"
                       "\n"
                       "{\"file_name\": \"imgs/c.png\"}\n"
                       "{\"file_name\": \"imgs/gone.png\", \"text\": \"absent\"}\n"
                       "{\"file_name\": \"../outside.png\", \"text\": \"escapes\"}\n"
                       "{\"file_name\": \"/etc/passwd\", \"text\": \"absolute\"}\n"
                       "not json\n"
                       "{\"text\": \"no file\"}\n");
  DataReport report;
  ImageFolderSource src(root.string(), {}, report);
  EXPECT_EQ(keys(src), (std::vector<std::string>{"imgs/a.png", "imgs/b.png"}));
  EXPECT_EQ(src.item(0).caption, "a red square");
  EXPECT_EQ(src.item(1).caption, "a tall one");  // text, caption or prompt
  EXPECT_EQ(src.read_bytes(1), png(8, 16));
  const auto p = problems(report);
  EXPECT_EQ(p.at("imgs/c.png"), "no caption");
  EXPECT_EQ(p.at("imgs/gone.png"), "listed but absent (listed in metadata.jsonl)");
  EXPECT_NE(p.at("../outside.png").find("escapes the dataset folder"), std::string::npos);
  EXPECT_NE(p.at("/etc/passwd").find("escapes the dataset folder"), std::string::npos);
  EXPECT_EQ(p.at("metadata.jsonl line 8"), "not a JSON object");
  EXPECT_EQ(p.at("metadata.jsonl line 9"), "no file_name");
  EXPECT_EQ(p.at("unlisted.png"), "no caption (not listed in metadata.jsonl)");
  EXPECT_EQ(p.at("model.ckpt"), "a pickled file: never unpickled, not used");
  EXPECT_EQ(report.count(), 8) << report.to_json().dump(1);
  // --strict turns the first one into an error.
  DataReport strict(true);
  EXPECT_NE(error_of([&] { ImageFolderSource(root.string(), {}, strict); }).find("(--strict)"),
            std::string::npos);
}

TEST(ImageFolder, MetadataJsonSideCarCaptionsInstancePromptAndSymlinks) {
  TempDir tmp;
  const fs::path a = tmp.path() / "json-list", b = tmp.path() / "json-map",
                 c = tmp.path() / "kohya";
  fixtures::write_text((a / "x.png").string(), png(4, 4));
  fixtures::write_text((a / "metadata.json").string(),
                       R"([{"file_name": "x.png", "prompt": "from a list"}])");
  fixtures::write_text((b / "y.png").string(), png(4, 4));
  fixtures::write_text((b / "metadata.json").string(), R"({"y.png": "from a map"})");
  fixtures::write_text((c / "sub" / "cat.png").string(), png(4, 4));
  fixtures::write_text((c / "sub" / "cat.txt").string(), "  a cat\n");
  fixtures::write_text((c / "dog.png").string(), png(4, 4));
  fixtures::write_text(tmp / "secret.png", png(4, 4));
  fs::create_symlink(tmp.path() / "secret.png", c / "link.png");
  DataReport report;
  EXPECT_EQ(ImageFolderSource(a.string(), {}, report).item(0).caption, "from a list");
  EXPECT_EQ(ImageFolderSource(b.string(), {}, report).item(0).caption, "from a map");
  ImageFolderSource kohya(c.string(), {}, report);
  EXPECT_EQ(keys(kohya), (std::vector<std::string>{"sub/cat.png"}));
  EXPECT_EQ(kohya.item(0).caption, "a cat");
  auto p = problems(report);
  ASSERT_TRUE(p.count("dog.png") && p.count("link.png")) << report.to_json().dump(1);
  EXPECT_EQ(p.at("dog.png"), "no caption (no dog.txt beside it)");
  EXPECT_EQ(p.at("link.png"), "a symbolic link pointing out of the dataset folder");
  // One prompt for all (DreamBooth): every image, captions ignored; a class folder joins with
  // its own prompt and loss weight.
  ImageFolderOptions instance;
  instance.instance_prompt = "a photo of sks dog";
  DataReport r2;
  ImageFolderSource dogs(c.string(), instance, r2);
  EXPECT_EQ(dogs.size(), 2);
  EXPECT_EQ(dogs.item(1).caption, "a photo of sks dog");
  ImageFolderOptions cls;
  cls.instance_prompt = "a photo of a dog";
  cls.loss_weight = 0.5;
  auto concat = ConcatSource({std::make_shared<ImageFolderSource>(c.string(), instance, r2),
                              std::make_shared<ImageFolderSource>(a.string(), cls, r2)});
  ASSERT_EQ(concat.size(), 3);
  EXPECT_EQ(concat.item(2).caption, "a photo of a dog");
  EXPECT_EQ(concat.item(2).loss_weight, 0.5);
  EXPECT_EQ(concat.item(0).loss_weight, 1.0);
  EXPECT_EQ(concat.read_bytes(2), png(4, 4));
  EXPECT_EQ(error_of([&] { ImageFolderSource((tmp / "none").c_str(), {}, r2); }),
            "data '" + (tmp / "none") + "': not a directory (expected an image folder)");
}

TEST(WebDataset, SamplesGroupByKeyAndBadMembersAreReported) {
  TempDir tmp;
  const std::string shard0 = tmp / "shard-000.tar", shard1 = tmp / "shard-001.tar";
  fixtures::write_tar(shard0, {{"s/000.png", png(8, 8)},
                               {"s/000.txt", "a red square\n"},
                               {"s/001.webp.png", png(4, 4)},  // key "s/001"
                               {"s/001.json", R"({"caption": "from json"})"},
                               {"s/002.png", png(4, 4)},
                               {"s/003.txt", "no image"},
                               {"../evil.png", png(4, 4)},
                               {"./s/004.png", png(4, 4)},
                               {"./s/004.txt", "dot slash"}});
  // A truncated second shard: its first sample survives.
  std::string tar;
  tar += fixtures::file_entry("t/000.png", png(4, 4)) + fixtures::file_entry("t/000.txt", "ok");
  tar += fixtures::header("t/001.png", 5000, '0') + std::string(600, 'x');
  fixtures::write_text(shard1, tar);
  EXPECT_EQ(find_shards(tmp.str()), (std::vector<std::string>{shard0, shard1}));
  EXPECT_EQ(find_shards(tmp / "shard-*1.tar"), (std::vector<std::string>{shard1}));
  DataReport report;
  WebDatasetSource src(find_shards(tmp.str()), "", report);
  EXPECT_EQ(keys(src), (std::vector<std::string>{"shard-000.tar:s/000", "shard-000.tar:s/001",
                                                 "shard-000.tar:s/004", "shard-001.tar:t/000"}));
  EXPECT_EQ(src.item(1).caption, "from json");
  EXPECT_EQ(src.item(2).caption, "dot slash");
  EXPECT_EQ(src.read_bytes(0), png(8, 8));
  const auto p = problems(report);
  EXPECT_NE(p.at("shard-000.tar:s/002").find("no caption"), std::string::npos);
  EXPECT_EQ(p.at("shard-000.tar:s/003"), "no image in the sample");
  EXPECT_NE(p.at("shard-000.tar:../evil.png").find("escapes the archive"), std::string::npos);
  EXPECT_NE(p.at("shard-001.tar:t/001.png").find("truncated"), std::string::npos);
  EXPECT_NE(error_of([&] { find_shards(tmp / "nothing-*.tar"); }).find("no .tar shards"),
            std::string::npos);
}

TEST(ParquetSource, HuggingFaceImageTextRowsWithNullsAndBadFiles) {
  TempDir tmp;
  std::vector<fixtures::HfImageTextRow> rows(4);
  rows[0].image_bytes = png(8, 8);
  rows[0].text = "a pokemon";
  rows[1].image_bytes = png(4, 8);
  rows[1].text = std::nullopt;         // no caption
  rows[2].image_bytes = std::nullopt;  // no image
  rows[2].text = "missing";
  rows[3].image_bytes = png(4, 4);
  rows[3].text = "another";
  fixtures::ParquetWriteOptions o;
  o.row_group_rows = 2;
  o.codec = fixtures::ParquetCodec::kSnappy;
  fs::create_directories(tmp.path() / "data");
  fixtures::write_parquet_fixture(tmp / "data/train-00000-of-00002.parquet",
                                  fixtures::hf_image_text_table(rows), o);
  fixtures::write_text(tmp / "data/train-00001-of-00002.parquet", "PAR1 broken PAR1");
  DataReport report;
  ParquetSource src(find_parquet_files(tmp.str()), {}, report);
  EXPECT_EQ(keys(src), (std::vector<std::string>{"train-00000-of-00002.parquet row 0",
                                                 "train-00000-of-00002.parquet row 3"}));
  EXPECT_EQ(src.item(1).caption, "another");
  EXPECT_EQ(src.read_bytes(1), png(4, 4));
  EXPECT_EQ(src.read_bytes(0), png(8, 8));
  const auto p = problems(report);
  EXPECT_EQ(p.at("train-00000-of-00002.parquet row 1"), "no caption");
  EXPECT_EQ(p.at("train-00000-of-00002.parquet row 2"), "no image bytes");
  // 16 bytes "PAR1 broken PAR1": its last 8 bytes read as a footer length far past the start.
  EXPECT_EQ(p.at("train-00001-of-00002.parquet"),
            tmp / "data/train-00001-of-00002.parquet" +
                ": footer length 544105835 goes past the start of the file (16 bytes; truncated?)");
}

TEST(ImageDataset, BucketsSizesAndUndecodableImagesReplacedInTheirBucket) {
  TempDir tmp;
  const fs::path root = tmp.path() / "imgs";
  // Two wide images, two square ones, one that is only a PNG header, and one not an image.
  auto ramp = torch::arange(64, torch::kInt64).mul(3).to(torch::kUInt8).view({1, 64, 1});
  fixtures::write_text((root / "w1.png").string(),
                       encode_png(ramp.expand({32, 64, 3}).contiguous()));  // dark to light
  fixtures::write_text((root / "w2.png").string(), png(64, 32, 10, 200, 10));
  fixtures::write_text((root / "s1.png").string(), png(40, 40));
  std::string broken = png(40, 40);
  broken.resize(40);  // IHDR intact, the pixel data gone
  fixtures::write_text((root / "s2.png").string(), broken);
  fixtures::write_text((root / "z.png").string(), "plain text");
  for (const char* n : {"w1", "w2", "s1", "s2", "z"})
    fixtures::write_text((root / (std::string(n) + ".txt")).string(), std::string("caption ") + n);
  auto report = std::make_shared<DataReport>();
  auto src = std::make_shared<ImageFolderSource>(root.string(), ImageFolderOptions{}, *report);
  ImageDatasetOptions o;
  o.resolution = 32;
  o.bucket.step = 8;
  o.bucket.min_side = 16;
  o.bucket.max_side = 64;
  o.bucket.max_upscale = 1.0;
  ImageDataset ds(src, o, report);
  ASSERT_EQ(ds.size(), 4);  // z.png does not probe
  EXPECT_EQ(problems(*report).at("z.png"),
            "cannot decode (not a PNG, JPEG, WebP, BMP or GIF image)");
  // Sorted: s1, s2, w1, w2. The table in steps of 8 around 32^2 px: 16x64, 24x40, 32x32, 40x24,
  // 48x16, 56x16, 64x16. 2:1 images get 40x24 (log-aspect distance 0.18 against 0.41 for 48x16),
  // squares 32x32 (40 px images fill it without upscaling).
  EXPECT_EQ(ds.bucket(0), (Bucket{32, 32}));
  EXPECT_EQ(ds.bucket(2), (Bucket{40, 24}));
  EXPECT_EQ(ds.bucket_ids()[2], ds.bucket_ids()[3]);
  EXPECT_NE(ds.bucket_ids()[0], ds.bucket_ids()[2]);
  const Example w = ds.get(3);  // w2, solid: resized and cropped, still solid
  EXPECT_EQ(w.image.sizes(), (std::vector<int64_t>{3, 24, 40}));
  EXPECT_NEAR(w.image[1].mean().item<float>(), 200 / 127.5 - 1, 1e-5);
  EXPECT_NEAR(w.image[1].std().item<float>(), 0, 1e-5);
  EXPECT_EQ(w.caption, "caption w2");
  // s2 does not decode: reported, and s1 (the next image of its bucket) stands in.
  const Example s = ds.get(1);
  EXPECT_EQ(s.key, "s1.png");
  EXPECT_EQ(problems(*report).at("s2.png").rfind("s2.png: cannot decode image (", 0), 0u)
      << problems(*report).at("s2.png");
  // A training draw with a random flip: the same pixels mirrored, a pure function of the draw.
  ImageDatasetOptions flip = o;
  flip.transform.random_flip = true;
  ImageDataset flipping(src, flip, report);
  int flipped = 0;
  for (uint64_t d = 0; d < 16; ++d) {
    const auto a = flipping.sample(2, d).image, b = flipping.sample(2, d).image;
    EXPECT_TRUE(torch::equal(a, b));
    flipped += !torch::equal(a, flipping.get(2).image);
  }
  EXPECT_GT(flipped, 0);
  EXPECT_LT(flipped, 16);
  EXPECT_EQ(*ds.captions(),
            (std::vector<std::string>{"", "caption s1", "caption s2", "caption w1", "caption w2"}));
}
