// Atomic checkpoint directories (see checkpoint.h).
#include "io/checkpoint.h"

#include <fmt/format.h>
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <mutex>
#include <optional>
#include <set>

#include "core/errors.h"
#include "core/log.h"
#include "io/checksum.h"
#include "io/files.h"

namespace fluxtrain {
namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

// Temporary and aside directories this process is writing right now (by file name), so that a
// prune running beside a save never takes them for leftovers of a dead process.
std::mutex g_active_mutex;
std::set<std::string> g_active;

struct ActiveGuard {
  std::string name;
  explicit ActiveGuard(std::string n) : name(std::move(n)) {
    std::lock_guard<std::mutex> lock(g_active_mutex);
    g_active.insert(name);
  }
  ~ActiveGuard() {
    std::lock_guard<std::mutex> lock(g_active_mutex);
    g_active.erase(name);
  }
};

// "a/b/" -> "a/b".
std::string strip_slashes(std::string dir) {
  while (dir.size() > 1 && dir.back() == '/') dir.pop_back();
  return dir;
}

void check_file_name(const std::string& dir, const std::string& name) {
  if (name.empty() || name == "." || name == ".." || name.find('/') != std::string::npos ||
      name == "manifest.json")
    user_error("checkpoint '{}': bad file name '{}' (a plain name other than manifest.json)", dir,
               name);
}

void rename_or_fail(const std::string& from, const std::string& to) {
  if (::rename(from.c_str(), to.c_str()) != 0)
    user_error("{}: cannot rename to {} ({})", from, to, std::strerror(errno));
}

void remove_all_quietly(const std::string& path) {
  std::error_code ec;
  fs::remove_all(path, ec);
}

// A name ending in `<marker><pid>-<16 hex>` (marker ".tmp-" or ".old-"): the part before the
// marker and the pid. nullopt when the name does not have that form.
struct Tagged {
  std::string base;
  pid_t pid;
};
std::optional<Tagged> parse_tagged(const std::string& name, const std::string& marker) {
  size_t at = name.rfind(marker);
  if (at == std::string::npos || at == 0) return std::nullopt;
  std::string rest = name.substr(at + marker.size());
  size_t dash = rest.find('-');
  if (dash == std::string::npos || dash == 0 || dash > 10) return std::nullopt;
  std::string pid = rest.substr(0, dash), rnd = rest.substr(dash + 1);
  if (rnd.size() != 16) return std::nullopt;
  for (char c : pid)
    if (c < '0' || c > '9') return std::nullopt;
  for (char c : rnd)
    if (!std::isxdigit(static_cast<unsigned char>(c))) return std::nullopt;
  return Tagged{name.substr(0, at), pid_t(std::stol(pid))};
}

// Whether the process that made a tagged directory is gone (so the directory is a leftover).
bool writer_is_gone(const std::string& name, pid_t pid) {
  if (pid == ::getpid()) {
    std::lock_guard<std::mutex> lock(g_active_mutex);
    return g_active.count(name) == 0;
  }
  return ::kill(pid, 0) != 0 && errno == ESRCH;
}

// "step-123" -> 123.
std::optional<int64_t> parse_step(const std::string& name) {
  if (name.size() < 6 || name.compare(0, 5, "step-") != 0 || name.size() > 5 + 18)
    return std::nullopt;
  int64_t n = 0;
  for (size_t i = 5; i < name.size(); ++i) {
    if (name[i] < '0' || name[i] > '9') return std::nullopt;
    n = n * 10 + (name[i] - '0');
  }
  return n;
}

bool has_manifest(const std::string& dir) {
  std::error_code ec;
  return fs::is_regular_file(fs::path(dir) / "manifest.json", ec);
}

// The newest complete `<dir>.old-*` sibling, if any.
std::optional<std::string> find_aside(const std::string& dir) {
  fs::path p(dir);
  std::string base = p.filename().string();
  fs::path parent = parent_dir(dir);
  std::error_code ec;
  std::optional<std::string> best;
  fs::file_time_type best_time{};
  for (fs::directory_iterator it(parent, ec), end; !ec && it != end; it.increment(ec)) {
    std::string name = it->path().filename().string();
    auto tag = parse_tagged(name, ".old-");
    if (!tag || tag->base != base || !has_manifest(it->path().string())) continue;
    if (!writer_is_gone(name, tag->pid)) continue;  // a save is swapping it right now
    std::error_code tec;
    auto t = fs::last_write_time(it->path() / "manifest.json", tec);
    if (!best || t > best_time) {
      best = (parent / name).string();
      best_time = t;
    }
  }
  return best;
}

// Puts an aside copy back at `dir` when `dir` is missing. True if it did.
bool recover_aside(const std::string& dir) {
  auto aside = find_aside(dir);
  if (!aside) return false;
  rename_or_fail(*aside, dir);
  fsync_dir(parent_dir(dir));
  log_warn("checkpoint '{}': restored from {} (a save was interrupted while replacing it)", dir,
           *aside);
  return true;
}

}  // namespace

