// ControlNet end to end on a tiny FLUX.1 repository: `train --method controlnet` with Canny
// control images lowers the loss with the base frozen; a checkpoint is a diffusers controlnet/
// directory (config.json + diffusion_pytorch_model.safetensors) beside fluxtrain's own files;
// resume is bit-identical; `sample --checkpoint` and `sample --model --controlnet` use it, and at
// scale 0 it changes nothing; a parquet conditioning_image column trains as the control images
// it holds.
#include "model/controlnet.h"

#include <gtest/gtest.h>

#include <filesystem>

#include "data/control_images.h"
#include "fixtures/fixtures.h"
#include "fixtures/flux_repo_fixture.h"
#include "fixtures/parquet_fixture.h"
#include "io/checkpoint.h"
#include "io/files.h"
#include "io/image.h"
#include "test_util.h"
#include "train/train_config.h"
#include "train/trainer.h"

namespace fs = std::filesystem;
using namespace fluxtrain;
using fluxtrain::fixtures::mean_of;
using fluxtrain::testing::run_fluxtrain;
using fluxtrain::testing::TempDir;

namespace {

Config controlnet_config(const std::string& model, const fs::path& out,
                         std::vector<std::string> extra = {}, bool block_keys = true) {
  Config c(train_schema());
  std::vector<std::string> args = fixtures::tiny_run_args(model, out.string());
  args.insert(args.end(),
              {"--method", "controlnet", "--control_images", "canny", "--canny_sigma", "0"});
  if (block_keys)
    for (const char* a : {"--controlnet_double_blocks", "1", "--controlnet_single_blocks", "1"})
      args.push_back(a);
  args.insert(args.end(), extra.begin(), extra.end());
  parse_args(c, args);
  return c;
}

}  // namespace

