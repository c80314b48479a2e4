// The budgeted cache's device path (bookkeeping and decisions as tensor operations, the path
// a GPU cache takes) against the host path, run on CPU tensors: the same decisions, the same
// cache contents and bit-identical logits for every policy, weighting and receiver, in both
// position modes, with mixed budgets in one batch, through a prompt cut and through
// head-by-head decisions. And proof that the device path never reads tensor data on the
// host: it runs on tensors of the meta device, which have no data at all.
#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "cache/policy_cache.h"
#include "cache/policy_registry.h"
#include "model/llama.h"
#include "model/random_model.h"
#include "model/rope.h"
#include "support/bitwise.h"
#include "support/test_paths.h"
#include "support/tiny_models.h"

namespace kvscope {
namespace {

using testing::bitwise_equal;
using testing::TempDir;

// The built-in policies list first (policy_registry.h: listing below the default 100); the
// ones other tests register list at 100 or later and have no device form.
constexpr int kUnlistedPolicy = 100;

struct Variant {
  std::string policy, weighting = "avg-attention";
  MergeReceiver receiver = MergeReceiver::Right;
  bool neighbour_in_middle = false;
  std::string label() const {
    return policy + (policy == "weightedkv" ? "/" + weighting + "/" + merge_receiver_name(receiver) + (neighbour_in_middle ? "/nim" : "") : "");
  }
};

// Every registered policy; weightedkv once per weighting and once per receiver.
std::vector<Variant> every_variant() {
  std::vector<Variant> out;
  for (const std::string& p : known_policies()) out.push_back({p});
  for (const auto& [name, info] : merge_weighting_registry()) out.push_back({"weightedkv", name});
  out.push_back({"weightedkv", "avg-attention", MergeReceiver::Left});
  out.push_back({"weightedkv", "key-similarity", MergeReceiver::MostSimilarKey});
  out.push_back({"weightedkv", "avg-attention", MergeReceiver::Right, true});
  return out;
}

PolicyOptions options_for(const Variant& v, int64_t budget) {
  PolicyOptions po;
  po.budget = budget;
  po.sinks = 2;
  po.seed = 7;
  po.cam_merge_count = 3;
  po.weighting = v.weighting;
  po.receiver = v.receiver;
  po.neighbour_in_middle = v.neighbour_in_middle;
  return resolve_policy_options(v.policy, po);
}

class DeviceBookkeeping : public ::testing::Test {
 protected:
  void SetUp() override {
    spec_.num_heads = 6;  // groups of 3: the aggregation over a KV head's queries is a real sum
    write_random_model((dir_ / "m").string(), spec_);
  }
  std::vector<int64_t> ids(int n, int salt) const {
    std::vector<int64_t> v;
    // Repeats (i % 11) give tied scores, which both paths must break the same way.
    for (int i = 0; i < n; ++i) v.push_back(((i % 11) * 31 + salt * 7 + (i / 11) * 5) % spec_.vocab_size);
    return v;
  }
  TempDir dir_{"device_bookkeeping"};
  RandomModelSpec spec_ = testing::batched_model_spec();
};

void expect_same_contents(const PolicyCache& host, const PolicyCache& device, int layers, int kv_heads, const std::string& where) {
  device.check_invariants();
  for (int l = 0; l < layers; ++l)
    for (int h = 0; h < kv_heads; ++h) {
      ASSERT_EQ(host.kept_positions(l, h), device.kept_positions(l, h)) << where << " layer " << l << " head " << h;
      const HeadCells &a = host.cells(l, h), &b = device.cells(l, h);
      ASSERT_EQ(a.order(), b.order()) << where << ": slots differ, layer " << l << " head " << h;
      for (int i = 0; i < a.size(); ++i) {
        const SlotId s = a.slot(i);
        ASSERT_EQ(a.attention_sum(s), b.attention_sum(s)) << where;
        ASSERT_EQ(a.steps(s), b.steps(s)) << where;
        ASSERT_EQ(a.multiplicity(s), b.multiplicity(s)) << where;
        ASSERT_EQ(a.last_attention(s), b.last_attention(s)) << where;
        ASSERT_EQ(a.key_norm(s), b.key_norm(s)) << where;
        ASSERT_EQ(host.value(l, h, i), device.value(l, h, i)) << where << ": value of token " << i;
      }
    }
}

// Three runs with budgets 8, 11 and 14 decode together in one batch; each run exists twice,
// host path and device path, and the two batches must agree bit for bit at every step.
TEST_F(DeviceBookkeeping, SameDecisionsCacheAndLogitsAsTheHostPath) {
  const LlamaModel model = LlamaModel::load(dir_ / "m");
  const ModelConfig& c = model.config();
  const std::vector<int64_t> budgets = {8, 11, 14};
  for (const PositionMode mode : {PositionMode::Original, PositionMode::InCache}) {
    for (const Variant& v : every_variant()) {
      const std::string where = v.label() + (mode == PositionMode::Original ? " original" : " in-cache");
      const PolicyTraits& traits = policy_info(v.policy).traits;
      auto make = [&](CacheBookkeeping b) {
        std::vector<std::unique_ptr<PolicyCache>> caches;
        for (const int64_t budget : budgets) {
          PolicyCacheConfig cfg{c.num_layers, c.num_heads, c.num_kv_heads, c.head_dim, at::kFloat, at::kCPU, mode,
                                AttentionAggregation::Mean, b};
          caches.push_back(std::make_unique<PolicyCache>(cfg, std::shared_ptr<CachePolicy>(make_policy(v.policy, options_for(v, budget))),
                                                         model.rope(), budget));
        }
        return caches;
      };
      auto host = make(CacheBookkeeping::Host), device = make(CacheBookkeeping::Device);
      ASSERT_FALSE(host[0]->bookkeeping_on_device());
      ASSERT_TRUE(device[0]->bookkeeping_on_device());
      std::vector<std::vector<int64_t>> docs;
      std::vector<int64_t> pos;
      for (size_t r = 0; r < budgets.size(); ++r) {
        docs.push_back(ids(48, static_cast<int>(r)));
        // Run 0 prefills within its budget; runs 1 and 2 hold a longer prompt and cut it.
        const int64_t prompt = r == 0 ? budgets[r] : budgets[r] + 9;
        const at::Tensor prefix = at::tensor(std::vector<int64_t>(docs[r].begin(), docs[r].begin() + prompt), at::kLong);
        for (auto* caches : {&host, &device}) {
          PolicyCache& cache = *(*caches)[r];
          if (r > 0) cache.set_compression(Compression::Hold);
          const at::Tensor logits = model.forward(prefix, 0, cache);
          if (r > 0) cache.cut_to_budget(std::shared_ptr<CachePolicy>(make_policy(v.policy, options_for(v, budgets[r]))), budgets[r]);
        }
        expect_same_contents(*host[r], *device[r], static_cast<int>(c.num_layers), static_cast<int>(c.num_kv_heads), where + " after the prompt");
        pos.push_back(prompt);
      }
      if (!traits.per_layer && !traits.keeps_everything) {
        // A decision for one head only (as kvscope perturb makes) leaves the layer ragged.
        std::vector<Decision> one(static_cast<size_t>(c.num_kv_heads));
        one[1] = traits.merges_values ? Decision::convex_merge(3, 4, 0.25) : Decision::drop(3);
        host[2]->apply_decisions(0, one);
        device[2]->apply_decisions(0, one);
      }
      for (int step = 0; step < 24; ++step) {
        std::vector<LlamaModel::DecodeSlot> a, b;
        for (size_t r = 0; r < budgets.size(); ++r) {
          a.push_back({docs[r][pos[r]], pos[r], host[r].get(), nullptr});
          b.push_back({docs[r][pos[r]], pos[r], device[r].get(), nullptr});
          ++pos[r];
        }
        const at::Tensor la = model.forward_step(a), lb = model.forward_step(b);
        ASSERT_TRUE(bitwise_equal(la, lb)) << where << ": logits differ at step " << step;
      }
      for (size_t r = 0; r < budgets.size(); ++r)
        expect_same_contents(*host[r], *device[r], static_cast<int>(c.num_layers), static_cast<int>(c.num_kv_heads),
                             where + " run " + std::to_string(r));
    }
  }
}

// The cache alone at a large model's head shapes, where ATen's reductions split their sums
// (8 KV heads, groups of 7 query heads, head_dim 64, CaM merging into 16 values), fed random
// keys with exact repeats: both paths give the same attention inputs bit for bit at every
// call and the same slots, bookkeeping and values.
TEST(DeviceBookkeepingShapes, SameStateAsTheHostPathAtLargeHeadShapes) {
  const int64_t L = 1, KV = 8, H = 56, hd = 64, budget = 40;
  ModelConfig mc;
  mc.head_dim = hd;
  mc.max_position_embeddings = 512;
  const Rope rope(mc, at::kCPU);
  for (const PositionMode mode : {PositionMode::Original, PositionMode::InCache}) {
    for (const Variant& v : every_variant()) {
      const std::string where = v.label() + (mode == PositionMode::Original ? " original" : " in-cache");
      auto options = [&] {
        PolicyOptions po = options_for(v, budget);
        po.cam_merge_count = 16;
        return resolve_policy_options(v.policy, po);
      };
      auto make = [&](CacheBookkeeping b) {
        return PolicyCache(PolicyCacheConfig{L, H, KV, hd, at::kFloat, at::kCPU, mode, AttentionAggregation::Mean, b},
                           std::shared_ptr<CachePolicy>(make_policy(v.policy, options())), rope, budget);
      };
      for (const bool cut : {false, true}) {
        PolicyCache host = make(CacheBookkeeping::Host), device = make(CacheBookkeeping::Device);
        at::manual_seed(5);
        std::vector<at::Tensor> history;
        int64_t position = 0;
        auto feed = [&](int64_t T) {
          at::Tensor k = at::randn({KV, T, hd});
          for (int64_t t = 0; t < T; ++t)  // every fifth token repeats the key of three tokens before
            if ((position + t) % 5 == 4 && position + t >= 3) {
              const int64_t from = position + t - 3;
              k.select(1, t).copy_(from >= position ? k.select(1, from - position) : history[static_cast<size_t>(from)]);
            }
          for (int64_t t = 0; t < T; ++t) history.push_back(k.select(1, t).clone());
          const at::Tensor v = at::randn({KV, T, hd}), pos = at::arange(position, position + T, at::kLong);
          const AttentionInputs a = host.append(0, NewEntries{k, k, v, pos, position + T - 1});
          const AttentionInputs b = device.append(0, NewEntries{k, k, v, pos, position + T - 1});
          ASSERT_TRUE(bitwise_equal(a.keys, b.keys)) << where << ": keys at " << position;
          ASSERT_TRUE(bitwise_equal(a.values, b.values)) << where;
          ASSERT_TRUE(bitwise_equal(a.key_positions, b.key_positions)) << where;
          ASSERT_TRUE(bitwise_equal(a.query_positions, b.query_positions)) << where;
          const at::Tensor probs = at::softmax(at::randn({H, T, a.keys.size(1)}) * 4, -1);
          host.observe_attention(0, probs);
          device.observe_attention(0, probs);
          position += T;
        };
        if (cut) {
          host.set_compression(Compression::Hold);
          device.set_compression(Compression::Hold);
          feed(budget + 25);
          host.cut_to_budget(std::shared_ptr<CachePolicy>(make_policy(v.policy, options())), budget);
          device.cut_to_budget(std::shared_ptr<CachePolicy>(make_policy(v.policy, options())), budget);
        } else {
          feed(budget);
        }
        for (int step = 0; step < 30; ++step) feed(1);
        expect_same_contents(host, device, static_cast<int>(L), static_cast<int>(KV), where + (cut ? " after a cut" : ""));
        if (::testing::Test::HasFatalFailure()) return;
      }
    }
  }
}

// The device path's sums follow the host loops' order (0 + x0 + x1 + ...) whatever the
// length and the layout, where ATen's sum may split them into partial sums.
TEST(DeviceBookkeepingSums, SumInOrderAddsLikeTheHostLoop) {
  at::manual_seed(9);
  for (const int64_t n : {1, 3, 5, 7, 16, 17, 64, 200}) {
    // Magnitudes over many decades, so that the order of additions shows in the last bits.
    const at::Tensor x = (at::randn({3, n, 37}, at::kDouble) * 12).exp() * at::randn({3, n, 37}, at::kDouble).sign();
    for (const int64_t dim : {1, 2}) {
      const at::Tensor got = sum_in_order(x, dim).contiguous();
      const at::Tensor xs = x.movedim(dim, -1).contiguous();  // the summed dimension last
      const int64_t len = xs.size(-1), rows = xs.numel() / len;
      const double* p = xs.data_ptr<double>();
      const at::Tensor want_t = at::empty({rows}, at::kDouble);
      for (int64_t r = 0; r < rows; ++r) {
        double sum = 0.0;
        for (int64_t i = 0; i < len; ++i) sum += p[r * len + i];
        want_t.data_ptr<double>()[r] = sum;
      }
      ASSERT_TRUE(bitwise_equal(got.reshape({rows}), want_t)) << "n " << n << ", dim " << dim;
    }
  }
}

// A decision that reads tensor data on the host (.item(), .to(kCPU), data_ptr) throws on
// the meta device, whose tensors have shapes and no data: every policy, weighting and
// receiver runs its prompt cut and decode steps there without one.
TEST(DeviceBookkeepingMeta, ReadsNoTensorDataOnTheHost) {
  ModelConfig mc;
  mc.head_dim = 8;
  mc.max_position_embeddings = 512;
  const Rope rope(mc, at::kMeta);
  const int64_t L = 2, H = 6, KV = 2, hd = 8, budget = 10;
  const auto meta = at::TensorOptions().device(at::kMeta);
  auto feed = [&](PolicyCache& cache, int64_t first, int64_t T) {
    const at::Tensor k = at::empty({KV, T, hd}, meta), v = at::empty({KV, T, hd}, meta);
    const at::Tensor positions = at::arange(first, first + T, meta.dtype(at::kLong));
    for (int layer = 0; layer < L; ++layer) {
      const AttentionInputs in = cache.append(layer, NewEntries{k, k, v, positions});
      ASSERT_TRUE(in.keys.is_meta());
      cache.observe_attention(layer, at::empty({H, T, in.keys.size(1)}, meta));
    }
  };
  for (const PositionMode mode : {PositionMode::Original, PositionMode::InCache}) {
    for (const Variant& v : every_variant()) {
      // Policies other tests register have no device form: they take the host fallback.
      if (policy_info(v.policy).traits.listing >= kUnlistedPolicy) continue;
      SCOPED_TRACE(v.label());
      const PolicyCacheConfig cfg{L, H, KV, hd, at::kFloat, at::kMeta, mode, AttentionAggregation::Mean, CacheBookkeeping::Device};
      auto policy = [&] { return std::shared_ptr<CachePolicy>(make_policy(v.policy, options_for(v, budget))); };
      PolicyCache decode(cfg, policy(), rope, budget);
      PolicyCache cut(cfg, policy(), rope, budget);
      EXPECT_NO_THROW({
        feed(decode, 0, budget);
        for (int64_t step = 0; step < 6; ++step) feed(decode, budget + step, 1);
        cut.set_compression(Compression::Hold);
        feed(cut, 0, budget + 7);
        cut.cut_to_budget(policy(), budget);
        feed(cut, budget + 7, 1);
      });
      EXPECT_EQ(decode.size(0), policy_info(v.policy).traits.keeps_everything ? budget + 6 : budget);
      EXPECT_EQ(cut.size(1), policy_info(v.policy).traits.keeps_everything ? budget + 8 : budget);
    }
  }
  // The mechanism catches host reads: the host path's (attention rows), and the fallback a
  // policy without a device form takes.
  const PolicyCacheConfig host_cfg{L, H, KV, hd, at::kFloat, at::kMeta, PositionMode::Original, AttentionAggregation::Mean,
                                   CacheBookkeeping::Host};
  PolicyOptions po;
  po.budget = budget;
  PolicyCache host(host_cfg, std::shared_ptr<CachePolicy>(make_policy("h2o", po)), rope, budget);
  EXPECT_ANY_THROW(feed(host, 0, 1));
  for (const std::string& name : known_policies()) {
    if (policy_info(name).traits.listing < kUnlistedPolicy) continue;
    const PolicyCacheConfig cfg{L, H, KV, hd, at::kFloat, at::kMeta, PositionMode::Original, AttentionAggregation::Mean,
                                CacheBookkeeping::Device};
    PolicyCache fallback(cfg, std::shared_ptr<CachePolicy>(make_policy(name, options_for({name}, budget))), rope, budget);
    EXPECT_ANY_THROW({
      feed(fallback, 0, budget);
      feed(fallback, budget, 1);
    }) << name;
  }
}

}  // namespace
}  // namespace kvscope
