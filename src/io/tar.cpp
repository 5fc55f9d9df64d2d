// Tar reading in place (see tar.h). One scanner walks the 512-byte headers of either a file
// (pread) or bytes in memory; nothing but the headers and extension records is read.
#include "io/tar.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <optional>

#include "core/errors.h"
#include "io/files.h"

namespace fluxtrain {
namespace {

constexpr int64_t kBlock = 512;
constexpr int64_t kMaxExtension = 1 << 20;  // longest GNU long name / pax header we read

int64_t round_up(int64_t n) {
  return (n + kBlock - 1) / kBlock * kBlock;
}

// Where the archive's bytes come from: read(off, n, out) fills all n bytes or returns false.
struct Source {
  int64_t size = 0;
  const char* bytes = nullptr;  // in memory, or
  int fd = -1;                  // a file
  bool read(int64_t off, size_t n, char* out) const {
    if (off < 0 || off > size || int64_t(n) > size - off) return false;
    if (bytes) {
      std::memcpy(out, bytes + off, n);
      return true;
    }
    size_t got = 0;
    while (got < n) {
      ssize_t r = ::pread(fd, out + got, n - got, off + int64_t(got));
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0) return false;
      got += size_t(r);
    }
    return true;
  }
};

std::string c_string(const char* p, size_t max) {
  size_t n = 0;
  while (n < max && p[n] != '\0') ++n;
  return std::string(p, n);
}

// An octal field: optional spaces, octal digits, then NULs or spaces; empty is 0.
std::optional<int64_t> parse_octal(const char* p, size_t n) {
  std::string s = c_string(p, n);
  size_t b = s.find_first_not_of(' '), e = s.find_last_not_of(' ');
  if (b == std::string::npos) return 0;
  int64_t v = 0;
  for (size_t i = b; i <= e; ++i) {
    if (s[i] < '0' || s[i] > '7' || v > (int64_t(1) << 59)) return std::nullopt;
    v = v * 8 + (s[i] - '0');
  }
  return v;
}

// A numeric field: octal, or GNU base-256 (first byte 0x80, then big-endian). Negative base-256
// values (first byte 0xff) and values that do not fit int64 are refused.
std::optional<int64_t> parse_number(const char* p, size_t n) {
  const auto first = static_cast<unsigned char>(p[0]);
  if (!(first & 0x80)) return parse_octal(p, n);
  if (first != 0x80) return std::nullopt;
  uint64_t v = 0;
  for (size_t i = 1; i < n; ++i) {
    if (v >> 55) return std::nullopt;  // would pass 2^63
    v = (v << 8) | static_cast<unsigned char>(p[i]);
  }
  if (v >> 63) return std::nullopt;
  return int64_t(v);
}

const char* type_name(char t) {
  switch (t) {
    case '1':
      return "hard link";
    case '2':
      return "symbolic link";
    case '3':
      return "character device";
    case '4':
      return "block device";
    case '5':
      return "directory";
    case '6':
      return "FIFO";
    case 'S':
      return "GNU sparse file";
    case 'D':
      return "GNU dump directory";
    case 'V':
      return "GNU volume header";
    case 'M':
      return "GNU multi-volume continuation";
    default:
      return "unknown entry type";
  }
}

bool is_zero_block(const char* b, size_t n) {
  for (size_t i = 0; i < n; ++i)
    if (b[i] != '\0') return false;
  return true;
}

struct PaxOverrides {
  std::optional<std::string> path;
  std::optional<int64_t> size;
  bool sparse = false;  // GNU.sparse.* records: the data is a sparse map and fragments
};

// Records "<len> <key>=<value>\n" (len counts the whole record); trailing NULs end the list.
// Returns "" or what is wrong, with the record's offset within the header data.
std::string parse_pax(const std::string& d, PaxOverrides& out) {
  size_t at = 0;
  while (at < d.size() && d[at] != '\0') {
    size_t sp = at;
    uint64_t len = 0;
    while (sp < d.size() && d[sp] >= '0' && d[sp] <= '9' && len < (uint64_t(1) << 40))
      len = len * 10 + uint64_t(d[sp++] - '0');
    if (sp == at || sp >= d.size() || d[sp] != ' ' || len <= sp - at + 1 || len > d.size() - at)
      return fmt::format("bad record length at offset {} of the header data", at);
    const size_t end = at + size_t(len);  // one past the '\n'
    if (d[end - 1] != '\n') return fmt::format("record at offset {} does not end in a newline", at);
    const std::string kv = d.substr(sp + 1, end - 1 - (sp + 1));
    const size_t eq = kv.find('=');
    if (eq == std::string::npos || eq == 0)
      return fmt::format("record at offset {} is not key=value", at);
    const std::string key = kv.substr(0, eq), value = kv.substr(eq + 1);
    if (key.rfind("GNU.sparse.", 0) == 0) out.sparse = true;
    if (key == "path") {
      out.path = value;
    } else if (key == "size") {
      int64_t v = 0;
      bool ok = !value.empty() && value.size() <= 18;
      for (char c : value) {
        ok &= c >= '0' && c <= '9';
        if (ok) v = v * 10 + (c - '0');
      }
      if (!ok) return fmt::format("size record '{}' at offset {} is not a number", value, at);
      out.size = v;
    }
    at = end;
  }
  return "";
}

TarListing scan(const Source& src, const std::string& name) {
  TarListing L;
  PaxOverrides pending;       // from 'x' and 'L' headers, for the next entry
  int64_t pending_from = -1;  // the first of those headers
  char h[kBlock];
  int64_t at = 0;
  auto fail = [&](std::string what) { L.error = fmt::format("{}: {}", name, what); };
  while (at < src.size) {
    const int64_t left = src.size - at;
    if (left < kBlock) {
      std::string rest(size_t(left), '\0');
      if (!src.read(at, size_t(left), rest.data())) {
        fail(fmt::format("cannot read the header at byte {}", at));
      } else if (!is_zero_block(rest.data(), rest.size())) {
        fail(fmt::format("truncated header at byte {} ({} of 512 bytes)", at, left));
      }
      break;
    }
    if (!src.read(at, kBlock, h)) {
      fail(fmt::format("cannot read the header at byte {}", at));
      break;
    }
    if (is_zero_block(h, kBlock)) break;  // end of archive
    // Checksum: the header's bytes summed with the checksum field counted as spaces; some old
    // tars summed signed chars, which is accepted too.
    const std::optional<int64_t> stored = parse_octal(h + 148, 8);
    int64_t sum_unsigned = 0, sum_signed = 0;
    for (int i = 0; i < kBlock; ++i) {
      const char c = (i >= 148 && i < 156) ? ' ' : h[i];
      sum_unsigned += static_cast<unsigned char>(c);
      sum_signed += static_cast<signed char>(c);
    }
    if (!stored) {
      fail(
          fmt::format("header at byte {} has a checksum field that is not octal (not a tar "
                      "file, or corrupt)",
                      at));
      break;
    }
    if (*stored != sum_unsigned && *stored != sum_signed) {
      fail(fmt::format("bad header checksum at byte {} (stored {}, computed {}; corrupt)", at,
                       *stored, sum_unsigned));
      break;
    }
    const char type = h[156];
    const std::optional<int64_t> field_size = parse_number(h + 124, 12);
    if (!field_size) {
      fail(fmt::format("header at byte {} has a size field that is not a number", at));
      break;
    }
    const bool posix = std::memcmp(h + 257, "ustar\0", 6) == 0;
    std::string header_name = c_string(h, 100);
    const std::string prefix = c_string(h + 345, 155);
    if (posix && !prefix.empty()) header_name = prefix + "/" + header_name;
    int64_t data_at = at + kBlock;

    // Extension records for the entry that follows: GNU long name ('L') and long link name
    // ('K', not needed here), pax extended ('x') and global ('g', ignored) headers.
    if (type == 'L' || type == 'K' || type == 'x' || type == 'g') {
      const int64_t size = *field_size;
      const char* what = type == 'L'   ? "GNU long name"
                         : type == 'K' ? "GNU long link name"
                                       : "pax header";
      if (size > kMaxExtension) {
        fail(fmt::format("{} at byte {} is {} bytes (more than 1 MiB; corrupt?)", what, at, size));
        break;
      }
      if (size > src.size - data_at) {
        fail(fmt::format("{} at byte {} needs {} bytes but only {} remain (truncated)", what, at,
                         size, src.size - data_at));
        break;
      }
      if (type == 'K' && pending_from < 0) pending_from = at;
      if (type == 'L' || type == 'x') {
        std::string data(size_t(size), '\0');
        if (!src.read(data_at, size_t(size), data.data())) {
          fail(fmt::format("cannot read the {} at byte {}", what, at));
          break;
        }
        if (type == 'L') {
          pending.path = c_string(data.data(), data.size());
        } else if (std::string why = parse_pax(data, pending); !why.empty()) {
          fail(fmt::format("pax header at byte {}: {}", at, why));
          break;
        }
        if (pending_from < 0) pending_from = at;
      }
      at = data_at + round_up(size);
      continue;
    }

    TarMember m;
    m.name = pending.path ? *pending.path : header_name;
    m.size = pending.size ? *pending.size : *field_size;
    m.header_offset = pending_from >= 0 ? pending_from : at;
    const bool pax_sparse = pending.sparse;
    pending = PaxOverrides{};
    pending_from = -1;
    const bool slash = !m.name.empty() && m.name.back() == '/';
    const bool regular =
        (type == '0' || type == '\0' || type == '7') && !slash && !pax_sparse;    // v7 dirs
    const bool no_data = type != '\0' && std::strchr("123456", type) != nullptr;  // as tarfile
    if (type == 'S' && h[482] != '\0') {  // old GNU sparse: more sparse-map blocks follow
      for (;;) {
        if (!src.read(data_at, kBlock, h)) {
          fail(fmt::format("sparse map of '{}' at byte {} is truncated", m.name, m.header_offset));
          L.bad_member = m.name;
          return L;
        }
        data_at += kBlock;
        if (h[504] == '\0') break;
      }
    }
    if (!no_data && m.size > src.size - data_at) {
      fail(
          fmt::format("member '{}' at byte {} needs {} bytes of data but only {} remain "
                      "(truncated)",
                      m.name, m.header_offset, m.size, src.size - data_at));
      L.bad_member = m.name;
      break;
    }
    m.data_offset = data_at;
    if (regular) {
      L.members.push_back(m);
    } else {
      const bool v7_dir = type == '0' || type == '\0' || type == '7';  // named "dir/"
      const char* what = pax_sparse ? "GNU sparse file" : v7_dir ? "directory" : type_name(type);
      L.skipped.push_back({m.name, type, what, m.header_offset});
    }
    at = no_data ? data_at : data_at + round_up(m.size);
  }
  if (L.error.empty() && pending_from >= 0)
    fail(fmt::format("extended header at byte {} is not followed by an entry (truncated)",
                     pending_from));
  return L;
}

std::string read_member(const Source& src, const TarMember& m, const std::string& name) {
  if (m.size < 0 || m.data_offset < 0)
    throw std::invalid_argument(fmt::format("read_tar_member: bad member '{}'", m.name));
  std::string out(size_t(m.size), '\0');
  if (!src.read(m.data_offset, size_t(m.size), out.data()))
    user_error("{}: member '{}' at byte {} runs past the end of the file (truncated?)", name,
               m.name, m.header_offset);
  return out;
}

}  // namespace

