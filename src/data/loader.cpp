// Batching, collation and the threaded loader (see loader.h).
#include "data/loader.h"

#include <dlfcn.h>

#include "core/device.h"
#include "core/errors.h"
#include "core/rng.h"

namespace fluxtrain {

namespace {
// omp_set_num_threads of the OpenMP runtime libtorch loaded (libgomp, or pip torch's own copy),
// looked up at run time so that we neither link a second runtime nor depend on which one it is;
// null without OpenMP.
void (*const omp_set_num_threads_fn)(int) =
    reinterpret_cast<void (*)(int)>(dlsym(RTLD_DEFAULT, "omp_set_num_threads"));
}  // namespace

namespace {

torch::Tensor stack_or_undefined(const std::vector<torch::Tensor>& parts, const char* what,
                                 const std::string& data) {
  if (parts.empty() || !parts.front().defined()) {
    for (const auto& p : parts)
      if (p.defined())
        throw std::invalid_argument(
            fmt::format("collate: {} examples mix with and without {}", data, what));
    return torch::Tensor();
  }
  for (const auto& p : parts)
    if (!p.defined() || p.sizes() != parts.front().sizes())
      throw std::invalid_argument(fmt::format(
          "collate: {} {} of one batch differ in shape ({} vs {})", data, what,
          p.defined() ? shape_str(p.sizes()) : "none", shape_str(parts.front().sizes())));
  return torch::stack(parts);
}

}  // namespace

Batch stack_examples(std::vector<Example> examples, const std::vector<int64_t>& indices,
                     const std::string& dataset_name) {
  TORCH_CHECK(!examples.empty() && examples.size() == indices.size(),
              "stack_examples: one example per index, at least one");
  Batch b;
  std::vector<torch::Tensor> images, controls, control_means, means, logvars, txts, vecs;
  std::vector<int64_t> timesteps;
  std::vector<float> weights;
  for (auto& ex : examples) {
    images.push_back(ex.image);
    controls.push_back(ex.control_image);
    control_means.push_back(ex.control_latent_mean);
    means.push_back(ex.latent_mean);
    logvars.push_back(ex.latent_logvar);
    txts.push_back(ex.txt);
    vecs.push_back(ex.vec);
    b.captions.push_back(std::move(ex.caption));
    b.keys.push_back(std::move(ex.key));
    timesteps.push_back(ex.timestep_index);
    weights.push_back(static_cast<float>(ex.loss_weight));
  }
  b.images = stack_or_undefined(images, "images", dataset_name);  // [B, 3, H, W]
  b.control_images = stack_or_undefined(controls, "control images", dataset_name);
  b.control_latent_mean = stack_or_undefined(control_means, "control latents", dataset_name);
  b.latent_mean = stack_or_undefined(means, "latents", dataset_name);
  b.latent_logvar = stack_or_undefined(logvars, "latent log-variances", dataset_name);
  b.txt = stack_or_undefined(txts, "text encodings", dataset_name);
  b.vec = stack_or_undefined(vecs, "pooled text encodings", dataset_name);
  b.timestep_indices = torch::tensor(timesteps, torch::kInt64);  // [B]
  b.loss_weights = torch::tensor(weights, torch::kFloat);        // [B]
  b.indices = indices;
  return b;
}

Batch collate(const Dataset& data, const std::vector<int64_t>& indices,
              const std::vector<uint64_t>& draws) {
  TORCH_CHECK(!indices.empty(), "collate: no indices");
  TORCH_CHECK(draws.empty() || draws.size() == indices.size(), "collate: one draw per index");
  std::vector<Example> examples;
  for (size_t k = 0; k < indices.size(); ++k)
    examples.push_back(draws.empty() ? data.get(indices[k]) : data.sample(indices[k], draws[k]));
  Batch b = stack_examples(std::move(examples), indices, data.name());
  b.draws = draws;
  return b;
}

std::vector<Batch> collate_runs(const Dataset& data, const std::vector<int64_t>& indices,
                                int64_t max_batch) {
  // Each example is read once; a run ends where the shape changes or at max_batch.
  std::vector<Batch> out;
  std::vector<int64_t> run;
  std::vector<Example> examples;
  auto shape_of = [](const Example& e) {
    return (e.image.defined() ? e.image : e.latent_mean).sizes().vec();
  };
  for (int64_t i : indices) {
    Example e = data.get(i);
    if (!run.empty() && (static_cast<int64_t>(run.size()) >= max_batch ||
                         shape_of(e) != shape_of(examples.front()))) {
      out.push_back(stack_examples(std::move(examples), run, data.name()));
      run.clear();
      examples.clear();
    }
    run.push_back(i);
    examples.push_back(std::move(e));
  }
  if (!run.empty()) out.push_back(stack_examples(std::move(examples), run, data.name()));
  return out;
}

Batch pin_batch(Batch b) {
  for (auto* t : {&b.images, &b.control_images, &b.control_latent_mean, &b.latent_mean,
                  &b.latent_logvar, &b.txt, &b.vec, &b.loss_weights, &b.timestep_indices})
    if (t->defined()) *t = t->pin_memory();
  return b;
}

Loader::Loader(std::shared_ptr<const Dataset> data, std::shared_ptr<const BatchSampler> sampler,
               LoaderOptions options)
    : data_(std::move(data)), sampler_(std::move(sampler)), options_(options) {
  if (options_.workers < 0 || options_.prefetch < 1)
    user_error("loader: workers {} and prefetch {}: expected workers >= 0, prefetch >= 1",
               options_.workers, options_.prefetch);
  if (options_.pin_memory && !torch::cuda::is_available())
    user_error(
        "pin_memory: page-locked batches are for copies to a CUDA device, and there is none");
  start_workers();
}

Loader::~Loader() {
  stop_workers();
}

Batch Loader::load(int64_t b) const {
  const auto indices = sampler_->batch(b);
  std::vector<uint64_t> draws;
  const uint64_t base = derive_seed(options_.seed, static_cast<uint64_t>(RngStream::kAugment),
                                    static_cast<uint64_t>(b * options_.world + options_.rank));
  for (size_t k = 0; k < indices.size(); ++k) draws.push_back(mix64(base ^ mix64(k + 1)));
  Batch batch = collate(*data_, indices, draws);
  return options_.pin_memory ? pin_batch(std::move(batch)) : batch;
}

void Loader::work() {
  // One intra-op thread per worker: the trainer's thread keeps the cores for the model; a
  // worker's small tensor ops fanned out over OpenMP teams of their own would contend with it.
  // OpenMP's thread count is per thread; at::set_num_threads would also set MKL's, for the
  // whole process.
  // ATen sets each thread's OpenMP count to its global one on the thread's first parallel op:
  // let it do so first, or it would undo ours.
  at::internal::lazy_init_num_threads();
  if (omp_set_num_threads_fn) omp_set_num_threads_fn(1);
  for (;;) {
    int64_t b = 0;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      changed_.wait(lock, [&] { return stopping_ || next_claim_ < position_ + options_.prefetch; });
      if (stopping_) return;
      b = next_claim_++;
    }
    Batch batch;
    std::exception_ptr error;
    try {
      batch = load(b);
    } catch (...) {
      error = std::current_exception();
    }
    std::lock_guard<std::mutex> lock(mutex_);
    if (error)
      failed_[b] = error;
    else
      ready_[b] = std::move(batch);
    changed_.notify_all();
  }
}

