// The policy registry and the validation every policy shares; the policies live in
// cache/policies/.
#include "cache/policy_registry.h"

#include <algorithm>
#include <map>

#include "core/error.h"

namespace kvscope {
namespace {

std::map<std::string, PolicyInfo>& registry() {
  static std::map<std::string, PolicyInfo> r;
  return r;
}

}  // namespace

PolicyRegistration::PolicyRegistration(const std::string& name, const std::string& description, const PolicyTraits& traits,
                                       std::function<std::unique_ptr<CachePolicy>(const PolicyOptions&)> make) {
  if (registry().count(name)) fail("policy '", name, "' is registered twice");
  registry()[name] = PolicyInfo{name, description, traits, std::move(make)};
}

std::vector<std::string> known_policies() {
  std::vector<const PolicyInfo*> all;
  for (const auto& [name, info] : registry()) all.push_back(&info);
  std::stable_sort(all.begin(), all.end(), [](const PolicyInfo* a, const PolicyInfo* b) { return a->traits.listing < b->traits.listing; });
  std::vector<std::string> names;
  for (const PolicyInfo* p : all) names.push_back(p->name);
  return names;
}

std::string known_policies_text() {
  std::string list;
  for (const auto& k : known_policies()) list += (list.empty() ? "" : ", ") + k;
  return list;
}

const PolicyInfo& policy_info(const std::string& name) {
  const auto it = registry().find(name);
  if (it == registry().end()) fail("--policy: unknown policy '", name, "' (known: ", known_policies_text(), ")");
  return it->second;
}

bool CachePolicy::decide_on_device(int, const DeviceStep&, DeviceDecision&) { return false; }

bool CachePolicy::compresses_layer(int layer) const {
  const auto& skip = options_.skip_layers;
  return std::find(skip.begin(), skip.end(), layer) == skip.end();
}

PolicyOptions resolve_policy_options(const std::string& name, const PolicyOptions& given) {
  const PolicyInfo& info = policy_info(name);
  const PolicyTraits& t = info.traits;
  const PolicyOptions defaults;
  PolicyOptions o = given;
  // Options the rule does not read are reset, so they cannot reach its numbers.
  if (!(t.options & kReadsSinks)) o.sinks = 0;
  if (!(t.options & kReadsSeed)) o.seed = defaults.seed;
  if (!(t.options & kReadsSkipLayers)) o.skip_layers.clear();
  if (!(t.options & kReadsCamMerge)) o.cam_merge_count = defaults.cam_merge_count;
  if (!(t.options & kReadsWeighting)) o.weighting = defaults.weighting;
  if (!(t.options & kReadsReceiver)) o.receiver = defaults.receiver;
  if (!(t.options & kReadsNeighbourInMiddle)) o.neighbour_in_middle = defaults.neighbour_in_middle;
  if (t.keeps_everything) {
    o.recent = 0;
    return o;
  }
  if (o.budget <= 0) fail("--budget must be positive, got ", o.budget);
  if (o.sinks < 0) fail("--sinks must be non-negative, got ", o.sinks);
  if (o.sinks > o.budget) fail("policy ", name, ": --sinks ", o.sinks, " exceed the budget (--budget ", o.budget, " tokens)");
  if (o.recent < 0 || !(t.options & kReadsRecent)) {
    o.recent = t.recent_default == RecentDefault::AllButSinks ? o.budget - o.sinks : std::max<int64_t>(0, o.budget / 2 - o.sinks);
  }
  if (o.sinks + o.recent > o.budget) {
    fail("policy ", name, ": --sinks ", o.sinks, " + --recent ", o.recent, " exceed the budget (--budget ", o.budget, ")");
  }
  // Over budget by one token, the middle region [sinks, n - recent) must hold a candidate.
  if (o.sinks + std::max(o.recent, t.min_recent) > o.budget) {
    fail("policy ", name, ": needs at least one middle token (--sinks ", o.sinks, " + max(--recent, ", t.min_recent,
         ") <= --budget ", o.budget, ")");
  }
  if ((t.options & kReadsCamMerge) && o.cam_merge_count < 1) fail("--cam-merge must be at least 1, got ", o.cam_merge_count);
  if (t.options & kReadsWeighting) make_merge_weighting(o.weighting);  // unknown names fail here, before any decoding
  return o;
}

std::unique_ptr<CachePolicy> make_policy(const std::string& name, const PolicyOptions& given) {
  return policy_info(name).make(resolve_policy_options(name, given));
}

}  // namespace kvscope
