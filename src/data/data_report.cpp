// Unreadable data, counted and listed (see data_report.h).
#include "data/data_report.h"

#include "core/errors.h"
#include "core/log.h"

namespace fluxtrain {

void DataReport::add(const std::string& item, const std::string& reason) {
  if (strict_) user_error("{}: {} (--strict)", item, reason);
  std::lock_guard<std::mutex> lock(mutex_);
  if (seen_.emplace(std::make_pair(item, reason), problems_.size()).second)
    problems_.push_back({item, reason});
}

int64_t DataReport::count() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return static_cast<int64_t>(problems_.size());
}

std::vector<DataProblem> DataReport::problems() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return problems_;
}

std::map<std::string, int64_t> DataReport::by_reason() const {
  std::lock_guard<std::mutex> lock(mutex_);
  std::map<std::string, int64_t> out;
  for (const auto& p : problems_) {
    // The reason's head, before any detail in parentheses: "cannot decode (...)" -> "cannot
    // decode".
    const auto cut = p.reason.find(" (");
    ++out[cut == std::string::npos ? p.reason : p.reason.substr(0, cut)];
  }
  return out;
}

nlohmann::json DataReport::to_json() const {
  nlohmann::json list = nlohmann::json::array();
  for (const auto& p : problems()) list.push_back({{"item", p.item}, {"reason", p.reason}});
  return {{"count", count()}, {"by_reason", by_reason()}, {"problems", list}};
}

void DataReport::log(const std::string& what, size_t list) const {
  const auto all = problems();
  if (all.empty()) return;
  std::string counts;
  for (const auto& [reason, n] : by_reason())
    counts += fmt::format("{}{} {}", counts.empty() ? "" : ", ", n, reason);
  log_warn("{}: {} unusable example(s) left out ({}); listed in data_report.json", what, all.size(),
           counts);
  for (size_t i = 0; i < std::min(list, all.size()); ++i)
    log_warn("  {}: {}", all[i].item, all[i].reason);
  if (all.size() > list) log_warn("  ... and {} more", all.size() - list);
}

}  // namespace fluxtrain