void Loader::start_workers() {
  stopping_ = false;
  next_claim_ = position_;
  for (int64_t i = 0; i < options_.workers; ++i) threads_.emplace_back([this] { work(); });
}

void Loader::stop_workers() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  changed_.notify_all();
  for (auto& t : threads_) t.join();
  threads_.clear();
  ready_.clear();
  failed_.clear();
}

Batch Loader::next() {
  if (options_.workers == 0) {
    const int64_t b = position_++;  // a batch that fails to load is consumed all the same
    Batch batch = load(b);
    samples_seen_ += sampler_->global_samples(b);
    return batch;
  }
  std::unique_lock<std::mutex> lock(mutex_);
  changed_.wait(lock, [&] { return ready_.count(position_) || failed_.count(position_); });
  const int64_t b = position_++;
  changed_.notify_all();  // a worker may claim the next batch
  if (auto f = failed_.find(b); f != failed_.end()) {
    auto error = f->second;
    failed_.erase(f);
    std::rethrow_exception(error);
  }
  Batch batch = std::move(ready_.at(b));
  ready_.erase(b);
  lock.unlock();
  samples_seen_ += sampler_->global_samples(b);
  return batch;
}

void Loader::seek(int64_t position, int64_t samples_seen) {
  if (position < 0 || samples_seen < 0)
    user_error("data position {} ({} samples): expected >= 0", position, samples_seen);
  stop_workers();
  position_ = position;
  samples_seen_ = samples_seen;
  start_workers();
}

}  // namespace fluxtrain