TEST(ControlNetRun, TrainsTheControlNetOnlyAndItsCheckpointIsADiffusersControlNet) {
  TempDir tmp;
  const std::string repo = tmp / "model";
  fixtures::write_tiny_flux_repo(repo, fixtures::RepoLayout::kBfl, true, 51);
  auto r = train(controlnet_config(repo, tmp.path() / "runs", {"--controlnet_save_dtype", "fp32"}));
  const auto losses = fixtures::train_losses(r.run_dir);
  ASSERT_EQ(losses.size(), 12u);
  EXPECT_LT(mean_of(losses, 9, 3), 0.95 * mean_of(losses, 0, 3));
  const fs::path step = fs::path(r.run_dir) / "checkpoints" / "step-12";
  auto ck = load_checkpoint_dir(step.string());
  EXPECT_EQ(ck.state["method"], "controlnet");
  EXPECT_EQ(ck.state["complete_model"], false);
  // model.safetensors: the ControlNet alone, in fluxtrain's names.
  const auto& model = ck.file("model.safetensors");
  for (const auto& n : model.names())
    EXPECT_TRUE(n.rfind("controlnet_", 0) == 0 || n.rfind("double_blocks.0.", 0) == 0 ||
                n.rfind("single_blocks.0.", 0) == 0 || n.find("_in.") != std::string::npos)
        << n;
  EXPECT_TRUE(model.contains("controlnet_blocks.0.weight"));
  EXPECT_FALSE(model.contains("double_blocks.1.img_mod.lin.weight"));
  EXPECT_GT(model.load("controlnet_blocks.0.weight").abs().max().item<float>(), 0.0f);
  // The directory is a diffusers ControlNet: config.json (listed in the manifest) and the
  // weights under diffusers' names, equal to what model.safetensors holds.
  const auto manifest = read_json_file((step / "manifest.json").string());
  EXPECT_TRUE(manifest["texts"].contains("config.json"));
  const auto config = read_json_file((step / "config.json").string());
  EXPECT_EQ(config["_class_name"], "FluxControlNetModel");
  EXPECT_EQ(config["num_layers"], 1);
  EXPECT_EQ(config["num_single_layers"], 1);
  const ControlNetFiles files = inspect_controlnet(step.string());
  FluxControlNet net(files.params, 1, 1);
  load_controlnet(*net, files);
  for (const auto& item : net->named_parameters())
    EXPECT_TRUE(torch::equal(item.value(), model.load(item.key()))) << item.key();
  auto info = run_fluxtrain("info --checkpoint " + r.run_dir);  // (depths from the checkpoint)
  ASSERT_EQ(info.code, 0) << info.out;
  EXPECT_NE(info.out.find("ControlNet: " + std::to_string(model.size()) + " tensors"),
            std::string::npos)
      << info.out;
  EXPECT_NE(info.out.find("memory plan: controlnet 1 double + 1 single blocks"), std::string::npos)
      << info.out;
  SafetensorsFile diffusers((step / "diffusion_pytorch_model.safetensors").string());
  EXPECT_TRUE(diffusers.contains("transformer_blocks.0.attn.to_q.weight"));
  EXPECT_TRUE(diffusers.contains("controlnet_x_embedder.weight"));

  // Sampling: the run's checkpoint and the base model with --controlnet give the same image (up
  // to rounding); at scale 0 the ControlNet changes nothing; at scale 1 it does.
  const std::string control = tmp / "control.png";
  auto hwc = torch::zeros({32, 32, 3}, torch::kUInt8);
  hwc.narrow(0, 8, 16).narrow(1, 8, 16).fill_(255);
  fixtures::write_text(control, encode_png(hwc));
  const std::string sample_args =
      " --prompt \"a red circle\" --height 32 --width 32 --steps 2 --threads 1 --control_canny "
      "true --control_image " +
      control + " --out ";
  auto s1 = run_fluxtrain("sample --checkpoint " + r.run_dir + sample_args + (tmp / "ckpt.png"));
  ASSERT_EQ(s1.code, 0) << s1.out;
  EXPECT_NE(s1.out.find("controlnet: 1 double + 1 single blocks, scale 1"), std::string::npos)
      << s1.out;
  // The checkpoint samples with the Canny settings it trained with (canny_sigma 0); a ControlNet
  // directory takes them from the flags.
  EXPECT_NE(s1.out.find("(its Canny edges, thresholds 100 / 200, sigma 0)"), std::string::npos)
      << s1.out;
  auto s2 = run_fluxtrain("sample --model " + repo + " --controlnet " + step.string() +
                          " --canny_sigma 0" + sample_args + (tmp / "model.png"));
  ASSERT_EQ(s2.code, 0) << s2.out;
  EXPECT_NE(s2.out.find("sigma 0)"), std::string::npos) << s2.out;
  const auto a = read_image(tmp / "ckpt.png").to(torch::kFloat),
             b = read_image(tmp / "model.png").to(torch::kFloat);
  EXPECT_LE((a - b).abs().max().item<double>(), 2.0);
  auto s0 = run_fluxtrain("sample --model " + repo +
                          " --prompt \"a red circle\" --height 32 --width 32 --steps 2 --threads "
                          "1 --out " +
                          (tmp / "base.png"));
  ASSERT_EQ(s0.code, 0) << s0.out;
  auto s3 = run_fluxtrain("sample --model " + repo + " --controlnet " + step.string() +
                          " --controlnet_scale 0" + sample_args + (tmp / "scale0.png"));
  ASSERT_EQ(s3.code, 0) << s3.out;
  EXPECT_TRUE(torch::equal(read_image(tmp / "base.png"), read_image(tmp / "scale0.png")));
  // The trained ControlNet moves the image by more than the tolerance above.
  EXPECT_GT(fixtures::max_abs_diff(read_image(tmp / "base.png").to(torch::kFloat), b), 2.0);

  // Errors name what is missing.
  auto no_image = run_fluxtrain("sample --model " + repo + " --controlnet " + step.string() +
                                " --prompt x --out " + (tmp / "x.png"));
  EXPECT_EQ(no_image.code, 2);
  EXPECT_NE(no_image.out.find("needs --control_image FILE"), std::string::npos) << no_image.out;
  auto no_net = run_fluxtrain("sample --model " + repo + " --control_canny true --prompt x --out " +
                              (tmp / "x.png"));
  EXPECT_EQ(no_net.code, 2);
  EXPECT_NE(no_net.out.find("--control_canny: give --controlnet"), std::string::npos) << no_net.out;
  auto no_source = run_fluxtrain("train --model " + repo + " --method controlnet --steps 1");
  EXPECT_EQ(no_source.code, 2);
  EXPECT_NE(no_source.out.find("give control_images"), std::string::npos) << no_source.out;
  auto convert = run_fluxtrain("convert --in " + r.run_dir + " --out " + (tmp / "x.safetensors") +
                               " --to bfl");
  EXPECT_EQ(convert.code, 2);
  EXPECT_NE(convert.out.find("is itself a diffusers ControlNet"), std::string::npos) << convert.out;
  // A control folder mirrors the training folder: val_data has none.
  fixtures::write_text(tmp / "imgs/a.png", encode_png(hwc));
  fixtures::write_text(tmp / "imgs/a.txt", "a square");
  fs::create_directories(tmp.path() / "controls");
  auto val = run_fluxtrain("train --model " + repo + " --method controlnet --steps 1 --data " +
                           (tmp / "imgs") + " --control_images " + (tmp / "controls") +
                           " --val_data " + (tmp / "imgs") + " --output_dir " + (tmp / "v"));
  EXPECT_EQ(val.code, 2);
  EXPECT_NE(val.out.find("val_data / class_data have no control images"), std::string::npos)
      << val.out;
}

