// FLOP accounting (DESIGN.md section 8), the datasheet peak table and the per-point figures.
#include "bench/flops.h"

#include <gtest/gtest.h>

#include "bench/figures.h"

using namespace fluxtrain;

TEST(Flops, FluxSchnellAt256PxIs20Point4TflopPerTrainingSample) {
  const auto schnell = model_preset("flux-schnell");
  EXPECT_EQ(image_tokens_for(schnell, 256), 256);  // (256 / 16)^2
  EXPECT_EQ(schnell.max_text_tokens, 256);
  const double train = training_flops_per_image(schnell, 256);
  EXPECT_NEAR(train / 20.4e12, 1.0, 0.01) << train;
  // Independently, DESIGN.md's per-token estimate: each of the 57 blocks applies 12 H^2 weights
  // per token (double: qkv 3, proj 1, MLP 8 per stream; single: linear1 7, linear2 5), so
  // forward = 2 x 57 x 12 H^2 x L + 4 x L^2 x H x 57, L = 256 + 256 text tokens. The embedders,
  // modulation and final layer add well under 1 %.
  const double H = 3072, L = 512;
  const double forward = 2 * 57 * 12 * H * H * L + 4 * L * L * H * 57;
  EXPECT_NEAR(train / (3 * forward), 1.0, 0.005);
  EXPECT_GT(train, 3 * forward);
}

TEST(Flops, TokensCheckpointingAndSampling) {
  const auto dev = model_preset("flux-dev");
  EXPECT_EQ(image_tokens_for(dev, 512), 1024);
  EXPECT_EQ(image_tokens_for(dev, 1024), 4096);
  EXPECT_EQ(image_tokens_for(model_preset("tiny"), 32), 64);
  const double fwd = flux_forward_flops(dev.flux, 1024, 512);
  EXPECT_DOUBLE_EQ(training_flops_per_image(dev, 512), 3 * fwd);
  EXPECT_DOUBLE_EQ(training_flops_per_image(dev, 512, true), 3 * fwd);  // model FLOPs: no recompute
  EXPECT_DOUBLE_EQ(training_flops_per_image(dev, 512, true, true), 4 * fwd);
  EXPECT_DOUBLE_EQ(sampling_flops_per_image(dev, 512, 28, false), 28 * fwd);
  EXPECT_DOUBLE_EQ(sampling_flops_per_image(dev, 512, 28, true), 56 * fwd);
}

TEST(Flops, DatasheetPeaks) {
  EXPECT_EQ(datasheet_peak_tflops("NVIDIA H100 80GB HBM3", "bf16"), 989.0);
  EXPECT_EQ(datasheet_peak_tflops("NVIDIA H200", "bf16"), 989.0);
  EXPECT_EQ(datasheet_peak_tflops("NVIDIA H100 PCIe", "bf16"), 756.0);
  EXPECT_EQ(datasheet_peak_tflops("NVIDIA A100-SXM4-80GB", "bf16"), 312.0);
  EXPECT_EQ(datasheet_peak_tflops("NVIDIA H100 80GB HBM3", "fp32"), 67.0);
  EXPECT_FALSE(datasheet_peak_tflops("CPU: AMD EPYC", "bf16").has_value());
  EXPECT_FALSE(datasheet_peak_tflops("NVIDIA H100 80GB HBM3", "fp8").has_value());
}

TEST(Figures, ThroughputFlopsMfuAndCostFromMeasuredTimes) {
  FigureInputs in;
  in.times_ms = {100, 200, 300};  // 0.6 s for 3 steps of 4 images: 20 images/s
  in.images_per_iteration = 4;
  in.tokens_per_image = 100;
  in.model_flops_per_image = 1e12;
  in.peak_tflops = 40.0;
  in.price_per_hour = 3.6;  // $0.001 a second
  auto f = compute_figures(in);
  EXPECT_DOUBLE_EQ(f.images_per_s, 20);
  EXPECT_DOUBLE_EQ(f.images_per_s_per_device, 20);
  EXPECT_DOUBLE_EQ(f.tokens_per_s, 2000);
  EXPECT_DOUBLE_EQ(f.model_tflops, 20);
  EXPECT_DOUBLE_EQ(*f.mfu, 0.5);
  EXPECT_NEAR(*f.cost_per_1k_images, 0.05, 1e-12);  // 1,000 images = 50 s = $0.05
  EXPECT_DOUBLE_EQ(f.time_ms.p50, 200);
  EXPECT_DOUBLE_EQ(f.time_ms.mean, 200);
  // Two devices sharing the work: per-device figures halve, cost per image doubles.
  in.devices = 2;
  f = compute_figures(in);
  EXPECT_DOUBLE_EQ(f.images_per_s_per_device, 10);
  EXPECT_DOUBLE_EQ(f.model_tflops, 10);
  EXPECT_DOUBLE_EQ(*f.mfu, 0.25);
  EXPECT_NEAR(*f.cost_per_1k_images, 0.1, 1e-12);
  // Unknown peak and no price: no MFU and no cost.
  in.peak_tflops.reset();
  in.price_per_hour = 0;
  f = compute_figures(in);
  EXPECT_FALSE(f.mfu.has_value());
  EXPECT_FALSE(f.cost_per_1k_images.has_value());
  in.times_ms.clear();
  EXPECT_THROW(compute_figures(in), std::invalid_argument);
}
