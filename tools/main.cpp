// kvscope-torch: every command, model commands included (LibTorch). The kvscope launcher
// (launcher.cpp) runs the analysis commands itself and hands everything else to this binary.
#include <cstdio>

#include "app.h"
#include "common.h"
#include "core/error.h"
#include "dist/cluster.h"
#include "io/atomic_output.h"

namespace {

std::vector<kvscope::tools::Command> all_commands(CLI::App& app) {
  using namespace kvscope::tools;
  return {register_info(app),    register_score(app),   register_generate(app), register_bench(app),    register_random_model(app),
          register_dump(app),    register_ppl(app),     register_passkey(app),  register_needle(app),   register_spectrum(app),
          register_l2corr(app),  register_perturb(app), register_train(app),    register_tokenize(app)};
}

}  // namespace

int main(int argc, char** argv) {
  using namespace kvscope;
  tools::set_command_line(argc, argv);
  install_interrupt_cleanup();
  try {
    cluster::init(&argc, &argv);
  } catch (const Error& e) {
    std::fprintf(stderr, "kvscope: error: %s\n", e.what());
    return 1;
  }
  const int code = tools::run_app(argc, argv, all_commands);
  cluster::finalize();
  return code;
}
