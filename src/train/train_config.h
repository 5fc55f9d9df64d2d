// The keys of `fluxtrain train` (every one is a YAML key and a --flag), and the run directory.
#pragma once
#include <string>

#include "core/config.h"

namespace fluxtrain {

ConfigSchema train_schema();

// runs/<name>/<id>/ with id = YYYYMMDD-HHMMSS (suffix -2, -3 ... if taken); created.
std::string create_run_dir(const std::string& output_dir, const std::string& name);

}  // namespace fluxtrain
