// The training loop (see trainer.h).
#include "train/trainer.h"

#include <sys/resource.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <filesystem>
#include <fstream>

#include "core/device.h"
#include "core/errors.h"
#include "core/log.h"
#include "core/rng.h"
#include "core/torch_compat.h"
#include "model/block_swap.h"
#include "model/controlnet.h"
#include "model/flux_call.h"
#include "model/latents.h"
#include "train/flow_matching.h"
#include "train/loss_curve.h"
#include "train/memory_plan.h"
#include "train/metrics.h"
#include "train/profiler.h"
#include "train/prompt_samples.h"
#include "train/run_directory.h"
#include "train/shapes_eval.h"
#include "train/step_profiler.h"
#include "train/train_spec.h"
#include "train/validation_loss.h"

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

NamedTensors on_cpu(NamedTensors t) {
  for (auto& [n, x] : t) x = x.to(torch::kCPU);
  return t;
}

// summary.json: the outcome and the resources the run used (read by `fluxtrain bench`).
void write_summary(const std::string& run_dir, const std::string& model, const TrainResult& r,
                   int64_t samples_seen, const torch::Device& device, double seconds,
                   const nlohmann::json& throughput) {
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
      {"model", model},
      {"libtorch", compat::torch_version()},
      {"fluxtrain_commit", FLUXTRAIN_COMMIT}};
  j.update(throughput);
  if (auto peak = compat::cuda_memory_peak(device)) {  // the CUDA caching allocator's peaks
    j["cuda_peak_allocated_bytes"] = peak->allocated_bytes;
    j["cuda_peak_reserved_bytes"] = peak->reserved_bytes;
  }
  std::ofstream(fs::path(run_dir) / "summary.json") << j.dump(2) << "\n";
}

}  // namespace

struct Trainer::StepStats {
  double loss = 0, grad_norm = 0, lr = 0;
};

Trainer::Trainer(TrainParts parts, TrainOptions options, std::string run_dir,
                 std::string config_yaml)
    : p_(std::move(parts)),
      o_(std::move(options)),
      run_dir_(std::move(run_dir)),
      config_yaml_(std::move(config_yaml)) {
  guidance_ = o_.guidance >= 0 ? o_.guidance : p_.pipeline.preset.train_guidance;
  if (o_.optimizer_in_backward)
    in_backward_ = std::make_unique<OptimizerInBackward>(*p_.optimizer, o_.max_grad_norm);
  choose_final_evaluation();
}

Trainer::~Trainer() = default;

TrainState Trainer::fresh_state() const {
  TrainState s;
  s.next_val_samples = o_.val_every_samples;
  s.model = o_.model;
  s.method = p_.model->method();
  s.train_blocks = o_.train_blocks;
  s.complete_model = p_.model->saves_complete_model();
  s.seed = o_.seed;
  s.resolution = p_.resolution;
  const SampleOptions so = evaluation_sample_options(p_.pipeline, o_, p_.resolution);
  s.sampling = {so.steps, so.height, so.width, so.cfg_scale, so.guidance, so.shift};
  s.config_yaml = config_yaml_;
  s.fluxtrain_commit = FLUXTRAIN_COMMIT;
  return s;
}

TrainState Trainer::restore(const ResumePoint& from) {
  const TrainState& saved = from.state;
  if (saved.step >= o_.steps)
    user_error("resume: the checkpoint is at step {}, steps is {}: nothing to do (raise --steps)",
               saved.step, o_.steps);
  p_.model->load_checkpoint(from.checkpoint.file("model.safetensors"));
  const auto& of = from.checkpoint.file("optimizer.safetensors");
  p_.optimizer->load_state(
      [&](const std::string& n) {
        return of.contains(n) ? of.load(n, torch::kFloat, o_.device) : torch::Tensor();
      },
      saved.optimizer_steps, of.path());
  if (p_.ema) {
    if (!from.checkpoint.has_file("ema.safetensors"))
      user_error("resume '{}': ema_decay is set but the checkpoint has no ema.safetensors",
                 from.checkpoint.dir);
    const auto& ef = from.checkpoint.file("ema.safetensors");
    p_.ema->load(
        [&](const std::string& n) { return ef.contains(n) ? ef.load(n) : torch::Tensor(); },
        ef.path());
  }
  TrainState s = fresh_state();
  s.step = saved.step;
  s.samples_seen = saved.samples_seen;
  s.optimizer_steps = saved.optimizer_steps;
  s.next_val_samples = saved.next_val_samples;
  s.best_val_loss = saved.best_val_loss;
  s.val_loss = saved.val_loss;
  s.resumes = saved.resumes;
  // Checkpoints from before the loader recorded its position drew fixed batches.
  s.data_batches = saved.data_batches >= 0
                       ? saved.data_batches
                       : saved.samples_seen / (o_.batch_size * p_.dist->world_size());
  p_.data->seek(s.data_batches, s.samples_seen);
  log_info("resuming from {} (step {}, {} samples seen)", from.checkpoint.dir, s.step,
           s.samples_seen);
  return s;
}

