// report.html: one self-contained page (inline CSS and SVG, no scripts, fonts or links to fetch)
// with charts of images/s and peak memory against batch size per precision and resolution, the
// table of points, the environment and the bench's settings.
#pragma once
#include <string>

#include "bench/results.h"

namespace fluxtrain {

std::string report_html(const BenchResults& results);

}  // namespace fluxtrain
