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
#include "model/flux_call.h"
#include "train/flow_matching.h"
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
      {"model", model},
      {"libtorch", compat::torch_version()},
      {"fluxtrain_commit", FLUXTRAIN_COMMIT}};
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
  image_tokens_ = p_.pipeline.image_tokens(p_.resolution, p_.resolution);
  latent_side_ = p_.resolution / p_.pipeline.preset.ae_factor;
  guidance_ = o_.guidance >= 0 ? o_.guidance : p_.pipeline.preset.train_guidance;
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
  p_.data->seek(saved.samples_seen);
  log_info("resuming from {} (step {}, {} samples seen)", from.checkpoint.dir, s.step,
           s.samples_seen);
  return s;
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
    auto x0 = p_.pipeline.images_to_tokens(b.images);  // [B, L, C]
    auto cond = p_.pipeline.text->encode(b.captions, device);
    auto tgen = make_generator(o_.seed, RngStream::kTimestep, counter);
    auto t = sample_timesteps(o_.timesteps, B, image_tokens_, tgen).to(device);
    auto ngen = make_generator(o_.seed, RngStream::kNoise, counter);
    auto noise = torch::randn(x0.sizes(), ngen);
    auto pair = flow_matching_pair(x0, noise.to(device), t);
    data_phase.end();
    PhaseRange forward_phase("forward");
    auto pred = predict_velocity(transformer,
                                 make_flux_inputs(transformer.params, pair.x_t, latent_side_,
                                                  latent_side_, cond.txt, cond.vec, t, guidance_),
                                 o_.precision);
    auto per_sample = flow_matching_loss_per_sample(pred, pair.target);  // [B]
    auto loss = (per_sample * b.loss_weights.to(device)).mean();
    forward_phase.end();
    PhaseRange backward_phase("backward");
    (loss / static_cast<double>(o_.grad_accum)).backward();
    backward_phase.end();
    loss_sum += loss.item<double>();
  }
  PhaseRange optimizer_phase("optimizer");
  st.grad_norm = clip_grad_norm(p_.model->trainable(), o_.max_grad_norm);
  p_.optimizer->step(st.lr);
  p_.optimizer->zero_grad();
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
  for (size_t start = 0; start < mine.size(); start += static_cast<size_t>(vb)) {
    std::vector<int64_t> idx(mine.begin() + start,
                             mine.begin() + std::min(mine.size(), start + static_cast<size_t>(vb)));
    Batch b = collate(val, idx);
    auto x0 = p_.pipeline.images_to_tokens(b.images);
    auto cond = p_.pipeline.text->encode(b.captions, device);
    std::vector<torch::Tensor> noise;
    for (int64_t i : idx) {
      auto gen = make_generator(o_.seed, RngStream::kValidation, static_cast<uint64_t>(i));
      noise.push_back(torch::randn({1, x0.size(1), x0.size(2)}, gen));
    }
    auto t = (b.timestep_indices.to(torch::kFloat) / static_cast<double>(kValidationTimesteps))
                 .to(device);
    auto pair = flow_matching_pair(x0, torch::cat(noise, 0).to(device), t);
    auto pred = predict_velocity(transformer,
                                 make_flux_inputs(transformer.params, pair.x_t, latent_side_,
                                                  latent_side_, cond.txt, cond.vec, t, guidance_),
                                 o_.precision);
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
  state_.optimizer_steps = p_.optimizer->steps_taken();
  state_.samples_seen = p_.data->position();
  save_checkpoint_dir(dir, files, state_.to_json());
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

void Trainer::final_evaluation(TrainResult& result) {
  const bool shapes = o_.dataset == "shapes";
  if (o_.final_eval == "none" || (o_.final_eval == "auto" && !shapes)) return;
  const SampleOptions so = evaluation_sample_options(p_.pipeline, o_, p_.resolution);
  auto evaluate = [&] {
    result.eval = evaluate_shapes(p_.pipeline, so, o_.eval_images_per_caption,
                                  (fs::path(run_dir_) / "samples").string());
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
  log_info("model {}: {}; {} {} compute, {} weights, {} image tokens + {} text tokens{}", o_.model,
           p_.model->describe(), device_description(o_.device), precision_name(o_.precision),
           precision_name(o_.weights), image_tokens_, p_.pipeline.text->max_tokens(),
           o_.gradient_checkpointing ? ", activation checkpointing" : "");
  log_info("data: {}, {} per step", p_.data->dataset().name(),
           p_.data->global_batch() * o_.grad_accum);

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
  double ema_step_s = 0;
  bool stop = false;

  while (state_.step < total && !stop) {
    profiler.before_step(state_.step);
    const bool profiled = profiler.active();
    const auto t0 = Clock::now();
    const StepStats st = train_step(state_.step);
    const int64_t step = ++state_.step;
    state_.samples_seen = p_.data->position();
    if (p_.ema) p_.ema->update(step);
    if (!std::isfinite(st.loss))
      throw std::runtime_error(
          fmt::format("training diverged: loss is {} at step {}", st.loss, step));
    const double step_s = seconds_since(t0);
    ema_step_s = step == first_step + 1 ? step_s : 0.9 * ema_step_s + 0.1 * step_s;
    result.last_loss = st.loss;
    const double per_step = static_cast<double>(p_.data->global_batch() * o_.grad_accum);

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
            {{"type", "val"}, {"step", step}, {"samples", state_.samples_seen}, {"val_loss", v}});
      const bool better = !state_.best_val_loss || v < *state_.best_val_loss;
      if (better) state_.best_val_loss = v;
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
  write_summary(run_dir_, o_.model, result, state_.samples_seen, o_.device, seconds_since(t_start));
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