Trainer::Encoded Trainer::encode(const Batch& b) {
  torch::NoGradGuard no_grad;
  Encoded e;
  ImageAutoencoder& ae = *p_.pipeline.autoencoder;
  const torch::Device device = o_.device;
  // Pinned batches (CUDA) copy without blocking.
  auto to_device = [&](const torch::Tensor& t) {
    return t.to(t.options().device(device), /*non_blocking=*/true);
  };
  // A training draw takes a new sample of the VAE posterior per example (its noise from the
  // example's draw, so a raw-image run and a run on its cache see the same latents).
  auto posterior_noise = [&](const torch::Tensor& mean) {
    std::vector<torch::Tensor> eps;
    for (uint64_t d : b.draws) {
      auto gen = make_generator(d, RngStream::kLatent);
      eps.push_back(torch::randn(mean.sizes().slice(1), gen));
    }
    return torch::stack(eps).to(device);
  };
  // One image per VAE call, as `prepare --batch_size 1` encodes them: a run on raw images and a
  // run on their cache see bit-identical latents (batched convolutions round differently).
  auto encode_each = [&](const torch::Tensor& images) {  // [B, 3, H, W] -> the posteriors
    std::vector<torch::Tensor> means, logvars;
    for (int64_t i = 0; i < images.size(0); ++i) {
      auto [m, lv] = ae.encode_moments(to_device(images[i].unsqueeze(0)));
      means.push_back(m);
      logvars.push_back(lv);
    }
    return std::make_pair(torch::cat(means), torch::cat(logvars));
  };
  torch::Tensor mean, logvar;     // the posterior, [B, C, h, w]
  if (b.latent_mean.defined()) {  // in the cache's dtype: float32 from here on
    mean = to_device(b.latent_mean).to(torch::kFloat);
    logvar = to_device(b.latent_logvar).to(torch::kFloat);
  } else {
    std::tie(mean, logvar) = encode_each(b.images);
  }
  const bool draw = o_.sample_latents && !b.draws.empty();
  torch::Tensor z = ae.latents_from_moments(mean, logvar,  // [B, C, h, w], scaled for the model
                                            draw ? posterior_noise(mean) : torch::Tensor());
  e.latent_height = z.size(2);
  e.latent_width = z.size(3);
  e.x0 = patchify(z.to(torch::kFloat));  // [B, L, C]
  // The control images' posterior means (diffusers samples the posterior; its spread is tiny and
  // the mean keeps a control image's latents a function of the image alone), [B, L, C].
  if (!p_.model->controlnet()) {
    // (no ControlNet: control images or cached control latents go unused)
  } else if (b.control_images.defined()) {
    const auto [m, lv] = encode_each(b.control_images);
    e.control = patchify(ae.latents_from_moments(m, lv, torch::Tensor()).to(torch::kFloat));
  } else if (b.control_latent_mean.defined()) {  // the same means, from the latent cache
    e.control = patchify(
        ae.latents_from_moments(to_device(b.control_latent_mean), torch::Tensor(), torch::Tensor())
            .to(torch::kFloat));
  }
  if (b.txt.defined()) {
    // Cached encodings; captions dropped to "" take the empty caption's.
    e.cond = {to_device(b.txt).to(torch::kFloat), to_device(b.vec).to(torch::kFloat)};
    std::vector<int64_t> dropped;
    for (int64_t i = 0; i < b.size(); ++i)
      if (b.captions[static_cast<size_t>(i)].empty()) dropped.push_back(i);
    if (!dropped.empty()) {
      const TextEmbeddings empty = p_.pipeline.text->encode({""}, device);
      for (int64_t i : dropped) {
        e.cond.txt[i].copy_(empty.txt[0]);
        e.cond.vec[i].copy_(empty.vec[0]);
      }
    }
  } else {
    e.cond = p_.pipeline.text->encode(b.captions, device);
  }
  return e;
}

