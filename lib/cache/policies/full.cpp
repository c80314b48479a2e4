// The full cache: keeps every token. The reference every budgeted run is compared with.
#include "cache/policy_registry.h"

namespace kvscope {
namespace {

class FullPolicy : public CachePolicy {
 public:
  using CachePolicy::CachePolicy;
  bool compresses_layer(int) const override { return false; }
  void decide(int, const std::vector<HeadCells>&, const StepView&, std::vector<Decision>&) override {}
};

PolicyTraits full_traits() {
  PolicyTraits t;
  t.keeps_everything = true;
  t.listing = 0;
  return t;
}
KVSCOPE_REGISTER_POLICY(FullPolicy, "full", "keeps everything", full_traits());

}  // namespace
}  // namespace kvscope
