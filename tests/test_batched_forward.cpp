// Batched decoding: the row kernel against a float64 reference, its results independent of
// the other rows and of the thread count, and a forward step over many runs equal, bit for
// bit, to each run stepped alone.
#include <gtest/gtest.h>

#include <cstring>
#include <mutex>
#include <stdexcept>

#include "cache/policy_cache.h"
#include "core/worker_pool.h"
#include "model/kv_cache.h"
#include "model/llama.h"
#include "model/random_model.h"
#include "model/row_linear.h"
#include "support/bitwise.h"
#include "support/test_paths.h"
#include "support/tiny_models.h"

namespace kvscope {
namespace {

using testing::bitwise_equal;
using testing::TempDir;

// Auto is AVX2 where the CPU has it; AVX-512 runs where it exists (KVSCOPE_ROW_KERNELS=avx512).
class RowLinear : public ::testing::TestWithParam<RowKernelIsa> {
 protected:
  void SetUp() override {
    if (!row_kernels_available(GetParam())) GTEST_SKIP() << "not on this CPU (" << row_linear_isa_names() << ")";
  }
};

TEST_P(RowLinear, MatchesFloat64ReferenceForEveryTailLength) {
  at::manual_seed(1);
  for (int64_t K : {1, 7, 15, 16, 17, 31, 32, 33, 47, 64, 100, 255, 256, 513}) {
    for (int64_t B : {1, 3, 4, 5, 8, 9}) {
      const int64_t N = 37;
      const at::Tensor w = at::randn({N, K}), x = at::randn({B, K}), bias = at::randn({N});
      const at::Tensor ref = (at::mm(x.to(at::kDouble), w.to(at::kDouble).t()) + bias.to(at::kDouble));
      const at::Tensor got = row_linear(x, w, bias, GetParam()).to(at::kDouble);
      // float32 accumulation over K terms of unit-variance products.
      const double tol = 4e-7 * std::sqrt(static_cast<double>(K)) * 8;
      EXPECT_LE((got - ref).abs().max().item<double>(), tol) << "K=" << K << " B=" << B;
    }
  }
}

// K = 177 shares x loads between three weight rows; K = 300 and 1400 stream one weight row at
// a time against blocks of 8 and of 4 x rows (so each fits in L1), chunked past one block,
// where 32 registers take 3 weight rows against 8 x rows or 6 against 4.
TEST_P(RowLinear, EachRowIsIndependentOfTheOtherRowsAndOfThreads) {
  at::manual_seed(2);
  const int threads_before = worker_threads();
  for (const int64_t K : {177, 300, 1400}) {
    const int64_t N = 203;
    const at::Tensor w = at::randn({N, K}), x = at::randn({70, K});
    std::vector<at::Tensor> alone;
    for (int64_t r = 0; r < x.size(0); ++r) alone.push_back(row_linear(x.narrow(0, r, 1), w, {}, GetParam()));
    for (int threads : {1, 2, 3}) {
      set_worker_threads(threads);
      for (int64_t B : {1, 2, 3, 4, 5, 8, 9, 16, 33, 64, 70}) {
        const at::Tensor y = row_linear(x.narrow(0, 0, B), w, {}, GetParam());
        for (int64_t r = 0; r < B; ++r) {
          ASSERT_TRUE(bitwise_equal(y.narrow(0, r, 1), alone[r])) << "K " << K << ", row " << r << " of " << B << ", " << threads << " threads";
        }
      }
    }
  }
  set_worker_threads(threads_before);
}

// The 32-register tiles change only how many dot products share a load: every element, with
// and without a bias, in every tile shape and remainder, equals the 16-register AVX2 kernel's.
TEST(RowLinearTiles, WideRegistersGiveAvx2sBits) {
  if (!row_kernels_available(RowKernelIsa::Avx2Wide)) GTEST_SKIP() << "no AVX-512VL (" << row_linear_isa_names() << ")";
  at::manual_seed(3);
  for (const int64_t K : {8, 177, 300, 513, 1400}) {
    for (const int64_t N : {1, 5, 203}) {
      const at::Tensor w = at::randn({N, K}), x = at::randn({37, K}), bias = at::randn({N});
      for (const int64_t B : {1, 7, 9, 16, 20, 37}) {
        const at::Tensor xb = x.narrow(0, 0, B);
        EXPECT_TRUE(bitwise_equal(row_linear(xb, w, bias, RowKernelIsa::Avx2Wide), row_linear(xb, w, bias, RowKernelIsa::Avx2)))
            << "K " << K << ", N " << N << ", B " << B;
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Isa, RowLinear, ::testing::Values(RowKernelIsa::Auto, RowKernelIsa::Avx512, RowKernelIsa::Avx2Wide, RowKernelIsa::Avx2,
                                                           RowKernelIsa::Generic),
                         [](const auto& info) {
                           switch (info.param) {
                             case RowKernelIsa::Auto: return std::string("Auto");
                             case RowKernelIsa::Avx512: return std::string("Avx512");
                             case RowKernelIsa::Avx2Wide: return std::string("Avx2Wide");
                             case RowKernelIsa::Avx2: return std::string("Avx2");
                             default: return std::string("Generic");
                           }
                         });

// Static slices (parallel_rows) and pieces handed out in turn (parallel_pieces), with pieces
// of at least one and of three rows.
TEST(WorkerPool, EveryRowVisitedOnceForManySizes) {
  const int threads_before = worker_threads();
  for (int threads : {1, 2, 4}) {
    set_worker_threads(threads);
    for (int how = 0; how < 3; ++how) {
      for (int64_t n : {1, 2, 3, 7, 100, 1001}) {
        std::vector<int> visits(static_cast<size_t>(n), 0);
        auto count = [&](int64_t b, int64_t e) {
          for (int64_t i = b; i < e; ++i) ++visits[static_cast<size_t>(i)];
        };
        for (int repeat = 0; repeat < 50; ++repeat) {
          if (how == 0) parallel_rows(n, 1, count);
          else parallel_pieces(n, how == 1 ? 1 : 3, count);
        }
        for (int64_t i = 0; i < n; ++i) ASSERT_EQ(visits[static_cast<size_t>(i)], 50) << "n=" << n << " threads=" << threads << " how=" << how;
      }
    }
  }
  set_worker_threads(threads_before);
}

TEST(WorkerPool, NestedSectionsRunInlineAndErrorsReachTheCaller) {
  const int threads_before = worker_threads();
  set_worker_threads(2);
  std::vector<int> visits(64, 0);
  parallel_rows(8, 1, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i)
      parallel_rows(8, 1, [&](int64_t ib, int64_t ie) {
        for (int64_t j = ib; j < ie; ++j) ++visits[static_cast<size_t>(i * 8 + j)];
      });
  });
  for (int v : visits) EXPECT_EQ(v, 1);
  EXPECT_THROW(parallel_rows(100, 1, [](int64_t b, int64_t) {
                 if (b > 0) throw std::runtime_error("in a worker");
               }),
               std::runtime_error);
  EXPECT_THROW(parallel_pieces(100, 1, [](int64_t b, int64_t) {
                 if (b > 50) throw std::runtime_error("in a piece");
               }),
               std::runtime_error);
  // The pool still works after an error.
  int64_t total = 0;
  std::mutex m;
  parallel_rows(100, 1, [&](int64_t b, int64_t e) {
    std::lock_guard<std::mutex> lock(m);
    total += e - b;
  });
  EXPECT_EQ(total, 100);
  set_worker_threads(threads_before);
}

class BatchedForward : public ::testing::Test {
 protected:
  void SetUp() override { write_random_model((dir_ / "m").string(), spec_); }
  std::vector<int64_t> ids(int n, int salt) const {
    std::vector<int64_t> v;
    for (int i = 0; i < n; ++i) v.push_back((i * 31 + salt * 7 + i * i) % spec_.vocab_size);
    return v;
  }
  TempDir dir_{"batched"};
  RandomModelSpec spec_ = testing::batched_model_spec();
};

// Runs at different positions with caches of different lengths and kinds, stepped
// together, give every run's logits exactly as stepping it alone does.
TEST_F(BatchedForward, StepEqualsEachRunAloneBitForBit) {
  const LlamaModel model = LlamaModel::load(dir_ / "m");
  const ModelConfig& c = model.config();
  constexpr int kRuns = 6;
  const PolicyCacheConfig pc{c.num_layers, c.num_heads, c.num_kv_heads, c.head_dim, at::kFloat, at::kCPU,
                             PositionMode::Original, AttentionAggregation::Mean};
  auto make_caches = [&] {
    std::vector<std::unique_ptr<KvCache>> caches;
    for (int r = 0; r < kRuns; ++r) {
      if (r % 2 == 0) {
        caches.push_back(std::make_unique<FullKvCache>(model.new_cache()));
      } else {
        PolicyOptions po;
        po.budget = 8 + 4 * r;
        caches.push_back(std::make_unique<PolicyCache>(pc, std::shared_ptr<CachePolicy>(make_policy("weightedkv", po)), model.rope(), po.budget));
      }
    }
    return caches;
  };
  auto batched = make_caches(), alone = make_caches();
  std::vector<std::vector<int64_t>> docs;
  std::vector<int64_t> pos(kRuns);
  for (int r = 0; r < kRuns; ++r) {
    docs.push_back(ids(60, r));
    pos[r] = 3 * r + 1;  // different prefix lengths: caches of different sizes
    const at::Tensor prefix = at::tensor(std::vector<int64_t>(docs[r].begin(), docs[r].begin() + pos[r]), at::kLong);
    model.forward(prefix, 0, *batched[r], nullptr, Logits::None);
    model.forward(prefix, 0, *alone[r], nullptr, Logits::None);
  }
  for (int step = 0; step < 30; ++step) {
    std::vector<LlamaModel::DecodeSlot> slots;
    for (int r = 0; r < kRuns; ++r) slots.push_back({docs[r][pos[r]], pos[r], batched[r].get(), nullptr});
    const at::Tensor together = model.forward_step(slots);
    ASSERT_EQ(together.size(0), kRuns);
    for (int r = 0; r < kRuns; ++r) {
      const at::Tensor one = model.forward(at::tensor({docs[r][pos[r]]}, at::kLong), pos[r], *alone[r]);
      ASSERT_TRUE(bitwise_equal(together.narrow(0, r, 1), one)) << "run " << r << " step " << step;
      ASSERT_EQ(batched[r]->size(0), alone[r]->size(0));
      ++pos[r];
    }
  }
}

}  // namespace
}  // namespace kvscope