ControlInput Trainer::control_of(const Encoded& e) {
  ControlInput c;
  c.net = p_.model->controlnet();
  if (c.net && !e.control.defined())
    user_error("method controlnet: the batch has no control images (set control_images)");
  c.latents = e.control;
  return c;
}

Trainer::StepStats Trainer::train_step(int64_t step) {
  FluxImpl& transformer = p_.model->transformer();
  const torch::Device device = o_.device;
  StepStats st;
  st.lr = p_.schedule.at(step);
  double loss_sum = 0;
  for (int64_t micro = 0; micro < o_.grad_accum; ++micro) {
    const uint64_t counter = static_cast<uint64_t>(step * o_.grad_accum + micro);
    PhaseRange data_phase("data");
    Batch b = p_.data->next();
    const int64_t B = b.size();
    if (o_.caption_dropout > 0) {
      auto gen = make_generator(o_.seed, RngStream::kCaptionDropout, counter);
      auto drop = torch::rand({B}, gen);
      for (int64_t i = 0; i < B; ++i)
        if (drop[i].item<float>() < o_.caption_dropout) b.captions[i].clear();
    }
    const Encoded e = encode(b);
    p_.model->begin_micro_batch(counter);
    auto tgen = make_generator(o_.seed, RngStream::kTimestep, counter);
    auto t = sample_timesteps(o_.timesteps, B, e.x0.size(1), tgen).to(device);
    auto ngen = make_generator(o_.seed, RngStream::kNoise, counter);
    auto noise = torch::randn(e.x0.sizes(), ngen);
    auto pair = flow_matching_pair(e.x0, noise.to(device), t);
    data_phase.end();
    PhaseRange forward_phase("forward");
    // (after the optimizer step: a trained swapped block is copied from its updated weights; the
    // resident blocks run first, so the copy overlaps them)
    if (transformer.block_swap) transformer.block_swap->expect(+1);
    auto pred =
        predict_velocity(transformer,
                         make_flux_inputs(transformer.params, pair.x_t, e.latent_height,
                                          e.latent_width, e.cond.txt, e.cond.vec, t, guidance_),
                         o_.precision, control_of(e));
    auto per_sample = flow_matching_loss_per_sample(pred, pair.target);  // [B]
    auto loss = (per_sample * b.loss_weights.to(device)).mean();
    forward_phase.end();
    PhaseRange backward_phase("backward");
    if (in_backward_) in_backward_->arm(st.lr);                      // (the updates happen in here)
    if (transformer.block_swap) transformer.block_swap->expect(-1);  // backward: last block first
    (loss / static_cast<double>(o_.grad_accum)).backward();
    backward_phase.end();
    loss_sum += loss.item<double>();
  }
  PhaseRange optimizer_phase("optimizer");
  if (in_backward_) {
    st.grad_norm = in_backward_->finish();
  } else {
    st.grad_norm = clip_grad_norm(p_.model->trainable(), o_.max_grad_norm);
    p_.optimizer->step(st.lr);
    p_.optimizer->zero_grad();
  }
  optimizer_phase.end();
  st.loss = loss_sum / static_cast<double>(o_.grad_accum);
  return st;
}

