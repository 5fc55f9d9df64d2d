// runs_summary.csv: one row per point (like seed 000's launcher summary): the point, its status,
// its settings, then its figures; empty cells where a figure does not apply.
#pragma once
#include <string>
#include <vector>

#include "bench/results.h"

namespace fluxtrain {

std::vector<std::string> csv_columns(const BenchResults& results);
std::vector<std::vector<std::string>> csv_rows(const BenchResults& results);
// Header and rows, RFC 4180 quoting where a cell needs it.
std::string csv_text(const BenchResults& results);

}  // namespace fluxtrain
