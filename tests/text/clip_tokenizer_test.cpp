// ClipTokenizer against ids worked out by hand from the tiny fixture vocabulary (see
// fixtures/clip_fixture.h): byte symbol ids, "</w>" ids (+256), merges (512 + rank) applied in
// rank order, the word pattern, cleanup, specials, truncation and padding, file errors.
#include "text/clip_tokenizer.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "fixtures/clip_fixture.h"
#include "fixtures/fixtures.h"
#include "test_util.h"

using namespace fluxtrain;
using fluxtrain::testing::error_of;
using fluxtrain::testing::fresh_temp_dir;
using Ids = std::vector<int64_t>;

namespace {

// Hand-derived ids of the tiny vocabulary.
constexpr int64_t kBos = 530, kEos = 531;
// ASCII printable byte c: id c - 33; at the end of a word: + 256.
constexpr int64_t sym(char c) {
  return c - 33;
}
constexpr int64_t end(char c) {
  return c - 33 + 256;
}
// Merges: 512 + rank.
constexpr int64_t kTh = 512, kThe = 513, kCat = 516, kCa = 515, kRed = 518, kDog = 520, kAa = 521,
                  kApS = 522, kIt = 523, kEAcute = 524, kCafe = 526, kDon = 528, kApT = 529;

std::string tokenizer_dir(const std::string& name) {
  const auto dir = fresh_temp_dir(name) / "tokenizer";
  fixtures::write_tiny_clip_tokenizer(dir.string());
  return dir.string();
}

const ClipTokenizer& slow() {
  static const ClipTokenizer t(tokenizer_dir("clip_tok_slow"));
  return t;
}
const ClipTokenizer& fast() {
  static const ClipTokenizer t(tokenizer_dir("clip_tok_fast"), ClipCleanup::kFast);
  return t;
}

}  // namespace

TEST(ClipTokenizer, FixtureVocabularyAndSpecialTokens) {
  const auto& t = slow();
  EXPECT_EQ(t.vocab_size(), 532);
  EXPECT_EQ(t.num_merges(), 18u);
  EXPECT_EQ(t.bos_id(), kBos);
  EXPECT_EQ(t.eos_id(), kEos);
  EXPECT_EQ(t.pad_id(), kEos);  // pad_token "<|endoftext|>" as in clip-vit-large-patch14
  EXPECT_EQ(t.unk_id(), kEos);
  EXPECT_EQ(t.model_max_length(), 77);
  EXPECT_EQ(t.token_id("a</w>"), 320);  // also CLIP-L's id of "a</w>"
  EXPECT_EQ(t.token_id("!"), 0);
  EXPECT_EQ(t.token_id("cat</w>"), kCat);
  EXPECT_FALSE(t.token_id("dogs</w>").has_value());
}

TEST(ClipTokenizer, ByteSymbolsAreGpt2BytesToUnicode) {
  const auto& s = ClipTokenizer::byte_symbols();
  ASSERT_EQ(s.size(), 256u);
  EXPECT_EQ(s['a'], "a");
  EXPECT_EQ(s['!'], "!");
  EXPECT_EQ(s[0xE9], "\xC3\xA9");  // 0xE9 stands for itself, U+00E9
  EXPECT_EQ(s[0x00], "\xC4\x80");  // U+0100
  EXPECT_EQ(s[' '], "\xC4\xA0");   // U+0120 'Ġ'
  EXPECT_EQ(s['\n'], "\xC4\x8A");  // U+010A 'Ċ'
  EXPECT_EQ(s[0x7F], "\xC4\xA1");  // U+0121
  EXPECT_EQ(s[0xAD], "\xC5\x83");  // U+0143, the last one
}

