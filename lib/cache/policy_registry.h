#pragma once
// Policies by name. A policy is one class in its own file under cache/policies/ plus one
// KVSCOPE_REGISTER_POLICY line giving its name, a description and its traits; the CLI, the
// sweep planner and the eval code ask this registry what a policy reads and does, and
// never compare policy names themselves (README, "Adding a cache policy").
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "cache/policy.h"

namespace kvscope {

// The PolicyOptions a policy reads. make_policy resets every option a policy does not read
// to its default, so an option can only change the numbers of the policies that read it.
enum PolicyOption : unsigned {
  kReadsSinks = 1u << 0,
  kReadsRecent = 1u << 1,           // --recent (else the recent window is fixed by the rule)
  kReadsSeed = 1u << 2,
  kReadsSkipLayers = 1u << 3,
  kReadsCamMerge = 1u << 4,
  kReadsWeighting = 1u << 5,        // sweeps over --weighting
  kReadsReceiver = 1u << 6,
  kReadsNeighbourInMiddle = 1u << 7,
};

enum class RecentDefault {
  HalfBudget,     // budget/2 - sinks (the selecting policies, WeightedKV's 4 + 508 + 512)
  AllButSinks,    // budget - sinks (StreamingLLM's layout)
};

struct PolicyTraits {
  bool keeps_everything = false;  // no budget, no eviction: the reference run
  bool reads_attention = false;   // its decisions read the attention of each step
  bool reads_keys = false;        // its decisions may read stored keys
  bool merges_values = false;     // a leaving token's value survives in others
  bool per_layer = false;         // one token set for all KV heads of a layer
  RecentDefault recent_default = RecentDefault::HalfBudget;
  int64_t min_recent = 0;         // recent tokens always protected, whatever --recent says
  unsigned options = 0;           // PolicyOption bits
  int listing = 100;              // place in listings and the default sweep (built-ins first)
};

struct PolicyInfo {
  std::string name, description;
  PolicyTraits traits;
  std::function<std::unique_ptr<CachePolicy>(const PolicyOptions&)> make;
};

const PolicyInfo& policy_info(const std::string& name);  // errors list the known names
// Registered names, in listing order.
std::vector<std::string> known_policies();
std::string known_policies_text();  // "full, streaming, ..."

// Validates the options against the policy's traits (budget, sinks, recent split), fills in
// the default recent window, resets options it does not read, and builds it.
std::unique_ptr<CachePolicy> make_policy(const std::string& name, const PolicyOptions& options);
// The options a policy of that name would run with (what make_policy validates and builds).
PolicyOptions resolve_policy_options(const std::string& name, const PolicyOptions& options);

struct PolicyRegistration {
  PolicyRegistration(const std::string& name, const std::string& description, const PolicyTraits& traits,
                     std::function<std::unique_ptr<CachePolicy>(const PolicyOptions&)> make);
};

#define KVSCOPE_REGISTER_POLICY(Class, name, description, traits)                                 \
  static const ::kvscope::PolicyRegistration kvscope_policy_registration_##Class(                   \
      name, description, traits, [](const ::kvscope::PolicyOptions& o) {                          \
        return std::unique_ptr<::kvscope::CachePolicy>(new Class(o));                             \
      })

}  // namespace kvscope
