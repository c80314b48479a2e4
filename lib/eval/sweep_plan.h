#pragma once
// A perplexity sweep planned in the library: the settings (each declared once, in
// SweepSettings::for_each, which gives the CLI option, its validation, the results
// attribute, the resume check and the printed configuration), and their expansion into
// runs (policy x budget x weighting x document), each with a key that covers everything its
// numbers depend on. LibTorch-free: tools and tests include it cheaply.
#include <cstdint>
#include <string>
#include <vector>

#include "cache/policy_registry.h"
#include "cache/position_mode.h"
#include "eval/ppl.h"

namespace kvscope {

// What a visitor learns about one setting.
struct SettingInfo {
  const char* name;   // CLI option --name and results attribute name
  const char* help;
  bool affects_numbers = true;  // results attribute checked on --resume and part of run keys
  int64_t min = INT64_MIN;      // integers: smallest value allowed
  std::vector<std::string> choices{};  // strings: allowed values (empty: any)
  bool list = false;            // comma-separated, no empty or duplicate items
  unsigned read_by = 0;         // PolicyOption bits: refused when no run of the sweep reads it
  int64_t max = INT64_MAX;      // integers: largest value allowed
};

struct SweepSettings {
  std::string policy;  // empty: every registered policy
  std::string budget = "256";
  std::string weighting = "avg-attention";
  std::string receiver = "right";
  bool neighbour_in_middle = false;
  int64_t sinks = 4;
  int64_t recent = -1;
  uint64_t seed = 0;
  std::string skip_layers;
  int64_t cam_merge = 16;
  std::string positions = "in-cache";
  std::string aggregation = "mean";
  std::string protocol = "stream";
  int64_t window = 0;
  int64_t stride = 0;
  bool no_prefill = false;
  int64_t prefill_chunk = 256;
  bool log_perturbation = false;
  int64_t bootstrap = 1000;
  uint64_t bootstrap_seed = 0;
  int64_t bootstrap_block = 1;

  template <typename Visitor>
  void for_each(Visitor&& v);
};

// One document of a sweep, with what identifies its content.
struct SweepDocument {
  std::vector<int64_t> ids;
  std::string source;
};

struct PlannedRun {
  RunConfig config;
  size_t document = 0;
  std::string budget_label;  // "full" for a run that keeps everything
  std::string weighting;     // empty unless the policy merges with a weighting
  std::string receiver;      // empty unless the policy reads it
  std::string key;           // everything the run's numbers depend on, hashed
};

struct SweepPlan {
  std::vector<PlannedRun> runs;
  std::vector<std::vector<Window>> windows;  // per document
  int64_t stride = 0;                        // the stride used (window/2 when not given)
  int64_t tokens_to_score = 0;               // over all runs
};

// Validates the settings (every option either changes some run or is refused by name:
// `given` lists the options the user set), expands them and checks every run's policy
// options against every window before any decoding starts.
SweepPlan plan_sweep(const SweepSettings& settings, const std::vector<SweepDocument>& documents, int num_layers,
                     int64_t context, const std::vector<std::string>& given = {});

// "a,b,c" -> {"a", "b", "c"}; an empty or duplicate item is refused, naming the option.
std::vector<std::string> split_setting_list(const std::string& text, const std::string& option);

// FNV-1a 64 of the ids, as 16 hex digits: identifies a document's tokens in run keys.
std::string hash_ids(const std::vector<int64_t>& ids);

template <typename Visitor>
void SweepSettings::for_each(Visitor&& v) {
  v(policy, SettingInfo{"policy", "comma-separated cache policies (default: every registered one)", false, INT64_MIN, {}, true});
  v(budget, SettingInfo{"budget", "comma-separated cache budgets: token counts (256) or ratios of the evaluated length (0.25)", false,
                        INT64_MIN, {}, true});
  v(weighting, SettingInfo{"weighting", "comma-separated merge weightings, for the policies that merge with one", false, INT64_MIN,
                           {}, true, kReadsWeighting});
  v(receiver, SettingInfo{"receiver", "which token receives a merged value: right (paper), left, similar", true, INT64_MIN,
                          {"right", "left", "similar"}, false, kReadsReceiver});
  v(neighbour_in_middle, SettingInfo{"neighbour-in-middle", "the receiver must be a middle token (default: the first recent token may receive)",
                                     true, INT64_MIN, {}, false, kReadsNeighbourInMiddle});
  v(sinks, SettingInfo{"sinks", "attention-sink tokens kept, inside the budget", true, 0});
  v(recent, SettingInfo{"recent", "recent tokens kept, inside the budget (-1: the policy's default split)", true, -1, {}, false,
                        kReadsRecent});
  v(seed, SettingInfo{"seed", "seed of the policies that draw random numbers", true, 0});
  v(skip_layers, SettingInfo{"skip-layers", "layers left uncompressed, e.g. 0,1", true, INT64_MIN, {}, false, kReadsSkipLayers});
  v(cam_merge, SettingInfo{"cam-merge", "values that receive each evicted value (cam)", true, 1, {}, false, kReadsCamMerge});
  v(positions, SettingInfo{"positions", "original (keys at true positions) or in-cache (re-rotated by cache index, as StreamingLLM)", true,
                           INT64_MIN, {"original", "in-cache"}});
  v(aggregation, SettingInfo{"aggregation", "query heads -> KV head attention for GQA: mean, sum, max", true, INT64_MIN,
                             {"mean", "sum", "max"}});
  v(protocol, SettingInfo{"protocol", "stream (whole document), sliding (--window/--stride), chunks (--window, cache reset)", true,
                          INT64_MIN, {"stream", "sliding", "chunks"}});
  v(window, SettingInfo{"window", "window length for sliding/chunks", true, 0});
  v(stride, SettingInfo{"stride", "sliding stride (0: window/2)", true, 0});
  v(no_prefill, SettingInfo{"no-prefill", "decode every token (default: prefill up to the budget, which is exact)", true});
  v(prefill_chunk, SettingInfo{"prefill-chunk", "tokens per prefill call", true, 1});
  v(log_perturbation, SettingInfo{"log-perturbation",
                                  "record, for every eviction or merge, the exact change of each affected head's attention output at that step",
                                  true});
  v(bootstrap, SettingInfo{"bootstrap", "bootstrap resamples for the paired intervals of each run's PPL difference from the full cache (0: none)",
                           false, 0, {}, false, 0, 100000});
  v(bootstrap_seed, SettingInfo{"bootstrap-seed", "seed of the bootstrap resamples", false, 0});
  v(bootstrap_block, SettingInfo{"bootstrap-block",
                                 "tokens per resampled block (1: tokens resampled independently; longer blocks respect their dependence)",
                                 false, 1});
}

}  // namespace kvscope