TEST(ClipTokenizer, MergesAppliedInRankOrderWithEndOfWord) {
  const auto& t = slow();
  // c a t</w>: "a t</w>" (rank 2) beats "c a" (rank 3), then "c at</w>" (rank 4). Merging in
  // reading order would give [ca, t</w>].
  EXPECT_EQ(t.encode("cat"), (Ids{kCat}));
  EXPECT_EQ(t.tokenize("cat"), (std::vector<std::string>{"cat</w>"}));
  // c a b</w>: only "c a" applies.
  EXPECT_EQ(t.encode("cab"), (Ids{kCa, end('b')}));
  // t h e</w> -> th e</w> -> the</w>
  EXPECT_EQ(t.encode("the"), (Ids{kThe}));
  // "th e" is not a merge (only "th e</w>"): "then" stays th e n</w>.
  EXPECT_EQ(t.encode("then"), (Ids{kTh, sym('e'), end('n')}));
  // Non-overlapping, left to right: a a a</w> -> aa a</w>; a a a a</w> -> aa a a</w>.
  EXPECT_EQ(t.encode("aaa"), (Ids{kAa, end('a')}));
  EXPECT_EQ(t.encode("aaaa"), (Ids{kAa, sym('a'), end('a')}));
  // A one-letter word is its </w> symbol.
  EXPECT_EQ(t.encode("a"), (Ids{320}));
  EXPECT_EQ(t.encode("the cat"), t.encode("the cat"));  // cached path gives the same
}

TEST(ClipTokenizer, LowercaseWhitespaceAndPunctuation) {
  const auto& t = slow();
  EXPECT_EQ(t.encode("THE Cat"), (Ids{kThe, kCat}));
  EXPECT_EQ(t.encode("  the \t\n  cat   "), (Ids{kThe, kCat}));
  EXPECT_EQ(t.encode("red, dog!"), (Ids{kRed, end(','), kDog, end('!')}));
  // A run of punctuation is one word: ? then !</w>.
  EXPECT_EQ(t.encode("dog?!"), (Ids{kDog, sym('?'), end('!')}));
  EXPECT_EQ(t.words("a red-dog..."), (std::vector<std::string>{"a", "red", "-", "dog", "..."}));
  EXPECT_EQ(t.normalize("  The\tCAT  "), "the cat");
}

TEST(ClipTokenizer, Contractions) {
  const auto& t = slow();
  EXPECT_EQ(t.words("it's"), (std::vector<std::string>{"it", "'s"}));
  EXPECT_EQ(t.encode("it's"), (Ids{kIt, kApS}));
  EXPECT_EQ(t.encode("IT'S"), (Ids{kIt, kApS}));
  EXPECT_EQ(t.encode("don't"), (Ids{kDon, kApT}));
  EXPECT_EQ(
      t.words("we're they've i'm we'll he'd"),
      (std::vector<std::string>{"we", "'re", "they", "'ve", "i", "'m", "we", "'ll", "he", "'d"}));
  // Not a contraction: the apostrophe joins the punctuation run before it or stands alone.
  EXPECT_EQ(t.words("dog!'s 'x"), (std::vector<std::string>{"dog", "!'", "s", "'", "x"}));
}

TEST(ClipTokenizer, NumbersSplitPerDigit) {
  const auto& t = slow();
  EXPECT_EQ(t.encode("2024"), (Ids{end('2'), end('0'), end('2'), end('4')}));
  EXPECT_EQ(t.words("cat2dog 3.5"), (std::vector<std::string>{"cat", "2", "dog", "3", ".", "5"}));
}

TEST(ClipTokenizer, UnicodeAccentsCjkEmoji) {
  const auto& t = slow();
  // é = C3 A9 -> symbols Ã ©; c a f Ã ©</w>: "c a" (3), "Ã ©</w>" (12), "ca f" (13),
  // "caf Ã©</w>" (14).
  EXPECT_EQ(t.encode("café"), (Ids{kCafe}));
  EXPECT_EQ(t.encode("CAFÉ"), (Ids{kCafe}));          // lower-cased É -> é
  EXPECT_EQ(t.encode("cafe\xCC\x81"), (Ids{kCafe}));  // e + U+0301, NFC -> é
  EXPECT_EQ(t.encode("é"), (Ids{kEAcute}));
  // 猫 U+732B = E7 8C AB -> byte symbol ids 163, 234, 104 (+256 last).
  EXPECT_EQ(t.encode("猫"), (Ids{163, 234, 104 + 256}));
  // 🐱 U+1F431 = F0 9F 90 B1 -> 172, 253, 238, 109 (+256 last); not a letter: its own word.
  EXPECT_EQ(t.encode("red🐱"), (Ids{kRed, 172, 253, 238, 109 + 256}));
}

