#include "eval/distributed_sweep.h"

#include <algorithm>

#include "dist/work_queue.h"
#include "eval/run_output_wire.h"

namespace kvscope {
namespace {

int64_t tokens_to_score(const SweepRun& r) {
  int64_t n = 0;
  for (const Window& w : *r.windows) n += w.end - w.score_from;
  return n;
}

}  // namespace

std::vector<size_t> longest_first(const std::vector<SweepRun>& runs, std::vector<size_t> todo) {
  std::stable_sort(todo.begin(), todo.end(), [&](size_t a, size_t b) { return tokens_to_score(runs[a]) > tokens_to_score(runs[b]); });
  return todo;
}

void run_distributed_sweep(const LlamaModel& model, const std::vector<SweepRun>& runs, const std::vector<size_t>& order, int64_t batch,
                           const std::string& plan_id, const DistributedSweepCallbacks& callbacks) {
  cluster::WorkQueue queue(
      order, plan_id,
      [&](size_t, std::string&& bytes) {
        size_t run = 0;
        RunOutput output = decode_run_output(bytes, &run);
        callbacks.on_done(run, std::move(output));
      },
      callbacks.on_tokens);
  // A rank asks for a run whenever its batch has room, and rank 0 answers between steps.
  run_sweep(
      model, runs, batch, [&] { return queue.next(); },
      [&](int64_t n) {
        queue.progress(n);
        queue.poll();
      },
      [&](size_t run, RunOutput&& output) { queue.finished(run, encode_run_output(run, output)); });
  queue.close();
}

}  // namespace kvscope
