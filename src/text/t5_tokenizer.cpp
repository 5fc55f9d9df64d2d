#include "text/t5_tokenizer.h"

#include <algorithm>
#include <cfloat>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "core/errors.h"
#include "core/strings.h"
#include "io/files.h"

namespace fluxtrain {
namespace fs = std::filesystem;

namespace {

constexpr const char kSpaceSymbol[] = "\xE2\x96\x81";      // U+2581, what a space becomes
constexpr const char kReplacementChar[] = "\xEF\xBF\xBD";  // U+FFFD, for invalid UTF-8
constexpr float kUnkPenalty = 10.0f;                       // sentencepiece's unigram_model.cc
constexpr int kMaxTrieResults = 32;                        // normalizer.cc kMaxTrieResultsSize

// ---- protobuf wire format (https://protobuf.dev/programming-guides/encoding/) ----

enum WireType { kVarint = 0, kFixed64 = 1, kLengthDelimited = 2, kFixed32 = 5 };

class WireReader {
 public:
  WireReader(std::string_view data, size_t base, const std::string& name, const char* message)
      : data_(data), base_(base), name_(name), message_(message) {}

  bool done() const { return pos_ >= data_.size(); }
  size_t offset() const { return base_ + pos_; }

  uint64_t varint() {
    uint64_t v = 0;
    for (int shift = 0; shift < 70; shift += 7) {
      if (pos_ >= data_.size()) fail("truncated varint");
      const auto b = static_cast<uint8_t>(data_[pos_++]);
      if (shift < 64) v |= static_cast<uint64_t>(b & 0x7f) << shift;
      if (!(b & 0x80)) return v;
    }
    fail("varint longer than 10 bytes");
  }
  // (field number, wire type)
  std::pair<uint32_t, int> tag() {
    const uint64_t t = varint();
    const auto field = static_cast<uint32_t>(t >> 3);
    if (field == 0) fail("field number 0");
    return {field, static_cast<int>(t & 7)};
  }
  std::string_view bytes(size_t* at = nullptr) {
    const uint64_t n = varint();
    if (n > data_.size() - pos_) fail("length-delimited field runs past the end");
    if (at) *at = base_ + pos_;
    const auto out = data_.substr(pos_, n);
    pos_ += n;
    return out;
  }
  uint32_t fixed32() {
    if (data_.size() - pos_ < 4) fail("truncated fixed32");
    uint32_t v = 0;
    for (int i = 3; i >= 0; --i) v = (v << 8) | static_cast<uint8_t>(data_[pos_ + i]);
    pos_ += 4;
    return v;
  }
  void skip(int wire_type) {
    switch (wire_type) {
      case kVarint:
        varint();
        return;
      case kFixed64:
        if (data_.size() - pos_ < 8) fail("truncated fixed64");
        pos_ += 8;
        return;
      case kLengthDelimited:
        bytes();
        return;
      case kFixed32:
        fixed32();
        return;
      default:
        fail(fmt::format("unsupported wire type {}", wire_type));
    }
  }
  [[noreturn]] void fail(const std::string& what) const {
    user_error("{}: not a valid sentencepiece model ({} in {} at byte {})", name_, what, message_,
               base_ + pos_);
  }

