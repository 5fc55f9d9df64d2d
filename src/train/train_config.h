// The keys of `fluxtrain train` (every one is a YAML key and a --flag).
#pragma once
#include <string>

#include "core/config.h"

namespace fluxtrain {

ConfigSchema train_schema();

}  // namespace fluxtrain