TEST(ControlNetRun, ResumeIsBitIdenticalAndControlNetInitRestartsFromACheckpoint) {
  TempDir tmp;
  const std::string repo = tmp / "model";
  fixtures::write_tiny_flux_repo(repo, fixtures::RepoLayout::kDiffusers, false, 52);
  const std::vector<std::string> extra = {
      "--steps", "4", "--ckpt_every", "2", "--keep_last", "0", "--gradient_checkpointing", "true"};
  auto straight = train(controlnet_config(repo, tmp.path() / "a", extra));
  auto first = train(controlnet_config(repo, tmp.path() / "b", extra));
  fs::remove_all(fs::path(first.run_dir) / "checkpoints" / "step-4");
  Config resume(train_schema());
  parse_args(resume, {"--resume", first.run_dir});
  auto resumed = train(resume);
  EXPECT_EQ(fixtures::train_losses(straight.run_dir), fixtures::train_losses(resumed.run_dir));
  const std::string end_a = (fs::path(straight.run_dir) / "checkpoints" / "step-4").string();
  EXPECT_EQ(fixtures::checkpoint_differences(
                end_a, (fs::path(resumed.run_dir) / "checkpoints" / "step-4").string(),
                {"model.safetensors", "optimizer.safetensors"}),
            std::vector<std::string>{});
  // controlnet_init from the finished checkpoint: one step at lr 0 leaves the new run's
  // ControlNet exactly what the checkpoint's diffusers file (bf16) holds, tensor by tensor.
  auto init = train(controlnet_config(repo, tmp.path() / "c",
                                      {"--steps", "1", "--lr", "0", "--controlnet_init", end_a},
                                      /*block_keys=*/false));
  const auto started =
      load_checkpoint_dir((fs::path(init.run_dir) / "checkpoints" / "step-1").string());
  SafetensorsFile source((fs::path(end_a) / "diffusion_pytorch_model.safetensors").string());
  const auto& model = started.file("model.safetensors");
  EXPECT_TRUE(model.contains("controlnet_blocks.0.weight"));
  for (const char* name : {"controlnet_blocks.0.weight", "controlnet_single_blocks.0.bias",
                           "controlnet_x_embedder.weight"})
    EXPECT_TRUE(torch::equal(model.load(name), source.load(name, torch::kFloat))) << name;
  EXPECT_GT(model.load("controlnet_blocks.0.weight").abs().max().item<float>(), 0.0f);
}

TEST(ControlNetRun, Seed004sSaversCombine) {
  // Seed 004's card: an int8 base, 8-bit AdamW, checkpointing; plus the step inside backward.
  TempDir tmp;
  const std::string repo = tmp / "model";
  fixtures::write_tiny_flux_repo(repo, fixtures::RepoLayout::kBfl, true, 53);
  auto r = train(controlnet_config(
      repo, tmp.path() / "runs",
      {"--base_weights", "int8", "--optimizer_state", "int8", "--optimizer_block_size", "256",
       "--gradient_checkpointing", "true", "--optimizer_in_backward", "true", "--ema_decay", "0.9",
       "--ema_on_cpu", "true"}));
  const auto losses = fixtures::train_losses(r.run_dir);
  ASSERT_EQ(losses.size(), 12u);
  EXPECT_LT(mean_of(losses, 9, 3), 0.95 * mean_of(losses, 0, 3));
  const fs::path step = fs::path(r.run_dir) / "checkpoints" / "step-12";
  int quantised = 0;
  const auto checkpoint = load_checkpoint_dir(step.string());
  for (const auto& n : checkpoint.file("optimizer.safetensors").names())
    quantised += n.size() > 3 && n.compare(n.size() - 3, 3, ".q8") == 0;
  EXPECT_GT(quantised, 0);
  // The base stays int8 when the checkpoint samples (from its configuration), with the EMA's
  // ControlNet (use_ema, the default).
  const std::string control = tmp / "control.png";
  fixtures::write_text(control, encode_png(torch::full({32, 32, 3}, 200, torch::kUInt8)));
  auto s =
      run_fluxtrain("sample --checkpoint " + r.run_dir +
                    " --prompt x --height 32 --width 32 --steps 2 --threads 1 --control_image " +
                    control + " --out " + (tmp / "s.png"));
  ASSERT_EQ(s.code, 0) << s.out;
  EXPECT_NE(s.out.find("base weights: the blocks' linear layers in int8"), std::string::npos)
      << s.out;
}

