// Helpers shared by the test binaries.
#pragma once
#include <functional>
#include <string>

#include "core/errors.h"

namespace fluxtrain::testing {

// The message of the UserError that f throws; "" if it throws none (other exceptions escape).
inline std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const UserError& e) {
    return e.what();
  }
  return "";
}

}  // namespace fluxtrain::testing