void save_checkpoint_dir(
    const std::string& dir_in,
    const std::map<std::string, std::vector<std::pair<std::string, torch::Tensor>>>& files,
    const json& state, const std::map<std::string, std::map<std::string, std::string>>& metadata,
    const std::map<std::string, std::string>& texts) {
  const std::string dir = strip_slashes(dir_in);
  for (const auto& kv : files) check_file_name(dir, kv.first);
  for (const auto& kv : texts) {
    check_file_name(dir, kv.first);
    if (files.count(kv.first))
      user_error("checkpoint '{}': file name '{}' given twice", dir, kv.first);
  }
  const std::string parent = parent_dir(dir);
  std::error_code ec;
  fs::create_directories(parent, ec);
  if (ec) user_error("{}: cannot create directory ({})", parent, ec.message());

  const std::string tmp = dir + ".tmp-" + unique_suffix();
  ActiveGuard tmp_guard(fs::path(tmp).filename().string());
  if (!fs::create_directory(tmp, ec) || ec)
    user_error("{}: cannot create directory ({})", tmp, ec ? ec.message() : "already exists");
  try {
    json listed = json::object();
    for (const auto& [name, tensors] : files) {
      const auto m = metadata.find(name);
      FileDigest d =
          write_safetensors((fs::path(tmp) / name).string(), tensors,
                            m == metadata.end() ? std::map<std::string, std::string>{} : m->second);
      listed[name] = {{"bytes", d.bytes}, {"xxh64", hex64(d.xxh64)}};
    }
    json listed_texts = json::object();
    for (const auto& [name, text] : texts) {
      OutFile f((fs::path(tmp) / name).string());
      f.write(text.data(), text.size());
      f.sync();
      f.close();
      listed_texts[name] = {{"bytes", text.size()}};
    }
    json manifest = {{"format", kCheckpointFormat},
                     {"version", kCheckpointVersion},
                     {"files", listed},
                     {"state", state}};
    if (!texts.empty()) manifest["texts"] = listed_texts;
    std::string text = manifest.dump(2) + "\n";
    OutFile out((fs::path(tmp) / "manifest.json").string());
    out.write(text.data(), text.size());
    out.sync();
    out.close();
    fsync_dir(tmp);

    if (fs::exists(dir)) {
      // Never a moment without a complete checkpoint: old aside, new in, then delete the old.
      const std::string aside = dir + ".old-" + unique_suffix();
      ActiveGuard aside_guard(fs::path(aside).filename().string());
      rename_or_fail(dir, aside);
      if (::rename(tmp.c_str(), dir.c_str()) != 0) {
        int err = errno;
        ::rename(aside.c_str(), dir.c_str());  // put the old one back
        user_error("{}: cannot rename to {} ({})", tmp, dir, std::strerror(err));
      }
      fsync_dir(parent);
      remove_all_quietly(aside);
    } else {
      rename_or_fail(tmp, dir);
      fsync_dir(parent);
    }
  } catch (...) {
    remove_all_quietly(tmp);
    throw;
  }
}

const SafetensorsFile& LoadedCheckpoint::file(const std::string& name) const {
  auto it = files.find(name);
  if (it == files.end()) user_error("checkpoint '{}': has no file {}", dir, name);
  return it->second;
}

