// T5Tokenizer against ids worked out by hand from the tiny fixture vocabulary and scores (see
// fixtures/t5_fixture.h): Viterbi choice by summed score, dummy prefix, whitespace rules, the
// precompiled charsmap, unknown characters, special tokens, truncation and padding as Hugging
// Face's T5Tokenizer, the protobuf reader, and file errors.
#include "text/t5_tokenizer.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "fixtures/fixtures.h"
#include "fixtures/t5_fixture.h"
#include "test_util.h"

using namespace fluxtrain;
using fluxtrain::testing::error_of;
using fluxtrain::testing::fresh_temp_dir;
using Ids = std::vector<int64_t>;

namespace {

// Fixture ids (see t5_fixture.h).
constexpr int64_t kPad = 0, kT5Eos = 1, kUnk = 2, kSpace = 3, kA = 4, kT5Cat = 5, kAt = 7, kS = 8,
                  kH = 9, kT5The = 11, kEs = 14, kComma = 15, kBang = 16, kDot = 17, kFish = 18,
                  kT5Cafe = 21, kNihon = 23, kNi = 24, kBigA = 26, kT5Dog = 29, kC = 30;
const std::string kU = "\xE2\x96\x81";  // ▁

const T5Tokenizer& tok() {
  static const T5Tokenizer t(
      fixtures::write_tiny_t5_tokenizer((fresh_temp_dir("t5_tok") / "tokenizer_2").string()));
  return t;
}

std::string write_model(const std::string& name, const SentencePieceModel& m) {
  const auto path = fresh_temp_dir(name) / "spiece.model";
  fixtures::write_text(path.string(), fixtures::serialize_sentencepiece_model(m));
  return path.string();
}

bool one_line(const std::string& s) {
  return !s.empty() && s.find('\n') == std::string::npos;
}

}  // namespace

TEST(T5Tokenizer, FixtureModelSpecialIdsFromTheModel) {
  const auto& t = tok();
  EXPECT_EQ(t.piece_count(), 41);
  EXPECT_EQ(t.eos_id(), kT5Eos);
  EXPECT_EQ(t.pad_id(), kPad);
  EXPECT_EQ(t.unk_id(), kUnk);
  EXPECT_EQ(t.extra_ids(), 100);
  EXPECT_EQ(t.vocab_size(), 141);
  EXPECT_EQ(t.token_id(kU + "cat"), kT5Cat);
  EXPECT_EQ(t.token_id("</s>"), kT5Eos);
  EXPECT_EQ(t.token_id("<extra_id_0>"), 140);  // piece_count + extra_ids - 1 - i (T5: 32099)
  EXPECT_EQ(t.token_id("<extra_id_99>"), 41);
  EXPECT_FALSE(t.token_id("cat").has_value());
  EXPECT_EQ(t.id_to_token(kAt), "at");
  EXPECT_EQ(t.id_to_token(139), "<extra_id_1>");
  EXPECT_NE(error_of([&] { t.id_to_token(141); }).find("out of range"), std::string::npos);

  // eos and pad come from the model, not from constants: swap the two control pieces.
  auto m = fixtures::tiny_t5_sentencepiece_model();
  std::swap(m.pieces[0], m.pieces[1]);
  m.eos_id = 0;
  m.pad_id = 1;
  const T5Tokenizer swapped(write_model("t5_tok_swapped", m));
  EXPECT_EQ(swapped.eos_id(), 0);
  EXPECT_EQ(swapped.pad_id(), 1);
  EXPECT_EQ(swapped.encode_padded("a", 4), (Ids{kA, 0, 1, 1}));
}

