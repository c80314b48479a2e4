#include "dist/work_queue.h"

#include "core/byte_codec.h"
#include "core/error.h"
#include "dist/cluster.h"

namespace kvscope::cluster {
namespace {

enum Tag : int { kRequest = 1, kAssign = 2, kResult = 3, kProgress = 4, kDone = 5 };

std::string int_bytes(int64_t v) {
  ByteWriter w;
  w.put(v);
  return w.take();
}

int64_t bytes_int(const std::string& bytes, const char* what) {
  ByteReader r(bytes, what);
  const int64_t v = r.get<int64_t>();
  r.expect_end();
  return v;
}

}  // namespace

WorkQueue::WorkQueue(const std::vector<size_t>& order, std::string plan_id, OnResult on_result, OnProgress on_progress)
    : queue_(order.begin(), order.end()),
      plan_id_(std::move(plan_id)),
      on_result_(std::move(on_result)),
      on_progress_(std::move(on_progress)),
      following_(info().size - 1),
      last_report_(std::chrono::steady_clock::now()) {}

std::optional<size_t> WorkQueue::next() {
  if (exhausted_) return std::nullopt;
  int64_t item = -1;
  if (info().rank == 0) {
    poll();
    if (!queue_.empty()) {
      item = static_cast<int64_t>(queue_.front());
      queue_.pop_front();
    }
  } else {
    send(0, kRequest, plan_id_);
    item = bytes_int(receive(0, kAssign).bytes, "a work assignment");
  }
  if (item < 0) {
    exhausted_ = true;
    return std::nullopt;
  }
  return static_cast<size_t>(item);
}

void WorkQueue::poll() {
  if (info().rank != 0 || following_ == 0) return;
  while (auto m = try_receive()) handle(m->source, m->tag, m->bytes);
}

void WorkQueue::finished(size_t item, std::string result) {
  if (info().rank == 0) {
    on_result_(item, std::move(result));
    return;
  }
  send_progress();
  ByteWriter w;
  w.put(static_cast<uint64_t>(item));
  w.put_string(result);
  send(0, kResult, w.take());
}

void WorkQueue::progress(int64_t units) {
  if (info().rank == 0) {
    if (on_progress_) on_progress_(units);
    return;
  }
  unreported_ += units;
  if (std::chrono::steady_clock::now() - last_report_ > std::chrono::milliseconds(200)) send_progress();
}

void WorkQueue::send_progress() {
  if (unreported_ > 0) send(0, kProgress, int_bytes(unreported_));
  unreported_ = 0;
  last_report_ = std::chrono::steady_clock::now();
}

void WorkQueue::close() {
  if (info().rank != 0) {
    send_progress();
    send(0, kDone, std::string());
    return;
  }
  while (following_ > 0) {
    const Message m = receive();
    handle(m.source, m.tag, m.bytes);
  }
}

void WorkQueue::handle(int source, int tag, const std::string& bytes) {
  switch (tag) {
    case kRequest: {
      if (bytes != plan_id_)
        fail("rank ", source, " was given different work from rank 0's (its documents, model or settings differ); every rank "
             "must be given the same command and files");
      int64_t item = -1;
      if (!queue_.empty()) {
        item = static_cast<int64_t>(queue_.front());
        queue_.pop_front();
      }
      send(source, kAssign, int_bytes(item));
      break;
    }
    case kResult: {
      ByteReader r(bytes, "a work result");
      const uint64_t item = r.get<uint64_t>();
      std::string result = r.get_string();
      r.expect_end();
      on_result_(static_cast<size_t>(item), std::move(result));
      break;
    }
    case kProgress:
      if (on_progress_) on_progress_(bytes_int(bytes, "a progress report"));
      break;
    case kDone: --following_; break;
    default: fail("internal: work message with tag ", tag, " from rank ", source);
  }
}

void farm_tasks(const std::vector<size_t>& order, const std::string& plan_id, const FarmWork& work, const WorkQueue::OnResult& on_result) {
  WorkQueue queue(order, plan_id, on_result);
  const std::function<void()> poll = [&] { queue.poll(); };
  while (const std::optional<size_t> item = queue.next()) queue.finished(*item, work(*item, poll));
  queue.close();
}

}  // namespace kvscope::cluster
