// A run's loss curve: loss.svg in the run directory, drawn from metrics.jsonl at the end of
// training: the training loss (a moving average over about 1 % of the steps) and every validation
// loss, against steps.
#pragma once
#include <string>

#include "io/svg_chart.h"

namespace fluxtrain {

// The chart from run_dir/metrics.jsonl: series 0 the smoothed training loss (window =
// max(1, rows / 100) rows, a point every max(1, rows / 400) rows and at the last), series 1 the
// validation losses when there are any. No series when there are no training rows.
ChartSpec loss_curve_chart(const std::string& run_dir);

// Writes run_dir/loss.svg; returns its path ("" when metrics.jsonl has no training rows).
std::string write_loss_curve(const std::string& run_dir);

}  // namespace fluxtrain
