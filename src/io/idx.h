// The IDX format of MNIST and Fashion-MNIST (train-images-idx3-ubyte.gz, ...): magic (two zero
// bytes, a type byte, a dimension count), one big-endian uint32 size per dimension, then the
// data in row-major order. Files may be gzip'd (read transparently with zlib) or plain.
// Only type 0x08 (unsigned byte) is read, which is what the image and label files hold.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace fluxtrain {

struct IdxArray {
  std::vector<int64_t> shape;  // e.g. {60000, 28, 28} for images, {60000} for labels
  std::vector<uint8_t> data;   // prod(shape) bytes, row-major
};

// Reads a plain or gzip'd IDX file. UserError naming the file when it is missing, is not IDX
// (bad magic), holds another element type ("type 0x0d (float32) is not supported"), has no
// dimensions, is truncated or has bytes after the data (sizes are checked against the bytes
// present), or its gzip stream is corrupt or cut short.
IdxArray read_idx(const std::string& path);
// The same for the (already decompressed) bytes of an IDX file; `name` is used in messages.
IdxArray parse_idx(const std::string& bytes, const std::string& name);

}  // namespace fluxtrain
