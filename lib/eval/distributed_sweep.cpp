#include "eval/distributed_sweep.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <deque>

#include "core/error.h"
#include "dist/cluster.h"
#include "eval/run_output_wire.h"

namespace kvscope {
namespace {

// The protocol. A following rank sends kRequest (its plan id) whenever its batch has room
// and gets kAssign back (a run index, or -1: no more); sends kResult for each finished run,
// kProgress with the tokens it scored since its last report (at most every 0.2 s), and
// kDone when it has nothing left. Rank 0 answers between its own decode steps.
enum Tag : int { kRequest = 1, kAssign = 2, kResult = 3, kProgress = 4, kDone = 5 };

std::string int_bytes(int64_t v) { return std::string(reinterpret_cast<const char*>(&v), sizeof(v)); }

int64_t bytes_int(const std::string& b) {
  if (b.size() != sizeof(int64_t)) fail("internal: a sweep control message of ", b.size(), " bytes");
  int64_t v;
  std::memcpy(&v, b.data(), sizeof(v));
  return v;
}

int64_t tokens_to_score(const SweepRun& r) {
  int64_t n = 0;
  for (const Window& w : *r.windows) n += w.end - w.score_from;
  return n;
}

class Leader {
 public:
  Leader(const std::vector<size_t>& order, const std::string& plan_id, const DistributedSweepCallbacks& callbacks, int ranks)
      : queue_(order.begin(), order.end()), plan_id_(plan_id), callbacks_(callbacks), following_(ranks - 1) {}

  std::optional<size_t> next_for_self() {
    poll();
    return take();
  }
  void poll() {
    while (auto m = cluster::try_receive()) handle(*m);
  }
  // After rank 0's own runs: serve the others until every one of them is done.
  void drain() {
    while (following_ > 0) handle(cluster::receive());
  }

 private:
  std::optional<size_t> take() {
    if (queue_.empty()) return std::nullopt;
    const size_t run = queue_.front();
    queue_.pop_front();
    return run;
  }
  void handle(const cluster::Message& m) {
    switch (m.tag) {
      case kRequest: {
        if (m.bytes != plan_id_)
          fail("rank ", m.source, " planned a different sweep from rank 0's (its documents, model or settings differ); every rank "
               "must be given the same command and files");
        const std::optional<size_t> run = take();
        cluster::send(m.source, kAssign, int_bytes(run ? static_cast<int64_t>(*run) : -1));
        break;
      }
      case kResult: {
        size_t run = 0;
        RunOutput output = decode_run_output(m.bytes, &run);
        callbacks_.on_done(run, std::move(output));
        break;
      }
      case kProgress: callbacks_.on_tokens(bytes_int(m.bytes)); break;
      case kDone: --following_; break;
      default: fail("internal: sweep message with tag ", m.tag, " from rank ", m.source);
    }
  }

  std::deque<size_t> queue_;
  const std::string& plan_id_;
  const DistributedSweepCallbacks& callbacks_;
  int following_;
};

void follow(const LlamaModel& model, const std::vector<SweepRun>& runs, int64_t batch, const std::string& plan_id) {
  using Clock = std::chrono::steady_clock;
  int64_t unreported = 0;
  Clock::time_point last_report = Clock::now();
  const auto report = [&] {
    if (unreported > 0) cluster::send(0, kProgress, int_bytes(unreported));
    unreported = 0;
    last_report = Clock::now();
  };
  run_sweep(
      model, runs, batch,
      [&]() -> std::optional<size_t> {
        cluster::send(0, kRequest, plan_id);
        const int64_t run = bytes_int(cluster::receive(0, kAssign).bytes);
        if (run < 0) return std::nullopt;
        return static_cast<size_t>(run);
      },
      [&](int64_t n) {
        unreported += n;
        if (Clock::now() - last_report > std::chrono::milliseconds(200)) report();
      },
      [&](size_t run, RunOutput&& output) {
        report();
        cluster::send(0, kResult, encode_run_output(run, output));
      });
  report();
  cluster::send(0, kDone, std::string());
}

}  // namespace

std::vector<size_t> longest_first(const std::vector<SweepRun>& runs, std::vector<size_t> todo) {
  std::stable_sort(todo.begin(), todo.end(), [&](size_t a, size_t b) { return tokens_to_score(runs[a]) > tokens_to_score(runs[b]); });
  return todo;
}

void run_distributed_sweep(const LlamaModel& model, const std::vector<SweepRun>& runs, const std::vector<size_t>& order, int64_t batch,
                           const std::string& plan_id, const DistributedSweepCallbacks& callbacks) {
  const cluster::Info& me = cluster::info();
  if (me.rank != 0) {
    follow(model, runs, batch, plan_id);
    return;
  }
  Leader leader(order, plan_id, callbacks, me.size);
  run_sweep(
      model, runs, batch, [&] { return leader.next_for_self(); },
      [&](int64_t n) {
        callbacks.on_tokens(n);
        leader.poll();
      },
      callbacks.on_done);
  leader.drain();
}

}  // namespace kvscope