TEST(ControlNetRun, AParquetConditioningImageColumnTrainsAsTheControlImagesItHolds) {
  // Rows of 32 x 32 images whose conditioning_image is the PNG of their own Canny map (the
  // detector's defaults): training from the column is the very run that computes Canny itself.
  TempDir tmp;
  const std::string repo = tmp / "model";
  fixtures::write_tiny_flux_repo(repo, fixtures::RepoLayout::kBfl, true, 53);
  std::vector<fixtures::HfImageTextRow> rows;
  fixtures::ParquetFixtureColumn cb{
      "conditioning_image.bytes", fixtures::ParquetType::kBytes, true, {}};
  fixtures::ParquetFixtureColumn cp{
      "conditioning_image.path", fixtures::ParquetType::kString, true, {}};
  for (int i = 0; i < 8; ++i) {
    torch::manual_seed(100 + i);
    // Smooth blobs (a coarse grid upsampled), so that Canny finds edges and not noise.
    auto coarse = torch::randint(0, 256, {1, 3, 4, 4}, torch::kInt64).to(torch::kFloat);
    auto hwc =
        torch::nn::functional::interpolate(coarse, torch::nn::functional::InterpolateFuncOptions()
                                                       .size(std::vector<int64_t>{32, 32})
                                                       .mode(torch::kNearest))[0]
            .permute({1, 2, 0})
            .to(torch::kUInt8)
            .contiguous();
    const auto chw = hwc.permute({2, 0, 1}).to(torch::kFloat) / 127.5 - 1;
    const auto edges = to_uint8_hwc(canny_control_image(chw, CannyOptions{}));
    rows.push_back({false, encode_png(hwc), std::nullopt, "blobs " + std::to_string(i % 2)});
    cb.cells.push_back(fixtures::ParquetCell{encode_png(edges)});
    cp.cells.push_back(fixtures::ParquetCell{});
  }
  auto table = fixtures::hf_image_text_table(rows);
  table.columns.insert(table.columns.begin() + 2, {cb, cp});
  table.structs.push_back({"conditioning_image", true, {}});
  fs::create_directories(tmp.path() / "fill");
  fixtures::write_parquet_fixture(tmp / "fill/train-00000-of-00001.parquet", table);
  auto config = [&](const std::string& source, const std::string& out) {
    Config c(train_schema());
    std::vector<std::string> args = fixtures::tiny_run_args(repo, tmp / out);
    args.insert(args.end(), {"--method", "controlnet", "--control_images", source, "--data",
                             tmp / "fill", "--steps", "3", "--val_samples", "0",
                             "--controlnet_double_blocks", "1", "--controlnet_single_blocks", "1"});
    parse_args(c, args);
    return c;
  };
  auto column = train(config("column", "column"));
  auto canny = train(config("canny", "canny"));
  const auto lc = fixtures::train_losses(column.run_dir);
  ASSERT_EQ(lc.size(), 3u);
  EXPECT_EQ(lc, fixtures::train_losses(canny.run_dir));
  // The control images reached the ControlNet: its zero-initialised input embedder has moved.
  auto ck = load_checkpoint_dir((fs::path(column.run_dir) / "checkpoints" / "step-3").string());
  EXPECT_GT(
      ck.file("model.safetensors").load("controlnet_x_embedder.weight").abs().max().item<float>(),
      0.0f);
  // column needs parquet data.
  fixtures::write_text(tmp / "imgs/a.png", encode_png(torch::zeros({32, 32, 3}, torch::kUInt8)));
  fixtures::write_text(tmp / "imgs/a.txt", "a square");
  auto folder =
      run_fluxtrain("train --model " + repo + " --method controlnet --steps 1 --data " +
                    (tmp / "imgs") + " --control_images column --output_dir " + (tmp / "f"));
  EXPECT_EQ(folder.code, 2);
  EXPECT_NE(folder.out.find("control_images column: the control images come from a parquet "
                            "column (conditioning_image_column 'conditioning_image'), but `data` "
                            "is imagefolder"),
            std::string::npos)
      << folder.out;
}
