#pragma once
// A perplexity sweep over every rank of an MPI job (dist/cluster.h). Every rank plans the
// same sweep; rank 0 hands out run indices one at a time as a rank's batch has room
// (`order`: the runs still to do, longest first; dist/work_queue.h), and collects each
// finished run's output.
// Each rank batches what it holds (eval/sweep.h), so a run's NLL is what it would be in a
// single-process sweep, bit for bit: nothing about a run depends on its batch or its rank.
//
// Rank 0 decodes too: between its own steps it answers requests and takes in results, so on
// a machine with as many cores as ranks no core waits on another. A rank that fails ends
// the whole job (cluster::abort) after printing its message; nothing waits on a dead rank.
// With one rank it is run_sweep over `order`.
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "eval/sweep.h"

namespace kvscope {

struct DistributedSweepCallbacks {
  std::function<void(int64_t)> on_tokens;              // rank 0: tokens scored on any rank
  std::function<void(size_t, RunOutput&&)> on_done;   // rank 0: a run finished on any rank
};

// `plan_id` identifies the sweep (e.g. a hash of its run keys): a rank whose plan differs
// from rank 0's (its documents or settings differ) is refused by name. On ranks other than
// 0, `order` and the callbacks are not used.
void run_distributed_sweep(const LlamaModel& model, const std::vector<SweepRun>& runs, const std::vector<size_t>& order, int64_t batch,
                           const std::string& plan_id, const DistributedSweepCallbacks& callbacks);

// `runs` indices of `todo`, longest first (most tokens to score; ties keep their order), so
// that the last runs handed out are short and no rank is left with a long tail.
std::vector<size_t> longest_first(const std::vector<SweepRun>& runs, std::vector<size_t> todo);

}  // namespace kvscope
