// Text as pixels: a built-in 5x7 bitmap font (with 2-row descenders) for printable ASCII, text
// rendering to a coverage mask, cutting text to a pixel width with "...", and image grids with a
// caption strip under each row (sample grids labelled with their prompts).
#pragma once
#include <torch/torch.h>

#include <cstdint>
#include <string>
#include <vector>

namespace fluxtrain {

// One character cell: a 5-wide glyph in columns 0-4 (column 5 is the gap to the next one),
// capitals and digits on rows 0-6 (the baseline is under row 6), descenders on rows 7-8.
constexpr int64_t kCellWidth = 6;
constexpr int64_t kCellHeight = 9;

// `text` as a float32 [kCellHeight * scale, kCellWidth * chars * scale] CPU mask, 1 where there is
// ink and 0 elsewhere: character i (a code point) fills columns [i, i + 1) * kCellWidth * scale,
// each font pixel a scale x scale block. Bytes 32-126 are their glyphs; every other code point
// (a UTF-8 sequence such as "é", a control character such as '\n') is one '?', and so is each
// byte that starts no UTF-8 sequence. Empty text gives [kCellHeight * scale, 0].
// std::invalid_argument if scale < 1.
torch::Tensor render_text(const std::string& text, int64_t scale = 1);

// The width render_text(text, scale) has: kCellWidth * scale per code point (as render_text
// counts them). std::invalid_argument if scale < 1.
int64_t text_width(const std::string& text, int64_t scale = 1);

// `text` if text_width(text, scale) <= max_width_px; otherwise the longest prefix of whole code
// points that fits with "..." after it ("abcdefghij" in 54 px -> "abcdef...", 54 px wide). When
// not even "..." fits, as many dots as do ("" below one cell). std::invalid_argument if scale < 1.
std::string fit_text(const std::string& text, int64_t max_width_px, int64_t scale = 1);

// The text scale make_labelled_grid uses beside images `image_height` pixels high: 2 from 64 up
// when every label fits `text_width_px` at scale 2 (big text where there is room), else 1; and
// the height of a label strip at text scale s, (kCellHeight + 2) * s (one line and a margin of s
// pixels above and below it).
int64_t label_text_scale(int64_t image_height, int64_t text_width_px,
                         const std::vector<std::string>& labels);
int64_t label_strip_height(int64_t scale);

// make_grid (io/image.h) with a caption under each row: float images [N, C, H, W] in [-1, 1],
// `nrow` per row, one label per row (row_labels.size() == rows, else std::invalid_argument).
// With cols = min(nrow, N), rows = ceil(N / cols), W' = cols * (W + pad) + pad,
// s = label_text_scale(H, W' - 2 * pad, row_labels) and L = label_strip_height(s):
//   output [C, rows * (H + L + pad) + pad, cols * (W + pad) + pad]     // [C, H', W']
//   image k at y = pad + (k / cols) * (H + L + pad), x = pad + (k % cols) * (W + pad);
//   row r's label strip is the L rows right under its images, y0 = pad + r * (H + L + pad) + H;
//   its text is render_text(fit_text(label, W' - 2 * pad, s), s) at (y0 + s, pad).
// Everything else is pad_value; ink is -1 in every channel when pad_value >= 0 (dark text on a
// light background), else +1. Same dtype and device as `images`.
torch::Tensor make_labelled_grid(const torch::Tensor& images, int64_t nrow,
                                 const std::vector<std::string>& row_labels, int64_t pad = 2,
                                 float pad_value = 1.0f);

}  // namespace fluxtrain
