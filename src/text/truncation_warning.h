// The warning a prompt longer than a text encoder takes gets: once per encoder and prompt (a
// training caption is encoded every epoch), saying how much was cut.
#pragma once
#include <cstdint>
#include <string>

namespace fluxtrain {

// When tokens > capacity, logs "prompt '<start of prompt>' is 93 CLIP tokens; CLIP-L takes 75:
// the last 18 are cut[ (<cut>)]" the first time this encoder sees this prompt. Returns true when
// the prompt is truncated (warned now or before).
bool warn_if_truncated(const std::string& encoder, const std::string& prompt, int64_t tokens,
                       int64_t capacity, const std::string& unit, const std::string& cut = "");

}  // namespace fluxtrain
