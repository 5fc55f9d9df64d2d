// Fast 64-bit checksums for checkpoint files: streaming XXH64 and a whole-file helper.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

namespace fluxtrain {

// XXH64 (xxHash, 64-bit, seed 0), fed in pieces of any size. Same digest as the reference
// library's XXH64(); about 10 GB/s, so verifying a checkpoint costs about what reading it does.
class Xxh64 {
 public:
  explicit Xxh64(uint64_t seed = 0);
  void update(const void* data, size_t n);
  uint64_t digest() const;
  uint64_t bytes() const { return total_; }

 private:
  uint64_t v_[4];
  uint64_t seed_;
  uint64_t total_ = 0;
  unsigned char buf_[32];
  size_t buffered_ = 0;
};

// 16 lowercase hex digits.
std::string hex64(uint64_t v);

struct FileDigest {
  uint64_t bytes = 0;
  uint64_t xxh64 = 0;
};

// Reads the whole file in large chunks. UserError naming the file if it cannot be read.
FileDigest file_xxh64(const std::string& path);

}  // namespace fluxtrain
