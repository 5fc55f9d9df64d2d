// Checkpoint directories: round trip, the manifest, detection of truncated, corrupt and
// incomplete checkpoints, atomic overwrite and crash recovery, listing and pruning step-N.
#include "io/checkpoint.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "io/checksum.h"
#include "tmpdir.h"

using namespace fluxtrain;
using fluxtrain::testing::error_of;
using fluxtrain::testing::read_bytes;
using fluxtrain::testing::TempDir;
using fluxtrain::testing::write_bytes;
namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

using Files = std::map<std::string, NamedTensors>;

Files sample_files(float scale) {
  return {{"model.safetensors",
           {{"w", torch::arange(12, torch::kFloat).reshape({3, 4}) * scale},
            {"b", torch::ones({4}, torch::kBFloat16) * scale}}},
          {"optimizer.safetensors", {{"exp_avg.w", torch::full({3, 4}, scale)}}}};
}

// Every entry of `dir`, by name.
std::vector<std::string> entries(const std::string& dir) {
  std::vector<std::string> out;
  for (auto& e : fs::directory_iterator(dir)) out.push_back(e.path().filename().string());
  std::sort(out.begin(), out.end());
  return out;
}

void make_dir_with_file(const std::string& dir) {
  fs::create_directories(dir);
  write_bytes(dir + "/junk.bin", "partial");
}

// A name as an interrupted save by a process that no longer exists would leave it.
const char* kDeadTag = "999999999-0123456789abcdef";

}  // namespace

TEST(Checkpoint, SaveLoadRoundTripWithManifest) {
  TempDir tmp;
  const std::string dir = tmp / "run/checkpoints/step-10";
  json state = {{"step", 10}, {"data", {{"epoch", 1}, {"position", 12345}}}, {"lr", 1e-4}};
  Files files = sample_files(2.0f);
  save_checkpoint_dir(dir, files, state);

  LoadedCheckpoint ck = load_checkpoint_dir(dir);
  EXPECT_EQ(ck.dir, dir);
  EXPECT_EQ(ck.state, state);
  EXPECT_EQ(ck.files.size(), 2u);
  EXPECT_TRUE(
      torch::equal(ck.file("model.safetensors").load("w"), files["model.safetensors"][0].second));
  EXPECT_TRUE(
      torch::equal(ck.file("model.safetensors").load("b"), files["model.safetensors"][1].second));
  EXPECT_TRUE(
      torch::equal(ck.file("optimizer.safetensors").load("exp_avg.w"), torch::full({3, 4}, 2.0f)));
  EXPECT_EQ(error_of([&] { ck.file("ema.safetensors"); }),
            "checkpoint '" + dir + "': has no file ema.safetensors");

  // The manifest records the format, sizes and checksums of the files as they are on disk.
  json m = json::parse(read_bytes(dir + "/manifest.json"));
  EXPECT_EQ(m["format"], "fluxtrain-checkpoint");
  EXPECT_EQ(m["version"], 1);
  EXPECT_EQ(m["state"], state);
  for (const std::string name : {"model.safetensors", "optimizer.safetensors"}) {
    FileDigest d = file_xxh64(dir + "/" + name);
    EXPECT_EQ(m["files"][name]["bytes"], fs::file_size(dir + "/" + name)) << name;
    EXPECT_EQ(m["files"][name]["xxh64"], hex64(d.xxh64)) << name;
  }
  EXPECT_EQ(entries(dir), (std::vector<std::string>{"manifest.json", "model.safetensors",
                                                    "optimizer.safetensors"}));
  EXPECT_EQ(entries(tmp / "run/checkpoints"), std::vector<std::string>{"step-10"});  // no temps
}