TEST(ClipTokenizer, SlowAndFastCleanupDifferOnlyOnCjkAndControlCharacters) {
  // CLIPTokenizer (no ftfy) puts spaces around each CJK ideograph; the fast tokenizer keeps a
  // run of letters together.
  EXPECT_EQ(slow().encode("猫猫"), (Ids{163, 234, 104 + 256, 163, 234, 104 + 256}));
  EXPECT_EQ(fast().encode("猫猫"), (Ids{163, 234, 104, 163, 234, 104 + 256}));
  // BEL (Cc) is dropped by the slow cleanup (t h e c a t</w> -> th e cat</w>); the fast one keeps
  // it as a word of its own (byte 0x07 -> id 188 + 7, + 256 at the end of the word).
  EXPECT_EQ(slow().encode("the\acat"), (Ids{kTh, sym('e'), kCat}));
  EXPECT_EQ(fast().encode("the\acat"), (Ids{kThe, 195 + 256, kCat}));
  for (const char* text : {"a red, dog!", "it's 2024", "CAFÉ  é", "red🐱", ""})
    EXPECT_EQ(slow().encode(text), fast().encode(text)) << text;
  EXPECT_EQ(fast().normalize(" The  CAT "), " the cat ");  // \s+ -> " ", no strip
}

TEST(ClipTokenizer, SpecialTokensInText) {
  const auto& t = slow();
  EXPECT_EQ(t.encode("the<|endoftext|>cat"), (Ids{kThe, kEos, kCat}));
  EXPECT_EQ(t.encode("<|startoftext|>cat"), (Ids{kBos, kCat}));
  // The slow pattern also matches the lower-cased form; the fast tokenizer matches it in the
  // normalized text.
  EXPECT_EQ(t.encode("the <|ENDOFTEXT|>"), (Ids{kThe, kEos}));
  EXPECT_EQ(fast().encode("the <|ENDOFTEXT|>"), (Ids{kThe, kEos}));
}

TEST(ClipTokenizer, PaddedEmptyPrompt) {
  const auto ids = slow().encode_padded("");
  ASSERT_EQ(ids.size(), 77u);
  EXPECT_EQ(ids[0], kBos);
  for (size_t i = 1; i < ids.size(); ++i) EXPECT_EQ(ids[i], kEos) << i;  // eos, then pad = eos
  EXPECT_EQ(slow().encode_padded("   "), ids);
}

TEST(ClipTokenizer, PaddedPromptAndTruncation) {
  const auto& t = slow();
  auto ids = t.encode_padded("the red dog", 8);
  EXPECT_EQ(ids, (Ids{kBos, kThe, kRed, kDog, kEos, kEos, kEos, kEos}));
  // 100 words -> 75 kept, eos last.
  std::string long_prompt;
  for (int i = 0; i < 50; ++i) long_prompt += "the cat ";
  ids = t.encode_padded(long_prompt);
  ASSERT_EQ(ids.size(), 77u);
  EXPECT_EQ(ids.front(), kBos);
  EXPECT_EQ(ids.back(), kEos);
  for (int i = 1; i <= 75; ++i) EXPECT_EQ(ids[i], i % 2 == 1 ? kThe : kCat) << i;
  // Exactly 75 tokens fit without truncation.
  std::string fits;
  for (int i = 0; i < 75; ++i) fits += "a ";
  ids = t.encode_padded(fits);
  EXPECT_EQ(ids[75], 320);
  EXPECT_EQ(ids[76], kEos);

  auto batch = t.encode_batch({"the cat", ""}, 6);
  EXPECT_EQ(batch.sizes(), (std::vector<int64_t>{2, 6}));
  EXPECT_EQ(batch.scalar_type(), torch::kInt64);
  EXPECT_TRUE(torch::equal(batch[0], torch::tensor({kBos, kThe, kCat, kEos, kEos, kEos})));
  EXPECT_TRUE(torch::equal(batch[1], torch::tensor({kBos, kEos, kEos, kEos, kEos, kEos})));
}

