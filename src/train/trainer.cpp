// The training loop (see trainer.h).
#include "train/trainer.h"

#include <sys/resource.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <filesystem>
#include <fstream>

#include "core/autocast.h"
#include "core/device.h"
#include "core/errors.h"
#include "core/log.h"
#include "core/rng.h"
#include "core/torch_compat.h"
#include "data/shapes.h"
#include "io/checkpoint.h"
#include "model/latents.h"
#include "model/weights.h"
#include "sample/pipeline.h"
#include "train/ema.h"
#include "train/flow_matching.h"
#include "train/metrics.h"
#include "train/optimizer.h"
#include "train/profiler.h"
#include "train/schedule.h"
#include "train/shapes_eval.h"
#include "train/train_config.h"

namespace fluxtrain {
namespace fs = std::filesystem;

namespace {

std::atomic<int> g_stop_requests{0};

extern "C" void on_stop_signal(int sig) {
  if (g_stop_requests.fetch_add(1) >= 1) {
    std::signal(sig, SIG_DFL);
    std::raise(sig);
  }
}

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// summary.json: the outcome and the resources the run used (read by `fluxtrain bench`).
void write_summary(const std::string& run_dir, const Config& cfg, const TrainResult& r,
                   int64_t samples_seen, const torch::Device& device, double seconds) {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  nlohmann::json j = {
      {"steps", r.steps},
      {"samples_seen", samples_seen},
      {"last_loss", r.last_loss},
      {"val_loss", r.val_loss ? nlohmann::json(*r.val_loss) : nlohmann::json()},
      {"best_val_loss", r.best_val_loss ? nlohmann::json(*r.best_val_loss) : nlohmann::json()},
      {"reached_target", r.reached_target},
      {"interrupted", r.interrupted},
      {"seconds", seconds},
      {"peak_rss_bytes", static_cast<int64_t>(ru.ru_maxrss) * 1024},
      {"device", device_description(device)},
      {"model", cfg.s("model")},
      {"libtorch", compat::torch_version()},
      {"fluxtrain_commit", FLUXTRAIN_COMMIT}};
  if (auto peak = compat::cuda_memory_peak(device)) {  // the CUDA caching allocator's peaks
    j["cuda_peak_allocated_bytes"] = peak->allocated_bytes;
    j["cuda_peak_reserved_bytes"] = peak->reserved_bytes;
  }
  std::ofstream(fs::path(run_dir) / "summary.json") << j.dump(2) << "\n";
}

}  // namespace

std::string find_checkpoint(const std::string& path, bool prefer_best) {
  fs::path p = fs::absolute(path).lexically_normal();
  if (p.filename().empty()) p = p.parent_path();
  if (fs::exists(p / "manifest.json")) return p.string();
  if (fs::is_directory(p / "checkpoints")) {
    if (prefer_best && fs::exists(p / "checkpoints" / "best" / "manifest.json"))
      return (p / "checkpoints" / "best").string();
    auto steps = list_step_checkpoints((p / "checkpoints").string());
    if (!steps.empty()) return steps.back().second;
    user_error("'{}': the run has no checkpoints", path);
  }
  user_error("'{}': expected a checkpoint directory (with manifest.json) or a run directory", path);
}

void install_stop_handlers() {
  std::signal(SIGINT, on_stop_signal);
  std::signal(SIGTERM, on_stop_signal);
}

TrainResult train(const Config& cfg) {
  g_stop_requests = 0;
  configure_threads(cfg.i("threads"));
  const torch::Device device = parse_device(cfg.s("device"));
  const torch::ScalarType precision = parse_precision(cfg.s("precision"));
  const uint64_t seed = static_cast<uint64_t>(cfg.i("seed"));

  // Resume point and run directory.
  std::optional<LoadedCheckpoint> resume;
  std::string run_dir;
  if (!cfg.s("resume").empty()) {
    const std::string ckpt = find_checkpoint(cfg.s("resume"), false);
    resume = load_checkpoint_dir(ckpt);
    run_dir = fs::path(ckpt).parent_path().parent_path().string();
    if (!fs::exists(fs::path(run_dir) / "config.yaml"))
      user_error("resume '{}': '{}' is not a run directory (no config.yaml)", ckpt, run_dir);
    const auto& st = resume->state;
    if (st.value("model", "") != cfg.s("model"))
      user_error("resume '{}': checkpoint is of model '{}', but model is '{}'", ckpt,
                 st.value("model", "?"), cfg.s("model"));
    log_info("resuming from {} (step {})", ckpt, st.value("step", 0));
  } else {
    run_dir = create_run_dir(cfg.s("output_dir"), cfg.s("name"));
  }
  std::fprintf(stderr, "%s", ("# resolved config\n" + cfg.to_yaml()).c_str());

  // Model and data.
  Pipeline pipe = Pipeline::create(cfg.s("model"), device, seed, cfg.b("zero_init"),
                                   cfg.b("stand_in_encoders"));
  const torch::ScalarType weights_dtype = parse_precision(cfg.s("weights"));
  if (weights_dtype != torch::kFloat) {
    if (precision != weights_dtype) user_error("weights: bf16 weights need --precision bf16");
    pipe.transformer->to(weights_dtype);
  }
  pipe.transformer->set_activation_checkpointing(cfg.b("gradient_checkpointing"));
  const int64_t res =
      cfg.i("resolution") > 0 ? cfg.i("resolution") : pipe.preset.default_resolution;
  pipe.check_resolution(res, res);
  const int64_t image_tokens = pipe.image_tokens(res, res);
  ShapesDataset train_data("train", res, seed, cfg.i("dataset_size"));
  // Validation: held-out combinations; sample i has timestep index i mod 8 and noise from i.
  std::optional<ShapesDataset> val;
  if (cfg.i("val_samples") > 0) val.emplace("val", res, seed, cfg.i("val_samples"));
  const double train_guidance =
      cfg.f("guidance") >= 0 ? cfg.f("guidance") : pipe.preset.train_guidance;

  AdamW::Named trainable;
  for (auto& kv : pipe.transformer->named_parameters())
    trainable.emplace_back(kv.key(), kv.value());
  int64_t n_params = 0;
  for (auto& [n, p] : trainable) n_params += p.numel();
  AdamW opt(trainable, {cfg.f("beta1"), cfg.f("beta2"), cfg.f("eps"), cfg.f("weight_decay"),
                        parse_precision(cfg.s("optimizer_state"))});
  std::optional<Ema> ema;
  if (cfg.f("ema_decay") > 0) ema.emplace(trainable, cfg.f("ema_decay"));
  LrSchedule sched{cfg.s("lr_schedule"), cfg.f("lr"), cfg.i("warmup_steps"), cfg.i("steps"),
                   cfg.f("min_lr_ratio")};
  TimestepOptions topt{parse_timestep_sampling(cfg.s("timestep_sampling")), cfg.f("logit_mean"),
                       cfg.f("logit_std"), cfg.f("shift")};

  const int64_t batch = cfg.i("batch_size"), accum = cfg.i("grad_accum");
  const int64_t total_steps = cfg.i("steps");
  const int64_t val_every = cfg.i("val_every");
  int64_t step = 0, samples_seen = 0, next_val = val_every;
  std::optional<double> best_val, last_val;

  if (resume) {
    const auto& st = resume->state;
    load_module_tensors(*pipe.transformer, resume->file("model.safetensors"));
    const auto& of = resume->file("optimizer.safetensors");
    opt.load_state(
        [&](const std::string& n) {
          return of.contains(n) ? of.load(n, torch::kFloat, device) : torch::Tensor();
        },
        st.at("optimizer_steps").get<int64_t>(), of.path());
    if (ema) {
      if (!resume->has_file("ema.safetensors"))
        user_error("resume '{}': ema_decay is set but the checkpoint has no ema.safetensors",
                   resume->dir);
      const auto& ef = resume->file("ema.safetensors");
      ema->load([&](const std::string& n) { return ef.contains(n) ? ef.load(n) : torch::Tensor(); },
                ef.path());
    }
    step = st.at("step").get<int64_t>();
    samples_seen = st.at("samples_seen").get<int64_t>();
    next_val = st.value("next_val", val_every);
    if (st.contains("best_val_loss") && !st["best_val_loss"].is_null())
      best_val = st["best_val_loss"].get<double>();
    if (step >= total_steps)
      user_error("resume: the checkpoint is at step {}, steps is {}: nothing to do (raise --steps)",
                 step, total_steps);
  }

  std::ofstream(fs::path(run_dir) / "config.yaml") << cfg.to_yaml();
  log_info("run directory: {}", run_dir);
  log_info(
      "model {}: {} parameters ({} trainable), {} {} compute, {} weights, {} image tokens + {} "
      "text tokens{}",
      cfg.s("model"), n_params, n_params, device_description(device), cfg.s("precision"),
      cfg.s("weights"), image_tokens, pipe.text->max_tokens(),
      cfg.b("gradient_checkpointing") ? ", activation checkpointing" : "");

  MetricsLog metrics(
      run_dir,
      {"step", "samples", "loss", "lr", "grad_norm", "samples_per_s", "step_ms", "val_loss"},
      resume ? step : -1);
  const std::string ckpt_root = (fs::path(run_dir) / "checkpoints").string();

  auto encode_batch = [&](const ShapeBatch& b, const std::vector<std::string>& captions) {
    auto x0 = pipe.images_to_tokens(b.images);
    auto cond = pipe.text->encode(captions, device);
    return std::make_pair(x0, cond);
  };

  auto validate = [&]() -> double {
    torch::NoGradGuard no_grad;
    pipe.transformer->eval();
    std::vector<double> sum(kValidationTimesteps, 0.0);
    std::vector<int64_t> count(kValidationTimesteps, 0);
    const int64_t vb = std::max<int64_t>(1, batch);
    for (int64_t start = 0; start < val->size(); start += vb) {
      std::vector<int64_t> idx;
      for (int64_t i = start; i < std::min(val->size(), start + vb); ++i) idx.push_back(i);
      auto b = val->get_batch(idx);
      auto [x0, cond] = encode_batch(b, b.captions);
      const int64_t B = x0.size(0);
      std::vector<torch::Tensor> noise;
      for (int64_t i : idx) {
        auto gen = make_generator(seed, RngStream::kValidation, static_cast<uint64_t>(i));
        noise.push_back(torch::randn({1, x0.size(1), x0.size(2)}, gen));
      }
      auto t = b.timestep_indices.to(torch::kFloat) / static_cast<double>(kValidationTimesteps);
      auto pair = flow_matching_pair(x0, torch::cat(noise, 0).to(device), t.to(device));
      std::optional<torch::Tensor> g;
      if (pipe.preset.flux.guidance_embed) g = torch::full({B}, train_guidance, x0.options());
      torch::Tensor pred;
      {
        AutocastScope ac(device.type(), precision);
        pred = pipe.transformer(
            pair.x_t,
            image_ids(B, res / pipe.preset.ae_factor, res / pipe.preset.ae_factor, device),
            cond.txt, text_ids(B, cond.txt.size(1), device), t.to(device), cond.vec, g);
      }
      auto losses = flow_matching_loss_per_sample(pred, pair.target).cpu();
      for (int64_t i = 0; i < B; ++i) {
        auto k = b.timestep_indices[i].item<int64_t>();
        sum[k] += losses[i].item<double>();
        count[k] += 1;
      }
    }
    double total = 0;
    int used = 0;
    for (int64_t k = 0; k < kValidationTimesteps; ++k)
      if (count[k]) total += sum[k] / count[k], ++used;
    pipe.transformer->train();
    return used ? total / used : 0.0;
  };

  auto save = [&](const std::string& dir) {
    nlohmann::json st = {{"step", step},
                         {"samples_seen", samples_seen},
                         {"optimizer_steps", opt.steps_taken()},
                         {"next_val", next_val},
                         {"model", cfg.s("model")},
                         {"seed", seed},
                         {"resolution", res},
                         {"best_val_loss", best_val ? nlohmann::json(*best_val) : nlohmann::json()},
                         {"val_loss", last_val ? nlohmann::json(*last_val) : nlohmann::json()},
                         {"config", cfg.to_yaml()},
                         {"fluxtrain_commit", FLUXTRAIN_COMMIT}};
    auto cpu = [](NamedTensors t) {
      for (auto& [n, x] : t) x = x.to(torch::kCPU);
      return t;
    };
    std::map<std::string, NamedTensors> files = {
        {"model.safetensors", cpu(module_tensors(*pipe.transformer))},
        {"optimizer.safetensors", cpu(opt.state_tensors())}};
    if (ema) files["ema.safetensors"] = cpu(ema->tensors());
    save_checkpoint_dir(dir, files, st);
  };

  TrainResult result;
  result.run_dir = run_dir;
  pipe.transformer->train();
  const auto t_start = Clock::now();
  const int64_t first_step = step;
  double ema_step_s = 0;
  const int64_t latent_side = res / pipe.preset.ae_factor;
  auto img_ids = image_ids(batch, latent_side, latent_side, device);
  bool stop = false;

  // profile_steps: the last N steps, never this process's first step (one-time costs) unless it
  // is the only one. A validation or a stop inside that stretch ends the profile early.
  const int64_t profile_n = cfg.i("profile_steps");
  const int64_t profile_from =
      std::max(total_steps - profile_n, first_step + (total_steps - first_step > 1 ? 1 : 0));
  std::unique_ptr<OpProfiler> profiler;
  Clock::time_point profile_t0;
  int64_t profile_first = 0;
  auto finish_profile = [&] {
    if (device.is_cuda()) torch::cuda::synchronize(device.index());
    const ProfileThreads events = profiler->stop();
    profiler.reset();
    ProfileReport rep = aggregate_profile(events, training_phases());
    rep.steps = step - profile_first + 1;
    rep.first_step = profile_first;
    rep.wall_ms = seconds_since(profile_t0) * 1000.0;
    rep.device = device_description(device);
    const std::string table = profile_table(rep, 15);
    std::ofstream(fs::path(run_dir) / "profile.csv") << profile_csv(rep);
    std::ofstream(fs::path(run_dir) / "profile.txt") << table;
    log_info("profile of steps {}..{}: {} and profile.txt\n{}", profile_first, step,
             (fs::path(run_dir) / "profile.csv").string(), table);
  };

  while (step < total_steps && !stop) {
    if (profile_n > 0 && !profiler && profile_first == 0 && step >= profile_from) {
      profile_first = step + 1;
      profile_t0 = Clock::now();
      profiler = std::make_unique<OpProfiler>(device.is_cuda());
    }
    const bool profiled = profiler != nullptr;
    const auto t0 = Clock::now();
    const double lr = sched.at(step);
    double loss_sum = 0;
    for (int64_t micro = 0; micro < accum; ++micro) {
      const uint64_t counter = static_cast<uint64_t>(step * accum + micro);
      PhaseRange data_phase("data");
      std::vector<int64_t> idx(batch);
      for (int64_t i = 0; i < batch; ++i) idx[i] = (samples_seen + i) % train_data.size();
      samples_seen += batch;
      auto b = train_data.get_batch(idx);
      std::vector<std::string> captions = b.captions;
      if (cfg.f("caption_dropout") > 0) {
        auto gen = make_generator(seed, RngStream::kCaptionDropout, counter);
        auto drop = torch::rand({batch}, gen);
        for (int64_t i = 0; i < batch; ++i)
          if (drop[i].item<float>() < cfg.f("caption_dropout")) captions[i].clear();
      }
      auto [x0, cond] = encode_batch(b, captions);
      auto tgen = make_generator(seed, RngStream::kTimestep, counter);
      auto t = sample_timesteps(topt, batch, image_tokens, tgen);
      auto ngen = make_generator(seed, RngStream::kNoise, counter);
      auto noise = torch::randn(x0.sizes(), ngen);
      auto pair = flow_matching_pair(x0, noise.to(device), t.to(device));
      std::optional<torch::Tensor> g;
      if (pipe.preset.flux.guidance_embed) g = torch::full({batch}, train_guidance, x0.options());
      data_phase.end();
      PhaseRange forward_phase("forward");
      torch::Tensor pred;
      {
        AutocastScope ac(device.type(), precision);
        pred =
            pipe.transformer(pair.x_t, img_ids, cond.txt, text_ids(batch, cond.txt.size(1), device),
                             t.to(device), cond.vec, g);
      }
      auto loss = flow_matching_loss_per_sample(pred, pair.target).mean();
      forward_phase.end();
      PhaseRange backward_phase("backward");
      (loss / static_cast<double>(accum)).backward();
      backward_phase.end();
      loss_sum += loss.item<double>();
    }
    PhaseRange optimizer_phase("optimizer");
    const double grad_norm = clip_grad_norm(trainable, cfg.f("max_grad_norm"));
    opt.step(lr);
    opt.zero_grad();
    optimizer_phase.end();
    ++step;
    if (ema) ema->update(step);
    const double loss = loss_sum / static_cast<double>(accum);
    if (!std::isfinite(loss))
      throw std::runtime_error(fmt::format("training diverged: loss is {} at step {}", loss, step));
    const double step_s = seconds_since(t0);
    ema_step_s = step == first_step + 1 ? step_s : 0.9 * ema_step_s + 0.1 * step_s;
    result.last_loss = loss;

    nlohmann::json row = {{"type", "train"},
                          {"step", step},
                          {"samples", samples_seen},
                          {"loss", loss},
                          {"lr", lr},
                          {"grad_norm", grad_norm},
                          {"samples_per_s", static_cast<double>(batch * accum) / step_s},
                          {"step_ms", step_s * 1000.0}};
    if (profiled) row["profiled"] = true;  // bench leaves these out of its timings
    const bool last = step == total_steps;
    if (profiler && (last || g_stop_requests > 0)) finish_profile();
    if (g_stop_requests > 0) {
      stop = true;
      result.interrupted = true;
      log_warn("stop requested: finishing at step {} with a checkpoint", step);
    }
    if (val && ((val_every > 0 && samples_seen >= next_val) || last || stop)) {
      if (profiler) finish_profile();  // profile training steps only
      while (val_every > 0 && next_val <= samples_seen) next_val += val_every;
      double v = 0;
      if (ema)
        ema->with_averaged_weights([&] { v = validate(); });
      else
        v = validate();
      last_val = v;
      row["val_loss"] = v;
      metrics.write({{"type", "val"}, {"step", step}, {"samples", samples_seen}, {"val_loss", v}});
      const bool better = !best_val || v < *best_val;
      if (better) best_val = v;
      log_info("step {}: validation loss {:.5f}{}", step, v, better ? " (best)" : "");
      if (better && cfg.b("save_best") && cfg.b("save_checkpoints"))
        save((fs::path(ckpt_root) / "best").string());
      if (cfg.f("target_val_loss") > 0 && v <= cfg.f("target_val_loss")) {
        log_info("target validation loss {} reached at step {} ({} samples)",
                 cfg.f("target_val_loss"), step, samples_seen);
        result.reached_target = true;
        stop = true;
      }
    }
    metrics.write(row);
    if (step % cfg.i("log_every") == 0 || last || stop) {
      const double eta = ema_step_s * static_cast<double>(total_steps - step);
      progress_line(
          fmt::format("step {}/{} | loss {:.4f} | lr {:.2e} | grad {:.3f} | {:.1f} it/s | "
                      "{:.1f} samples/s | elapsed {} | ETA {}",
                      step, total_steps, loss, lr, grad_norm, 1.0 / step_s,
                      static_cast<double>(batch * accum) / step_s,
                      format_duration(seconds_since(t_start)), format_duration(eta)),
          last || stop);
    }
    const int64_t every = cfg.i("ckpt_every");
    if (cfg.b("save_checkpoints") && ((every > 0 && step % every == 0) || last || stop)) {
      save(step_checkpoint_dir(ckpt_root, step));
      prune_step_checkpoints(ckpt_root, cfg.i("keep_last"));
    }
  }
  if (profiler) finish_profile();  // stopped early (target reached)
  result.steps = step;
  result.val_loss = last_val;
  result.best_val_loss = best_val;
  log_info("trained {} steps in {} ({} samples seen); last loss {:.5f}{}", step - first_step,
           format_duration(seconds_since(t_start)), samples_seen, result.last_loss,
           last_val ? fmt::format(", validation loss {:.5f}", *last_val) : std::string());

  write_summary(run_dir, cfg, result, samples_seen, device, seconds_since(t_start));

  const std::string fe = cfg.s("final_eval");
  if (!result.interrupted && (fe == "shapes" || fe == "auto")) {
    SampleOptions so = default_sample_options(pipe.preset);
    so.height = so.width = res;
    if (cfg.i("sample_steps") > 0) so.steps = cfg.i("sample_steps");
    so.seed = static_cast<uint64_t>(cfg.i("sample_seed"));
    so.precision = precision;
    so.cfg_scale = cfg.f("cfg_scale");
    auto evaluate = [&] {
      result.eval = evaluate_shapes(pipe, so, cfg.i("eval_images_per_caption"),
                                    (fs::path(run_dir) / "samples").string());
    };
    if (ema)
      ema->with_averaged_weights(evaluate);
    else
      evaluate();
  }
  return result;
}

}  // namespace fluxtrain