double Trainer::validate() {
  torch::NoGradGuard no_grad;
  FluxImpl& transformer = p_.model->transformer();
  const torch::Device device = o_.device;
  transformer.eval();
  ValidationLoss acc;
  const Dataset& val = *p_.validation;
  const int64_t vb = std::max<int64_t>(1, o_.batch_size);
  // This rank's share of the samples; sample i has noise from (seed, i) and t = index(i) / 8.
  const int64_t rank = p_.dist->rank(), world = p_.dist->world_size();
  std::vector<int64_t> mine;
  for (int64_t i = rank; i < val.size(); i += world) mine.push_back(i);
  // Batches of up to vb consecutive samples of one size (buckets differ in size).
  for (const Batch& b : collate_runs(val, mine, vb)) {
    const Encoded e = encode(b);
    std::vector<torch::Tensor> noise;
    for (int64_t i : b.indices) {
      auto gen = make_generator(o_.seed, RngStream::kValidation, static_cast<uint64_t>(i));
      noise.push_back(torch::randn({1, e.x0.size(1), e.x0.size(2)}, gen));
    }
    auto t = (b.timestep_indices.to(torch::kFloat) / static_cast<double>(kValidationTimesteps))
                 .to(device);
    auto pair = flow_matching_pair(e.x0, torch::cat(noise, 0).to(device), t);
    auto pred =
        predict_velocity(transformer,
                         make_flux_inputs(transformer.params, pair.x_t, e.latent_height,
                                          e.latent_width, e.cond.txt, e.cond.vec, t, guidance_),
                         o_.precision, control_of(e));
    acc.add(flow_matching_loss_per_sample(pred, pair.target), b.timestep_indices);
  }
  acc.all_reduce(*p_.dist);
  transformer.train();
  return acc.value();
}

void Trainer::save(const std::string& dir) {
  std::map<std::string, NamedTensors> files = {
      {"model.safetensors", on_cpu(p_.model->checkpoint_tensors())},
      {"optimizer.safetensors", on_cpu(p_.optimizer->state_tensors())}};
  if (p_.ema) files["ema.safetensors"] = on_cpu(p_.ema->tensors());
  // The files users load (a LoRA's layouts), from the averaged weights when there is an EMA.
  std::map<std::string, TrainedModel::ExportFile> exports;
  auto gather = [&] { exports = p_.model->export_files(state_.step); };
  if (p_.model->has_export_files()) {  // (no EMA swap in and out for a method without any)
    if (p_.ema)
      p_.ema->with_averaged_weights(gather);
    else
      gather();
  }
  std::map<std::string, std::map<std::string, std::string>> metadata;
  for (auto& [name, f] : exports) {
    files[name] = std::move(f.tensors);
    metadata[name] = std::move(f.metadata);
  }
  state_.optimizer_steps = p_.optimizer->steps_taken();
  state_.samples_seen = p_.data->samples_seen();
  state_.data_batches = p_.data->position();
  save_checkpoint_dir(dir, files, state_.to_json(), metadata, p_.model->export_texts());
}

void Trainer::sample_validation_prompts(int64_t step) {
  if (o_.validation_prompts.empty()) return;
  const SampleOptions so = evaluation_sample_options(p_.pipeline, o_, p_.resolution);
  auto run = [&] {
    write_prompt_samples(p_.pipeline, o_.validation_prompts, so,
                         (fs::path(run_dir_) / "samples").string(), step);
  };
  if (p_.ema)
    p_.ema->with_averaged_weights(run);
  else
    run();
  p_.model->transformer().train();
}

void Trainer::choose_final_evaluation() {
  if (auto all = p_.data->dataset().captions())
    for (const auto& c : *all)
      if (!c.empty()) eval_captions_.push_back(c);
  eval_kind_ = o_.final_eval;
  if (eval_kind_ == "auto")
    eval_kind_ = p_.data_format == "shapes" ? "shapes"
                 : !eval_captions_.empty() && eval_captions_.size() <= kMaxEvaluationCaptions
                     ? "captions"
                     : "none";
  if (eval_kind_ == "captions" &&
      (eval_captions_.empty() || eval_captions_.size() > kMaxEvaluationCaptions))
    user_error("final_eval captions: the data has {} distinct captions (expected 1 to {})",
               eval_captions_.size(), kMaxEvaluationCaptions);
  if (eval_kind_ == "shapes" && p_.data_format != "shapes")
    user_error("final_eval shapes: the data is {}, not the built-in shapes", p_.data_format);
}

