#include "model_runtime.h"

#include <algorithm>

#include "common.h"
#include "core/error.h"
#include "core/option_values.h"
#include "core/threads.h"
#include "dist/cluster.h"
#include "model/device.h"

namespace kvscope::tools {

void add_runtime_options(CLI::App* cmd, RuntimeOptions& o) {
  cmd->add_option("--device", o.device, "cpu, cuda or cuda:N")->capture_default_str();
  cmd->add_option("--dtype", o.dtype, "compute dtype: float32, bfloat16, float16 (softmax, norms and the residual stream stay fp32)")
      ->capture_default_str();
  cmd->add_option("--threads", o.threads, "LibTorch threads (0 = default: 1 on up to 4 cores)")->check(thread_count());
  cmd->add_option("--blas-threads", o.blas_threads, "OpenBLAS threads (0 = default: all cores on up to 4 cores)")
      ->check(thread_count());
}

LlamaModel load_model(const std::string& model_dir, const RuntimeOptions& o) {
  // The ranks of an MPI job on one node split its cores between them, and plain "cuda"
  // becomes the rank's node-local GPU.
  const cluster::Info& me = cluster::info();
  configure_threads(o.threads, o.blas_threads, std::max(1, machine_cores() / me.local_size));
  return LlamaModel::load(model_dir, LoadOptions{me.mpi ? device_for_rank(o.device, me.local_rank) : o.device, o.dtype});
}

RandomModelSpec parse_random_model_spec(const std::string& text, const std::string& option) {
  RandomModelSpec s;
  s.vocab_size = 32000;
  s.hidden_size = 512;
  s.intermediate_size = 1376;
  s.num_layers = 8;
  s.num_heads = 8;
  s.num_kv_heads = 2;
  s.max_position_embeddings = 4096;
  if (text.empty()) return s;  // option not given; an explicit "" is refused by its validator
  std::vector<std::string> keys;
  for (const std::string& item : split_option_list(text, option)) {
    const size_t eq = item.find('=');
    if (eq == std::string::npos) fail(option, ": '", item, "' is not key=value");
    const std::string key = item.substr(0, eq);
    if (std::find(keys.begin(), keys.end(), key) != keys.end()) fail(option, ": ", key, " is given twice");
    keys.push_back(key);
    const std::string what = option + " " + key;
    // Sizes stay far below what would overflow the tensor shapes built from them.
    const int64_t value = parse_whole(item.substr(eq + 1), what, key == "seed" ? 0 : 1, key == "seed" ? INT64_MAX : int64_t{1} << 24);
    if (key == "layers") s.num_layers = value;
    else if (key == "hidden") s.hidden_size = value;
    else if (key == "mlp") s.intermediate_size = value;
    else if (key == "heads") s.num_heads = value;
    else if (key == "kv_heads") s.num_kv_heads = value;
    else if (key == "vocab") s.vocab_size = value;
    else if (key == "context") s.max_position_embeddings = value;
    else if (key == "seed") s.seed = static_cast<uint64_t>(value);
    else fail(option, ": unknown key '", key, "' (known: layers, hidden, mlp, heads, kv_heads, vocab, context, seed)");
  }
  return s;
}

}  // namespace kvscope::tools
