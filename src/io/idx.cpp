// IDX reading (see idx.h): the header first, then exactly the data it announces, from a zlib
// gz stream (which also reads plain files) or from bytes in memory.
#include "io/idx.h"

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <functional>

#include "core/errors.h"
#include "io/files.h"

namespace fluxtrain {
namespace {

const char* type_name(int t) {
  switch (t) {
    case 0x09:
      return "int8";
    case 0x0B:
      return "int16";
    case 0x0C:
      return "int32";
    case 0x0D:
      return "float32";
    case 0x0E:
      return "float64";
    default:
      return "unknown";
  }
}

// `read(out, n)` appends up to n bytes to `out` and returns how many it appended (0 at the end).
using ReadFn = std::function<size_t(std::vector<uint8_t>& out, size_t n)>;

// Reads exactly n bytes into out (appending); returns how many were there.
size_t read_up_to(const ReadFn& read, std::vector<uint8_t>& out, size_t n) {
  size_t got = 0;
  while (got < n) {
    const size_t step = std::min<size_t>(n - got, size_t(16) << 20);  // grow as data arrives
    const size_t r = read(out, step);
    if (r == 0) break;
    got += r;
  }
  return got;
}

IdxArray parse(const ReadFn& read, const std::string& name) {
  std::vector<uint8_t> head;
  if (size_t got = read_up_to(read, head, 4); got < 4)
    user_error("{}: truncated IDX file ({} bytes; the header needs at least 4)", name, got);
  if (head[0] != 0 || head[1] != 0)
    user_error("{}: not an IDX file (bad magic {:02x} {:02x} {:02x} {:02x})", name, head[0],
               head[1], head[2], head[3]);
  const int type = head[2], ndim = head[3];
  if (type != 0x08)
    user_error("{}: IDX element type 0x{:02x} ({}) is not supported (only 0x08, unsigned byte)",
               name, type, type_name(type));
  if (ndim == 0) user_error("{}: IDX file has no dimensions", name);
  const size_t header = 4 + 4 * size_t(ndim);
  if (size_t got = read_up_to(read, head, header - 4); got < header - 4)
    user_error("{}: truncated IDX file ({} bytes; the header of {} dimensions needs {})", name,
               4 + got, ndim, header);
  IdxArray a;
  uint64_t count = 1;
  bool overflow = false;
  for (int d = 0; d < ndim; ++d) {
    const uint8_t* p = head.data() + 4 + 4 * d;
    const uint64_t s =
        (uint64_t(p[0]) << 24) | (uint64_t(p[1]) << 16) | (uint64_t(p[2]) << 8) | uint64_t(p[3]);
    a.shape.push_back(int64_t(s));
    if (s != 0 && count > (uint64_t(1) << 48) / s) overflow = true;
    count *= s;
  }
  const std::string shape = fmt::format("[{}]", fmt::join(a.shape, ", "));
  if (overflow) user_error("{}: IDX shape {} is too large (corrupt?)", name, shape);
  const size_t got = read_up_to(read, a.data, size_t(count));
  if (got < count)
    user_error("{}: truncated IDX file (shape {} needs {} bytes of data, found {})", name, shape,
               count, got);
  std::vector<uint8_t> extra;
  if (read_up_to(read, extra, 1) != 0)
    user_error("{}: IDX file is longer than shape {} needs ({} bytes of data; not IDX?)", name,
               shape, count);
  return a;
}

}  // namespace

IdxArray parse_idx(const std::string& bytes, const std::string& name) {
  size_t at = 0;
  return parse(
      [&](std::vector<uint8_t>& out, size_t n) {
        n = std::min(n, bytes.size() - at);
        out.insert(out.end(), bytes.begin() + at, bytes.begin() + at + n);
        at += n;
        return n;
      },
      name);
}

IdxArray read_idx(const std::string& path) {
  const OpenedFile opened = open_regular_file(path, "an IDX file");
  gzFile f = gzdopen(opened.fd, "rb");  // plain files are read as they are; gzclose closes fd
  if (!f) {
    ::close(opened.fd);
    user_error("{}: cannot read (zlib could not open it)", path);
  }
  auto check = [&] {
    int err = Z_OK;
    const char* msg = gzerror(f, &err);
    if (err == Z_BUF_ERROR) user_error("{}: truncated gzip data (unexpected end of file)", path);
    if (err == Z_OK) return;
    if (err == Z_ERRNO) user_error("{}: cannot read ({})", path, std::strerror(errno));
    std::string why = msg ? msg : "zlib error";
    // zlib prefixes the name it was opened with: "<fd:3>: " for gzdopen.
    if (why.rfind("<fd:", 0) == 0 && why.find(">: ") != std::string::npos)
      why.erase(0, why.find(">: ") + 3);
    user_error("{}: corrupt gzip data ({})", path, why);
  };
  try {
    IdxArray a = parse(
        [&](std::vector<uint8_t>& out, size_t n) -> size_t {
          const size_t old = out.size();
          out.resize(old + n);
          const int r = gzread(f, out.data() + old, unsigned(n));
          out.resize(old + size_t(std::max(r, 0)));
          if (r <= 0) check();  // an error, not the end of the data: say so
          return size_t(std::max(r, 0));
        },
        path);
    check();
    gzclose(f);
    return a;
  } catch (...) {
    gzclose(f);
    throw;
  }
}

}  // namespace fluxtrain
