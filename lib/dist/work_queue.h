#pragma once
// Independent work items (sweep runs, documents) spread over the ranks of a job. Rank 0
// holds the queue (`order`: the items to do, in the order to hand them out) and gives an
// item to whichever rank asks next, itself included; results come back to rank 0 as bytes.
// Rank 0 works too, so it answers the others only when it calls poll(): its work calls
// poll() now and then (every decode step). With one rank this is a plain queue.
//
// The protocol: a following rank sends a request carrying its plan id and gets an item
// index back (or -1: no more); sends each result, its progress (tokens, at most every
// 0.2 s) and, at the end, done. A rank whose plan id differs from rank 0's is refused by
// name: it was given other documents, model or settings.
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace kvscope::cluster {

class WorkQueue {
 public:
  using OnResult = std::function<void(size_t item, std::string&& result)>;
  using OnProgress = std::function<void(int64_t units)>;

  // `order`, `on_result` and `on_progress` are used on rank 0 only.
  WorkQueue(const std::vector<size_t>& order, std::string plan_id, OnResult on_result, OnProgress on_progress = {});

  // The next item for this rank, or nothing when all are handed out.
  std::optional<size_t> next();
  // Rank 0: answers every message that has arrived. Elsewhere: nothing.
  void poll();
  // Records this rank's result for `item` (rank 0: on_result; elsewhere: sent to rank 0).
  void finished(size_t item, std::string result);
  // Reports `units` more of work done (rank 0: on_progress; elsewhere: sent, batched).
  void progress(int64_t units);
  // After this rank's last result. Rank 0 serves the others until each is done.
  void close();

 private:
  void handle(int source, int tag, const std::string& bytes);
  void send_progress();

  std::deque<size_t> queue_;
  std::string plan_id_;
  OnResult on_result_;
  OnProgress on_progress_;
  int following_ = 0;
  bool exhausted_ = false;
  int64_t unreported_ = 0;
  std::chrono::steady_clock::time_point last_report_;
};

// A loop over the items this rank is given: `work` returns an item's result, calling `poll`
// now and then (rank 0 answers the others there).
using FarmWork = std::function<std::string(size_t item, const std::function<void()>& poll)>;
void farm_tasks(const std::vector<size_t>& order, const std::string& plan_id, const FarmWork& work, const WorkQueue::OnResult& on_result);

}  // namespace kvscope::cluster