TEST(T5Tokenizer, SegmentationMaximisesTheSummedScore) {
  const auto& t = tok();
  // "▁a▁cat": ▁a (-2.5) beats ▁ a (-6.5); ▁cat (-3) beats ▁c at (-6), ▁ca t (-8.5).
  EXPECT_EQ(t.encode("a cat"), (Ids{kA, kT5Cat}));
  // ▁hat (-9) loses to ▁h at (-5.5) and to ▁ h at (-8.5): a longer piece is not preferred as such.
  EXPECT_EQ(t.encode("hat"), (Ids{kH, kAt}));
  // ▁the (-2) beats ▁th e (-6); ▁sat (-7) loses to ▁s at (-5.5).
  EXPECT_EQ(t.encode("the cat sat"), (Ids{kT5The, kT5Cat, kS, kAt}));
  // ▁dog (-4) beats ▁d og (-6.5); then s (-3).
  EXPECT_EQ(t.encode("dogs"), (Ids{kT5Dog, kEs}));
  EXPECT_EQ(t.tokenize("the cat sat"),
            (std::vector<std::string>{kU + "the", kU + "cat", kU + "s", "at"}));
  // The Viterbi step alone, on already normalized text: "▁acat" -> ▁a c at (-9) over ▁ a c at
  // (-13).
  EXPECT_EQ(t.segment(kU + "acat"), (Ids{kA, kC, kAt}));
}

TEST(T5Tokenizer, DummyPrefixAndWhitespace) {
  const auto& t = tok();
  EXPECT_EQ(t.normalize("a cat"), kU + "a" + kU + "cat");
  // Leading, trailing and repeated spaces go; tabs and U+3000 are spaces by the charsmap.
  EXPECT_EQ(t.normalize("   a    cat  "), kU + "a" + kU + "cat");
  EXPECT_EQ(t.encode("   a    cat  "), (Ids{kA, kT5Cat}));
  EXPECT_EQ(t.encode("a\t \tcat"), (Ids{kA, kT5Cat}));
  EXPECT_EQ(t.encode("\xE3\x80\x80"
                     "a"),
            (Ids{kA}));
  EXPECT_EQ(t.normalize("  \t "), "");
  EXPECT_TRUE(t.encode(" \t ").empty());
  EXPECT_TRUE(t.encode("").empty());
}

TEST(T5Tokenizer, PrecompiledCharsmapRules) {
  const auto& t = tok();
  // U+FB01 "ﬁ" -> "fi": "▁fish" (-4.5) beats ▁fi sh (-6.5).
  EXPECT_EQ(t.normalize("\xEF\xAC\x81sh"), kU + "fish");
  EXPECT_EQ(t.encode("\xEF\xAC\x81sh"), (Ids{kFish}));
  // e + U+0301 (3 bytes, longest rule) -> U+00E9; the same ids as the precomposed "café".
  EXPECT_EQ(t.encode("cafe\xCC\x81"), (Ids{kT5Cafe}));
  EXPECT_EQ(t.encode("caf\xC3\xA9"), (Ids{kT5Cafe}));
  // Plain "e" has no rule of its own (only a longer one starts with it).
  EXPECT_EQ(t.normalize("e"), kU + "e");
  // Fullwidth A -> "A": ▁ A.
  EXPECT_EQ(t.encode("\xEF\xBC\xA1"), (Ids{kSpace, kBigA}));
  // Zero-width space is deleted: "a\u200bcat" -> "▁acat" -> ▁a c at.
  EXPECT_EQ(t.normalize("a\xE2\x80\x8B"
                        "cat"),
            kU + "acat");
  EXPECT_EQ(t.encode("a\xE2\x80\x8B"
                     "cat"),
            (Ids{kA, kC, kAt}));
  EXPECT_TRUE(t.encode("\xE2\x80\x8B").empty());
}

