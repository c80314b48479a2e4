#include "eval/sweep_plan.h"

#include <algorithm>
#include <cstdio>
#include <set>
#include <sstream>

#include "cache/policy_registry.h"
#include "core/error.h"
#include "core/option_values.h"
#include "core/selection.h"

namespace kvscope {
namespace {

uint64_t fnv1a(const void* data, size_t n, uint64_t h = 0xcbf29ce484222325ull) {
  const auto* p = static_cast<const unsigned char*>(data);
  for (size_t i = 0; i < n; ++i) h = (h ^ p[i]) * 0x100000001b3ull;
  return h;
}

std::string hex64(uint64_t v) {
  char buf[17];
  std::snprintf(buf, sizeof(buf), "%016llx", static_cast<unsigned long long>(v));
  return buf;
}

// The settings that change numbers, as "name=value;" text, for run keys.
struct KeyWriter {
  std::ostringstream out;
  template <typename T>
  void operator()(const T& value, const SettingInfo& info) {
    if (info.affects_numbers) out << info.name << '=' << value << ';';
  }
};

// Which PolicyOption bits at least one policy of the sweep reads.
unsigned options_read(const std::vector<std::string>& policies) {
  unsigned bits = 0;
  for (const auto& p : policies) bits |= policy_info(p).traits.options;
  return bits;
}

}  // namespace

std::string hash_ids(const std::vector<int64_t>& ids) { return hex64(fnv1a(ids.data(), ids.size() * sizeof(int64_t))); }

std::vector<std::string> split_setting_list(const std::string& text, const std::string& option) {
  return split_option_list(text, "--" + option);
}

SweepPlan plan_sweep(const SweepSettings& given_settings, const std::vector<SweepDocument>& documents, int num_layers,
                     int64_t context, const std::vector<std::string>& given) {
  SweepSettings s = given_settings;
  if (documents.empty()) fail("no documents to score");
  const std::vector<std::string> policies = s.policy.empty() ? known_policies() : split_setting_list(s.policy, "policy");
  for (const auto& p : policies) policy_info(p);  // unknown names fail here, listing the known ones
  const std::vector<std::string> budgets = split_setting_list(s.budget, "budget");
  const std::vector<std::string> weightings = split_setting_list(s.weighting, "weighting");
  std::vector<BudgetSpec> budget_specs;
  for (const auto& b : budgets) budget_specs.push_back(parse_budget(b));
  for (size_t i = 0; i < budget_specs.size(); ++i)
    for (size_t j = 0; j < i; ++j)
      if (budget_specs[i].label() == budget_specs[j].label()) fail("--budget: ", budgets[i], " and ", budgets[j], " are the same budget");

  // Every option given must change some run: one that no policy of the sweep reads is refused.
  const unsigned read = options_read(policies);
  s.for_each([&](const auto&, const SettingInfo& info) {
    if (!info.read_by || (read & info.read_by)) return;
    if (std::find(given.begin(), given.end(), info.name) == given.end()) return;
    fail("--", info.name, " is read by none of the policies in this sweep (", s.policy.empty() ? known_policies_text() : s.policy, ")");
  });
  const Protocol proto = parse_protocol(s.protocol);
  if (proto == Protocol::Stream) {
    for (const char* option : {"window", "stride"})
      if (std::find(given.begin(), given.end(), option) != given.end())
        fail("--", option, " applies only to --protocol sliding or chunks (this sweep uses stream)");
  } else if (s.window <= 0) {
    fail("--protocol ", s.protocol, " needs --window");
  }
  if (proto == Protocol::Chunks && std::find(given.begin(), given.end(), "stride") != given.end())
    fail("--stride applies only to --protocol sliding (chunks do not overlap)");

  SweepPlan plan;
  plan.stride = s.stride > 0 ? s.stride : std::max<int64_t>(1, s.window / 2);
  for (const SweepDocument& d : documents) plan.windows.push_back(make_windows(proto, static_cast<int64_t>(d.ids.size()), s.window, plan.stride));
  std::set<std::string> seen_docs;
  for (const SweepDocument& d : documents) {
    if (!seen_docs.insert(hash_ids(d.ids)).second) fail(d.source, ": the same tokens as an earlier document (each document is scored once)");
  }

  RunConfig base;
  base.positions = s.positions == "original" ? PositionMode::Original : PositionMode::InCache;
  base.aggregation = s.aggregation == "mean" ? AttentionAggregation::Mean
                     : s.aggregation == "sum" ? AttentionAggregation::Sum : AttentionAggregation::Max;
  base.options.sinks = s.sinks;
  base.options.recent = s.recent;
  base.options.seed = s.seed;
  base.options.cam_merge_count = s.cam_merge;
  base.options.receiver = parse_merge_receiver(s.receiver);
  base.options.neighbour_in_middle = s.neighbour_in_middle;
  if (!s.skip_layers.empty()) base.options.skip_layers = parse_selection(s.skip_layers, num_layers, "layer", "--skip-layers");
  base.prefill = !s.no_prefill;
  base.prefill_chunk = s.prefill_chunk;
  base.log_perturbation = s.log_perturbation;

  // The run-independent part of every key: the settings that change numbers, as resolved.
  KeyWriter shared;
  SweepSettings keyed = s;
  keyed.stride = proto == Protocol::Sliding ? plan.stride : 0;
  keyed.for_each(shared);

  for (const auto& p : policies) {
    const PolicyTraits& traits = policy_info(p).traits;
    const std::vector<std::string> budget_list = traits.keeps_everything ? std::vector<std::string>{"full"} : budgets;
    const std::vector<std::string> weighting_list = traits.options & kReadsWeighting ? weightings : std::vector<std::string>{""};
    for (const auto& b : budget_list) {
      for (const auto& w : weighting_list) {
        RunConfig rc = base;
        rc.policy = p;
        if (!traits.keeps_everything) rc.budget = parse_budget(b);
        if (!w.empty()) rc.options.weighting = w;
        std::string resolved;
        for (size_t d = 0; d < documents.size(); ++d) {
          for (const Window& win : plan.windows[d]) {
            const int64_t len = win.end - win.begin;
            const int64_t budget = traits.keeps_everything ? len : rc.budget.resolve(len);
            if (proto != Protocol::Stream && budget > s.window) fail("--budget ", b, " is larger than --window ", s.window);
            if (rc.positions == PositionMode::InCache && !traits.keeps_everything && std::min(budget + 1, len) > context) {
              fail("--budget ", b, " (", budget, " tokens) exceeds the model's context of ", context);
            }
            PolicyOptions po = rc.options;
            po.budget = budget;
            const PolicyOptions r = resolve_policy_options(p, po);
            if (resolved.empty()) {
              std::ostringstream o;
              o << "sinks=" << r.sinks << ";recent=" << r.recent << ";seed=" << r.seed << ";cam=" << r.cam_merge_count
                << ";weighting=" << r.weighting << ";receiver=" << merge_receiver_name(r.receiver)
                << ";in_middle=" << r.neighbour_in_middle << ";skip=";
              for (int l : r.skip_layers) o << l << ',';
              resolved = o.str();
            }
          }
        }
        for (size_t d = 0; d < documents.size(); ++d) {
          PlannedRun run;
          run.config = rc;
          run.document = d;
          run.budget_label = traits.keeps_everything ? "full" : rc.budget.label();
          run.weighting = w;
          run.receiver = traits.options & kReadsReceiver ? s.receiver : "";
          const std::string key_text = concat("policy=", p, ";budget=", run.budget_label, ";", resolved, ";", shared.out.str(),
                                              "doc=", hash_ids(documents[d].ids), ":", documents[d].ids.size());
          run.key = hex64(fnv1a(key_text.data(), key_text.size()));
          plan.runs.push_back(std::move(run));
        }
      }
    }
  }
  for (const PlannedRun& r : plan.runs)
    for (const Window& w : plan.windows[r.document]) plan.tokens_to_score += w.end - w.score_from;
  return plan;
}

}  // namespace kvscope
