#include "eval/run_output_wire.h"

#include <cstdint>

#include "core/byte_codec.h"
#include "core/error.h"

namespace kvscope {
namespace {

// Bumped when the layout changes; ranks of one job run the same binary, so this guards
// against a stray message more than against versions.
constexpr uint64_t kMagic = 0x4b56524f55543031ull;  // "KVROUT01"

}  // namespace

std::string encode_run_output(size_t run, const RunOutput& o) {
  ByteWriter w;
  w.put(kMagic);
  w.put(static_cast<uint64_t>(run));
  w.put_vector(o.nll);
  w.put_vector(o.token_index);
  w.put(o.max_cache);
  w.put(o.resolved_budget);
  w.put(o.seconds);
  w.put(o.policy_seconds);
  w.put_vector(o.perturbation);
  return w.take();
}

RunOutput decode_run_output(const std::string& bytes, size_t* run) {
  ByteReader r(bytes, "a run's output message");
  if (r.get<uint64_t>() != kMagic) fail("a message that is not a run's output arrived where one was expected");
  *run = static_cast<size_t>(r.get<uint64_t>());
  RunOutput o;
  o.nll = r.get_vector<double>();
  o.token_index = r.get_vector<int64_t>();
  if (o.nll.size() != o.token_index.size()) fail("a run's output message has ", o.nll.size(), " NLL values for ", o.token_index.size(), " tokens");
  o.max_cache = r.get<int64_t>();
  o.resolved_budget = r.get<int64_t>();
  o.seconds = r.get<double>();
  o.policy_seconds = r.get<double>();
  o.perturbation = r.get_vector<PerturbationEvent>();
  r.expect_end();
  return o;
}

}  // namespace kvscope
