// Inline SVG line charts (bench's report.html, a run's loss curve): series of (x, y) points over
// categorical x positions (batch sizes 1, 2, 4, ... evenly spaced) or a linear x axis (steps), a
// zero-based y axis with round ticks, a legend, and a cross on the x axis where a series has a
// point that did not run (out of memory, failed).
#pragma once
#include <string>
#include <utility>
#include <vector>

namespace fluxtrain {

struct ChartSeries {
  std::string label;
  std::vector<std::pair<double, double>> points;        // (x, y), any order
  std::vector<std::pair<double, std::string>> missing;  // (x, why): drawn as a cross at y = 0
};

struct ChartSpec {
  std::string title, x_label, y_label;
  std::vector<ChartSeries> series;
  int width = 540;
  int plot_height = 260;
  bool linear_x = false;  // x to scale with round ticks (else each distinct x evenly spaced)
  bool markers = true;    // a dot per point (off for dense curves)
};

std::string svg_line_chart(const ChartSpec& spec);

// Round tick step for an axis from 0 to `max` with about `ticks` intervals (1, 2, 2.5, 5 x 10^k).
double nice_step(double max, int ticks);
// &, <, >, " escaped for HTML and SVG text.
std::string html_escape(const std::string& s);
// Colour of series i (a fixed, colour-blind-friendly palette, repeated).
std::string series_colour(size_t i);

}  // namespace fluxtrain
