// results.json (see json_report.h).
#include "bench/json_report.h"

namespace fluxtrain {

nlohmann::json results_json(const BenchResults& r) {
  const Config& b = r.spec.bench;
  nlohmann::json fixed = nlohmann::json::object();
  for (const auto& [k, v] : r.spec.fixed) fixed[k] = v;
  nlohmann::json axes = nlohmann::json::array();
  for (const auto& a : r.spec.axes) axes.push_back({{"key", a.key}, {"values", a.values}});
  nlohmann::json defaults = nlohmann::json::object();
  if (r.spec.mode == "train")
    for (const auto& [k, v] : train_point_defaults()) defaults[k] = v;
  nlohmann::json counts = nlohmann::json::object();
  for (const auto& p : r.points) counts[p.status] = counts.value(p.status, 0) + 1;
  nlohmann::json points = nlohmann::json::array();
  for (const auto& p : r.points) points.push_back(p.to_json());
  return {{"bench",
           {{"id", r.id},
            {"dir", r.dir},
            {"mode", r.spec.mode},
            {"command", r.command},
            {"source", r.spec.source},
            {"warmup", b.i("warmup")},
            {"measured", b.i("measured")},
            {"price_per_hour",
             b.f("price_per_hour") > 0 ? nlohmann::json(b.f("price_per_hour")) : nlohmann::json()},
            {"peak_tflops",
             b.f("peak_tflops") > 0 ? nlohmann::json(b.f("peak_tflops")) : nlohmann::json()},
            {"point_timeout_s", b.i("point_timeout_s")},
            {"memory_limit_gb", b.f("memory_limit_gb")},
            {"fixed", fixed},
            {"axes", axes},
            {"point_defaults", defaults},
            {"columns", setting_columns(r.spec)},
            {"status_counts", counts}}},
          {"environment", r.env.to_json()},
          {"points", points}};
}

}  // namespace fluxtrain
