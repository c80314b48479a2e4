#pragma once
// How WeightedKV folds a dropped token's value into a receiver: the receiver rule picks the
// slot, the weighting picks w in V[r] <- w * V[j] + (1 - w) * V[r]. Both are registered by
// name; a new weighting is one small class plus one KVSCOPE_REGISTER_MERGE_WEIGHTING line
// (see README, "Adding a merge weighting").
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace at {
class Tensor;
}

namespace kvscope {

struct MergeCandidateTensors;  // the same quantities for every KV head at once (cache/device_cells.h)

// What a weighting may look at for one merge of slot j into slot r (one layer, one KV head).
struct MergeCandidate {
  double acc_j, acc_r;          // accumulated attention (sum over steps)
  double count_j, count_r;      // steps each has been attended to
  double mult_j, mult_r;        // original tokens each slot already summarises
  double current_j, current_r;  // this step's attention (aggregated over the KV head's query heads)
  double key_norm_j, key_norm_r;  // L2 norms of the two keys
  // Keys as stored (post-RoPE in `original` position mode, pre-RoPE in `in-cache` mode);
  // filled only for weightings whose needs_keys() is true.
  const std::vector<float>* key_j = nullptr;
  const std::vector<float>* key_r = nullptr;
};

class MergeWeighting {
 public:
  virtual ~MergeWeighting() = default;
  // Weight on the dropped value, in [0, 1].
  virtual double weight(const MergeCandidate& c) const = 0;
  // The same weight for every KV head at once, as float64 tensor operations on the cache's
  // device ([kv_heads]); the same arithmetic as weight() so both paths merge identically.
  // An undefined tensor (the default) sends the cache's decisions through the host.
  virtual at::Tensor weight_on_device(const MergeCandidateTensors& c) const;
  virtual bool needs_keys() const { return false; }
};

using MergeWeightingFactory = std::function<std::unique_ptr<MergeWeighting>()>;

struct MergeWeightingInfo {
  std::string description;
  MergeWeightingFactory make;
};

std::map<std::string, MergeWeightingInfo>& merge_weighting_registry();
std::unique_ptr<MergeWeighting> make_merge_weighting(const std::string& name);  // errors list known names
std::string known_merge_weightings();

struct MergeWeightingRegistration {
  MergeWeightingRegistration(const std::string& name, const std::string& description, MergeWeightingFactory make);
};

#define KVSCOPE_REGISTER_MERGE_WEIGHTING(Class, name, description)                                 \
  static const ::kvscope::MergeWeightingRegistration kvscope_merge_weighting_registration_##Class( \
      name, description, [] { return std::unique_ptr<::kvscope::MergeWeighting>(new Class()); })

// Which slot receives the dropped value.
enum class MergeReceiver { Right, Left, MostSimilarKey };
MergeReceiver parse_merge_receiver(const std::string& name);
const char* merge_receiver_name(MergeReceiver r);

double cosine_similarity(const std::vector<float>& a, const std::vector<float>& b);

}  // namespace kvscope
