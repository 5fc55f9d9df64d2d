// ClipTokenizer: files, text cleanup (ICU), the CLIP word pattern and byte-level BPE.
#include "text/clip_tokenizer.h"

#include <unicode/locid.h>
#include <unicode/normalizer2.h>
#include <unicode/uchar.h>
#include <unicode/unistr.h>

#include <filesystem>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <sstream>

#include "core/errors.h"
#include "io/files.h"

namespace fluxtrain {

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

constexpr size_t kMaxCachedBpeWords = 1 << 16;
const char kEndOfWord[] = "</w>";
const char kDefaultBos[] = "<|startoftext|>";
const char kDefaultEos[] = "<|endoftext|>";

// A line of a file for an error message: at most 60 bytes.
std::string excerpt(const std::string& line) {
  return line.size() <= 60 ? line : line.substr(0, 57) + "...";
}

// --- Unicode ------------------------------------------------------------------------------------

// UTF-8 -> code points; invalid sequences become U+FFFD (ICU's conversion).
std::u32string to_u32(const std::string& utf8) {
  const auto u = icu::UnicodeString::fromUTF8(icu::StringPiece(utf8.data(), utf8.size()));
  std::u32string out;
  out.reserve(static_cast<size_t>(u.length()));
  for (int32_t i = 0; i < u.length();) {
    const UChar32 c = u.char32At(i);
    out.push_back(static_cast<char32_t>(c));
    i += U16_LENGTH(c);
  }
  return out;
}

void append_utf8(std::string& out, char32_t c) {
  if (c < 0x80) {
    out += static_cast<char>(c);
  } else if (c < 0x800) {
    out += static_cast<char>(0xC0 | (c >> 6));
    out += static_cast<char>(0x80 | (c & 0x3F));
  } else if (c < 0x10000) {
    out += static_cast<char>(0xE0 | (c >> 12));
    out += static_cast<char>(0x80 | ((c >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (c & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (c >> 18));
    out += static_cast<char>(0x80 | ((c >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((c >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (c & 0x3F));
  }
}

std::string to_utf8(const char32_t* begin, const char32_t* end) {
  std::string out;
  for (auto* p = begin; p != end; ++p) append_utf8(out, *p);
  return out;
}

icu::UnicodeString to_icu(const std::u32string& s) {
  icu::UnicodeString u;
  for (char32_t c : s) u.append(static_cast<UChar32>(c));
  return u;
}

std::u32string from_icu(const icu::UnicodeString& u) {
  std::u32string out;
  for (int32_t i = 0; i < u.length();) {
    const UChar32 c = u.char32At(i);
    out.push_back(static_cast<char32_t>(c));
    i += U16_LENGTH(c);
  }
  return out;
}

// NFC, then full lower-casing in the root locale (Python's str.lower(), tokenizers' Lowercase).
std::u32string nfc_lower(const std::u32string& s) {
  UErrorCode status = U_ZERO_ERROR;
  const icu::Normalizer2* nfc = icu::Normalizer2::getNFCInstance(status);
  if (U_FAILURE(status)) throw std::runtime_error("ICU: no NFC normalizer");
  icu::UnicodeString u = nfc->normalize(to_icu(s), status);
  if (U_FAILURE(status)) throw std::runtime_error("ICU: NFC normalisation failed");
  u.toLower(icu::Locale::getRoot());
  return from_icu(u);
}

bool is_letter(char32_t c) {
  return (U_GET_GC_MASK(static_cast<UChar32>(c)) & U_GC_L_MASK) != 0;
}
bool is_number(char32_t c) {
  return (U_GET_GC_MASK(static_cast<UChar32>(c)) & U_GC_N_MASK) != 0;
}
// \s of the word pattern: the Unicode White_Space property.
bool is_space(char32_t c) {
  return u_isUWhiteSpace(static_cast<UChar32>(c));
}

// BasicTokenizer (transformers tokenization_utils): \t \n \r are whitespace, not control.
bool is_bert_whitespace(char32_t c) {
  return c == U' ' || c == U'\t' || c == U'\n' || c == U'\r' ||
         u_charType(static_cast<UChar32>(c)) == U_SPACE_SEPARATOR;
}
bool is_bert_control(char32_t c) {
  if (c == U'\t' || c == U'\n' || c == U'\r') return false;
  return (U_GET_GC_MASK(static_cast<UChar32>(c)) & U_GC_C_MASK) != 0;
}
// BasicTokenizer._is_chinese_char: the CJK Unified Ideographs blocks and compatibility blocks.
bool is_cjk_ideograph(char32_t c) {
  return (c >= 0x4E00 && c <= 0x9FFF) || (c >= 0x3400 && c <= 0x4DBF) ||
         (c >= 0x20000 && c <= 0x2A6DF) || (c >= 0x2A700 && c <= 0x2B73F) ||
         (c >= 0x2B740 && c <= 0x2B81F) || (c >= 0x2B820 && c <= 0x2CEAF) ||
         (c >= 0xF900 && c <= 0xFAFF) || (c >= 0x2F800 && c <= 0x2FA1F);
}

// Cleanup, NFC and lower-casing of one piece of text (see ClipCleanup).
std::u32string clean(const std::string& text, ClipCleanup mode) {
  std::u32string s = to_u32(text);
  if (mode == ClipCleanup::kSlow) {
    std::u32string out;
    out.reserve(s.size());
    for (char32_t c : s) {
      if (c == 0 || c == 0xFFFD || is_bert_control(c)) continue;
      if (is_bert_whitespace(c)) {
        out += U' ';
      } else if (is_cjk_ideograph(c)) {
        out += U' ';
        out += c;
        out += U' ';
      } else {
        out += c;
      }
    }
    s.swap(out);
  }
  return nfc_lower(s);
}

bool starts_with(const std::u32string& s, size_t i, const std::u32string& prefix) {
  return s.compare(i, prefix.size(), prefix) == 0;
}

// The CLIP word pattern's contraction alternatives, in the pattern's order.
const std::u32string kContractions[] = {U"'s", U"'t", U"'re", U"'ve", U"'m", U"'ll", U"'d"};

}  // namespace

// --- bytes_to_unicode ---------------------------------------------------------------------------

const std::vector<std::string>& ClipTokenizer::byte_symbols() {
  static const std::vector<std::string> table = [] {
    // Printable bytes ('!'..'~', '¡'..'¬', '®'..'ÿ') stand for themselves; the others, in byte
    // order, for U+0100, U+0101, ...
    std::vector<std::string> t(256);
    int next = 0;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
      std::string s;
      append_utf8(s, printable ? static_cast<char32_t>(b) : static_cast<char32_t>(256 + next++));
      t[b] = s;
    }
    return t;
  }();
  return table;
}

// --- files --------------------------------------------------------------------------------------

ClipTokenizer::ClipTokenizer(const std::string& dir, ClipCleanup cleanup)
    : dir_(dir), cleanup_(cleanup) {
  if (!fs::is_directory(dir)) user_error("{}: not a tokenizer folder (no such directory)", dir);
  const std::string vocab_path = (fs::path(dir) / "vocab.json").string();
  const std::string merges_path = (fs::path(dir) / "merges.txt").string();
  if (!fs::exists(vocab_path)) user_error("{}: missing (CLIP tokenizer vocabulary)", vocab_path);
  if (!fs::exists(merges_path)) user_error("{}: missing (CLIP tokenizer merges)", merges_path);

  // vocab.json: {"token": id, ...}
  const json vocab = read_json_file(vocab_path);
  if (!vocab.is_object() || vocab.empty())
    user_error("{}: expected a JSON object of token -> id", vocab_path);
  for (const auto& [token, id] : vocab.items()) {
    if (!id.is_number_integer() || id.get<int64_t>() < 0)
      user_error("{}: token '{}' has id {}, expected a non-negative integer", vocab_path,
                 excerpt(token), excerpt(id.dump()));
    vocab_.emplace(token, id.get<int64_t>());
  }

  // merges.txt: optional "#version" line, then one "left right" pair per line, by rank.
  const std::string merges = read_file_bytes(merges_path);
  std::vector<std::string> lines;
  {
    std::string line;
    std::istringstream in(merges);
    while (std::getline(in, line)) {
      if (!line.empty() && line.back() == '\r') line.pop_back();
      lines.push_back(line);
    }
    while (!lines.empty() && lines.back().empty()) lines.pop_back();  // trailing blank lines
  }
  int64_t rank = 0;
  for (size_t i = 0; i < lines.size(); ++i) {
    const std::string& line = lines[i];
    if (i == 0 && line.rfind("#version", 0) == 0) continue;
    const size_t space = line.find(' ');
    if (space == std::string::npos || space == 0 || space + 1 == line.size() ||
        line.find(' ', space + 1) != std::string::npos)
      user_error("{}:{}: expected two symbols separated by one space, got '{}'", merges_path, i + 1,
                 excerpt(line));
    const std::string left = line.substr(0, space), right = line.substr(space + 1);
    for (const std::string& t : {left, right, left + right})
      if (!vocab_.count(t))
        user_error("{}:{}: '{}' is not in vocab.json", merges_path, i + 1, excerpt(t));
    merge_ranks_[left + " " + right] = rank++;  // a repeated pair keeps its last rank (as HF)
  }

  // Special tokens: special_tokens_map.json overrides tokenizer_config.json.
  struct Named {
    std::string token, source;
  };
  std::map<std::string, Named> named;
  const std::string map_path = (fs::path(dir) / "special_tokens_map.json").string();
  const std::string config_path = (fs::path(dir) / "tokenizer_config.json").string();
  for (const std::string& path : {config_path, map_path}) {  // later files win
    if (!fs::exists(path)) continue;
    const json j = read_json_file(path);
    if (!j.is_object()) user_error("{}: expected a JSON object", path);
    for (const char* key : {"bos_token", "eos_token", "pad_token", "unk_token"}) {
      if (!j.contains(key) || j[key].is_null()) continue;
      const json& v = j[key];
      if (v.is_string()) {
        named[key] = {v.get<std::string>(), path};
      } else if (v.is_object() && v.contains("content") && v["content"].is_string()) {
        named[key] = {v["content"].get<std::string>(), path};
      } else {
        user_error("{}: \"{}\" must be a string or an object with a string \"content\"", path, key);
      }
    }
    if (path == config_path && j.contains("model_max_length") &&
        j["model_max_length"].is_number_integer()) {
      const int64_t m = j["model_max_length"].get<int64_t>();
      if (m >= 2 && m <= 1000000) model_max_length_ = m;
    }
  }
  auto resolve = [&](const char* key, const std::string& fallback) {
    auto it = named.find(key);
    const std::string token = it != named.end() ? it->second.token : fallback;
    const std::string source = it != named.end() ? it->second.source : vocab_path;
    auto v = vocab_.find(token);
    if (token.empty() || v == vocab_.end())
      user_error("{}: {} '{}' is not in {}", source, key, excerpt(token), vocab_path);
    return v->second;
  };
  bos_token_ = named.count("bos_token") ? named["bos_token"].token : kDefaultBos;
  eos_token_ = named.count("eos_token") ? named["eos_token"].token : kDefaultEos;
  bos_id_ = resolve("bos_token", bos_token_);
  eos_id_ = resolve("eos_token", eos_token_);
  pad_id_ = resolve("pad_token", eos_token_);
  unk_id_ = resolve("unk_token", eos_token_);
}

std::optional<int64_t> ClipTokenizer::token_id(const std::string& token) const {
  auto it = vocab_.find(token);
  if (it == vocab_.end()) return std::nullopt;
  return it->second;
}

int64_t ClipTokenizer::id_or_unk(const std::string& token) const {
  auto it = vocab_.find(token);
  return it == vocab_.end() ? unk_id_ : it->second;
}

// --- words --------------------------------------------------------------------------------------

void ClipTokenizer::words_of_segment(const std::string& segment, std::vector<Piece>& out) const {
  const std::u32string s = clean(segment, cleanup_);
  const std::u32string bos = to_u32(bos_token_), eos = to_u32(eos_token_);
  // The length of the special token starting at s[i] after appending it to `out`; 0 if none.
  auto take_special = [&](size_t i) -> size_t {
    if (!bos.empty() && starts_with(s, i, bos)) {
      out.push_back({bos_token_, bos_id_});
      return bos.size();
    }
    if (!eos.empty() && starts_with(s, i, eos)) {
      out.push_back({eos_token_, eos_id_});
      return eos.size();
    }
    return 0;
  };
  auto emit = [&](size_t begin, size_t end) {
    out.push_back({to_utf8(s.data() + begin, s.data() + end), -1});
  };
  // The CLIP word pattern over s[begin, end); kSlow's pattern starts with the special tokens.
  auto scan = [&](size_t i, size_t end) {
    while (i < end) {
      const char32_t c = s[i];
      if (cleanup_ == ClipCleanup::kSlow) {
        if (const size_t len = take_special(i)) {
          i += len;
          continue;
        }
      }
      if (c == U'\'') {
        bool matched = false;
        for (const auto& contraction : kContractions) {
          if (s.compare(i, contraction.size(), contraction) == 0 && i + contraction.size() <= end) {
            emit(i, i + contraction.size());
            i += contraction.size();
            matched = true;
            break;
          }
        }
        if (matched) continue;
      }
      if (is_letter(c)) {
        size_t j = i;
        while (j < end && is_letter(s[j])) ++j;
        emit(i, j);
        i = j;
      } else if (is_number(c)) {
        emit(i, i + 1);
        ++i;
      } else if (is_space(c)) {
        ++i;
      } else {
        size_t j = i;
        while (j < end && !is_space(s[j]) && !is_letter(s[j]) && !is_number(s[j])) ++j;
        emit(i, j);
        i = j;
      }
    }
  };
  if (cleanup_ == ClipCleanup::kSlow) {
    scan(0, s.size());
    return;
  }
  // kFast: tokenizers cuts "normalized" added tokens (CLIP's bos/eos) out of the normalized text
  // before the word pattern runs.
  size_t start = 0;
  for (size_t i = 0; i < s.size(); ++i) {
    if (!starts_with(s, i, bos) && !starts_with(s, i, eos)) continue;
    scan(start, i);
    i += take_special(i);
    start = i--;
  }
  scan(start, s.size());
}

std::vector<ClipTokenizer::Piece> ClipTokenizer::pieces(const std::string& text) const {
  // Special tokens written exactly are cut out before anything else (HF added tokens).
  std::vector<Piece> out;
  size_t start = 0;
  while (true) {
    const size_t b = text.find(bos_token_, start), e = text.find(eos_token_, start);
    const size_t at = std::min(b, e);
    if (at == std::string::npos) {
      words_of_segment(text.substr(start), out);
      return out;
    }
    words_of_segment(text.substr(start, at - start), out);
    const bool is_bos = b == at && (e != at || bos_token_.size() >= eos_token_.size());
    out.push_back(is_bos ? Piece{bos_token_, bos_id_} : Piece{eos_token_, eos_id_});
    start = at + (is_bos ? bos_token_ : eos_token_).size();
  }
}

std::vector<std::string> ClipTokenizer::words(const std::string& text) const {
  std::vector<std::string> out;
  for (auto& p : pieces(text)) out.push_back(std::move(p.text));
  return out;
}

std::string ClipTokenizer::normalize(const std::string& text) const {
  const std::u32string s = clean(text, cleanup_);
  std::string out;
  bool in_space = false;
  for (char32_t c : s) {
    if (is_space(c)) {
      in_space = true;
      continue;
    }
    if (in_space && (!out.empty() || cleanup_ == ClipCleanup::kFast)) out += ' ';
    in_space = false;
    append_utf8(out, c);
  }
  if (in_space && cleanup_ == ClipCleanup::kFast) out += ' ';
  return out;
}

// --- BPE ----------------------------------------------------------------------------------------

std::vector<std::string> ClipTokenizer::bpe(const std::string& word) const {
  {
    std::lock_guard<std::mutex> lock(cache_mutex_);
    auto it = cache_.find(word);
    if (it != cache_.end()) return it->second;
  }
  const auto& symbols_of = byte_symbols();
  std::vector<std::string> syms;
  syms.reserve(word.size());
  for (unsigned char b : word) syms.push_back(symbols_of[b]);
  syms.back() += kEndOfWord;
  std::string key;
  while (syms.size() > 1) {
    int64_t best = std::numeric_limits<int64_t>::max();
    size_t best_i = 0;
    for (size_t i = 0; i + 1 < syms.size(); ++i) {
      key.assign(syms[i]).append(" ").append(syms[i + 1]);
      auto it = merge_ranks_.find(key);
      if (it != merge_ranks_.end() && it->second < best) {
        best = it->second;
        best_i = i;
      }
    }
    if (best == std::numeric_limits<int64_t>::max()) break;
    const std::string first = syms[best_i], second = syms[best_i + 1];
    std::vector<std::string> merged;
    merged.reserve(syms.size());
    for (size_t i = 0; i < syms.size();) {
      if (i + 1 < syms.size() && syms[i] == first && syms[i + 1] == second) {
        merged.push_back(first + second);
        i += 2;
      } else {
        merged.push_back(std::move(syms[i]));
        i += 1;
      }
    }
    syms.swap(merged);
  }
  std::lock_guard<std::mutex> lock(cache_mutex_);
  if (cache_.size() >= kMaxCachedBpeWords) cache_.clear();
  cache_.emplace(word, syms);
  return syms;
}

// --- encoding -----------------------------------------------------------------------------------

std::vector<std::string> ClipTokenizer::tokenize(const std::string& text) const {
  std::vector<std::string> out;
  for (const auto& p : pieces(text)) {
    if (p.special_id >= 0) {
      out.push_back(p.text);
      continue;
    }
    for (auto& t : bpe(p.text)) out.push_back(std::move(t));
  }
  return out;
}

std::vector<int64_t> ClipTokenizer::encode(const std::string& text) const {
  std::vector<int64_t> ids;
  for (const auto& p : pieces(text)) {
    if (p.special_id >= 0) {
      ids.push_back(p.special_id);
      continue;
    }
    for (const auto& t : bpe(p.text)) ids.push_back(id_or_unk(t));
  }
  return ids;
}

std::vector<int64_t> ClipTokenizer::encode_padded(const std::string& text,
                                                  int64_t max_length) const {
  if (max_length < 2)
    throw std::invalid_argument("ClipTokenizer::encode_padded: max_length must be >= 2");
  std::vector<int64_t> ids = encode(text);
  if (static_cast<int64_t>(ids.size()) > max_length - 2) ids.resize(max_length - 2);
  std::vector<int64_t> out;
  out.reserve(max_length);
  out.push_back(bos_id_);
  out.insert(out.end(), ids.begin(), ids.end());
  out.push_back(eos_id_);
  out.resize(max_length, pad_id_);
  return out;
}

torch::Tensor ClipTokenizer::encode_batch(const std::vector<std::string>& texts,
                                          int64_t max_length) const {
  auto out = torch::empty({static_cast<int64_t>(texts.size()), max_length}, torch::kInt64);
  auto acc = out.accessor<int64_t, 2>();
  for (size_t b = 0; b < texts.size(); ++b) {
    const auto ids = encode_padded(texts[b], max_length);
    for (int64_t i = 0; i < max_length; ++i) acc[b][i] = ids[i];
  }
  return out;
}

}  // namespace fluxtrain
