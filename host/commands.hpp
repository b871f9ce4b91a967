// The `eval`, `sample` and `mosaic` commands (host/cmd_eval.cpp, host/cmd_sample.cpp,
// host/cmd_mosaic.cpp), which run_cli (host/cli.cpp) dispatches on the first argument. args are
// the arguments after the command's name. Each handles its own flag parsing (a bad flag: one line
// on stderr, exit code 2; --help: exit code 0) and returns the exit code; other failures throw
// InputError, BackendUnavailable or std::exception, which run_cli maps to exit codes.
#pragma once

#include <string>
#include <vector>

namespace rbm {

int run_eval_command(const std::string& program, const std::vector<std::string>& args);
int run_sample_command(const std::string& program, const std::vector<std::string>& args);
int run_mosaic_command(const std::string& program, const std::vector<std::string>& args);

}  // namespace rbm
