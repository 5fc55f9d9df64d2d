// The weight EMA: the warm-up decay by hand, averages against a float64 recurrence, the averaged
// weights swapped in and back, and the CPU-resident variant giving the same averages.
#include "train/ema.h"

#include <gtest/gtest.h>

using namespace fluxtrain;

TEST(Ema, AveragesWithWarmUpAndSwapsTheAverageIn) {
  for (bool on_cpu : {false, true}) {
    auto w = torch::zeros({3}, torch::kFloat);
    AdamW::Named params = {{"w", w}};
    Ema ema(params, 0.9, on_cpu);
    EXPECT_DOUBLE_EQ(ema.decay_at(1), 2.0 / 11.0);  // min(0.9, (1 + t) / (10 + t))
    EXPECT_DOUBLE_EQ(ema.decay_at(1000), 0.9);
    double ref = 0;
    for (int step = 1; step <= 30; ++step) {
      w.fill_(static_cast<float>(step));
      ema.update(step);
      const double d = std::min(0.9, (1.0 + step) / (10.0 + step));
      ref = d * ref + (1 - d) * step;
    }
    const auto avg = ema.tensors()[0].second;
    EXPECT_EQ(avg.device().type(), torch::kCPU);
    EXPECT_NEAR(avg[0].item<double>(), ref, 1e-4) << "on_cpu " << on_cpu;
    double seen = 0;
    ema.with_averaged_weights([&] { seen = w[1].item<double>(); });
    EXPECT_NEAR(seen, ref, 1e-4);
    EXPECT_EQ(w[1].item<float>(), 30.0f);  // the live weights are back
  }
}