TEST(Checkpoint, DetectsTruncatedCorruptAndIncomplete) {
  TempDir tmp;
  const std::string dir = tmp / "step-1";
  save_checkpoint_dir(dir, sample_files(1.0f), {{"step", 1}});
  const std::string model = dir + "/model.safetensors";
  const uint64_t size = fs::file_size(model);
  const std::string good = read_bytes(model);

  fs::resize_file(model, size - 10);
  EXPECT_EQ(error_of([&] { load_checkpoint_dir(dir); }),
            fmt::format("checkpoint '{}': model.safetensors is {} bytes but the manifest says {} "
                        "(truncated?)",
                        dir, size - 10, size));

  std::string flipped = good;
  flipped[flipped.size() - 3] ^= 0x01;  // inside the tensor data: the header still parses
  write_bytes(model, flipped);
  EXPECT_EQ(error_of([&] { load_checkpoint_dir(dir); }),
            "checkpoint '" + dir + "': model.safetensors checksum mismatch (corrupt)");
  EXPECT_EQ(error_of([&] { load_checkpoint_dir(dir, /*verify_checksums=*/false); }), "");
  write_bytes(model, good);
  EXPECT_EQ(error_of([&] { load_checkpoint_dir(dir); }), "");

  fs::remove(dir + "/optimizer.safetensors");
  EXPECT_EQ(error_of([&] { load_checkpoint_dir(dir); }),
            "checkpoint '" + dir + "': optimizer.safetensors is missing (listed in manifest.json)");

  const std::string manifest = read_bytes(dir + "/manifest.json");
  write_bytes(dir + "/manifest.json", manifest.substr(0, manifest.size() / 2));
  EXPECT_EQ(error_of([&] { load_checkpoint_dir(dir); }),
            fmt::format("checkpoint '{}': manifest.json is not valid JSON (unexpected end after {} "
                        "bytes)",
                        dir, manifest.size() / 2));
  write_bytes(dir + "/manifest.json", R"({"format": "something-else", "version": 1, "files": {}})");
  EXPECT_EQ(error_of([&] { load_checkpoint_dir(dir); }),
            "checkpoint '" + dir +
                "': manifest.json format is \"something-else\", expected \"fluxtrain-checkpoint\"");
  write_bytes(dir + "/manifest.json",
              R"({"format": "fluxtrain-checkpoint", "version": 2, "files": {}})");
  EXPECT_EQ(error_of([&] { load_checkpoint_dir(dir); }),
            "checkpoint '" + dir + "': manifest.json version 2 is not supported (expected 1)");
  write_bytes(dir + "/manifest.json",
              R"({"format": "fluxtrain-checkpoint", "version": 1, "files": {"../x": {}}})");
  EXPECT_EQ(
      error_of([&] { load_checkpoint_dir(dir); }),
      "checkpoint '" + dir + "': bad file name '../x' (a plain name other than manifest.json)");
  write_bytes(
      dir + "/manifest.json",
      R"({"format": "fluxtrain-checkpoint", "version": 1, "files": {"model.safetensors": {"bytes": -1}}})");
  EXPECT_EQ(error_of([&] { load_checkpoint_dir(dir); }),
            "checkpoint '" + dir +
                "': manifest.json entry for model.safetensors needs \"bytes\" "
                "(an integer) and \"xxh64\" (a string)");

  fs::remove(dir + "/manifest.json");
  EXPECT_EQ(error_of([&] { load_checkpoint_dir(dir); }),
            "checkpoint '" + dir +
                "': manifest.json missing (an unfinished save, or not a fluxtrain checkpoint)");
  EXPECT_EQ(error_of([&] { load_checkpoint_dir(tmp / "nope"); }),
            "checkpoint '" + (tmp / "nope") + "': no such directory");
  EXPECT_EQ(error_of([&] {
              save_checkpoint_dir(tmp / "bad", {{"a/b", {}}}, {});
            }),
            "checkpoint '" + (tmp / "bad") +
                "': bad file name 'a/b' (a plain name other than manifest.json)");
  EXPECT_EQ(error_of([&] {
              save_checkpoint_dir(tmp / "bad", {{"manifest.json", {}}}, {});
            }),
            "checkpoint '" + (tmp / "bad") +
                "': bad file name 'manifest.json' (a plain name other than manifest.json)");
}

TEST(Checkpoint, OverwriteLeavesACompleteCheckpoint) {
  TempDir tmp;
  const std::string best = tmp / "best";
  save_checkpoint_dir(best, sample_files(1.0f), {{"step", 100}});
  save_checkpoint_dir(best + "/", sample_files(3.0f), {{"step", 200}});  // trailing slash too
  LoadedCheckpoint ck = load_checkpoint_dir(best);
  EXPECT_EQ(ck.state["step"], 200);
  EXPECT_TRUE(
      torch::equal(ck.file("optimizer.safetensors").load("exp_avg.w"), torch::full({3, 4}, 3.0f)));
  EXPECT_EQ(entries(tmp.str()), std::vector<std::string>{"best"});  // no .tmp- or .old- left

  // A save that fails part way leaves the old checkpoint as it was, and no temporary directory.
  EXPECT_NE(error_of([&] {
              save_checkpoint_dir(
                  best, {{"model.safetensors", {{"x", torch::ones(2)}, {"x", torch::ones(2)}}}},
                  {{"step", 300}});
            }),
            "");
  EXPECT_EQ(load_checkpoint_dir(best).state["step"], 200);
  EXPECT_EQ(entries(tmp.str()), std::vector<std::string>{"best"});
}