TEST(T5Tokenizer, UnknownCharactersAndUnicode) {
  const auto& t = tok();
  // No piece starts with "Z": an <unk> (score -9 - 10) per character, "▁" stays a piece; a run of
  // unknown characters is one <unk> (sentencepiece merges them), surface "ZZ".
  EXPECT_EQ(t.encode("a Z cat"), (Ids{kA, kSpace, kUnk, kT5Cat}));
  EXPECT_EQ(t.encode("ZZ"), (Ids{kSpace, kUnk}));
  EXPECT_EQ(t.tokenize("ZZ"), (std::vector<std::string>{kU, "ZZ"}));
  EXPECT_EQ(t.encode("ZeZZ"), (Ids{kSpace, kUnk, 13, kUnk}));
  EXPECT_EQ(t.encode("\xE2\x98\x83"), (Ids{kSpace, kUnk}));  // U+2603 snowman
  // Invalid UTF-8 reads as U+FFFD (one byte at a time), then unknown.
  EXPECT_EQ(t.normalize("\xFF"), kU + "\xEF\xBF\xBD");
  EXPECT_EQ(t.encode("\xFF\xFE"), (Ids{kSpace, kUnk}));
  // 日本 (-4) beats 日 本 (-6): ▁ 日本, then 日.
  EXPECT_EQ(t.encode("\xE6\x97\xA5\xE6\x9C\xAC\xE6\x97\xA5"), (Ids{kSpace, kNihon, kNi}));
}

TEST(T5Tokenizer, Punctuation) {
  const auto& t = tok();
  EXPECT_EQ(t.encode("cat, hat!"), (Ids{kT5Cat, kComma, kH, kAt, kBang}));
  EXPECT_EQ(t.encode("a."), (Ids{kA, kDot}));
  EXPECT_EQ(t.encode("a ."), (Ids{kA, kSpace, kDot}));
}

TEST(T5Tokenizer, SpecialTokensInTheText) {
  const auto& t = tok();
  EXPECT_EQ(t.encode("a</s>"), (Ids{kA, kT5Eos}));
  EXPECT_EQ(t.encode("<pad>cat"), (Ids{kPad, kT5Cat}));  // each chunk gets its own "▁"
  EXPECT_EQ(t.encode("<extra_id_0> cat<extra_id_99><unk>"), (Ids{140, kT5Cat, 41, kUnk}));
  EXPECT_EQ(t.tokenize("a</s>"), (std::vector<std::string>{kU + "a", "</s>"}));
  // "<extra_id_100>" is not a token (100 extra ids): plain text, "<" etc. unknown.
  EXPECT_EQ(t.encode("<extra_id_100>")[1], kUnk);
  // A text that already ends with </s> gets no second one (as T5Tokenizer).
  EXPECT_EQ(t.encode_padded("a</s>", 4), (Ids{kA, kT5Eos, kPad, kPad}));

  // extra_ids from tokenizer_config.json beside the model.
  const auto dir = fresh_temp_dir("t5_tok_extra");
  fixtures::write_tiny_t5_tokenizer(dir.string());
  fixtures::write_json((dir / "tokenizer_config.json").string(), {{"extra_ids", 2}});
  const T5Tokenizer two(dir.string());
  EXPECT_EQ(two.vocab_size(), 43);
  EXPECT_EQ(two.encode("<extra_id_0><extra_id_1>"), (Ids{42, 41}));
}

TEST(T5Tokenizer, PaddingTruncationAndEmptyPrompt) {
  const auto& t = tok();
  EXPECT_EQ(t.encode_padded("a cat", 6), (Ids{kA, kT5Cat, kT5Eos, kPad, kPad, kPad}));
  // Exactly max_length - 1 ids: </s> fills the last place.
  EXPECT_EQ(t.encode_padded("a cat", 3), (Ids{kA, kT5Cat, kT5Eos}));
  // Longer: cut to max_length - 1, </s> kept last.
  std::string longp;
  for (int i = 0; i < 600; ++i) longp += "a ";
  const auto ids = t.encode_padded(longp, 512);
  ASSERT_EQ(ids.size(), 512u);
  for (int i = 0; i < 511; ++i) ASSERT_EQ(ids[i], kA) << i;
  EXPECT_EQ(ids[511], kT5Eos);
  EXPECT_EQ(t.encode_padded(longp, 1), (Ids{kT5Eos}));
  // Empty prompt (caption dropout, unconditional branch): </s> then padding.
  EXPECT_EQ(t.encode_padded("", 4), (Ids{kT5Eos, kPad, kPad, kPad}));
  EXPECT_EQ(t.encode_padded("   ", 4), (Ids{kT5Eos, kPad, kPad, kPad}));
  EXPECT_NE(error_of([&] { t.encode_padded("a", 0); }).find("max_length"), std::string::npos);

  const auto batch = t.encode_batch({"a cat", ""}, 5);
  ASSERT_EQ(batch.sizes(), (std::vector<int64_t>{2, 5}));
  EXPECT_EQ(batch.scalar_type(), torch::kInt64);
  EXPECT_TRUE(torch::equal(
      batch, torch::tensor({kA, kT5Cat, kT5Eos, kPad, kPad, kT5Eos, kPad, kPad, kPad, kPad})
                 .view({2, 5})));
}

