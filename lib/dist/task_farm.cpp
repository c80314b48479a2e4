#include "dist/task_farm.h"

#include <cstdint>
#include <deque>

#include "core/byte_codec.h"
#include "core/error.h"
#include "dist/cluster.h"

namespace kvscope::cluster {
namespace {

// Tags apart from the sweep's (eval/distributed_sweep.cpp), so a stray message is noticed.
enum Tag : int { kRequest = 11, kAssign = 12, kResult = 13, kDone = 14 };

std::string index_bytes(int64_t v) {
  ByteWriter w;
  w.put(v);
  return w.take();
}

void follow(const std::string& plan_id, const FarmWork& work) {
  for (;;) {
    send(0, kRequest, plan_id);
    const std::string reply = receive(0, kAssign).bytes;
    ByteReader r(reply, "a work assignment");
    const int64_t item = r.get<int64_t>();
    r.expect_end();
    if (item < 0) break;
    ByteWriter w;
    w.put(static_cast<uint64_t>(item));
    w.put_string(work(static_cast<size_t>(item), [] {}));
    send(0, kResult, w.take());
  }
  send(0, kDone, std::string());
}

}  // namespace

void farm_tasks(const std::vector<size_t>& order, const std::string& plan_id, const FarmWork& work, const FarmResult& on_result) {
  const Info& me = info();
  if (me.rank != 0) {
    follow(plan_id, work);
    return;
  }
  std::deque<size_t> queue(order.begin(), order.end());
  int following = me.size - 1;
  const auto take = [&]() -> int64_t {
    if (queue.empty()) return -1;
    const size_t item = queue.front();
    queue.pop_front();
    return static_cast<int64_t>(item);
  };
  const auto handle = [&](const Message& m) {
    switch (m.tag) {
      case kRequest:
        if (m.bytes != plan_id)
          fail("rank ", m.source, " was given different work from rank 0's (its documents, model or settings differ); every rank "
               "must be given the same command and files");
        send(m.source, kAssign, index_bytes(take()));
        break;
      case kResult: {
        ByteReader r(m.bytes, "a work result");
        const uint64_t item = r.get<uint64_t>();
        std::string result = r.get_string();
        r.expect_end();
        on_result(static_cast<size_t>(item), std::move(result));
        break;
      }
      case kDone: --following; break;
      default: fail("internal: work message with tag ", m.tag, " from rank ", m.source);
    }
  };
  const std::function<void()> poll = [&] {
    if (me.size == 1) return;
    while (auto m = try_receive()) handle(*m);
  };
  for (;;) {
    poll();
    const int64_t item = take();
    if (item < 0) break;
    std::string result = work(static_cast<size_t>(item), poll);
    on_result(static_cast<size_t>(item), std::move(result));
  }
  while (following > 0) handle(receive());
}

}  // namespace kvscope::cluster
