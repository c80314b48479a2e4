#pragma once
// Each subcommand lives in its own file and registers itself on the root app. The
// returned function runs after parsing and returns the process exit code.
#include <CLI/CLI.hpp>

#include <functional>

namespace kvscope::tools {

using Runner = std::function<int()>;

struct Command {
  CLI::App* app;
  Runner run;
  // Shares its work across the ranks of an MPI job; other commands refuse to start as more
  // than one rank (each rank would do all the work and write the same outputs).
  bool distributed = false;
};

Command register_info(CLI::App& app);
Command register_score(CLI::App& app);
Command register_generate(CLI::App& app);
Command register_bench(CLI::App& app);
Command register_random_model(CLI::App& app);
Command register_dump(CLI::App& app);
Command register_ppl(CLI::App& app);
Command register_passkey(CLI::App& app);
Command register_needle(CLI::App& app);
Command register_spectrum(CLI::App& app);
Command register_l2corr(CLI::App& app);
Command register_perturb(CLI::App& app);
Command register_train(CLI::App& app);
Command register_tokenize(CLI::App& app);

}  // namespace kvscope::tools
