// Flow-matching objective, timestep sampling, schedules and AdamW against independent
// computations (hand-worked values, torch::optim::AdamW).
#include <gtest/gtest.h>

#include <cmath>

#include "core/errors.h"
#include "core/rng.h"
#include "sample/sampler.h"
#include "train/flow_matching.h"
#include "train/optimizer.h"
#include "train/schedule.h"

using namespace fluxtrain;

TEST(FlowMatching, InterpolationTargetAndLoss) {
  auto x0 = torch::tensor({1.f, 2.f, 3.f, 4.f}).view({2, 2});
  auto eps = torch::tensor({0.f, 0.f, 1.f, 1.f}).view({2, 2});
  auto pair = flow_matching_pair(x0, eps, torch::tensor({0.25f, 1.0f}));
  // x_t = (1 - t) x0 + t eps.
  EXPECT_TRUE(torch::allclose(pair.x_t, torch::tensor({0.75f, 1.5f, 1.f, 1.f}).view({2, 2})));
  EXPECT_TRUE(torch::equal(pair.target, eps - x0));
  auto l = flow_matching_loss_per_sample(torch::zeros({2, 2}), pair.target);
  EXPECT_FLOAT_EQ(l[0].item<float>(), (1 + 4) / 2.0f);
  EXPECT_FLOAT_EQ(l[1].item<float>(), (4 + 9) / 2.0f);
}

TEST(FlowMatching, ShiftFunctions) {
  // mu: 0.5 at 256 tokens, 1.15 at 4096, linear.
  EXPECT_NEAR(flux_shift_mu(256), 0.5, 1e-12);
  EXPECT_NEAR(flux_shift_mu(4096), 1.15, 1e-12);
  EXPECT_NEAR(flux_shift_mu(2176), 0.825, 1e-12);
  // t' = e^mu / (e^mu + 1/t - 1): mu = ln 3, t = 0.5 -> 3 / (3 + 1) = 0.75.
  auto t = torch::tensor({0.0, 0.5, 1.0}, torch::kDouble);
  auto s = time_shift(std::log(3.0), 1.0, t);
  EXPECT_DOUBLE_EQ(s[0].item<double>(), 0.0);
  EXPECT_NEAR(s[1].item<double>(), 0.75, 1e-12);
  EXPECT_DOUBLE_EQ(s[2].item<double>(), 1.0);
  EXPECT_NEAR(constant_shift(3.0, t)[1].item<double>(), 0.75, 1e-12);
}

TEST(FlowMatching, TimestepSamplersHaveTheirDistributions) {
  const int64_t n = 200000;
  auto gen = make_generator(1, RngStream::kTimestep);
  TimestepOptions u;
  auto tu = sample_timesteps(u, n, 256, gen);
  EXPECT_NEAR(tu.mean().item<double>(), 0.5, 0.005);
  EXPECT_GE(tu.min().item<float>(), 0.f);
  EXPECT_LT(tu.max().item<float>(), 1.f);
  TimestepOptions ln{TimestepSampling::kLogitNormal, 0.5, 0.8};
  auto tl = sample_timesteps(ln, n, 256, gen);
  auto logits = torch::log(tl / (1 - tl));
  EXPECT_NEAR(logits.mean().item<double>(), 0.5, 0.01);
  EXPECT_NEAR(logits.std().item<double>(), 0.8, 0.01);
  // shift(3) of sigmoid(N(0,1)): median moves from 0.5 to 0.75.
  TimestepOptions sh{TimestepSampling::kShift, 0.0, 1.0, 3.0};
  EXPECT_NEAR(sample_timesteps(sh, n, 256, gen).median().item<double>(), 0.75, 0.005);
  // flux_shift at 4096 tokens: median e^1.15 / (e^1.15 + 1).
  TimestepOptions fs{TimestepSampling::kFluxShift};
  EXPECT_NEAR(sample_timesteps(fs, n, 4096, gen).median().item<double>(),
              std::exp(1.15) / (std::exp(1.15) + 1), 0.005);
  EXPECT_THROW(parse_timestep_sampling("sigmoid"), UserError);
}

TEST(Sampler, FluxScheduleMatchesHandValues) {
  auto s = flux_schedule(4, 256, false);
  ASSERT_EQ(s.size(), 5u);
  EXPECT_DOUBLE_EQ(s[0], 1.0);
  EXPECT_DOUBLE_EQ(s[1], 0.75);
  EXPECT_DOUBLE_EQ(s[4], 0.0);
  auto sh = flux_schedule(2, 256, true);  // mu = 0.5: t = 0.5 -> e^0.5 / (e^0.5 + 1)
  EXPECT_NEAR(sh[1], std::exp(0.5) / (std::exp(0.5) + 1), 1e-12);
  EXPECT_DOUBLE_EQ(sh[2], 0.0);
}