TEST(ClipTokenizer, PadTokenFromSpecialTokensMap) {
  const auto dir = tokenizer_dir("clip_tok_pad");
  // special_tokens_map.json wins over tokenizer_config.json (stable-diffusion-2 style "!" pad).
  fixtures::write_json(dir + "/special_tokens_map.json", {{"pad_token", "!"}});
  ClipTokenizer t(dir);
  EXPECT_EQ(t.pad_id(), 0);
  EXPECT_EQ(t.encode_padded("cat", 5), (Ids{kBos, kCat, kEos, 0, 0}));
  // Without either file: pad = eos.
  std::filesystem::remove(dir + "/special_tokens_map.json");
  std::filesystem::remove(dir + "/tokenizer_config.json");
  EXPECT_EQ(ClipTokenizer(dir).pad_id(), kEos);
}

TEST(ClipTokenizer, MalformedFilesAreOneLineErrorsNamingTheFile) {
  auto expect_error = [](const std::string& dir, const std::string& file, const std::string& what) {
    const std::string e = error_of([&] { ClipTokenizer t(dir); });
    EXPECT_NE(e.find(file), std::string::npos) << e;
    EXPECT_NE(e.find(what), std::string::npos) << e;
    EXPECT_EQ(e.find('\n'), std::string::npos) << e;
  };
  {
    const auto dir = tokenizer_dir("clip_tok_bad_json");
    fixtures::write_text(dir + "/vocab.json", "{\"a\": 1,");
    expect_error(dir, "vocab.json", "not valid JSON");
  }
  {
    const auto dir = tokenizer_dir("clip_tok_bad_id");
    fixtures::write_text(dir + "/vocab.json", "{\"a\": \"one\"}");
    expect_error(dir, "vocab.json", "non-negative integer");
  }
  {
    const auto dir = tokenizer_dir("clip_tok_bad_merge_line");
    fixtures::write_text(dir + "/merges.txt", "#version: 0.2\nt h\nthe\n");
    expect_error(dir, "merges.txt:3", "two symbols");
  }
  {
    const auto dir = tokenizer_dir("clip_tok_unknown_merge");
    fixtures::write_text(dir + "/merges.txt", "#version: 0.2\nt h\nx y\n");
    expect_error(dir, "merges.txt:3", "'xy' is not in vocab.json");
  }
  {
    const auto dir = tokenizer_dir("clip_tok_no_eos");
    fixtures::write_text(dir + "/vocab.json", "{\"a\": 0, \"<|startoftext|>\": 1}");
    fixtures::write_text(dir + "/merges.txt", "#version: 0.2\n");
    expect_error(dir, "special_tokens_map.json", "eos_token '<|endoftext|>' is not in");
  }
  {
    const auto dir = tokenizer_dir("clip_tok_bad_pad");
    fixtures::write_json(dir + "/special_tokens_map.json", {{"pad_token", "<pad>"}});
    expect_error(dir, "special_tokens_map.json", "pad_token '<pad>'");
  }
  {
    const auto dir = tokenizer_dir("clip_tok_missing");
    std::filesystem::remove(dir + "/merges.txt");
    expect_error(dir, "merges.txt", "missing");
  }
  expect_error("/nonexistent/clip_tokenizer", "/nonexistent/clip_tokenizer", "no such directory");
}
