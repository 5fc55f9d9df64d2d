// results.json: the bench (command, sweep, settings), the environment and every point with its
// settings, status and figures.
#pragma once
#include <nlohmann/json.hpp>

#include "bench/results.h"

namespace fluxtrain {

nlohmann::json results_json(const BenchResults& results);

}  // namespace fluxtrain