TEST(Schedule, HandWorkedValues) {
  LrSchedule c{"constant", 1.0, 10, 100};
  EXPECT_DOUBLE_EQ(c.at(0), 1.0);
  LrSchedule w{"warmup_hold", 1.0, 4, 100};
  EXPECT_DOUBLE_EQ(w.at(0), 0.25);
  EXPECT_DOUBLE_EQ(w.at(3), 1.0);
  EXPECT_DOUBLE_EQ(w.at(99), 1.0);
  LrSchedule cos{"cosine", 2.0, 10, 110, 0.1};
  EXPECT_DOUBLE_EQ(cos.at(4), 1.0);
  EXPECT_DOUBLE_EQ(cos.at(10), 2.0);
  EXPECT_NEAR(cos.at(60), 0.2 + 1.8 * 0.5, 1e-12);  // half way: cos(pi/2) = 0
  EXPECT_NEAR(cos.at(110), 0.2, 1e-12);
  LrSchedule lin{"linear", 1.0, 0, 100};
  EXPECT_DOUBLE_EQ(lin.at(0), 1.0);
  EXPECT_DOUBLE_EQ(lin.at(25), 0.75);
  LrSchedule bad{"step", 1.0, 0, 10};
  EXPECT_THROW(bad.at(5), UserError);
}

TEST(AdamW, MatchesTorchAdamW) {
  torch::manual_seed(5);
  auto a = torch::randn({4, 3}).requires_grad_(true);
  auto b = a.detach().clone().requires_grad_(true);
  AdamW mine({{"w", a}}, {0.9, 0.99, 1e-6, 0.1});
  torch::optim::AdamW ref(
      {b}, torch::optim::AdamWOptions(0.01).betas({0.9, 0.99}).eps(1e-6).weight_decay(0.1));
  for (int step = 0; step < 5; ++step) {
    auto x = torch::randn({3});
    (torch::matmul(a, x).pow(2).sum()).backward();
    (torch::matmul(b, x).pow(2).sum()).backward();
    mine.step(0.01);
    ref.step();
    mine.zero_grad();
    ref.zero_grad();
  }
  EXPECT_LT((a - b).abs().max().item<float>(), 1e-6);
  EXPECT_EQ(mine.steps_taken(), 5);
  auto st = mine.state_tensors();
  ASSERT_EQ(st.size(), 2u);
  EXPECT_EQ(st[0].first, "exp_avg.w");
  EXPECT_EQ(st[1].first, "exp_avg_sq.w");
}

TEST(AdamW, StateRoundTripContinuesIdentically) {
  torch::manual_seed(6);
  auto make = [] { return torch::randn({5}).requires_grad_(true); };
  auto p1 = make();
  auto p2 = p1.detach().clone().requires_grad_(true);
  AdamW o1({{"p", p1}}, {}), o2({{"p", p2}}, {});
  auto grad_step = [](torch::Tensor& p, AdamW& o, int k) {
    (p * (k + 1)).pow(3).sum().backward();
    o.step(0.1);
    o.zero_grad();
  };
  for (int k = 0; k < 3; ++k) grad_step(p1, o1, k), grad_step(p2, o2, k);
  // Restore o3 from o2's state into a copy of p2, then both continue.
  auto p3 = p2.detach().clone().requires_grad_(true);
  AdamW o3({{"p", p3}}, {});
  auto st = o2.state_tensors();
  o3.load_state(
      [&](const std::string& n) {
        for (auto& [k, v] : st)
          if (k == n) return v.clone();
        return torch::Tensor();
      },
      o2.steps_taken(), "test");
  for (int k = 3; k < 6; ++k) grad_step(p1, o1, k), grad_step(p3, o3, k);
  EXPECT_TRUE(torch::equal(p1, p3));
  AdamW o4({{"q", make()}}, {});
  EXPECT_THROW(o4.load_state([](const std::string&) { return torch::Tensor(); }, 1, "ckpt"),
               UserError);
}

TEST(ClipGradNorm, ScalesToMaxNorm) {
  auto p = torch::zeros({2}).requires_grad_(true);
  (p * torch::tensor({3.f, 4.f})).sum().backward();
  AdamW::Named named{{"p", p}};
  EXPECT_NEAR(clip_grad_norm(named, 0.0), 5.0, 1e-9);  // no clipping, norm reported
  EXPECT_NEAR(clip_grad_norm(named, 1.0), 5.0, 1e-9);
  EXPECT_NEAR(p.grad()[0].item<float>(), 0.6f, 1e-5);
  EXPECT_NEAR(p.grad()[1].item<float>(), 0.8f, 1e-5);
}
