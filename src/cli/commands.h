// The subcommands of the fluxtrain binary. Each takes the arguments after its name and returns
// the process exit code; UserErrors propagate to main, which prints them and exits with 2.
#pragma once
#include <string>
#include <vector>

namespace fluxtrain {

using Args = std::vector<std::string>;
int cmd_train(const Args& args);
int cmd_sample(const Args& args);
int cmd_info(const Args& args);
int cmd_bench(const Args& args);
int cmd_convert(const Args& args);
int cmd_prepare(const Args& args);

}  // namespace fluxtrain
