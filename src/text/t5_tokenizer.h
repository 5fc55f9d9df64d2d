// T5Tokenizer: the sentencepiece unigram tokenizer of T5 v1.1 (FLUX's T5-XXL), read from a Hugging
// Face `tokenizer_2/spiece.model`, with Hugging Face's T5Tokenizer conventions on top.
//
// sentencepiece itself is not linked (its bundled protobuf-lite clashes with libtorch's protobuf,
// see CMakeLists.txt): spiece.model (a serialized sentencepiece ModelProto) is read here from its
// protobuf wire format, and encoding follows sentencepiece 0.1.97:
//  1. normalization (normalizer.cc): the model's precompiled charsmap (a darts-clone double-array
//     trie + NUL-terminated replacement strings; T5's is "nmt_nfkc") is applied by longest prefix
//     match, user-defined pieces are kept whole, invalid UTF-8 bytes become U+FFFD; with
//     remove_extra_whitespaces leading, trailing and repeated spaces are dropped; with
//     add_dummy_prefix a space is put in front; with escape_whitespaces every space becomes
//     U+2581 "▁";
//  2. segmentation (unigram_model.cc, EncodeOptimized): the Viterbi path over all vocabulary
//     pieces (NORMAL and USER_DEFINED; UNUSED, CONTROL, UNKNOWN and BYTE pieces never match) that
//     maximises the float32 sum of piece scores; a character no piece starts with becomes <unk>
//     with score min(NORMAL scores) - 10; user-defined pieces score length * max score - 0.1;
//     ties keep the first candidate (shorter start, then shorter piece); then (as
//     SentencePieceProcessor::Encode) with byte_fallback an <unk> is replaced by the <0xXX>
//     pieces of its bytes, and without it a run of adjacent <unk> pieces becomes one <unk>.
// On top, as Hugging Face's (slow, legacy) T5Tokenizer that FLUX's reference code uses:
//  - special tokens written in the text are cut out first and become their ids: the unk, eos and
//    pad pieces ("<unk>", "</s>", "<pad>") and "<extra_id_0>".."<extra_id_{N-1}>" with ids
//    piece_count + N - 1 - i (N = extra_ids, 100 for T5: <extra_id_0> = 32099); each stretch of
//    text between them is encoded on its own (so each gets its own dummy prefix);
//  - encode_padded = truncation=True, padding="max_length": ids cut to max_length - 1, then </s>
//    (not added again when the ids already end with it, as T5Tokenizer does), then <pad> up to
//    max_length.
// All methods are const and safe to call from several threads.
#pragma once
#include <torch/torch.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

namespace fluxtrain {

// The parts of a sentencepiece ModelProto (sentencepiece_model.proto) the tokenizer reads.
// Defaults are the proto's.
struct SentencePieceModel {
  enum class Type {
    kNormal = 1,
    kUnknown = 2,
    kControl = 3,
    kUserDefined = 4,
    kUnused = 5,
    kByte = 6
  };
  struct Piece {
    std::string piece;  // UTF-8, spaces as U+2581
    float score = 0.0f;
    Type type = Type::kNormal;
  };
  std::vector<Piece> pieces;  // ModelProto.pieces (1); the id of a piece is its index
  // TrainerSpec (ModelProto.trainer_spec, 2)
  int32_t model_type = 1;  // 1 UNIGRAM, 2 BPE, 3 WORD, 4 CHAR
  int32_t unk_id = 0, bos_id = 1, eos_id = 2, pad_id = -1;
  std::string unk_piece = "<unk>", bos_piece = "<s>", eos_piece = "</s>", pad_piece = "<pad>";
  bool byte_fallback = false;
  bool treat_whitespace_as_suffix = false;
  // NormalizerSpec (ModelProto.normalizer_spec, 3)
  std::string normalizer_name;
  std::string precompiled_charsmap;  // bytes: uint32 LE trie size, darts units, strings
  bool add_dummy_prefix = true;
  bool remove_extra_whitespaces = true;
  bool escape_whitespaces = true;
};

// Parses a serialized ModelProto. `name` (the file) starts every error message: malformed wire
// format, a field of the wrong wire type, a truncated message -> one-line UserError.
SentencePieceModel parse_sentencepiece_model(std::string_view bytes, const std::string& name);

class T5Tokenizer {
 public:
  // `path`: spiece.model, or a directory holding it (a Hugging Face `tokenizer_2/` folder, or a
  // FLUX repository with tokenizer_2/spiece.model). extra_ids: tokenizer_config.json "extra_ids"
  // beside the model when present, else 100 (T5). A missing or unreadable file, a malformed
  // model, a model that is not unigram or lacks <unk>, </s> or <pad> -> one-line UserError naming
  // the file.
  explicit T5Tokenizer(const std::string& path);

