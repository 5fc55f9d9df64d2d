// Tar archives read in place, in order, without unpacking: what webdataset shards are. Headers:
// POSIX ustar (with its 155-byte name prefix), old GNU and v7; every header's checksum is
// verified. GNU long names ("././@LongLink", type 'L'), pax extended headers (type 'x': the
// `path` and `size` records apply to the next entry; other records are ignored) and pax global
// headers (type 'g': skipped) are understood; GNU long link names ('K') are passed over.
// Regular files (type '0', '\0' and '7') are the members; directories, links, devices, FIFOs,
// GNU sparse files and unknown types are listed as skipped, which is not an error. The archive ends
// at the first all-zero block or at the end of the file (a missing end-of-archive marker or last
// padding is fine).
//
// Bad input is reported, never half-read: the scan stops at the first bad header (checksum
// mismatch, a size field that is neither octal nor base-256, a pax record that does not parse)
// or at a member whose data runs past the end of the file (a truncated shard), with a one-line
// message naming the file and the header's byte offset. Everything before that point is listed
// and readable, so a data loader can count the bad member and go on (TarListing::error);
// list_tar() turns the message into a UserError instead.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace fluxtrain {

struct TarMember {
  std::string name;           // as stored (after long-name / pax path), e.g. "shard/000012.jpg"
  int64_t size = 0;           // bytes of data
  int64_t data_offset = 0;    // where the data starts in the archive (a multiple of 512)
  int64_t header_offset = 0;  // where its (first) header starts, for messages
};

// An entry that is not a regular file: listed so that nothing is dropped silently.
struct TarSkipped {
  std::string name;
  char type = 0;     // the header's type flag ('5' directory, '2' symlink, ...)
  std::string what;  // "directory", "symbolic link", "hard link", ...
  int64_t header_offset = 0;
};

struct TarListing {
  std::vector<TarMember> members;  // every regular file up to `error`, in archive order
  std::vector<TarSkipped> skipped;
  // "" when the whole archive was read; otherwise "<name>: <what> at byte <offset>", for a
  // truncated member "<name>: member '<member>' at byte <offset> needs <n> bytes of data but
  // only <m> remain (truncated)". bad_member is that member's name ("" if no name was read).
  std::string error;
  std::string bad_member;
};

// The listing of a tar file, reading only its headers. UserError if the file is missing or
// cannot be read; problems with its content go into TarListing::error.
TarListing scan_tar(const std::string& path);
// The same for an archive held in memory (tests, fuzzing); `name` is used in messages.
TarListing scan_tar_bytes(const std::string& bytes, const std::string& name);

// Every regular file, in order; UserError with TarListing::error's message if there is one.
std::vector<TarMember> list_tar(const std::string& path);
std::vector<TarMember> list_tar_bytes(const std::string& bytes, const std::string& name);

// A member's data: opens `path`, reads `m.size` bytes at `m.data_offset`. UserError naming the
// file and member if they are not all there (the file changed since it was listed).
std::string read_tar_member(const std::string& path, const TarMember& m);
// The same from an archive in memory.
std::string read_tar_member_bytes(const std::string& bytes, const TarMember& m,
                                  const std::string& name);

// A shard kept open for reading its members one after another (one file descriptor; pread, so
// read() may be called from several threads at once). The listing is made when it is opened.
class TarReader {
 public:
  explicit TarReader(const std::string& path);  // UserError if missing or unreadable
  ~TarReader();
  TarReader(const TarReader&) = delete;
  TarReader& operator=(const TarReader&) = delete;
  const std::string& path() const { return path_; }
  const TarListing& listing() const { return listing_; }
  const std::vector<TarMember>& members() const { return listing_.members; }
  std::string read(const TarMember& m) const;

 private:
  std::string path_;
  int fd_ = -1;
  int64_t size_ = 0;
  TarListing listing_;
};

// True when a member name (or a dataset's file_name) stays inside the directory it is relative
// to: not empty, no NUL byte, not absolute ("/..."), no ".." component, and naming something
// other than the root itself (not "." or "./"). "./a/b.jpg" and "a//b" are contained.
bool is_contained_path(const std::string& relative);

}  // namespace fluxtrain
