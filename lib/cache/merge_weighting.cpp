// The registry of merge weightings and the receiver rules; the weightings themselves live
// in weightings/.
#include <algorithm>
#include <cmath>

#include "cache/merge_weighting.h"

#include <ATen/ATen.h>

#include "cache/device_cells.h"
#include "core/error.h"

namespace kvscope {

at::Tensor MergeWeighting::weight_on_device(const MergeCandidateTensors&) const { return {}; }

std::map<std::string, MergeWeightingInfo>& merge_weighting_registry() {
  static std::map<std::string, MergeWeightingInfo> registry;
  return registry;
}

MergeWeightingRegistration::MergeWeightingRegistration(const std::string& name, const std::string& description,
                                                       MergeWeightingFactory make) {
  merge_weighting_registry()[name] = MergeWeightingInfo{description, std::move(make)};
}

std::string known_merge_weightings() {
  std::string s;
  for (const auto& [name, info] : merge_weighting_registry()) s += (s.empty() ? "" : ", ") + name;
  return s;
}

std::unique_ptr<MergeWeighting> make_merge_weighting(const std::string& name) {
  const auto it = merge_weighting_registry().find(name);
  if (it == merge_weighting_registry().end()) fail("--weighting: unknown merge weighting '", name, "' (known: ", known_merge_weightings(), ")");
  return it->second.make();
}

MergeReceiver parse_merge_receiver(const std::string& name) {
  if (name == "right") return MergeReceiver::Right;
  if (name == "left") return MergeReceiver::Left;
  if (name == "similar") return MergeReceiver::MostSimilarKey;
  fail("--receiver: unknown merge receiver '", name, "' (known: right, left, similar)");
}

const char* merge_receiver_name(MergeReceiver r) {
  switch (r) {
    case MergeReceiver::Right: return "right";
    case MergeReceiver::Left: return "left";
    case MergeReceiver::MostSimilarKey: return "similar";
  }
  return "?";
}

double cosine_similarity(const std::vector<float>& a, const std::vector<float>& b) {
  double dot = 0, na = 0, nb = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    dot += static_cast<double>(a[i]) * b[i];
    na += static_cast<double>(a[i]) * a[i];
    nb += static_cast<double>(b[i]) * b[i];
  }
  return na > 0 && nb > 0 ? dot / std::sqrt(na * nb) : 0.0;
}

}  // namespace kvscope
