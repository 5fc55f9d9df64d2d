// Unreadable data, counted and listed: every source reports each example it cannot use (a file
// listed but absent, an image that does not decode, a missing caption, a path that escapes the
// dataset, a truncated shard) with the file and the reason. The run goes on without it, the
// report is logged and written at the end of `prepare` and `train`, and with `strict` the first
// problem is a one-line UserError instead. Nothing is dropped silently.
#pragma once
#include <cstdint>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace fluxtrain {

struct DataProblem {
  std::string item;    // the file, "shard.tar:member", "file.parquet row 17"
  std::string reason;  // "cannot decode (not a PNG/JPEG/WebP/BMP image)", "no caption", ...
};

class DataReport {
 public:
  explicit DataReport(bool strict = false) : strict_(strict) {}
  // Records one problem; with strict, throws UserError "<item>: <reason> (--strict)" instead.
  // Safe to call from loader threads. A problem already recorded for the same item and reason
  // (an image that fails again in a later epoch) is not counted twice.
  void add(const std::string& item, const std::string& reason);
  int64_t count() const;
  std::vector<DataProblem> problems() const;  // in the order first seen
  // Counts per reason, e.g. {"cannot decode": 2, "no caption": 1}.
  std::map<std::string, int64_t> by_reason() const;
  // {"count": N, "by_reason": {...}, "problems": [{"item", "reason"}, ...]}.
  nlohmann::json to_json() const;
  // Logs a summary (count per reason, the first `list` problems) when there is anything.
  void log(const std::string& what, size_t list = 20) const;
  bool strict() const { return strict_; }

 private:
  bool strict_;
  mutable std::mutex mutex_;
  std::vector<DataProblem> problems_;
  std::map<std::pair<std::string, std::string>, size_t> seen_;
};

}  // namespace fluxtrain