void Trainer::final_evaluation(TrainResult& result) {
  const std::string& kind = eval_kind_;
  const auto& captions = eval_captions_;
  if (kind == "none") return;
  const SampleOptions so = evaluation_sample_options(p_.pipeline, o_, p_.resolution);
  const std::string dir = (fs::path(run_dir_) / "samples").string();
  auto evaluate = [&] {
    if (kind == "shapes") {
      result.eval = evaluate_shapes(p_.pipeline, so, o_.eval_images_per_caption, dir);
    } else {
      result.eval =
          write_caption_samples(p_.pipeline, captions, o_.eval_images_per_caption, so, dir);
      std::ofstream(fs::path(dir) / "eval.json") << result.eval.dump(2) << "\n";
    }
  };
  if (p_.ema)
    p_.ema->with_averaged_weights(evaluate);
  else
    evaluate();
}

TrainResult Trainer::run(TrainState state) {
  state_ = std::move(state);
  g_stop_requests = 0;
  FluxImpl& transformer = p_.model->transformer();
  const int64_t first_step = state_.step, total = o_.steps;
  log_info("run directory: {}", run_dir_);
  log_info("model {}: {}; {} {} compute, {} weights, {} image tokens (at {} px) + {} text tokens{}",
           o_.model, p_.model->describe(), device_description(o_.device),
           precision_name(o_.precision), precision_name(o_.weights),
           p_.pipeline.image_tokens(p_.resolution, p_.resolution), p_.resolution,
           p_.pipeline.text->max_tokens(),
           o_.gradient_checkpointing ? ", activation checkpointing" : "");
  // The memory plan's prediction, logged now and kept in summary.json beside the measured peak.
  TrainOptions planned = o_;
  planned.resolution = p_.resolution;
  if (const auto* net = p_.model->controlnet()) {  // (controlnet_init brings its own depths)
    planned.controlnet.double_blocks = net->params.depth;
    planned.controlnet.single_blocks = net->params.depth_single_blocks;
  }
  const MemoryPlan plan = plan_training_memory(
      planned, p_.model->transformer().params,
      p_.pipeline.image_tokens(p_.resolution, p_.resolution), p_.pipeline.text->max_tokens());
  log_block(format_memory_plan(plan));
  log_info("data: {}, {} x {} x {} (batch x accumulation x ranks) per step, {} batches an epoch",
           p_.data->dataset().name(), o_.batch_size, o_.grad_accum, p_.dist->world_size(),
           p_.data->sampler().batches_per_epoch());

  MetricsLog metrics(
      run_dir_,
      {"step", "samples", "loss", "lr", "grad_norm", "samples_per_s", "step_ms", "val_loss"},
      first_step > 0 ? first_step : -1);
  const std::string ckpt_root = (fs::path(run_dir_) / "checkpoints").string();
  const bool is_main = p_.dist->is_main();
  StepProfiler profiler(o_.profile_steps, first_step, total, o_.device, run_dir_);
  TrainResult result;
  result.run_dir = run_dir_;
  transformer.train();
  const auto t_start = Clock::now();
  const int64_t samples_at_start = state_.samples_seen;
  double ema_step_s = 0, train_s = 0;  // train_s: training steps only (no validation, saving)
  nlohmann::json validations = nlohmann::json::array();
  std::optional<int64_t> best_step;
  bool stop = false;

  while (state_.step < total && !stop) {
    profiler.before_step(state_.step);
    const bool profiled = profiler.active();
    const auto t0 = Clock::now();
    const int64_t samples_before = p_.data->samples_seen(), batches_before = p_.data->position();
    const StepStats st = train_step(state_.step);
    const int64_t step = ++state_.step;
    state_.samples_seen = p_.data->samples_seen();
    state_.data_batches = p_.data->position();
    if (p_.ema) p_.ema->update(step);
    if (!std::isfinite(st.loss))
      throw std::runtime_error(
          fmt::format("training diverged: loss is {} at step {}", st.loss, step));
    const double step_s = seconds_since(t0);
    train_s += step_s;
    ema_step_s = step == first_step + 1 ? step_s : 0.9 * ema_step_s + 0.1 * step_s;
    result.last_loss = st.loss;
    const double per_step = static_cast<double>(state_.samples_seen - samples_before);

    nlohmann::json row = {{"type", "train"},
                          {"step", step},
                          {"samples", state_.samples_seen},
                          {"loss", st.loss},
                          {"lr", st.lr},
                          {"grad_norm", st.grad_norm},
                          {"samples_per_s", per_step / step_s},
                          {"step_ms", step_s * 1000.0}};
    if (profiled) row["profiled"] = true;  // bench leaves these out of its timings
    const bool last = step == total;
    if (last || g_stop_requests > 0) profiler.finish(step);
    if (g_stop_requests > 0) {
      stop = true;
      result.interrupted = true;
      log_warn("stop requested: finishing at step {} with a checkpoint", step);
    }
    bool due = (o_.val_every > 0 && step % o_.val_every == 0) || last || stop;
    if (o_.val_every_samples > 0 && state_.samples_seen >= state_.next_val_samples) {
      due = true;
      while (state_.next_val_samples <= state_.samples_seen)
        state_.next_val_samples += o_.val_every_samples;
    }
    const int64_t per_epoch = p_.data->sampler().batches_per_epoch();
    if (o_.val_every_epochs > 0 && state_.data_batches / per_epoch / o_.val_every_epochs >
                                       batches_before / per_epoch / o_.val_every_epochs)
      due = true;
    if (p_.validation && due) {
      profiler.finish(step);  // profile training steps only
      double v = 0;
      if (p_.ema)
        p_.ema->with_averaged_weights([&] { v = validate(); });
      else
        v = validate();
      state_.val_loss = v;
      row["val_loss"] = v;
      if (is_main)
        metrics.write(
            {{"type", "val"},
             {"step", step},
             {"samples", state_.samples_seen},
             {"epoch", static_cast<double>(state_.data_batches) / static_cast<double>(per_epoch)},
             {"val_loss", v}});
      const bool better = !state_.best_val_loss || v < *state_.best_val_loss;
      if (better) state_.best_val_loss = v, best_step = step;
      validations.push_back(
          {{"step", step},
           {"epoch", static_cast<double>(state_.data_batches) / static_cast<double>(per_epoch)},
           {"val_loss", v}});
      log_info("step {}: validation loss {:.5f}{}", step, v, better ? " (best)" : "");
      if (better && o_.save_best && o_.save_checkpoints && is_main)
        save((fs::path(ckpt_root) / "best").string());
      if (o_.target_val_loss > 0 && v <= o_.target_val_loss) {
        log_info("target validation loss {} reached at step {} ({} samples)", o_.target_val_loss,
                 step, state_.samples_seen);
        result.reached_target = true;
        stop = true;
      }
    }
    if (is_main) metrics.write(row);
    if (is_main && (step % o_.log_every == 0 || last || stop)) {
      const double eta = ema_step_s * static_cast<double>(total - step);
      progress_line(
          fmt::format("step {}/{} | loss {:.4f} | lr {:.2e} | grad {:.3f} | {:.1f} it/s | "
                      "{:.1f} samples/s | elapsed {} | ETA {}",
                      step, total, st.loss, st.lr, st.grad_norm, 1.0 / step_s, per_step / step_s,
                      format_duration(seconds_since(t_start)), format_duration(eta)),
          last || stop);
    }
    if (is_main && o_.sample_every > 0 && step % o_.sample_every == 0 && !last && !stop)
      sample_validation_prompts(step);
    if (is_main && o_.save_checkpoints &&
        ((o_.ckpt_every > 0 && step % o_.ckpt_every == 0) || last || stop)) {
      save(step_checkpoint_dir(ckpt_root, step));
      prune_step_checkpoints(ckpt_root, o_.keep_last);
    }
  }
  profiler.finish(state_.step);  // stopped early (target reached)
  result.steps = state_.step;
  result.val_loss = state_.val_loss;
  result.best_val_loss = state_.best_val_loss;
  log_info(
      "trained {} steps in {} ({} samples seen); last loss {:.5f}{}", state_.step - first_step,
      format_duration(seconds_since(t_start)), state_.samples_seen, result.last_loss,
      state_.val_loss ? fmt::format(", validation loss {:.5f}", *state_.val_loss) : std::string());
  if (!is_main) return result;
  // Seed 002's run summary: throughput, duration and what the run cost.
  const double wall_s = seconds_since(t_start);
  const int64_t steps_here = state_.step - first_step;
  const int64_t samples_here = state_.samples_seen - samples_at_start;
  const double device_hours = wall_s / 3600.0 * static_cast<double>(p_.dist->world_size());
  nlohmann::json throughput = {
      {"images_per_s", train_s > 0 ? static_cast<double>(samples_here) / train_s : 0.0},
      {"mean_step_ms", steps_here > 0 ? 1000.0 * train_s / static_cast<double>(steps_here) : 0.0},
      {"training_seconds", train_s},
      {"device_hours", device_hours},
      {"validation", validations}};
  if (o_.price_per_hour > 0) throughput["cost"] = device_hours * o_.price_per_hour;
  throughput["predicted_peak_bytes"] = static_cast<int64_t>(plan.total());
  for (const auto& part : plan.parts)
    throughput["memory_plan"][part.name] = static_cast<int64_t>(part.bytes);
  if (best_step && o_.save_best && o_.save_checkpoints)
    throughput["best_checkpoint"] = {{"step", *best_step},
                                     {"val_loss", *state_.best_val_loss},
                                     {"dir", (fs::path(ckpt_root) / "best").string()}};
  log_info(
      "run: {} images at {:.1f} images/s, mean step {:.1f} ms, {} in all, {:.4f} device-hours{}",
      samples_here, throughput["images_per_s"].get<double>(),
      throughput["mean_step_ms"].get<double>(), format_duration(wall_s), device_hours,
      o_.price_per_hour > 0
          ? fmt::format(" x {}/h = {:.4f}", o_.price_per_hour, device_hours * o_.price_per_hour)
          : std::string());
  write_summary(run_dir_, o_.model, result, state_.samples_seen, o_.device, wall_s, throughput);
  if (p_.report) {
    std::ofstream(fs::path(run_dir_) / "data_report.json") << p_.report->to_json().dump(2) << "\n";
    p_.report->log("data");
  }
  write_loss_curve(run_dir_);
  if (!result.interrupted) {
    sample_validation_prompts(state_.step);
    final_evaluation(result);
  }
  return result;
}