TEST(T5Tokenizer, ProtobufReaderRoundTripAndUnknownFields) {
  const auto m = fixtures::tiny_t5_sentencepiece_model();
  std::string bytes = fixtures::serialize_sentencepiece_model(m);
  // Unknown fields of every wire type are skipped: varint 200, fixed64 201, bytes 4
  // (self_test_data), fixed32 202.
  bytes += std::string("\xC0\x0C\x96\x01", 4);                // field 200, varint 150
  bytes += std::string("\xC9\x0C") + std::string(8, '\x01');  // field 201, fixed64
  bytes += std::string("\x22\x03\x0A\x01x", 5);               // field 4, 3 bytes
  bytes += std::string("\xD5\x0C") + std::string(4, '\x02');  // field 202, fixed32
  const auto p = parse_sentencepiece_model(bytes, "mem");
  ASSERT_EQ(p.pieces.size(), m.pieces.size());
  for (size_t i = 0; i < m.pieces.size(); ++i) {
    EXPECT_EQ(p.pieces[i].piece, m.pieces[i].piece);
    EXPECT_EQ(p.pieces[i].score, m.pieces[i].score);
    EXPECT_EQ(p.pieces[i].type, m.pieces[i].type);
  }
  EXPECT_EQ(p.model_type, 1);
  EXPECT_EQ(p.unk_id, 2);
  EXPECT_EQ(p.bos_id, -1);  // a 10-byte varint
  EXPECT_EQ(p.eos_id, 1);
  EXPECT_EQ(p.pad_id, 0);
  EXPECT_EQ(p.normalizer_name, "tiny_rules");
  EXPECT_EQ(p.precompiled_charsmap, m.precompiled_charsmap);
  EXPECT_TRUE(p.add_dummy_prefix && p.remove_extra_whitespaces && p.escape_whitespaces);
  // Defaults of fields the file leaves out are the proto's.
  const auto empty = parse_sentencepiece_model("", "mem");
  EXPECT_EQ(empty.eos_id, 2);
  EXPECT_EQ(empty.pad_id, -1);
  EXPECT_TRUE(empty.add_dummy_prefix);
}

TEST(T5Tokenizer, NormalizerSwitches) {
  // Without remove_extra_whitespaces every space stays (and is escaped); without the dummy prefix
  // no "▁" is added in front.
  auto m = fixtures::tiny_t5_sentencepiece_model();
  m.remove_extra_whitespaces = false;
  m.add_dummy_prefix = false;
  const T5Tokenizer t(write_model("t5_tok_switches", m));
  EXPECT_EQ(t.normalize(" a  cat "), kU + "a" + kU + kU + "cat" + kU);
  EXPECT_EQ(t.encode("a cat"), (Ids{31, kT5Cat}));  // "a" alone is piece 31
}

TEST(T5Tokenizer, ByteFallbackAndUserDefinedPieces) {
  using Type = SentencePieceModel::Type;
  auto m = fixtures::tiny_t5_sentencepiece_model();
  m.byte_fallback = true;
  for (int b = 0; b < 256; ++b)
    m.pieces.push_back({fmt::format("<0x{:02X}>", b), 0.0f, Type::kByte});  // ids 41 + b
  m.pieces.push_back({"sks", 0.0f, Type::kUserDefined});                    // id 297
  const T5Tokenizer t(write_model("t5_tok_bytes", m));
  // "Z" (0x5A) is unknown -> its byte piece (no merging of runs); the snowman -> its three bytes.
  EXPECT_EQ(t.encode("a Z"), (Ids{kA, kSpace, 41 + 0x5A}));
  EXPECT_EQ(t.encode("ZZ"), (Ids{kSpace, 41 + 0x5A, 41 + 0x5A}));
  EXPECT_EQ(t.tokenize("Z"), (std::vector<std::string>{kU, "<0x5A>"}));
  EXPECT_EQ(t.encode("\xE2\x98\x83"), (Ids{kSpace, 41 + 0xE2, 41 + 0x98, 41 + 0x83}));
  // A user-defined piece is never split and always wins.
  EXPECT_EQ(t.encode("a sks"), (Ids{kA, kSpace, 297}));
  EXPECT_EQ(t.encode("asks"), (Ids{kA, 297}));
}

