#include "eval/run_output_wire.h"

#include <cstdint>
#include <cstring>
#include <type_traits>

#include "core/error.h"

namespace kvscope {
namespace {

// Bumped when the layout changes; ranks of one job run the same binary, so this guards
// against a stray message more than against versions.
constexpr uint64_t kMagic = 0x4b56524f55543031ull;  // "KVROUT01"

class Writer {
 public:
  template <typename T>
  void put(const T& v) {
    static_assert(std::is_trivially_copyable_v<T>);
    bytes_.append(reinterpret_cast<const char*>(&v), sizeof(T));
  }
  template <typename T>
  void put_vector(const std::vector<T>& v) {
    put(static_cast<uint64_t>(v.size()));
    if (!v.empty()) bytes_.append(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(T));
  }
  std::string take() { return std::move(bytes_); }

 private:
  std::string bytes_;
};

class Reader {
 public:
  explicit Reader(const std::string& bytes) : bytes_(bytes) {}
  template <typename T>
  T get() {
    T v;
    need(sizeof(T));
    std::memcpy(&v, bytes_.data() + at_, sizeof(T));
    at_ += sizeof(T);
    return v;
  }
  template <typename T>
  std::vector<T> get_vector() {
    const uint64_t n = get<uint64_t>();
    if (n > (bytes_.size() - at_) / sizeof(T)) fail("a run's output message is truncated (", n, " items announced)");
    std::vector<T> v(static_cast<size_t>(n));
    if (n) std::memcpy(v.data(), bytes_.data() + at_, n * sizeof(T));
    at_ += n * sizeof(T);
    return v;
  }
  void expect_end() const {
    if (at_ != bytes_.size()) fail("a run's output message has ", bytes_.size() - at_, " bytes past its end");
  }

 private:
  void need(size_t n) const {
    if (n > bytes_.size() - at_) fail("a run's output message is truncated");
  }
  const std::string& bytes_;
  size_t at_ = 0;
};

}  // namespace

std::string encode_run_output(size_t run, const RunOutput& o) {
  Writer w;
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
  Reader r(bytes);
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
