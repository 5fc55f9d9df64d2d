// Model file resolution (see model_files.h).
#include "sample/model_files.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <vector>

#include "core/errors.h"
#include "core/strings.h"

namespace fluxtrain {
namespace fs = std::filesystem;

bool looks_like_model_path(const std::string& path) {
  return path.find('/') != std::string::npos || fs::exists(path);
}

std::string resolve_hf_cache_dir(const std::string& dir) {
  fs::path entry(dir);
  if (entry.filename().empty()) entry = entry.parent_path();  // trailing '/'
  if (entry.filename() == "snapshots") entry = entry.parent_path();
  const fs::path snapshots = entry / "snapshots";
  if (!fs::is_directory(snapshots)) return dir;
  const fs::path ref = entry / "refs" / "main";
  if (fs::is_regular_file(ref)) {
    std::ifstream in(ref);
    std::string rev((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    rev = trim_whitespace(rev);
    const fs::path snap = snapshots / rev;
    if (rev.empty() || !fs::is_directory(snap))
      user_error("Hugging Face cache '{}': refs/main names revision '{}', but {} does not exist",
                 entry.string(), rev, snap.string());
    return snap.string();
  }
  std::vector<std::string> revs;
  for (const auto& e : fs::directory_iterator(snapshots))
    if (e.is_directory()) revs.push_back(e.path().filename().string());
  std::sort(revs.begin(), revs.end());
  if (revs.size() == 1) return (snapshots / revs[0]).string();
  if (revs.empty())
    user_error("Hugging Face cache '{}': snapshots/ is empty (the download did not finish?)",
               entry.string());
  user_error("Hugging Face cache '{}': {} snapshots and no refs/main; give one of them: {}",
             entry.string(), revs.size(), fmt::format("{}", fmt::join(revs, ", ")));
}

namespace {

// Looks for one component in the model directory and reports what is needed when it is absent.
struct Finder {
  std::string model;  // as given, for messages
  fs::path root;      // "" when the model is a single file without a usable directory

  [[noreturn]] void missing(const std::string& what, const std::string& flag) const {
    user_error(
        "model '{}': missing {}; fluxtrain does not download at run time: fetch the model's "
        "files (e.g. `huggingface-cli download black-forest-labs/FLUX.1-dev`) or give --{} PATH",
        model, what, flag);
  }

  // A diffusers component folder holding `required` (e.g. config.json).
  std::string folder(const std::string& override_path, const std::string& name,
                     const std::string& required, const std::string& what,
                     const std::string& flag) const {
    if (!override_path.empty()) {
      if (!fs::exists(override_path))
        user_error("--{} '{}': no such file or directory ({} expected)", flag, override_path, what);
      if (fs::is_directory(override_path) && !required.empty() &&
          !fs::exists(fs::path(override_path) / required))
        user_error("--{} '{}': no {} in it ({} expected)", flag, override_path, required, what);
      return override_path;
    }
    const fs::path dir = root / name;
    if (root.empty() || !fs::is_directory(dir)) missing(fmt::format("{}/ ({})", name, what), flag);
    if (!required.empty() && !fs::exists(dir / required))
      missing(fmt::format("{}/{} ({})", name, required, what), flag);
    return dir.string();
  }
};

// BFL's transformer file in a repository: flux1-dev.safetensors, flux1-schnell.safetensors, ...
std::vector<std::string> bfl_transformer_files(const fs::path& root) {
  std::vector<std::string> found;
  if (root.empty() || !fs::is_directory(root)) return found;
  for (const auto& e : fs::directory_iterator(root)) {
    const std::string n = e.path().filename().string();
    if (e.is_regular_file() && n.rfind("flux1-", 0) == 0 && n.size() > 12 &&
        n.compare(n.size() - 12, 12, ".safetensors") == 0)
      found.push_back(e.path().string());
  }
  std::sort(found.begin(), found.end());
  return found;
}

}  // namespace

ModelFiles resolve_model_files(const std::string& model, const ModelFileOverrides& o,
                               bool need_text, bool need_vae) {
  ModelFiles files;
  Finder find{model, {}};
  if (!fs::exists(model))
    user_error(
        "--model '{}': no such file or directory (a model directory, a Hugging Face cache "
        "entry or a .safetensors file expected)",
        model);
  if (fs::is_directory(model)) {
    files.root = resolve_hf_cache_dir(model);
    find.root = files.root;
  } else {
    // A single transformer file: the other components may sit beside it.
    files.transformer = model;
    find.root = fs::path(model).parent_path();
    if (find.root.empty()) find.root = ".";
  }

  if (!o.transformer.empty()) {
    if (!fs::exists(o.transformer))
      user_error("--transformer '{}': no such file or directory", o.transformer);
    files.transformer = o.transformer;
  } else if (files.transformer.empty()) {
    const fs::path dir = find.root / "transformer";
    if (fs::is_directory(dir)) {
      files.transformer = dir.string();
    } else {
      auto bfl = bfl_transformer_files(find.root);
      if (bfl.size() > 1)
        user_error("model '{}': several transformer files ({}); give one with --transformer", model,
                   fmt::format("{}", fmt::join(bfl, ", ")));
      if (bfl.empty())
        find.missing("transformer/ (diffusers) or flux1-*.safetensors (BFL): the transformer",
                     "transformer");
      files.transformer = bfl[0];
    }
  }

  if (need_vae) {
    if (!o.vae.empty()) {
      files.vae = find.folder(o.vae, "vae", "config.json", "the autoencoder", "vae");
    } else if (fs::is_directory(find.root / "vae")) {
      files.vae = find.folder("", "vae", "config.json", "the autoencoder", "vae");
    } else if (fs::is_regular_file(find.root / "ae.safetensors")) {
      files.vae = (find.root / "ae.safetensors").string();
    } else {
      find.missing("vae/ (diffusers) or ae.safetensors (BFL): the autoencoder", "vae");
    }
  }

  if (need_text) {
    files.text_encoder = find.folder(o.text_encoder, "text_encoder", "config.json",
                                     "the CLIP-L text encoder", "text_encoder");
    files.text_encoder_2 = find.folder(o.text_encoder_2, "text_encoder_2", "config.json",
                                       "the T5-XXL text encoder", "text_encoder_2");
    files.tokenizer = find.folder(o.tokenizer, "tokenizer", "vocab.json",
                                  "the CLIP tokenizer: vocab.json and merges.txt", "tokenizer");
    const std::string merges = (fs::path(files.tokenizer) / "merges.txt").string();
    if (fs::is_directory(files.tokenizer) && !fs::exists(merges)) {
      if (o.tokenizer.empty())
        find.missing("tokenizer/merges.txt (the CLIP tokenizer)", "tokenizer");
      user_error(
          "--tokenizer '{}': no merges.txt in it (the CLIP tokenizer needs vocab.json and "
          "merges.txt)",
          files.tokenizer);
    }
    std::string t5 = find.folder(o.tokenizer_2, "tokenizer_2", "spiece.model",
                                 "the T5 tokenizer: spiece.model", "tokenizer_2");
    if (fs::is_directory(t5)) t5 = (fs::path(t5) / "spiece.model").string();
    files.tokenizer_2 = t5;
  }
  return files;
}

void add_model_file_keys(ConfigSchema& s, const std::string& group, const std::string& with) {
  s.string(group, "transformer", "", with + ": the transformer file or folder")
      .string(group, "vae", "", with + ": BFL ae.safetensors or a diffusers vae/ folder")
      .string(group, "text_encoder", "", with + ": CLIP-L text_encoder/ folder")
      .string(group, "text_encoder_2", "", with + ": T5-XXL text_encoder_2/ folder")
      .string(group, "tokenizer", "", with + ": CLIP tokenizer/ folder")
      .string(group, "tokenizer_2", "", with + ": T5 tokenizer_2/ folder or spiece.model");
}

ModelFileOverrides model_file_overrides(const Config& c) {
  return {c.s("transformer"),    c.s("vae"),       c.s("text_encoder"),
          c.s("text_encoder_2"), c.s("tokenizer"), c.s("tokenizer_2")};
}

std::string component_fingerprint(const std::string& path) {
  namespace fs = std::filesystem;
  if (path.empty()) return "";
  std::error_code ec;
  uint64_t bytes = 0;
  if (fs::is_directory(path, ec)) {
    for (auto it = fs::recursive_directory_iterator(path, ec); !ec && it != fs::end(it);
         it.increment(ec))
      if (it->is_regular_file(ec)) bytes += it->file_size(ec);
  } else {
    bytes = fs::file_size(path, ec);
  }
  return fmt::format("{} ({} bytes)", fs::absolute(path).lexically_normal().string(), bytes);
}

}  // namespace fluxtrain
