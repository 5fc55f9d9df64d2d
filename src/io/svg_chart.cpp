// SVG line charts (see svg_chart.h).
#include "io/svg_chart.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <set>

namespace fluxtrain {

std::string html_escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

std::string series_colour(size_t i) {
  static const char* palette[] = {"#0072b2", "#e69f00", "#009e73", "#cc79a7",
                                  "#56b4e9", "#d55e00", "#555555", "#f0e442"};
  return palette[i % (sizeof palette / sizeof palette[0])];
}

double nice_step(double max, int ticks) {
  if (!(max > 0)) return 1.0;
  const double raw = max / std::max(1, ticks);
  const double mag = std::pow(10.0, std::floor(std::log10(raw)));
  for (double m : {1.0, 2.0, 2.5, 5.0, 10.0})
    if (m * mag >= raw * (1 - 1e-9)) return m * mag;
  return 10.0 * mag;
}

static std::string tick_text(double v) {
  if (v == 0) return "0";
  return fmt::format("{:.4g}", v);
}

std::string svg_line_chart(const ChartSpec& c) {
  const int left = 64, right = 16, top = 34, bottom = 46;
  const int W = c.width, plot_w = W - left - right, plot_h = c.plot_height;
  std::set<double> xs_set;
  double ymax = 0;
  bool any_missing = false;
  for (const auto& s : c.series) {
    for (const auto& [x, y] : s.points) xs_set.insert(x), ymax = std::max(ymax, y);
    for (const auto& [x, why] : s.missing) xs_set.insert(x), any_missing = true;
  }
  const std::vector<double> xs(xs_set.begin(), xs_set.end());
  const int legend_rows = static_cast<int>(c.series.size()) + (any_missing ? 1 : 0);
  const int H = top + plot_h + bottom + 18 * legend_rows + 8;
  const double step = nice_step(ymax > 0 ? ymax : 1.0, 5);
  const double ytop = std::max(step, std::ceil((ymax > 0 ? ymax : 1.0) / step - 1e-9) * step);
  const double xmin = xs.empty() ? 0 : std::min(0.0, xs.front()),
               xmax = xs.empty() ? 1 : std::max(xs.back(), xmin + 1e-9);
  auto px = [&](double x) {
    if (c.linear_x) return left + 10 + (x - xmin) / (xmax - xmin) * (plot_w - 20);
    const auto it = std::lower_bound(xs.begin(), xs.end(), x);
    const double i = static_cast<double>(it - xs.begin());
    return xs.size() <= 1 ? left + plot_w / 2.0 : left + 20 + i * (plot_w - 40) / (xs.size() - 1.0);
  };
  std::vector<double> xticks = xs;
  if (c.linear_x) {
    xticks.clear();
    const double xstep = nice_step(xmax - xmin, 6);
    for (double v = xmin; v <= xmax * (1 + 1e-9); v += xstep) xticks.push_back(v);
  }
  auto py = [&](double y) { return top + plot_h - y / ytop * plot_h; };

  std::string s = fmt::format(
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{0}\" height=\"{1}\" viewBox=\"0 0 {0} "
      "{1}\" "
      "font-family=\"sans-serif\" font-size=\"12\" role=\"img\" aria-label=\"{2}\">\n",
      W, H, html_escape(c.title));
  s += fmt::format("<rect width=\"{}\" height=\"{}\" fill=\"#ffffff\"/>\n", W, H);
  s += fmt::format("<text x=\"{}\" y=\"20\" font-size=\"14\" font-weight=\"bold\">{}</text>\n",
                   left, html_escape(c.title));
  // Y grid and ticks.
  for (double v = 0; v <= ytop * (1 + 1e-9); v += step) {
    const double y = py(v);
    s += fmt::format("<line x1=\"{}\" x2=\"{}\" y1=\"{:.1f}\" y2=\"{:.1f}\" stroke=\"#e5e5e5\"/>\n",
                     left, left + plot_w, y, y);
    s += fmt::format("<text x=\"{}\" y=\"{:.1f}\" text-anchor=\"end\" fill=\"#333\">{}</text>\n",
                     left - 6, y + 4, tick_text(v));
  }
  // Axes.
  s += fmt::format("<line x1=\"{0}\" x2=\"{0}\" y1=\"{1}\" y2=\"{2}\" stroke=\"#333\"/>\n", left,
                   top, top + plot_h);
  s += fmt::format("<line x1=\"{0}\" x2=\"{1}\" y1=\"{2}\" y2=\"{2}\" stroke=\"#333\"/>\n", left,
                   left + plot_w, top + plot_h);
  for (double x : xticks) {
    s +=
        fmt::format("<line x1=\"{0:.1f}\" x2=\"{0:.1f}\" y1=\"{1}\" y2=\"{2}\" stroke=\"#333\"/>\n",
                    px(x), top + plot_h, top + plot_h + 4);
    s += fmt::format("<text x=\"{:.1f}\" y=\"{}\" text-anchor=\"middle\" fill=\"#333\">{}</text>\n",
                     px(x), top + plot_h + 17, tick_text(x));
  }
  s += fmt::format("<text x=\"{}\" y=\"{}\" text-anchor=\"middle\" fill=\"#333\">{}</text>\n",
                   left + plot_w / 2, top + plot_h + 36, html_escape(c.x_label));
  s += fmt::format(
      "<text transform=\"translate(14 {}) rotate(-90)\" text-anchor=\"middle\" "
      "fill=\"#333\">{}</text>\n",
      top + plot_h / 2, html_escape(c.y_label));
  // Series.
  for (size_t i = 0; i < c.series.size(); ++i) {
    const auto& ser = c.series[i];
    const std::string col = series_colour(i);
    auto pts = ser.points;
    std::sort(pts.begin(), pts.end());
    if (pts.size() > 1) {
      std::string path;
      for (const auto& [x, y] : pts)
        path += fmt::format("{}{:.1f},{:.1f}", path.empty() ? "" : " ", px(x), py(y));
      s += fmt::format("<polyline points=\"{}\" fill=\"none\" stroke=\"{}\" stroke-width=\"2\"/>\n",
                       path, col);
    }
    for (const auto& [x, y] : pts)
      if (c.markers)
        s += fmt::format(
          "<circle cx=\"{:.1f}\" cy=\"{:.1f}\" r=\"3.5\" fill=\"{}\"><title>{}: {} at "
          "{}</title></circle>\n",
          px(x), py(y), col, html_escape(ser.label), tick_text(y), tick_text(x));
    for (const auto& [x, why] : ser.missing) {
      const double cx = px(x), cy = top + plot_h;
      s += fmt::format(
          "<path d=\"M{:.1f},{:.1f} l10,10 m0,-10 l-10,10\" stroke=\"{}\" stroke-width=\"2.5\">"
          "<title>{}: {}</title></path>\n",
          cx - 5, cy - 5, col, html_escape(ser.label), html_escape(why));
    }
  }
  // Legend, one row per series.
  int y = top + plot_h + 56;
  for (size_t i = 0; i < c.series.size(); ++i, y += 18) {
    s += fmt::format(
        "<line x1=\"{0}\" x2=\"{1}\" y1=\"{2}\" y2=\"{2}\" stroke=\"{3}\" stroke-width=\"3\"/>\n",
        left, left + 22, y - 4, series_colour(i));
    s += fmt::format("<text x=\"{}\" y=\"{}\" fill=\"#333\">{}</text>\n", left + 30, y,
                     html_escape(c.series[i].label));
  }
  if (any_missing)
    s += fmt::format(
        "<text x=\"{}\" y=\"{}\" fill=\"#333\">\xc3\x97 on the x axis: the point did not run "
        "(out of memory, failed or unsupported)</text>\n",
        left + 4, y);
  s += "</svg>\n";
  return s;
}

}  // namespace fluxtrain
