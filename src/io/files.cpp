// POSIX file helpers (see files.h).
#include "io/files.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <fnmatch.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>

#include "core/errors.h"

namespace fluxtrain {
namespace fs = std::filesystem;

OutFile::OutFile(const std::string& path) : path_(path) {
  fd_ = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd_ < 0) user_error("{}: cannot create ({})", path, std::strerror(errno));
}

OutFile::~OutFile() {
  if (fd_ >= 0) ::close(fd_);
}

void OutFile::write(const void* data, size_t n) {
  auto* p = static_cast<const char*>(data);
  while (n > 0) {
    size_t chunk = std::min<size_t>(n, size_t(1) << 30);
    ssize_t got = ::write(fd_, p, chunk);
    if (got < 0) {
      if (errno == EINTR) continue;
      user_error("{}: write failed after {} bytes ({})", path_, written_, std::strerror(errno));
    }
    p += got;
    n -= size_t(got);
    written_ += uint64_t(got);
  }
}

void OutFile::sync() {
  if (::fsync(fd_) != 0) user_error("{}: fsync failed ({})", path_, std::strerror(errno));
}

void OutFile::close() {
  int fd = fd_;
  fd_ = -1;
  if (fd >= 0 && ::close(fd) != 0) user_error("{}: close failed ({})", path_, std::strerror(errno));
}

void fsync_dir(const std::string& dir) {
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) user_error("{}: cannot open directory ({})", dir, std::strerror(errno));
  int rc = ::fsync(fd);
  int err = errno;
  ::close(fd);
  // Some filesystems do not support fsync on directories; that is not an error worth stopping.
  if (rc != 0 && err != EINVAL && err != ENOTSUP)
    user_error("{}: fsync failed ({})", dir, std::strerror(err));
}

std::string unique_suffix() {
  static thread_local std::mt19937_64 gen{std::random_device{}() ^ (uint64_t(::getpid()) << 32)};
  return fmt::format("{}-{:016x}", ::getpid(), gen());
}

std::string read_file_bytes(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) user_error("{}: no such file", path);
    user_error("{}: cannot open ({})", path, std::strerror(errno));
  }
  std::string out;
  char buf[1 << 16];
  for (;;) {
    ssize_t got = ::read(fd, buf, sizeof buf);
    if (got < 0) {
      if (errno == EINTR) continue;
      int err = errno;
      ::close(fd);
      user_error("{}: cannot read ({})", path, std::strerror(err));
    }
    if (got == 0) break;
    out.append(buf, size_t(got));
  }
  ::close(fd);
  return out;
}

std::string json_error_where(const nlohmann::json::parse_error& e, size_t len) {
  // nlohmann counts bytes from 1 and counts the end of input as one more byte.
  if (e.byte > len) return fmt::format("unexpected end after {} bytes", len);
  return fmt::format("syntax error at byte {} of {}", e.byte, len);
}

std::string json_reason(const nlohmann::json::exception& e) {
  std::string s = e.what();
  if (!s.empty() && s[0] == '[') {
    size_t close = s.find("] ");
    if (close != std::string::npos) s = s.substr(close + 2);
  }
  if (s.size() > 80) s = s.substr(0, 77) + "...";
  return s;
}

nlohmann::json read_json_file(const std::string& path) {
  const std::string text = read_file_bytes(path);
  try {
    return nlohmann::json::parse(text);
  } catch (const nlohmann::json::parse_error& e) {
    user_error("{}: not valid JSON ({})", path, json_error_where(e, text.size()));
  } catch (const nlohmann::json::exception& e) {  // e.g. a number too large for a double
    user_error("{}: not valid JSON ({})", path, json_reason(e));
  }
}

std::string parent_dir(const std::string& path) {
  fs::path p(path);
  while (p.has_relative_path() && p.filename().empty()) p = p.parent_path();  // "a/b/" -> "a/b"
  fs::path parent = p.parent_path();
  return parent.empty() ? std::string(".") : parent.string();
}

void write_file_atomically(const std::string& path, const std::string& text) {
  const std::string tmp = path + ".tmp-" + unique_suffix();
  try {
    OutFile out(tmp);
    out.write(text.data(), text.size());
    out.sync();
    out.close();
  } catch (...) {
    std::error_code ec;
    std::filesystem::remove(tmp, ec);
    throw;
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    const int err = errno;
    std::error_code ec;
    std::filesystem::remove(tmp, ec);
    user_error("{}: cannot write ({})", path, std::strerror(err));
  }
  fsync_dir(parent_dir(path));
}

OpenedFile open_regular_file(const std::string& path, const std::string& what) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) user_error("{}: no such file", path);
    user_error("{}: cannot open ({})", path, std::strerror(errno));
  }
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    const int err = errno;
    ::close(fd);
    user_error("{}: cannot stat ({})", path, std::strerror(err));
  }
  if (S_ISDIR(st.st_mode)) {
    ::close(fd);
    user_error("{}: is a directory, expected {}", path, what);
  }
  return {fd, static_cast<uint64_t>(st.st_size)};
}

std::vector<std::string> files_matching(const std::string& spec, const std::string& extension,
                                        bool recursive) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (fs::is_regular_file(spec, ec)) return {spec};
  // A directory's files, or those whose names match a glob in the last path component.
  const bool is_dir = fs::is_directory(spec, ec);
  const fs::path p(spec);
  const fs::path dir = is_dir ? p : (p.has_parent_path() ? p.parent_path() : fs::path("."));
  const std::string pattern = p.filename().string();
  if (!is_dir && !fs::is_directory(dir, ec)) return {};
  auto wanted = [&](const fs::directory_entry& e) {
    std::error_code type_ec;  // an entry that cannot be examined (a dangling link) is skipped
    if (!e.is_regular_file(type_ec)) return false;
    return is_dir ? e.path().extension() == extension
                  : fnmatch(pattern.c_str(), e.path().filename().c_str(), 0) == 0;
  };
  std::vector<std::string> out;
  auto list = [&](auto it) {
    for (; !ec && it != fs::end(it); it.increment(ec))
      if (wanted(*it)) out.push_back(it->path().string());
  };
  if (is_dir && recursive)
    list(fs::recursive_directory_iterator(dir, ec));
  else
    list(fs::directory_iterator(dir, ec));
  if (ec) user_error("{}: cannot list ({})", dir.string(), ec.message());
  std::sort(out.begin(), out.end());
  return out;
}

bool is_file(const std::string& path) {
  std::error_code ec;
  return std::filesystem::is_regular_file(path, ec);
}

std::string read_file_head(const std::string& path, size_t n) {
  std::ifstream in(path, std::ios::binary);
  if (!in) user_error("{}: cannot read", path);
  std::string head(n, '\0');
  in.read(head.data(), static_cast<std::streamsize>(n));
  head.resize(static_cast<size_t>(in.gcount()));
  return head;
}

}  // namespace fluxtrain