  // Piece ids of `text`, special tokens in the text included, without </s>.
  std::vector<int64_t> encode(const std::string& text) const;
  // FLUX's call: encode(text) cut to max_length - 1, </s>, then <pad> up to max_length
  // (max_length >= 1; 512 for FLUX.1-dev, 256 for schnell). "" -> [</s>, <pad>, ...].
  std::vector<int64_t> encode_padded(const std::string& text, int64_t max_length) const;
  // encode_padded of each text -> [B, max_length] int64 (CPU).
  torch::Tensor encode_batch(const std::vector<std::string>& texts, int64_t max_length) const;

  // The pieces of `text` (what sentencepiece's encode(out_type=str) gives per chunk; an <unk>
  // is its surface text; special tokens as written).
  std::vector<std::string> tokenize(const std::string& text) const;
  // sentencepiece's normalization of `text` (charsmap, whitespace rules, "▁"); no special-token
  // splitting.
  std::string normalize(const std::string& text) const;
  // Piece ids of already normalized text: the Viterbi segmentation, then byte fallback or the
  // merging of adjacent <unk> pieces into one.
  std::vector<int64_t> segment(const std::string& normalized) const;

  int64_t eos_id() const { return eos_id_; }
  int64_t pad_id() const { return pad_id_; }
  int64_t unk_id() const { return unk_id_; }
  // Pieces in spiece.model (32000 for T5).
  int64_t piece_count() const { return static_cast<int64_t>(model_.pieces.size()); }
  int64_t extra_ids() const { return extra_ids_; }
  // piece_count() + extra_ids() (Hugging Face's T5Tokenizer.vocab_size: 32100 for T5).
  int64_t vocab_size() const { return piece_count() + extra_ids_; }
  // The id of a piece or special token ("▁cat", "</s>", "<extra_id_0>"), nullopt if none.
  std::optional<int64_t> token_id(const std::string& token) const;
  // The piece or special token of an id; UserError when out of range.
  std::string id_to_token(int64_t id) const;
  const SentencePieceModel& model() const { return model_; }
  const std::string& path() const { return path_; }

 private:
  struct Match {
    std::string_view text;  // replacement
    size_t consumed = 0;    // input bytes
  };
  Match normalize_prefix(std::string_view input) const;
  // Ids (or pieces) of one chunk of text with no special tokens in it.
  void encode_chunk(std::string_view text, std::vector<int64_t>* ids,
                    std::vector<std::string>* pieces) const;
  // (id, surface) of each piece of normalized text (segment() with surfaces).
  std::vector<std::pair<int64_t, std::string>> segment_pieces(const std::string& normalized) const;
  // Splits text at special tokens: (chunk, -1) or (token, id).
  std::vector<std::pair<std::string_view, int64_t>> split_special(std::string_view text) const;

  std::string path_;
  SentencePieceModel model_;
  int64_t unk_id_ = -1, eos_id_ = -1, pad_id_ = -1, extra_ids_ = 100;
  float min_score_ = 0.0f, max_score_ = 0.0f;
  // Every prefix of a matchable piece -> the piece id, or -1 when the prefix is not a piece.
  std::unordered_map<std::string, int32_t> prefixes_;
  std::unordered_map<std::string, int32_t> piece_ids_;     // all pieces
  std::vector<std::string> user_defined_;                  // USER_DEFINED pieces
  std::vector<uint32_t> trie_;                             // charsmap double array
  std::string replacements_;                               // charsmap strings
  std::vector<std::pair<std::string, int64_t>> specials_;  // special token -> id
  int32_t byte_ids_[256];                                  // <0xXX> ids when byte_fallback
};

}  // namespace fluxtrain