TEST(T5Tokenizer, FindsTheModelInAFolder) {
  const auto root = fresh_temp_dir("t5_tok_dirs");
  fixtures::write_tiny_t5_tokenizer((root / "tokenizer_2").string());
  EXPECT_EQ(T5Tokenizer((root / "tokenizer_2").string()).encode("a cat"), (Ids{kA, kT5Cat}));
  EXPECT_EQ(T5Tokenizer(root.string()).encode("a cat"), (Ids{kA, kT5Cat}));  // a FLUX repository
}

TEST(T5Tokenizer, MissingOrCorruptFileIsOneLineUserError) {
  const auto dir = fresh_temp_dir("t5_tok_errors");
  const std::string missing = (dir / "nope" / "spiece.model").string();
  auto e = error_of([&] { T5Tokenizer t(missing); });
  EXPECT_TRUE(one_line(e));
  EXPECT_NE(e.find(missing), std::string::npos) << e;

  e = error_of([&] { T5Tokenizer t(dir.string()); });  // a folder without spiece.model
  EXPECT_NE(e.find("no spiece.model"), std::string::npos) << e;

  const auto good =
      fixtures::serialize_sentencepiece_model(fixtures::tiny_t5_sentencepiece_model());
  const std::vector<std::pair<std::string, std::string>> corrupt = {
      {"truncated", good.substr(0, good.size() / 2)},
      {"text", "hello world\n"},
      {"bad_length", std::string("\x0a\xff\xff\xff\xff\x0f", 6)},
      {"bad_wire_type", std::string("\x0b\x00", 2)},
      {"empty", ""},
  };
  for (const auto& [name, bytes] : corrupt) {
    const std::string path = (dir / (name + ".model")).string();
    fixtures::write_text(path, bytes);
    e = error_of([&] { T5Tokenizer t(path); });
    EXPECT_TRUE(one_line(e)) << name << ": " << e;
    EXPECT_EQ(e.rfind(path, 0), 0u) << name << ": " << e;  // starts with the file
  }

  // Well-formed protobuf, but not a usable T5 model.
  auto m = fixtures::tiny_t5_sentencepiece_model();
  m.model_type = 2;
  e = error_of([&] { T5Tokenizer t(write_model("t5_tok_bpe", m)); });
  EXPECT_NE(e.find("unigram"), std::string::npos) << e;
  m = fixtures::tiny_t5_sentencepiece_model();
  m.pieces[1].type = SentencePieceModel::Type::kNormal;  // "</s>" no longer a control piece
  m.eos_id = -1;
  e = error_of([&] { T5Tokenizer t(write_model("t5_tok_noeos", m)); });
  EXPECT_NE(e.find("end-of-sequence"), std::string::npos) << e;
  m = fixtures::tiny_t5_sentencepiece_model();
  m.pieces[2].type = SentencePieceModel::Type::kNormal;
  e = error_of([&] { T5Tokenizer t(write_model("t5_tok_nounk", m)); });
  EXPECT_NE(e.find("unknown piece"), std::string::npos) << e;
  m = fixtures::tiny_t5_sentencepiece_model();
  m.precompiled_charsmap =
      "\xff\xff\xff\x7f"
      "abc";
  e = error_of([&] { T5Tokenizer t(write_model("t5_tok_charsmap", m)); });
  EXPECT_NE(e.find("precompiled_charsmap"), std::string::npos) << e;
}
