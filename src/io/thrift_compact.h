// A decoder for the Thrift compact protocol (the encoding of parquet footers and page headers),
// reading from a byte range with every bound checked: varint lengths, string and list sizes
// against the bytes left, field types against what the caller expects, and nesting depth.
// Every problem is a one-line UserError that starts with the context given at construction.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace fluxtrain::thrift {

// Compact protocol type ids, as they appear in field headers (kTrue/kFalse carry a boolean
// field's value) and in list/set/map headers (booleans there are kTrue or kFalse, then a byte).
enum Type : uint8_t {
  kStop = 0,
  kTrue = 1,
  kFalse = 2,
  kI8 = 3,
  kI16 = 4,
  kI32 = 5,
  kI64 = 6,
  kDouble = 7,
  kBinary = 8,
  kList = 9,
  kSet = 10,
  kMap = 11,
  kStruct = 12,
  kUuid = 13,
};

// "i32", "struct", ... ("type 14" for an unknown id).
std::string type_name(uint8_t type);

// Structs, lists and maps nested deeper than this are refused (bounded recursion).
constexpr int kMaxDepth = 32;

// One field header inside a struct: its id and wire type.
struct Field {
  int16_t id = 0;
  uint8_t type = kStop;
};

class CompactReader {
 public:
  // Reads data[0, size). `context` starts every error message ("x.parquet: footer").
  CompactReader(const uint8_t* data, size_t size, std::string context);

  size_t position() const { return pos_; }
  size_t remaining() const { return size_ - pos_; }
  const std::string& context() const { return context_; }

  // Structs: begin_struct(), then next_field() until it returns false (it has read the stop
  // field and left the struct). Values are read with the typed readers below or skip().
  void begin_struct();
  bool next_field(Field& field);

  // A field's value, checked against the wire type the schema gives it; `name` is the
  // field's "Struct.field" name for messages.
  int32_t read_i32(const Field& f, const char* name);
  int64_t read_i64(const Field& f, const char* name);  // also takes an i32 or i16 on the wire
  bool read_bool(const Field& f, const char* name);
  std::string_view read_binary(const Field& f, const char* name);
  // Checks that f is a struct field, then begin_struct().
  void begin_struct_field(const Field& f, const char* name);
  // A list field's header: returns its size (at most the bytes left, since each element takes
  // at least one byte) and checks its element type.
  uint32_t begin_list(const Field& f, const char* name, uint8_t element_type);

  // List elements (after begin_list).
  int32_t read_i32_element(const char* name);
  std::string_view read_binary_element(const char* name);

  // Skips a value of the given type (nested containers included, depth-bounded).
  void skip(uint8_t type);

  // A UserError "<context>: <what> (at byte N of M)".
  [[noreturn]] void fail(const std::string& what) const;

 private:
  uint8_t byte(const char* what);
  uint64_t varint(int max_bytes, const char* what);
  int64_t zigzag(int max_bytes, const char* what);
  uint32_t length(const char* what);  // a varint byte count checked against what is left
  void wrong_type(const Field& f, const char* name, const char* expected) const;
  void skip_value(uint8_t type, int depth, bool in_container);
  uint32_t list_header(uint8_t& element_type, const char* what);

  const uint8_t* data_;
  size_t size_;
  size_t pos_ = 0;
  std::string context_;
  std::vector<int16_t> last_id_;  // per open struct: the previous field id (for id deltas)
};

}  // namespace fluxtrain::thrift
