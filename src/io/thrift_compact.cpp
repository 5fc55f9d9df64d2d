// The Thrift compact protocol decoder (see thrift_compact.h). Wire format: field headers are one
// byte (id delta << 4 | type) or a type byte then a zigzag i16 id; integers are zigzag ULEB128
// varints; binary is a varint length then bytes; lists are one byte (size << 4 | element type)
// or 0xF? then a varint size; maps a varint size then one byte (key type << 4 | value type);
// doubles are 8 bytes little-endian.
#include "io/thrift_compact.h"

#include <fmt/format.h>

#include <utility>

#include "core/errors.h"

namespace fluxtrain::thrift {

std::string type_name(uint8_t type) {
  switch (type) {
    case kStop:
      return "stop";
    case kTrue:
    case kFalse:
      return "bool";
    case kI8:
      return "i8";
    case kI16:
      return "i16";
    case kI32:
      return "i32";
    case kI64:
      return "i64";
    case kDouble:
      return "double";
    case kBinary:
      return "binary";
    case kList:
      return "list";
    case kSet:
      return "set";
    case kMap:
      return "map";
    case kStruct:
      return "struct";
    case kUuid:
      return "uuid";
    default:
      return fmt::format("type {}", type);
  }
}

CompactReader::CompactReader(const uint8_t* data, size_t size, std::string context)
    : data_(data), size_(size), context_(std::move(context)) {}

void CompactReader::fail(const std::string& what) const {
  user_error("{}: {} (at byte {} of {})", context_, what, pos_, size_);
}

uint8_t CompactReader::byte(const char* what) {
  if (pos_ >= size_) fail(fmt::format("truncated while reading {}", what));
  return data_[pos_++];
}

uint64_t CompactReader::varint(int max_bytes, const char* what) {
  uint64_t v = 0;
  for (int i = 0; i < max_bytes; ++i) {
    uint8_t b = byte(what);
    v |= uint64_t(b & 0x7f) << (7 * i);
    if (!(b & 0x80)) {
      // The last byte may only hold the bits that fit: 64 = 9*7 + 1, 32 = 4*7 + 4.
      const int bits_left = (max_bytes == 10 ? 64 : 32) - 7 * i;
      if (bits_left < 7 && (b >> bits_left) != 0)
        fail(fmt::format("varint for {} overflows {} bits", what, max_bytes == 10 ? 64 : 32));
      return v;
    }
  }
  fail(fmt::format("varint for {} is longer than {} bytes", what, max_bytes));
}

int64_t CompactReader::zigzag(int max_bytes, const char* what) {
  uint64_t u = varint(max_bytes, what);
  return int64_t(u >> 1) ^ -int64_t(u & 1);
}

uint32_t CompactReader::length(const char* what) {
  uint64_t n = varint(5, what);
  if (n > remaining())
    fail(fmt::format("{} has length {}, more than the {} bytes left", what, n, remaining()));
  return uint32_t(n);
}

void CompactReader::begin_struct() {
  if (last_id_.size() >= size_t(kMaxDepth))
    fail(fmt::format("Thrift structures nest deeper than {} levels", kMaxDepth));
  last_id_.push_back(0);
}

bool CompactReader::next_field(Field& f) {
  if (last_id_.empty()) fail("field read outside a struct");  // a bug in the caller
  uint8_t h = byte("a field header");
  if (h == 0) {
    last_id_.pop_back();
    return false;
  }
  f.type = h & 0x0f;
  const int delta = h >> 4;
  if (delta) {
    int id = last_id_.back() + delta;
    if (id > 32767) fail(fmt::format("field id {} is out of range", id));
    f.id = int16_t(id);
  } else {
    int64_t id = zigzag(5, "a field id");
    if (id < -32768 || id > 32767) fail(fmt::format("field id {} is out of range", id));
    f.id = int16_t(id);
  }
  if (f.type == kStop || f.type > kUuid)
    fail(fmt::format("field {} has unknown Thrift type {}", f.id, f.type));
  last_id_.back() = f.id;
  return true;
}

void CompactReader::wrong_type(const Field& f, const char* name, const char* expected) const {
  fail(fmt::format("{} has Thrift type {}, expected {}", name, type_name(f.type), expected));
}

int32_t CompactReader::read_i32(const Field& f, const char* name) {
  if (f.type == kI8) return int8_t(byte(name));
  if (f.type != kI32 && f.type != kI16) wrong_type(f, name, "i32");
  int64_t v = zigzag(5, name);
  if (v < INT32_MIN || v > INT32_MAX) fail(fmt::format("{} = {} does not fit in i32", name, v));
  return int32_t(v);
}

int64_t CompactReader::read_i64(const Field& f, const char* name) {
  if (f.type == kI32 || f.type == kI16 || f.type == kI8) return read_i32(f, name);
  if (f.type != kI64) wrong_type(f, name, "i64");
  return zigzag(10, name);
}

bool CompactReader::read_bool(const Field& f, const char* name) {
  if (f.type != kTrue && f.type != kFalse) wrong_type(f, name, "bool");
  return f.type == kTrue;
}

std::string_view CompactReader::read_binary(const Field& f, const char* name) {
  if (f.type != kBinary) wrong_type(f, name, "binary");
  return read_binary_element(name);
}

std::string_view CompactReader::read_binary_element(const char* name) {
  uint32_t n = length(name);
  std::string_view s(reinterpret_cast<const char*>(data_ + pos_), n);
  pos_ += n;
  return s;
}

int32_t CompactReader::read_i32_element(const char* name) {
  int64_t v = zigzag(5, name);
  if (v < INT32_MIN || v > INT32_MAX) fail(fmt::format("{} = {} does not fit in i32", name, v));
  return int32_t(v);
}

void CompactReader::begin_struct_field(const Field& f, const char* name) {
  if (f.type != kStruct) wrong_type(f, name, "struct");
  begin_struct();
}

uint32_t CompactReader::list_header(uint8_t& element_type, const char* what) {
  uint8_t h = byte(what);
  element_type = h & 0x0f;
  uint32_t n = h >> 4;
  if (n == 15) {
    uint64_t big = varint(5, what);
    if (big > INT32_MAX) fail(fmt::format("{} claims {} elements", what, big));
    n = uint32_t(big);
  }
  // Every element takes at least one byte, except booleans in no container of ours and empty
  // structs; a struct element is at least its stop byte, so the bound holds for all types.
  if (n > remaining())
    fail(fmt::format("{} claims {} elements but only {} bytes are left", what, n, remaining()));
  if (element_type == kStop || element_type > kUuid)
    fail(fmt::format("{} has unknown element type {}", what, element_type));
  return n;
}

uint32_t CompactReader::begin_list(const Field& f, const char* name, uint8_t element_type) {
  if (f.type != kList && f.type != kSet) wrong_type(f, name, "list");
  uint8_t et;
  uint32_t n = list_header(et, name);
  // Booleans in a list are tagged kTrue (the usual) or kFalse; i16 elements are zigzag varints
  // like i32 ones and read as i32 (i8 elements are raw bytes: not accepted for an i32 list).
  auto norm = [](uint8_t t) -> uint8_t { return t == kFalse ? uint8_t(kTrue) : t; };
  const bool int_ok = element_type == kI32 && et == kI16;
  if (n > 0 && norm(et) != norm(element_type) && !int_ok)
    fail(fmt::format("{} is a list of {}, expected a list of {}", name, type_name(et),
                     type_name(element_type)));
  return n;
}

void CompactReader::skip(uint8_t type) {
  skip_value(type, 0, false);
}

void CompactReader::skip_value(uint8_t type, int depth, bool in_container) {
  if (depth + int(last_id_.size()) >= kMaxDepth)
    fail(fmt::format("Thrift structures nest deeper than {} levels", kMaxDepth));
  switch (type) {
    case kTrue:
    case kFalse:
      if (in_container) byte("a bool");  // field booleans carry their value in the header
      return;
    case kI8:
      byte("an i8");
      return;
    case kI16:
    case kI32:
      varint(5, "an integer");
      return;
    case kI64:
      varint(10, "an i64");
      return;
    case kDouble:
      if (remaining() < 8) fail("truncated while reading a double");
      pos_ += 8;
      return;
    case kUuid:
      if (remaining() < 16) fail("truncated while reading a uuid");
      pos_ += 16;
      return;
    case kBinary:
      pos_ += length("a binary value");
      return;
    case kList:
    case kSet: {
      uint8_t et;
      uint32_t n = list_header(et, "a list");
      for (uint32_t i = 0; i < n; ++i) skip_value(et, depth + 1, true);
      return;
    }
    case kMap: {
      uint64_t n = varint(5, "a map size");
      if (n == 0) return;
      if (n > remaining())
        fail(fmt::format("a map claims {} entries but only {} bytes are left", n, remaining()));
      uint8_t kv = byte("a map header");
      uint8_t kt = kv >> 4, vt = kv & 0x0f;
      if (kt == kStop || kt > kUuid || vt == kStop || vt > kUuid)
        fail(fmt::format("a map has unknown key or value type {}/{}", kt, vt));
      for (uint64_t i = 0; i < n; ++i) {
        skip_value(kt, depth + 1, true);
        skip_value(vt, depth + 1, true);
      }
      return;
    }
    case kStruct: {
      // Nested structs go through begin_struct so that their field ids have their own base.
      const size_t open = last_id_.size();
      if (depth + int(open) + 1 > kMaxDepth)
        fail(fmt::format("Thrift structures nest deeper than {} levels", kMaxDepth));
      last_id_.push_back(0);
      Field f;
      while (last_id_.size() > open) {
        if (!next_field(f)) break;
        skip_value(f.type, depth, false);
      }
      return;
    }
    default:
      fail(fmt::format("cannot skip a value of unknown Thrift type {}", type));
  }
}

}  // namespace fluxtrain::thrift