 private:
  std::string_view data_;
  size_t base_;
  const std::string& name_;
  const char* message_;
  size_t pos_ = 0;
};

int32_t as_int32(uint64_t v) {
  return static_cast<int32_t>(static_cast<uint32_t>(v));
}

SentencePieceModel::Piece parse_piece(std::string_view data, size_t base, const std::string& name) {
  SentencePieceModel::Piece p;
  WireReader r(data, base, name, "a piece");
  while (!r.done()) {
    const auto [field, wt] = r.tag();
    if (field == 1 && wt == kLengthDelimited) {
      p.piece = std::string(r.bytes());
    } else if (field == 2 && wt == kFixed32) {
      const uint32_t bits = r.fixed32();
      std::memcpy(&p.score, &bits, 4);
    } else if (field == 3 && wt == kVarint) {
      const int32_t t = as_int32(r.varint());
      if (t >= 1 && t <= 6) p.type = static_cast<SentencePieceModel::Type>(t);  // else unknown
    } else {
      r.skip(wt);
    }
  }
  return p;
}

void parse_trainer_spec(std::string_view data, size_t base, const std::string& name,
                        SentencePieceModel& m) {
  WireReader r(data, base, name, "trainer_spec");
  while (!r.done()) {
    const auto [field, wt] = r.tag();
    if (wt == kVarint &&
        (field == 3 || field == 24 || field == 35 || (field >= 40 && field <= 43))) {
      const uint64_t v = r.varint();
      switch (field) {
        case 3:
          m.model_type = as_int32(v);
          break;
        case 24:
          m.treat_whitespace_as_suffix = v != 0;
          break;
        case 35:
          m.byte_fallback = v != 0;
          break;
        case 40:
          m.unk_id = as_int32(v);
          break;
        case 41:
          m.bos_id = as_int32(v);
          break;
        case 42:
          m.eos_id = as_int32(v);
          break;
        case 43:
          m.pad_id = as_int32(v);
          break;
      }
    } else if (wt == kLengthDelimited && field >= 45 && field <= 48) {
      const std::string s(r.bytes());
      switch (field) {
        case 45:
          m.unk_piece = s;
          break;
        case 46:
          m.bos_piece = s;
          break;
        case 47:
          m.eos_piece = s;
          break;
        case 48:
          m.pad_piece = s;
          break;
      }
    } else {
      r.skip(wt);
    }
  }
}

void parse_normalizer_spec(std::string_view data, size_t base, const std::string& name,
                           SentencePieceModel& m) {
  WireReader r(data, base, name, "normalizer_spec");
  while (!r.done()) {
    const auto [field, wt] = r.tag();
    if (wt == kLengthDelimited && (field == 1 || field == 2)) {
      (field == 1 ? m.normalizer_name : m.precompiled_charsmap) = std::string(r.bytes());
    } else if (wt == kVarint && field >= 3 && field <= 5) {
      const bool v = r.varint() != 0;
      (field == 3   ? m.add_dummy_prefix
       : field == 4 ? m.remove_extra_whitespaces
                    : m.escape_whitespaces) = v;
    } else {
      r.skip(wt);
    }
  }
}

// Bytes of the UTF-8 character that starts with `c` (sentencepiece's OneCharLen).
int one_char_len(char c) {
  return "\1\1\1\1\1\1\1\1\1\1\1\1\2\2\3\4"[static_cast<uint8_t>(c) >> 4];
}

bool is_trail(uint8_t b) {
  return (b & 0xC0) == 0x80;
}
bool valid_codepoint(uint32_t c) {
  return c < 0xD800 || (c >= 0xE000 && c <= 0x10FFFF);
}

// Length of the valid UTF-8 character at the start of `s`, 0 if invalid (sentencepiece's
// DecodeUTF8: no overlong forms, no surrogates, nothing above U+10FFFF).
size_t valid_utf8_len(std::string_view s) {
  const auto b = [&](size_t i) { return static_cast<uint8_t>(s[i]); };
  if (b(0) < 0x80) return 1;
  if (s.size() >= 2 && (b(0) & 0xE0) == 0xC0 && is_trail(b(1))) {
    const uint32_t cp = ((b(0) & 0x1Fu) << 6) | (b(1) & 0x3Fu);
    if (cp >= 0x80) return 2;
  } else if (s.size() >= 3 && (b(0) & 0xF0) == 0xE0 && is_trail(b(1)) && is_trail(b(2))) {
    const uint32_t cp = ((b(0) & 0x0Fu) << 12) | ((b(1) & 0x3Fu) << 6) | (b(2) & 0x3Fu);
    if (cp >= 0x800 && valid_codepoint(cp)) return 3;
  } else if (s.size() >= 4 && (b(0) & 0xF8) == 0xF0 && is_trail(b(1)) && is_trail(b(2)) &&
             is_trail(b(3))) {
    const uint32_t cp =
        ((b(0) & 0x07u) << 18) | ((b(1) & 0x3Fu) << 12) | ((b(2) & 0x3Fu) << 6) | (b(3) & 0x3Fu);
    if (cp >= 0x10000 && valid_codepoint(cp)) return 4;
  }
  return 0;
}

// darts-clone DoubleArray unit fields.
bool unit_has_leaf(uint32_t u) {
  return (u >> 8) & 1;
}
uint32_t unit_value(uint32_t u) {
  return u & ((1u << 31) - 1);
}
uint32_t unit_label(uint32_t u) {
  return u & ((1u << 31) | 0xFF);
}
uint32_t unit_offset(uint32_t u) {
  return (u >> 10) << ((u & (1u << 9)) >> 6);
}

std::string byte_piece(int b) {
  return fmt::format("<0x{:02X}>", b);
}

std::string locate_model(const std::string& path) {
  std::error_code ec;
  if (!fs::exists(path, ec))
    user_error("{}: no such file or directory (expected a T5 sentencepiece model, spiece.model)",
               path);
  if (!fs::is_directory(path, ec)) return path;
  for (const char* rel : {"spiece.model", "tokenizer_2/spiece.model"}) {
    const fs::path p = fs::path(path) / rel;
    if (fs::is_regular_file(p, ec)) return p.string();
  }
  user_error("{}: no spiece.model in this directory (expected a Hugging Face tokenizer_2/ folder)",
             path);
}

}  // namespace

SentencePieceModel parse_sentencepiece_model(std::string_view bytes, const std::string& name) {
  SentencePieceModel m;
  WireReader r(bytes, 0, name, "ModelProto");
  while (!r.done()) {
    const auto [field, wt] = r.tag();
    if (wt == kLengthDelimited && field >= 1 && field <= 3) {
      size_t at = 0;
      const auto sub = r.bytes(&at);
      if (field == 1) m.pieces.push_back(parse_piece(sub, at, name));
      if (field == 2) parse_trainer_spec(sub, at, name, m);
      if (field == 3) parse_normalizer_spec(sub, at, name, m);
    } else {
      r.skip(wt);
    }
  }
  return m;
}

T5Tokenizer::T5Tokenizer(const std::string& path) : path_(locate_model(path)) {
  model_ = parse_sentencepiece_model(read_file_bytes(path_), path_);
  using Type = SentencePieceModel::Type;
  const auto& pieces = model_.pieces;
  if (pieces.empty()) user_error("{}: no pieces (not a sentencepiece model)", path_);
  if (model_.model_type != 1)
    user_error(
        "{}: sentencepiece model type {} is not supported (expected a unigram model, as T5's)",
        path_, model_.model_type);

  // As sentencepiece's ModelInterface::InitializePieces.
  std::unordered_map<std::string, int32_t> normal, reserved;
  min_score_ = FLT_MAX;
  max_score_ = FLT_MIN;
  std::fill(std::begin(byte_ids_), std::end(byte_ids_), -1);
  for (size_t i = 0; i < pieces.size(); ++i) {
    const auto& p = pieces[i];
    const auto id = static_cast<int32_t>(i);
    if (p.piece.empty()) user_error("{}: piece {} is empty", path_, i);
    const bool matchable =
        p.type == Type::kNormal || p.type == Type::kUserDefined || p.type == Type::kUnused;
    if (!(matchable ? normal : reserved).emplace(p.piece, id).second)
      user_error("{}: piece '{}' is defined twice", path_, p.piece);
    if (p.type == Type::kUnknown) {
      if (unk_id_ >= 0) user_error("{}: more than one unknown piece ('{}')", path_, p.piece);
      unk_id_ = id;
    }
    if (p.type == Type::kNormal) {
      min_score_ = std::min(min_score_, p.score);
      max_score_ = std::max(max_score_, p.score);
    }
    if (p.type == Type::kUserDefined) user_defined_.push_back(p.piece);
    if (p.type == Type::kByte) {
      if (!model_.byte_fallback)
        user_error("{}: byte piece '{}' in a model without byte_fallback", path_, p.piece);
      int b = -1;
      for (int v = 0; v < 256 && b < 0; ++v)
        if (p.piece == byte_piece(v)) b = v;
      if (b < 0) user_error("{}: malformed byte piece '{}'", path_, p.piece);
      byte_ids_[b] = id;
    }
    if (p.type == Type::kNormal || p.type == Type::kUserDefined) {
      for (size_t n = 1; n < p.piece.size(); ++n) prefixes_.emplace(p.piece.substr(0, n), -1);
      prefixes_[p.piece] = id;
    }
  }
  if (unk_id_ < 0) user_error("{}: no unknown piece (<unk>)", path_);
  if (model_.byte_fallback)
    for (int b = 0; b < 256; ++b)
      if (byte_ids_[b] < 0)
        user_error("{}: byte_fallback model lacks piece {}", path_, byte_piece(b));
  piece_ids_ = reserved;  // sentencepiece's PieceToId looks at reserved pieces first
  piece_ids_.insert(normal.begin(), normal.end());

  // </s> and <pad>: the control pieces named in the trainer spec (as SentencePieceProcessor's
  // eos_id()/pad_id()), else the trainer spec's ids when they name control pieces.
  const auto control_id = [&](const std::string& piece, int32_t spec_id, const char* what) {
    const auto it = reserved.find(piece);
    if (it != reserved.end() && pieces[it->second].type == Type::kControl)
      return int64_t(it->second);
    if (spec_id >= 0 && spec_id < static_cast<int32_t>(pieces.size()) &&
        pieces[spec_id].type == Type::kControl)
      return int64_t(spec_id);
    user_error("{}: no {} piece ('{}' or id {} as a control piece)", path_, what, piece, spec_id);
  };
  eos_id_ = control_id(model_.eos_piece, model_.eos_id, "end-of-sequence");
  pad_id_ = control_id(model_.pad_piece, model_.pad_id, "padding");

  // Precompiled charsmap: <uint32 LE trie size><darts units><NUL-terminated strings>.
  const std::string& blob = model_.precompiled_charsmap;
  if (!blob.empty()) {
    uint32_t trie_bytes = 0;
    if (blob.size() > 4)
      for (int i = 3; i >= 0; --i) trie_bytes = (trie_bytes << 8) | static_cast<uint8_t>(blob[i]);
    if (blob.size() <= 4 || trie_bytes >= blob.size() - 4)
      user_error("{}: the normalization rules (precompiled_charsmap) are broken", path_);
    trie_.resize(trie_bytes / 4);
    for (size_t u = 0; u < trie_.size(); ++u) {
      uint32_t v = 0;
      for (int i = 3; i >= 0; --i) v = (v << 8) | static_cast<uint8_t>(blob[4 + 4 * u + i]);
      trie_[u] = v;
    }
    replacements_ = blob.substr(4 + trie_bytes);
  }

  // Special tokens written in the text (Hugging Face's added tokens).
  const fs::path config = fs::path(path_).parent_path() / "tokenizer_config.json";
  std::error_code ec;
  if (fs::is_regular_file(config, ec)) {
    const nlohmann::json j = read_json_file(config.string());
    if (j.is_object() && j.contains("extra_ids")) {
      if (!j["extra_ids"].is_number_integer() || j["extra_ids"].get<int64_t>() < 0)
        user_error("{}: 'extra_ids' must be a non-negative integer, got {}", config.string(),
                   j["extra_ids"].dump());
      extra_ids_ = j["extra_ids"].get<int64_t>();
    }
  }
  for (int64_t id : {unk_id_, eos_id_, pad_id_}) specials_.emplace_back(pieces[id].piece, id);
  for (int64_t i = 0; i < extra_ids_; ++i)
    specials_.emplace_back(fmt::format("<extra_id_{}>", i), vocab_size() - 1 - i);
}

T5Tokenizer::Match T5Tokenizer::normalize_prefix(std::string_view input) const {
  if (input.empty()) return {};
  // User-defined pieces are never split or normalized: the longest one wins.
  size_t user = 0;
  for (const auto& u : user_defined_)
    if (u.size() > user && input.substr(0, u.size()) == u) user = u.size();
  if (user > 0) return {input.substr(0, user), user};

  // Longest rule in the double array (darts-clone commonPrefixSearch, first 32 results).
  size_t longest = 0;
  uint32_t value = 0;
  if (!trie_.empty()) {
    size_t node = unit_offset(trie_[0]);
    int results = 0;
    for (size_t i = 0; i < input.size(); ++i) {
      const auto c = static_cast<uint8_t>(input[i]);
      node ^= c;
      if (node >= trie_.size()) break;
      const uint32_t unit = trie_[node];
      if (unit_label(unit) != c) break;
      node ^= unit_offset(unit);
      if (unit_has_leaf(unit)) {
        if (node >= trie_.size()) break;
        if (results < kMaxTrieResults) {
          longest = i + 1;
          value = unit_value(trie_[node]);
        }
        ++results;
      }
    }
  }
  if (longest == 0) {
    const size_t n = valid_utf8_len(input);
    if (n == 0) return {kReplacementChar, 1};
    return {input.substr(0, n), n};
  }
  if (value >= replacements_.size())
    user_error("{}: the normalization rules (precompiled_charsmap) are broken", path_);
  const size_t end = replacements_.find('\0', value);
  return {std::string_view(replacements_)
              .substr(value, end == std::string::npos ? std::string::npos : end - value),
          longest};
}

std::string T5Tokenizer::normalize(const std::string& text) const {
  // As sentencepiece's normalizer::Normalizer::Normalize.
  std::string out;
  std::string_view in = text;
  const bool remove_extra = model_.remove_extra_whitespaces;
  if (remove_extra) {
    while (!in.empty()) {
      const Match m = normalize_prefix(in);
      if (m.text != " ") break;
      in.remove_prefix(m.consumed);
    }
  }
  if (in.empty()) return out;
  const std::string_view space = model_.escape_whitespaces ? kSpaceSymbol : " ";
  const bool dummy = model_.add_dummy_prefix;
  const bool suffix = model_.treat_whitespace_as_suffix;
  if (dummy && !suffix) out += space;
  bool prev_space = remove_extra;
  while (!in.empty()) {
    const Match m = normalize_prefix(in);
    std::string_view sp = m.text;
    if (prev_space)
      while (!sp.empty() && sp.front() == ' ') sp.remove_prefix(1);
    if (!sp.empty()) {
      for (const char ch : sp) {
        if (model_.escape_whitespaces && ch == ' ')
          out += kSpaceSymbol;
        else
          out += ch;
      }
      prev_space = sp.back() == ' ';
    }
    in.remove_prefix(m.consumed);
    if (!remove_extra) prev_space = false;
  }
  if (remove_extra)
    while (ends_with(out, std::string(space))) out.resize(out.size() - space.size());
  if (dummy && suffix) out += space;
  return out;
}

std::vector<std::pair<int64_t, std::string>> T5Tokenizer::segment_pieces(
    const std::string& normalized) const {
  // As sentencepiece's unigram::Model::EncodeOptimized: best path ending at each byte position,
  // candidates generated by start position then length, float32 scores (candidates compared in
  // double, as there).
  struct BestPath {
    int32_t id = -1;
    float score = 0.0f;
    int64_t start = -1;
  };
  const auto size = static_cast<int64_t>(normalized.size());
  std::vector<BestPath> best(size + 1);
  const float unk_score = min_score_ - kUnkPenalty;
  std::string key;
  for (int64_t start = 0; start < size;) {
    const float here = best[start].score;
    const int64_t mblen = std::min<int64_t>(one_char_len(normalized[start]), size - start);
    bool has_single = false;
    key.clear();
    for (int64_t end = start; end < size;) {
      key += normalized[end++];
      const auto it = prefixes_.find(key);
      if (it == prefixes_.end()) break;
      const int32_t id = it->second;
      if (id < 0) continue;
      const int64_t length = end - start;
      const double score = model_.pieces[id].type == SentencePieceModel::Type::kUserDefined
                               ? static_cast<float>(length) * max_score_ - 0.1
                               : model_.pieces[id].score;
      const double candidate = score + here;
      BestPath& target = best[end];
      if (target.start == -1 || candidate > target.score) {
        target = {id, static_cast<float>(candidate), start};
      }
      if (length == mblen) has_single = true;
    }
    if (!has_single) {
      BestPath& target = best[start + mblen];
      const float candidate = unk_score + here;
      if (target.start == -1 || candidate > target.score) {
        target = {static_cast<int32_t>(unk_id_), candidate, start};
      }
    }
    start += mblen;
  }
  std::vector<std::pair<int64_t, std::string>> path;  // (id, surface), last first
  for (int64_t end = size; end > 0;) {
    const BestPath& node = best[end];
    if (node.start < 0 || node.start >= end) throw std::logic_error("T5Tokenizer: broken lattice");
    path.emplace_back(node.id, normalized.substr(node.start, end - node.start));
    end = node.start;
  }
  std::reverse(path.begin(), path.end());

  // As SentencePieceProcessor::Encode: with byte_fallback an <unk> becomes the <0xXX> pieces of
  // its bytes; without, a run of <unk> pieces is merged into one.
  std::vector<std::pair<int64_t, std::string>> out;
  for (auto& [id, surface] : path) {
    if (id == unk_id_ && model_.byte_fallback) {
      for (const char b : surface) out.emplace_back(byte_ids_[static_cast<uint8_t>(b)], "");
      out.back().second = surface;  // the last byte piece holds the surface
    } else if (id == unk_id_ && !out.empty() && out.back().first == unk_id_) {
      out.back().second += surface;
    } else {
      out.emplace_back(id, std::move(surface));
    }
  }
  return out;
}

std::vector<int64_t> T5Tokenizer::segment(const std::string& normalized) const {
  std::vector<int64_t> ids;
  for (const auto& piece : segment_pieces(normalized)) ids.push_back(piece.first);
  return ids;
}

void T5Tokenizer::encode_chunk(std::string_view text, std::vector<int64_t>* ids,
                               std::vector<std::string>* pieces) const {
  for (auto& [id, surface] : segment_pieces(normalize(std::string(text)))) {
    if (ids) ids->push_back(id);
    if (pieces)
      pieces->push_back(model_.pieces[id].type == SentencePieceModel::Type::kByte
                            ? model_.pieces[id].piece
                            : std::move(surface));
  }
}

std::vector<std::pair<std::string_view, int64_t>> T5Tokenizer::split_special(
    std::string_view text) const {
  std::vector<std::pair<std::string_view, int64_t>> out;
  size_t chunk_start = 0;
  for (size_t i = 0; i < text.size();) {
    size_t best_len = 0;
    int64_t best_id = -1;
    for (const auto& [token, id] : specials_) {
      if (token.size() > best_len && text.compare(i, token.size(), token) == 0) {
        best_len = token.size();
        best_id = id;
      }
    }
    if (best_len == 0) {
      ++i;
      continue;
    }
    if (i > chunk_start) out.emplace_back(text.substr(chunk_start, i - chunk_start), -1);
    out.emplace_back(text.substr(i, best_len), best_id);
    i += best_len;
    chunk_start = i;
  }
  if (chunk_start < text.size()) out.emplace_back(text.substr(chunk_start), -1);
  return out;
}

std::vector<int64_t> T5Tokenizer::encode(const std::string& text) const {
  std::vector<int64_t> ids;
  for (const auto& [chunk, id] : split_special(text)) {
    if (id >= 0)
      ids.push_back(id);
    else
      encode_chunk(chunk, &ids, nullptr);
  }
  return ids;
}

std::vector<std::string> T5Tokenizer::tokenize(const std::string& text) const {
  std::vector<std::string> pieces;
  for (const auto& [chunk, id] : split_special(text)) {
    if (id >= 0)
      pieces.emplace_back(chunk);
    else
      encode_chunk(chunk, nullptr, &pieces);
  }
  return pieces;
}

std::vector<int64_t> T5Tokenizer::encode_padded(const std::string& text, int64_t max_length) const {
  if (max_length < 1) user_error("T5 tokenizer: max_length must be at least 1, got {}", max_length);
  auto ids = encode(text);
  if (static_cast<int64_t>(ids.size()) > max_length - 1) ids.resize(max_length - 1);
  if (ids.empty() || ids.back() != eos_id_) ids.push_back(eos_id_);  // T5Tokenizer adds it once
  ids.resize(max_length, pad_id_);
  return ids;
}

torch::Tensor T5Tokenizer::encode_batch(const std::vector<std::string>& texts,
                                        int64_t max_length) const {
  auto out = torch::empty({static_cast<int64_t>(texts.size()), max_length}, torch::kInt64);
  auto acc = out.accessor<int64_t, 2>();
  for (size_t b = 0; b < texts.size(); ++b) {
    const auto ids = encode_padded(texts[b], max_length);
    for (int64_t t = 0; t < max_length; ++t) acc[b][t] = ids[t];
  }
  return out;
}

std::optional<int64_t> T5Tokenizer::token_id(const std::string& token) const {
  for (const auto& [special, id] : specials_)
    if (special == token) return id;
  const auto it = piece_ids_.find(token);
  if (it != piece_ids_.end()) return it->second;
  return std::nullopt;
}

std::string T5Tokenizer::id_to_token(int64_t id) const {
  if (id >= 0 && id < piece_count()) return model_.pieces[id].piece;
  if (id >= piece_count() && id < vocab_size())
    return fmt::format("<extra_id_{}>", vocab_size() - 1 - id);
  user_error("{}: token id {} is out of range (vocabulary of {})", path_, id, vocab_size());
}

}  // namespace fluxtrain