void install_stop_handlers() {
  std::signal(SIGINT, on_stop_signal);
  std::signal(SIGTERM, on_stop_signal);
}

TrainResult train(const Config& given) {
  Config cfg = given;
  std::optional<ResumePoint> resume;
  ResumeRecord record;
  if (!given.s("resume").empty()) {
    resume = open_checkpoint(given.s("resume"));
    if (!is_run_dir(resume->run_dir))
      user_error("resume '{}': '{}' is not a run directory (no config.yaml)",
                 resume->checkpoint.dir, resume->run_dir);
    ResumedConfig rc = resume_config(given, resume->state, resume->checkpoint.dir);
    cfg = rc.config;
    record = {local_time_text(), resume->checkpoint.dir, resume->state.step, rc.changes};
  }
  normalise_model_path(cfg);
  if (!resume && cfg.f("memory_budget_gb") > 0) apply_memory_budget(cfg);
  const TrainOptions options = TrainOptions::from_config(cfg);
  configure_threads(options.threads);
  const std::string run_dir =
      resume ? resume->run_dir : create_run_dir(options.output_dir, options.name);
  LogFileScope log_file((fs::path(run_dir) / "train.log").string());
  log_block("# resolved config\n" + cfg.to_yaml());
  if (resume) {
    for (const auto& s : resume->skipped) log_warn("skipped an unreadable checkpoint: {}", s);
    append_resume_record(run_dir, record);
    for (const auto& c : record.changes) log_info("resume changes {}", c);
  } else {
    write_run_config(run_dir, cfg.to_yaml());
  }
  Trainer trainer(build_train_parts(options), options, run_dir, cfg.to_yaml());
  TrainState state = trainer.fresh_state();
  if (resume) {
    state = trainer.restore(*resume);
    state.resumes.push_back(record);
  }
  return trainer.run(std::move(state));
}

}  // namespace fluxtrain