LoadedCheckpoint load_checkpoint_dir(const std::string& dir_in, bool verify_checksums) {
  const std::string dir = strip_slashes(dir_in);
  std::error_code ec;
  if (!fs::exists(dir, ec) && !recover_aside(dir))
    user_error("checkpoint '{}': no such directory", dir);
  if (!fs::is_directory(dir, ec)) user_error("checkpoint '{}': not a directory", dir);
  const std::string manifest_path = (fs::path(dir) / "manifest.json").string();
  if (!fs::exists(manifest_path, ec))
    user_error(
        "checkpoint '{}': manifest.json missing (an unfinished save, or not a fluxtrain "
        "checkpoint)",
        dir);
  json m;
  const std::string text = read_file_bytes(manifest_path);
  try {
    m = json::parse(text);
  } catch (const json::parse_error& e) {
    user_error("checkpoint '{}': manifest.json is not valid JSON ({})", dir,
               json_error_where(e, text.size()));
  }
  if (!m.is_object() || !m.contains("format") || m["format"] != kCheckpointFormat)
    user_error("checkpoint '{}': manifest.json format is {}, expected \"{}\"", dir,
               m.is_object() && m.contains("format") ? m["format"].dump() : std::string("missing"),
               kCheckpointFormat);
  if (!m.contains("version") || !m["version"].is_number_integer() ||
      m["version"].get<int64_t>() != kCheckpointVersion)
    user_error("checkpoint '{}': manifest.json version {} is not supported (expected {})", dir,
               m.contains("version") ? m["version"].dump() : std::string("missing"),
               kCheckpointVersion);
  if (!m.contains("files") || !m["files"].is_object())
    user_error("checkpoint '{}': manifest.json has no \"files\" object", dir);

  LoadedCheckpoint out;
  out.dir = dir;
  for (auto it = m["files"].begin(); it != m["files"].end(); ++it) {
    const std::string& name = it.key();
    const json& e = it.value();
    check_file_name(dir, name);
    if (!e.is_object() || !e.contains("bytes") || !e["bytes"].is_number_unsigned() ||
        !e.contains("xxh64") || !e["xxh64"].is_string())
      user_error(
          "checkpoint '{}': manifest.json entry for {} needs \"bytes\" (an integer) and "
          "\"xxh64\" (a string)",
          dir, name);
    const std::string path = (fs::path(dir) / name).string();
    if (!fs::is_regular_file(path, ec))
      user_error("checkpoint '{}': {} is missing (listed in manifest.json)", dir, name);
    const uint64_t expected = e["bytes"].get<uint64_t>();
    const uint64_t actual = fs::file_size(path, ec);
    if (ec) user_error("checkpoint '{}': cannot read the size of {} ({})", dir, name, ec.message());
    if (actual != expected)
      user_error("checkpoint '{}': {} is {} bytes but the manifest says {} ({})", dir, name, actual,
                 expected, actual < expected ? "truncated?" : "modified?");
    if (verify_checksums) {
      FileDigest d = file_xxh64(path);
      if (hex64(d.xxh64) != e["xxh64"].get<std::string>())
        user_error("checkpoint '{}': {} checksum mismatch (corrupt)", dir, name);
    }
    out.files.emplace(name, SafetensorsFile(path));
  }
  out.state = m.contains("state") ? m["state"] : json::object();
  return out;
}

std::string step_checkpoint_dir(const std::string& root, int64_t step) {
  return (fs::path(root) / fmt::format("step-{}", step)).string();
}

std::vector<std::pair<int64_t, std::string>> list_step_checkpoints(const std::string& root) {
  std::map<int64_t, std::string> found;
  std::map<int64_t, std::string> asides;
  std::error_code ec;
  if (!fs::is_directory(root, ec)) return {};
  for (fs::directory_iterator it(root, ec), end; !ec && it != end; it.increment(ec)) {
    std::error_code dec;
    if (!it->is_directory(dec)) continue;
    const std::string name = it->path().filename().string();
    if (auto step = parse_step(name)) {
      found[*step] = it->path().string();
    } else if (auto tag = parse_tagged(name, ".old-")) {
      if (auto s = parse_step(tag->base); s && has_manifest(it->path().string()))
        asides[*s] = it->path().string();
    }
  }
  for (const auto& [step, path] : asides) found.emplace(step, path);  // only where step-N is gone
  return {found.begin(), found.end()};
}

void prune_step_checkpoints(const std::string& root, int64_t keep_last) {
  std::error_code ec;
  if (!fs::is_directory(root, ec)) return;
  std::vector<fs::path> entries;
  for (fs::directory_iterator it(root, ec), end; !ec && it != end; it.increment(ec)) {
    std::error_code dec;
    if (it->is_directory(dec)) entries.push_back(it->path());
  }
  for (const fs::path& p : entries) {
    const std::string name = p.filename().string();
    if (auto tmp = parse_tagged(name, ".tmp-")) {
      if (writer_is_gone(name, tmp->pid)) remove_all_quietly(p.string());
    } else if (auto old = parse_tagged(name, ".old-")) {
      const std::string primary = (fs::path(root) / old->base).string();
      if (!fs::exists(primary, ec)) {
        recover_aside(primary);
      } else if (writer_is_gone(name, old->pid) && has_manifest(primary)) {
        remove_all_quietly(p.string());
      }
    }
  }
  if (keep_last <= 0) return;
  std::vector<std::string> complete;
  for (const auto& [step, path] : list_step_checkpoints(root))
    if (has_manifest(path)) complete.push_back(path);
  for (size_t i = 0; i + size_t(keep_last) < complete.size(); ++i) {
    // Rename first, so that a crash during the delete leaves a .tmp- leftover, not a step-N
    // directory with files missing.
    const std::string doomed = complete[i] + ".tmp-" + unique_suffix();
    rename_or_fail(complete[i], doomed);
    remove_all_quietly(doomed);
  }
}

}  // namespace fluxtrain
