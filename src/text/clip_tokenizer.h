// ClipTokenizer: the CLIP byte-level BPE tokenizer (openai/clip-vit-large-patch14, FLUX's CLIP-L)
// read from a Hugging Face `tokenizer/` folder (vocab.json, merges.txt, and when present
// special_tokens_map.json and tokenizer_config.json).
//
// Pipeline (as Hugging Face's CLIPTokenizer / CLIPTokenizerFast):
//  1. special tokens written in the text ("<|startoftext|>", "<|endoftext|>", exact case) are cut
//     out first and become their ids;
//  2. text cleanup, then NFC, then full Unicode lower-casing (ICU, root locale):
//     - ClipCleanup::kSlow (default) = CLIPTokenizer without ftfy, which is what FLUX's reference
//       code (flux HFEmbedder) and diffusers' FluxPipeline run: drops NUL, U+FFFD and every
//       category C* character except \t \n \r, turns Zs and \t \n \r into spaces, and puts spaces
//       around CJK ideographs (BERT's BasicTokenizer ranges), so each ideograph is its own word;
//     - ClipCleanup::kFast = CLIPTokenizerFast (tokenizers' normalizer NFC, \s+ -> " ",
//       Lowercase): no character is dropped and a run of ideographs is one word;
//     the two agree on every text without C* characters (controls, ZWJ, BOM, ...), U+FFFD or
//     CJK ideographs;
//  3. words by the CLIP pattern `'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+`,
//     whitespace between words dropped; a special token that only lower-casing produced
//     ("<|ENDOFTEXT|>") still maps to its id: kSlow matches it as the first alternatives of the
//     pattern (as the slow tokenizer's regex does), kFast cuts it out of the normalized text
//     first (tokenizers' "normalized" added tokens);
//  4. each word's UTF-8 bytes mapped to printable characters (GPT-2's bytes_to_unicode), "</w>"
//     appended to the last one, BPE merges applied lowest rank first (all non-overlapping
//     occurrences of the best pair, left to right, until no ranked pair is left); a symbol not in
//     the vocabulary becomes the unk token (never happens with the real vocabulary, which holds
//     all 256 byte symbols with and without "</w>").
// Invalid UTF-8 in the input is read as U+FFFD. Merges: an optional first line "#version..." is
// skipped; every other line is "left right" and both parts and their concatenation must be in the
// vocabulary (as tokenizers checks). Results of step 4 are cached per word; all methods are
// const and safe to call from several threads.
#pragma once
#include <torch/torch.h>

#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

namespace fluxtrain {

// Which Hugging Face tokenizer class the text cleanup follows (see the file comment).
enum class ClipCleanup {
  kSlow,  // CLIPTokenizer without ftfy (FLUX reference code, diffusers)
  kFast,  // CLIPTokenizerFast
};

class ClipTokenizer {
 public:
  // `dir` holds vocab.json and merges.txt (a Hugging Face `tokenizer/` folder). Special tokens:
  // bos/eos/pad/unk named in special_tokens_map.json, else tokenizer_config.json (a plain string
  // or an AddedToken object with "content"), else "<|startoftext|>" / "<|endoftext|>"; pad and
  // unk default to the eos token. Every problem (missing file, malformed JSON, a bad merges line,
  // a special token not in the vocabulary) is a one-line UserError naming the file.
  explicit ClipTokenizer(const std::string& dir, ClipCleanup cleanup = ClipCleanup::kSlow);

  // Token ids of `text` without special tokens.
  std::vector<int64_t> encode(const std::string& text) const;
  // FLUX's call (truncation=True, padding="max_length"): [bos] + encode(text) cut to
  // max_length - 2 + [eos], then pad ids up to max_length. max_length >= 2.
  std::vector<int64_t> encode_padded(const std::string& text, int64_t max_length = 77) const;
  // encode_padded of each text -> [B, max_length] int64 (CPU).
  torch::Tensor encode_batch(const std::vector<std::string>& texts, int64_t max_length = 77) const;

  // The BPE tokens of `text` (vocabulary strings, e.g. "cat</w>"), special tokens included.
  std::vector<std::string> tokenize(const std::string& text) const;
  // The words of `text` after cleanup and the CLIP pattern (UTF-8, before byte mapping).
  std::vector<std::string> words(const std::string& text) const;
  // `text` after cleanup, NFC and lower-casing (what the CLIP pattern runs on).
  std::string normalize(const std::string& text) const;

  int64_t bos_id() const { return bos_id_; }
  int64_t eos_id() const { return eos_id_; }
  int64_t pad_id() const { return pad_id_; }
  int64_t unk_id() const { return unk_id_; }
  // Number of entries in vocab.json (Hugging Face's len(encoder)).
  int64_t vocab_size() const { return static_cast<int64_t>(vocab_.size()); }
  size_t num_merges() const { return merge_ranks_.size(); }
  // tokenizer_config.json "model_max_length" when it is a sensible integer, else 77.
  int64_t model_max_length() const { return model_max_length_; }
  ClipCleanup cleanup() const { return cleanup_; }
  // The id of a vocabulary string ("cat</w>"), nullopt if it has none.
  std::optional<int64_t> token_id(const std::string& token) const;

  // GPT-2/CLIP bytes_to_unicode: the printable character (as UTF-8) standing for each byte.
  static const std::vector<std::string>& byte_symbols();

 private:
  struct Piece {
    std::string text;         // a word (UTF-8), or the special token's name
    int64_t special_id = -1;  // >= 0 for a special token
  };
  std::vector<Piece> pieces(const std::string& text) const;
  void words_of_segment(const std::string& segment, std::vector<Piece>& out) const;
  std::vector<std::string> bpe(const std::string& word) const;  // cached
  int64_t id_or_unk(const std::string& token) const;

  std::string dir_;
  ClipCleanup cleanup_;
  std::unordered_map<std::string, int64_t> vocab_;
  std::unordered_map<std::string, int64_t> merge_ranks_;  // "left right" -> rank
  int64_t bos_id_ = 0, eos_id_ = 0, pad_id_ = 0, unk_id_ = 0;
  std::string bos_token_, eos_token_;
  int64_t model_max_length_ = 77;
  mutable std::mutex cache_mutex_;
  mutable std::unordered_map<std::string, std::vector<std::string>> cache_;
};

}  // namespace fluxtrain
