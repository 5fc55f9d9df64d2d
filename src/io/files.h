// Small file helpers: durable writes (write-all, fsync of files and directories), unique
// temporary names, reading a whole file, JSON parse error positions.
#pragma once
#include <cstddef>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace fluxtrain {

// A file opened for writing (created or truncated, mode 0644); closes on destruction.
// Every failure is a UserError naming the path and the system's reason.
class OutFile {
 public:
  explicit OutFile(const std::string& path);
  ~OutFile();
  OutFile(const OutFile&) = delete;
  OutFile& operator=(const OutFile&) = delete;
  void write(const void* data, size_t n);  // all of it, retrying short writes
  void sync();                             // fsync
  void close();                            // close, reporting errors (the destructor ignores them)
  uint64_t bytes_written() const { return written_; }

 private:
  std::string path_;
  int fd_ = -1;
  uint64_t written_ = 0;
};

// fsync a directory so that the entries created or renamed in it are durable.
void fsync_dir(const std::string& dir);
// "<pid>-<16 random hex digits>", for names like "<dir>.tmp-<pid>-<random>".
std::string unique_suffix();
// The whole file; UserError "<path>: no such file" / "<path>: cannot read (...)".
std::string read_file_bytes(const std::string& path);
// The first `n` bytes of the file (fewer when it is shorter); UserError "<path>: cannot read".
std::string read_file_head(const std::string& path, size_t n);
// Where a JSON text of `len` bytes failed to parse, for error messages:
// "syntax error at byte 5 of 16" or "unexpected end after 16 bytes".
std::string json_error_where(const nlohmann::json::parse_error& e, size_t len);
// nlohmann's message without its "[json.exception.kind.N] " prefix, cut short if long.
std::string json_reason(const nlohmann::json::exception& e);
// The whole file parsed as JSON; UserError "<path>: no such file", "<path>: cannot read (...)" or
// "<path>: not valid JSON (syntax error at byte 5 of 16)".
nlohmann::json read_json_file(const std::string& path);
// The parent directory of `path` ("." when it has none), with trailing slashes ignored.
std::string parent_dir(const std::string& path);

// True when `path` is a regular file (false, not an error, when it is missing or unreadable).
bool is_file(const std::string& path);

// `text` written to `path` whole or not at all: a temporary file beside it, synced, renamed over
// it, the directory synced. UserError naming the path when any step fails (a full disk).
void write_file_atomically(const std::string& path, const std::string& text);

// A regular file opened read-only (O_CLOEXEC) for mapping; the caller closes fd. UserError
// "<path>: no such file", "cannot open (...)", "cannot stat (...)", or "is a directory, expected
// <what>".
struct OpenedFile {
  int fd = -1;
  uint64_t size = 0;
};
OpenedFile open_regular_file(const std::string& path, const std::string& what);

// The files a data path names, sorted: the file itself; a directory's files ending in
// `extension` (".tar"; its subdirectories too with `recursive`); or a glob of file names in one
// directory ("shards/train-*.tar"). Empty when nothing matches; UserError naming the directory
// when it cannot be listed.
std::vector<std::string> files_matching(const std::string& spec, const std::string& extension,
                                        bool recursive);

}  // namespace fluxtrain
