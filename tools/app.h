#pragma once
// The command-line frame both binaries share: parse, refuse commands that cannot run as
// MPI ranks, run, and report every error as one line.
#include <string>
#include <vector>

#include "commands.h"

namespace kvscope::tools {

// "kvscope: error: MESSAGE" (naming the rank in a multi-rank job, which is then ended).
int report_error(const std::string& message);

// Parses argv against the commands `register_commands` adds to the root app and runs the
// chosen one; returns the exit code.
int run_app(int argc, char** argv, std::vector<Command> (*register_commands)(CLI::App&));

}  // namespace kvscope::tools