TarListing scan_tar_bytes(const std::string& bytes, const std::string& name) {
  Source src;
  src.size = int64_t(bytes.size());
  src.bytes = bytes.data();
  return scan(src, name);
}

TarListing scan_tar(const std::string& path) {
  TarReader reader(path);
  return reader.listing();
}

std::vector<TarMember> list_tar(const std::string& path) {
  TarListing l = scan_tar(path);
  if (!l.error.empty()) throw UserError(l.error);
  return std::move(l.members);
}

std::vector<TarMember> list_tar_bytes(const std::string& bytes, const std::string& name) {
  TarListing l = scan_tar_bytes(bytes, name);
  if (!l.error.empty()) throw UserError(l.error);
  return std::move(l.members);
}

std::string read_tar_member(const std::string& path, const TarMember& m) {
  return TarReader(path).read(m);
}

std::string read_tar_member_bytes(const std::string& bytes, const TarMember& m,
                                  const std::string& name) {
  Source src;
  src.size = int64_t(bytes.size());
  src.bytes = bytes.data();
  return read_member(src, m, name);
}

TarReader::TarReader(const std::string& path) : path_(path) {
  const OpenedFile f = open_regular_file(path, "a .tar file");
  fd_ = f.fd;
  size_ = static_cast<int64_t>(f.size);
  Source src;
  src.fd = fd_;
  src.size = size_;
  listing_ = scan(src, path_);
}

TarReader::~TarReader() {
  if (fd_ >= 0) ::close(fd_);
}

std::string TarReader::read(const TarMember& m) const {
  Source src;
  src.fd = fd_;
  src.size = size_;
  return read_member(src, m, path_);
}

bool is_contained_path(const std::string& relative) {
  if (relative.empty() || relative.front() == '/' || relative.find('\0') != std::string::npos)
    return false;
  bool names_something = false;
  size_t at = 0;
  while (at <= relative.size()) {
    size_t slash = relative.find('/', at);
    if (slash == std::string::npos) slash = relative.size();
    const std::string part = relative.substr(at, slash - at);
    if (part == "..") return false;
    if (!part.empty() && part != ".") names_something = true;
    at = slash + 1;
  }
  return names_something;
}

}  // namespace fluxtrain
