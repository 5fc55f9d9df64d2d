// Error types: UserError is bad input (one line, exit code 2); anything else is a bug.
#pragma once
#include <fmt/format.h>

#include <stdexcept>
#include <string>

namespace fluxtrain {

// A problem with what the user gave us (flag, file, value). The message is one line that names
// the file, key or value and what was expected. The CLI prints it and exits with code 2.
struct UserError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

template <typename... Args>
[[noreturn]] void user_error(fmt::format_string<Args...> f, Args&&... args) {
  throw UserError(fmt::format(f, std::forward<Args>(args)...));
}

}  // namespace fluxtrain
