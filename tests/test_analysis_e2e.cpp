// spectrum and l2corr end to end on a real dump of stories260K (skips without ../shared).
#include <gtest/gtest.h>

#include <cmath>

#include "core/error.h"
#include "dump/dump_reader.h"
#include "io/h5.h"
#include "io/provenance.h"
#include "support/cli.h"
#include "support/test_paths.h"

namespace kvscope {
namespace {

std::vector<double> read_all(const h5::Group& g, const std::string& name, std::vector<int64_t>* shape = nullptr) {
  const auto d = g.open_dataset(name);
  if (shape) *shape = d.shape();
  std::vector<double> v;
  d.read_all(v);
  return v;
}

TEST(AnalysisEndToEnd, StoriesSpectrumAndL2Corr) {
  KVSCOPE_REQUIRE_SHARED();
  testing::TempDir dir("analysis-e2e");
  const std::string dump = (dir / "d.h5").string();
  const std::string book = (testing::shared_dir() / "text/austen/emma.txt").string();
  auto r = testing::run_kvscope({"dump", testing::stories_dir().string(), "--text", book, "--text",
                                 (testing::shared_dir() / "text/mobydick/mobydick_pg2701.txt").string(), "--max-tokens", "256",
                                 "-o", dump});
  ASSERT_EQ(r.code, 0) << r.err;

  // RoPE rotates pairs of dimensions: key norms before and after it are the same.
  const DumpReader reader = DumpReader::open(dump);
  for (int64_t layer : reader.layers()) {
    const FloatArray pre = reader.read(0, layer, "k_pre_rope"), post = reader.read(0, layer, "k");
    const int64_t hd = pre.shape[2];
    for (size_t row = 0; row < pre.data.size() / hd; ++row) {
      double a = 0, b = 0;
      for (int64_t c = 0; c < hd; ++c) { a += pre.data[row * hd + c] * pre.data[row * hd + c]; b += post.data[row * hd + c] * post.data[row * hd + c]; }
      ASSERT_NEAR(std::sqrt(a), std::sqrt(b), 1e-4 * (1 + std::sqrt(a)));
    }
  }

  r = testing::run_kvscope({"spectrum", dump, "-o", (dir / "s.h5").string()});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("k_pre_rope"), std::string::npos) << r.out;
  {
    h5::File f = h5::File::open_read((dir / "s.h5").string());
    const h5::Group root = f.root();
    check_schema(root, "s.h5", "kvscope.spectrum", 1, "");
    for (const char* kind : {"k_pre_rope", "k", "v"}) {
      std::vector<int64_t> shape;
      const auto g = root.open_group("documents").open_group("1").open_group("layers").open_group("4").open_group(kind);
      const auto sv = read_all(g, "singular_values", &shape);
      EXPECT_EQ(shape, (std::vector<int64_t>{4, 8}));  // 4 KV heads, min(256, head_dim 8)
      for (double x : sv) ASSERT_TRUE(std::isfinite(x) && x >= 0);
      const auto en = read_all(g, "energy");
      for (int h = 0; h < 4; ++h) EXPECT_EQ(en[h * 8 + 7], 1.0);
      EXPECT_EQ(read_all(g, "layer_singular_values").size(), 32u);  // all heads side by side: 4 x 8 columns
      const auto mean = read_all(root.open_group("aggregate").open_group(kind), "normalized_mean");
      EXPECT_EQ(mean.size(), 8u);
      EXPECT_NEAR(mean[0], 1.0, 1e-12);
    }
  }
  EXPECT_TRUE(std::filesystem::exists(dir / "s.csv"));

  // The Gram route: every singular value within its tolerance of the exact one (a matrix it
  // declines takes the exact path itself), and the file says how it was computed.
  r = testing::run_kvscope({"spectrum", dump, "-o", (dir / "g.h5").string(), "--method", "gram", "--gram-tolerance", "1e-4"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.err.find("took the exact path"), std::string::npos) << r.err;
  {
    h5::File exact_file = h5::File::open_read((dir / "s.h5").string()), gram_file = h5::File::open_read((dir / "g.h5").string());
    const h5::Group exact = exact_file.root(), gram = gram_file.root();
    EXPECT_EQ(gram.attr_string("method"), "gram");
    EXPECT_EQ(exact.attr_string("method"), "exact");
    EXPECT_EQ(gram.attr_double("gram_tolerance"), 1e-4);
    const int64_t fallbacks = gram.attr_int("gram_fallbacks");
    EXPECT_GE(fallbacks, 0);
    EXPECT_LE(fallbacks, 2 * 5 * 3 * 5);  // documents x layers x kinds x (4 heads + the layer matrix)
    size_t compared = 0;
    for (const char* doc : {"0", "1"})
      for (const char* layer : {"0", "1", "2", "3", "4"})
        for (const char* kind : {"k_pre_rope", "k", "v"})
          for (const char* name : {"singular_values", "layer_singular_values"}) {
            const auto path = [&](const h5::Group& root) {
              return root.open_group("documents").open_group(doc).open_group("layers").open_group(layer).open_group(kind);
            };
            const auto e = read_all(path(exact), name), g = read_all(path(gram), name);
            ASSERT_EQ(e.size(), g.size());
            for (size_t i = 0; i < e.size(); ++i, ++compared)
              EXPECT_LE(std::abs(g[i] - e[i]), 1e-4 * g[i] + 1e-13 * e[0]) << doc << "/" << layer << "/" << kind << "/" << name << " " << i;
          }
    EXPECT_EQ(compared, 2u * 5 * 3 * (4 * 8 + 32));
  }

  r = testing::run_kvscope({"l2corr", dump, "-o", (dir / "l.h5").string()});
  ASSERT_EQ(r.code, 0) << r.err;
  {
    h5::File f = h5::File::open_read((dir / "l.h5").string());
    const h5::Group root = f.root();
    check_schema(root, "l.h5", "kvscope.l2corr", 1, "");
    std::vector<int64_t> shape;
    const auto sp = read_all(root.open_group("aggregate"), "spearman_mean", &shape);
    EXPECT_EQ(shape, (std::vector<int64_t>{5, 8}));
    for (double x : sp) ASSERT_TRUE(std::isfinite(x) && x >= -1 && x <= 1);
    const auto g = root.open_group("documents").open_group("0").open_group("layers").open_group("2");
    const auto l2 = read_all(g, "loss_l2", &shape), oracle = read_all(g, "loss_oracle");
    EXPECT_EQ(shape, (std::vector<int64_t>{8, 100}));
    for (size_t i = 0; i < l2.size(); ++i) ASSERT_LE(oracle[i], l2[i] + 1e-12);
    for (double x : read_all(g, "alr")) ASSERT_TRUE(std::isfinite(x) && x >= 0);
  }
  // A dump without attention summaries is refused by name.
  r = testing::run_kvscope({"dump", testing::stories_dir().string(), "--text", book, "--max-tokens", "64", "--attention", "none",
                            "-o", (dir / "n.h5").string()});
  ASSERT_EQ(r.code, 0) << r.err;
  r = testing::run_kvscope({"l2corr", (dir / "n.h5").string(), "-o", (dir / "l2.h5").string()});
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("--attention summary"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace kvscope
