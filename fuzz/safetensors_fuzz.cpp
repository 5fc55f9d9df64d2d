// libFuzzer target for the safetensors reader: each input is a whole file. Every read API is
// called (names, info, metadata, data, load in the stored dtype and converted); a UserError is
// the expected answer to a malformed file, anything else (another exception type, a crash, a
// sanitizer report, a hang) is a bug. Built by -DFLUXTRAIN_FUZZ=ON with clang; see
// scripts/fuzz.sh.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>

#include "core/errors.h"
#include "io/safetensors.h"

using namespace fluxtrain;

namespace {

[[noreturn]] void bug(const char* kind, const char* what) {
  std::fprintf(stderr, "safetensors_fuzz: %s escaped the reader: %s\n", kind, what);
  std::abort();
}

void exercise(const SafetensorsFile& f) {
  size_t total = 0;
  for (const auto& [k, v] : f.metadata()) total += k.size() + v.size();
  for (const std::string& name : f.names()) {
    if (!f.contains(name)) bug("inconsistency", ("names() lists a missing tensor " + name).c_str());
    const TensorInfo& info = f.info(name);
    if (info.end < info.begin || info.end > f.file_bytes())
      bug("inconsistency", ("bad range for " + name).c_str());
    const uint8_t* p = f.data(name);
    for (uint64_t i = 0; i < info.nbytes(); ++i) total += p[i];  // ASan checks the range
    torch::Tensor t = f.load(name);
    if (t.numel() != info.numel() || t.sizes().vec() != info.shape)
      bug("inconsistency", ("loaded shape differs from the header for " + name).c_str());
    // Conversions on request: widening, narrowing, and to an integer type.
    torch::Tensor a = f.load(name, torch::kFloat);
    torch::Tensor b = f.load(name, torch::kBFloat16);
    torch::Tensor c = f.load(name, torch::kInt);
    total += size_t(a.numel() + b.numel() + c.numel());
  }
  const std::string unknown = "\x01not a tensor name";
  if (!f.contains(unknown)) {
    try {
      f.info(unknown);
      bug("inconsistency", "info() of an unknown name did not throw");
    } catch (const UserError&) {
    }
  }
  if (total == 42) std::fputc(' ', stderr);  // keep the reads from being optimised away
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    SafetensorsFile f =
        SafetensorsFile::from_bytes(std::string(reinterpret_cast<const char*>(data), size));
    exercise(f);
    SafetensorsFile moved = std::move(f);  // the bytes stay valid in the moved-to reader
    if (moved.size()) moved.load(moved.names().back());
  } catch (const UserError&) {
    // The expected answer to a malformed file.
  } catch (const c10::Error& e) {
    bug("c10::Error", e.what_without_backtrace());
  } catch (const std::exception& e) {
    bug("std::exception", e.what());
  } catch (...) {
    bug("unknown exception", "");
  }
  return 0;
}
