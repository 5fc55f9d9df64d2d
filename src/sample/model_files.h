// Where each component of a FLUX.1 model lives on disk, from what the user gives `--model`:
// a diffusers repository (model_index.json, transformer/, vae/, text_encoder/, text_encoder_2/,
// tokenizer/, tokenizer_2/), Black Forest Labs' files (flux1-*.safetensors, ae.safetensors,
// usually beside the diffusers folders in the same repository), a Hugging Face cache entry
// (models--org--name/snapshots/<revision>/, through refs/main), or a single transformer file with
// the other components named one by one. Nothing is downloaded: a missing component is a
// UserError that names the file or folder needed.
#pragma once
#include <string>

#include "core/config.h"

namespace fluxtrain {

// Paths given one by one (empty = look in the model directory).
struct ModelFileOverrides {
  std::string transformer;     // BFL .safetensors file, diffusers transformer/ dir or index.json
  std::string vae;             // BFL ae.safetensors or diffusers vae/ dir
  std::string text_encoder;    // CLIP-L: text_encoder/ dir (config.json + model.safetensors)
  std::string text_encoder_2;  // T5-XXL: text_encoder_2/ dir (config.json + shards + index)
  std::string tokenizer;       // CLIP: tokenizer/ dir (vocab.json + merges.txt)
  std::string tokenizer_2;     // T5: tokenizer_2/ dir (spiece.model) or the spiece.model file
};

struct ModelFiles {
  std::string root;  // the model directory after following the cache layout ("" for files)
  std::string transformer;
  std::string vae;
  std::string text_encoder;
  std::string text_encoder_2;
  std::string tokenizer;
  std::string tokenizer_2;  // the spiece.model file
};

// The keys that name components one by one (transformer, vae, text_encoder, text_encoder_2,
// tokenizer, tokenizer_2) in `group`, each help text starting with `with` ("with --model"), and
// their values from a config that has them.
void add_model_file_keys(ConfigSchema& schema, const std::string& group, const std::string& with);
ModelFileOverrides model_file_overrides(const Config& config);

// A component's file or folder as a latent cache records it: "<absolute path> (<bytes> bytes)",
// the bytes of a folder summed over its files; "" for "".
std::string component_fingerprint(const std::string& path);

// True when `path` looks like a model given by path rather than a preset name (an existing file
// or directory, or a name with a '/').
bool looks_like_model_path(const std::string& path);

// A Hugging Face cache entry (models--org--name/, or its snapshots/ folder) -> the snapshot that
// refs/main names, or the only snapshot; any other directory is returned unchanged. UserError when
// the entry has several snapshots and no refs/main, or none.
std::string resolve_hf_cache_dir(const std::string& dir);

// Every component's path, checked to exist. `need_vae`/`need_text` false skip those components
// (e.g. for commands that only read the transformer).
ModelFiles resolve_model_files(const std::string& model, const ModelFileOverrides& overrides = {},
                               bool need_text = true, bool need_vae = true);

}  // namespace fluxtrain