TEST(Checkpoint, LoadRecoversTheAsideCopyAfterACrash) {
  TempDir tmp;
  const std::string best = tmp / "best";
  save_checkpoint_dir(best, sample_files(5.0f), {{"step", 7}});
  // As if the process died between "rename the old one aside" and "rename the new one in":
  // only the aside copy and an unfinished temporary directory are there.
  const std::string aside = best + ".old-" + kDeadTag;
  fs::rename(best, aside);
  make_dir_with_file(best + ".tmp-" + kDeadTag);
  LoadedCheckpoint ck = load_checkpoint_dir(best);
  EXPECT_EQ(ck.state["step"], 7);
  EXPECT_TRUE(
      torch::equal(ck.file("optimizer.safetensors").load("exp_avg.w"), torch::full({3, 4}, 5.0f)));
  EXPECT_TRUE(fs::is_directory(best));
  EXPECT_FALSE(fs::exists(aside));
}

TEST(Checkpoint, ListIgnoresTemporariesAndPruneRemovesThem) {
  TempDir tmp;
  const std::string root = tmp / "checkpoints";
  for (int64_t step : {20, 5, 100, 10})
    save_checkpoint_dir(step_checkpoint_dir(root, step), sample_files(1.0f), {{"step", step}});
  EXPECT_EQ(step_checkpoint_dir(root, 5), root + "/step-5");
  const std::string dead_tmp = root + "/step-200.tmp-" + kDeadTag;
  const std::string own_tmp =
      root + "/step-300.tmp-" + std::to_string(::getpid()) + "-00000000000000ff";
  const std::string live_tmp = root + "/step-400.tmp-1-00000000000000ff";  // pid 1 is alive
  for (const auto& d : {dead_tmp, own_tmp, live_tmp}) make_dir_with_file(d);
  fs::create_directories(root + "/notes");
  fs::create_directories(root + "/step-x");
  write_bytes(root + "/step-7", "a file, not a directory");

  using List = std::vector<std::pair<int64_t, std::string>>;
  const List all = {{5, root + "/step-5"},
                    {10, root + "/step-10"},
                    {20, root + "/step-20"},
                    {100, root + "/step-100"}};
  EXPECT_EQ(list_step_checkpoints(root), all);  // by number, not by name
  EXPECT_TRUE(list_step_checkpoints(tmp / "missing").empty());

  prune_step_checkpoints(root, 0);  // keeps every checkpoint; removes leftovers of dead writers
  EXPECT_EQ(list_step_checkpoints(root), all);
  EXPECT_FALSE(fs::exists(dead_tmp));
  EXPECT_FALSE(fs::exists(own_tmp));  // this process is not writing it
  EXPECT_TRUE(fs::exists(live_tmp));  // another live process might be
  EXPECT_TRUE(fs::exists(root + "/notes"));
  EXPECT_TRUE(fs::exists(root + "/step-x"));
  EXPECT_TRUE(fs::exists(root + "/step-7"));

  prune_step_checkpoints(root, 2);
  EXPECT_EQ(list_step_checkpoints(root),
            (List{{20, root + "/step-20"}, {100, root + "/step-100"}}));
  EXPECT_EQ(load_checkpoint_dir(root + "/step-100").state["step"], 100);
  EXPECT_EQ(entries(root),
            (std::vector<std::string>{"notes", "step-100", "step-20",
                                      "step-400.tmp-1-00000000000000ff", "step-7", "step-x"}));
  prune_step_checkpoints(root, 5);  // fewer than keep_last: nothing to do
  EXPECT_EQ(list_step_checkpoints(root).size(), 2u);
}

TEST(Checkpoint, ListAndPruneHandleOrphanedAsideCopies) {
  TempDir tmp;
  const std::string root = tmp / "ck";
  for (int64_t step : {1, 2, 3})
    save_checkpoint_dir(step_checkpoint_dir(root, step), sample_files(1.0f), {{"step", step}});
  // step-3 was being overwritten when the process died; step-2's swap finished but the old copy
  // was not yet deleted.
  const std::string orphan = root + "/step-3.old-" + kDeadTag;
  fs::rename(root + "/step-3", orphan);
  save_checkpoint_dir(root + "/step-9.tmp-x", sample_files(1.0f), {});  // not a step name
  const std::string leftover = root + "/step-2.old-" + kDeadTag;
  fs::create_directories(leftover);
  write_bytes(leftover + "/manifest.json", "{}");

  using List = std::vector<std::pair<int64_t, std::string>>;
  EXPECT_EQ(list_step_checkpoints(root),
            (List{{1, root + "/step-1"}, {2, root + "/step-2"}, {3, orphan}}));
  EXPECT_EQ(load_checkpoint_dir(orphan).state["step"], 3);

  prune_step_checkpoints(root, 0);
  EXPECT_EQ(list_step_checkpoints(root),
            (List{{1, root + "/step-1"}, {2, root + "/step-2"}, {3, root + "/step-3"}}));
  EXPECT_FALSE(fs::exists(orphan));
  EXPECT_FALSE(fs::exists(leftover));
  EXPECT_EQ(load_checkpoint_dir(root + "/step-3").state["step"], 3);
}
