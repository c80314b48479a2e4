// kvscope dump: what is written equals what the forward pass produced; summaries equal sums
// over the full matrices; the reader refuses foreign, incomplete and interrupted files.
#include <gtest/gtest.h>
#include <hdf5.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>

#include "core/error.h"
#include "dump/dump_reader.h"
#include "dump/dump_writer.h"
#include "io/h5.h"
#include "model/kv_cache.h"
#include "model/llama.h"
#include "model/observer.h"
#include "model/random_model.h"
#include "support/cli.h"
#include "support/golden.h"
#include "support/test_paths.h"

namespace kvscope {
namespace {

using testing::TempDir;

at::Tensor as_tensor(const FloatArray& a) { return at::tensor(a.data, at::kFloat).view(a.shape); }

// Records every layer over several forward calls, concatenated along the token axis
// (attention rows zero-padded to the full length), so a chunked run can be compared
// exactly with a dump made with the same chunking.
class Recorder : public ForwardObserver {
 public:
  explicit Recorder(int64_t total_tokens) : T_(total_tokens) {}
  bool wants_attention(int) const override { return true; }
  void on_layer(const LayerActivations& a) override {
    if (k_pre.size() <= static_cast<size_t>(a.layer)) {
      for (auto* v : {&k_pre, &k, &v_, &q, &attn}) v->resize(a.layer + 1);
    }
    auto append = [&](at::Tensor& dst, const at::Tensor& t) { dst = dst.defined() ? at::cat({dst, t}, 1) : t.clone(); };
    append(k_pre[a.layer], a.k_pre_rope);
    append(k[a.layer], a.k);
    append(v_[a.layer], a.v);
    append(q[a.layer], a.q);
    const at::Tensor& p = *a.attention;
    append(attn[a.layer], at::constant_pad_nd(p, {0, T_ - p.size(2)}));
  }
  std::vector<at::Tensor> k_pre, k, v_, q, attn;

 private:
  int64_t T_;
};

Recorder record_chunked(const LlamaModel& model, const std::vector<int64_t>& ids, int64_t chunk) {
  Recorder rec(static_cast<int64_t>(ids.size()));
  FullKvCache cache = model.new_cache();
  const at::Tensor all = at::tensor(ids, at::kLong);
  for (int64_t s = 0; s < all.size(0); s += chunk) {
    model.forward(all.narrow(0, s, std::min<int64_t>(chunk, all.size(0) - s)), s, cache, &rec, Logits::None);
  }
  return rec;
}

class DumpTest : public ::testing::Test {
 protected:
  void SetUp() override {
    spec_.vocab_size = 50;
    spec_.hidden_size = 32;
    spec_.intermediate_size = 40;
    spec_.num_layers = 3;
    spec_.num_heads = 4;
    spec_.num_kv_heads = 2;
    write_random_model((dir_ / "model").string(), spec_);
  }
  std::vector<int64_t> ids(int n, int salt) const {
    std::vector<int64_t> v;
    for (int i = 0; i < n; ++i) v.push_back((i * 13 + salt) % 50);
    return v;
  }
  TempDir dir_{"dump"};
  RandomModelSpec spec_;
};

TEST_F(DumpTest, TensorsEqualObserverAndSummariesEqualFullSums) {
  const LlamaModel model = LlamaModel::load(dir_ / "model");
  DumpOptions o;
  o.layers = {0, 2};
  o.full_attention_layers = {0, 2};
  o.heads = {0, 1, 2, 3};
  o.attention = AttentionDump::Full;
  o.queries = true;
  o.chunk = 7;  // several chunks, so accumulation across chunks is exercised
  const std::string path = (dir_ / "d.h5").string();
  const std::vector<std::vector<int64_t>> docs{ids(30, 1), ids(17, 5)};
  {
    DumpWriter w(path, model, o, DumpProvenance{"m", "t", "cmd"});
    for (const auto& d : docs) w.add_document(DumpInput{d, {}, {}, "doc"});
    w.finish();
  }
  const DumpReader r = DumpReader::open(path);
  ASSERT_EQ(r.documents().size(), 2u);
  for (size_t d = 0; d < docs.size(); ++d) {
    EXPECT_EQ(r.documents()[d].token_ids, docs[d]);
    const Recorder rec = record_chunked(model, docs[d], 7);
    const int64_t T = static_cast<int64_t>(docs[d].size());
    for (int L : {0, 2}) {
      EXPECT_TRUE(at::equal(as_tensor(r.read(d, L, "k_pre_rope")), rec.k_pre[L]));
      EXPECT_TRUE(at::equal(as_tensor(r.read(d, L, "k")), rec.k[L]));
      EXPECT_TRUE(at::equal(as_tensor(r.read(d, L, "v")), rec.v_[L]));
      EXPECT_TRUE(at::equal(as_tensor(r.read(d, L, "q")), rec.q[L]));
      const at::Tensor full = as_tensor(r.read(d, L, "attention"));  // [H, T, T]
      EXPECT_TRUE(at::equal(full, rec.attn[L]));
      EXPECT_TRUE(at::allclose(as_tensor(r.read(d, L, "attention_received")), full.sum(1), 1e-5, 1e-6));
      const at::Tensor others = full.sum(1) - at::diagonal(full, 0, 1, 2);
      EXPECT_TRUE(at::allclose(as_tensor(r.read(d, L, "attention_received_others")), others, 1e-5, 1e-6));
      EXPECT_TRUE(at::equal(as_tensor(r.read(d, L, "last_query_attention")), full.select(1, T - 1)));
      EXPECT_TRUE(at::equal(as_tensor(r.read(d, L, "query_count")), at::arange(T, 0, -1, at::kFloat)));
      EXPECT_TRUE(at::allclose(as_tensor(r.read(d, L, "key_norm")), rec.k[L].norm(2, {-1}), 1e-5, 1e-6));
      EXPECT_TRUE(at::allclose(as_tensor(r.read(d, L, "value_norm")), rec.v_[L].norm(2, {-1}), 1e-5, 1e-6));
      EXPECT_TRUE(at::allclose(as_tensor(r.read_head(d, L, "attention", 2)), full[2]));
    }
    EXPECT_THROW(r.read(d, 1, "k"), Error);  // layer 1 was not dumped
  }
}

TEST_F(DumpTest, Float16StorageRoundsOnly) {
  const LlamaModel model = LlamaModel::load(dir_ / "model");
  DumpOptions o;
  o.layers = {1};
  o.float16 = true;
  const std::string path = (dir_ / "h.h5").string();
  {
    DumpWriter w(path, model, o, DumpProvenance{});
    w.add_document(DumpInput{ids(20, 3), {}, {}, "doc"});
    w.finish();
  }
  const Recorder rec = record_chunked(model, ids(20, 3), 512);
  const at::Tensor stored = as_tensor(DumpReader::open(path).read(0, 1, "v"));
  EXPECT_TRUE(at::allclose(stored, rec.v_[1], 1e-3, 1e-3));
  EXPECT_TRUE(at::equal(stored, rec.v_[1].to(at::kHalf).to(at::kFloat)));  // exactly IEEE half rounding
}

// Editing a finished file with the raw HDF5 API, as a damaged or foreign file would be.
void edit(const std::string& path, const std::function<void(hid_t)>& f) {
  const hid_t file = H5Fopen(path.c_str(), H5F_ACC_RDWR, H5P_DEFAULT);
  ASSERT_GE(file, 0);
  f(file);
  H5Fclose(file);
}

TEST_F(DumpTest, ReaderRefusesForeignIncompleteAndTruncatedFiles) {
  const LlamaModel model = LlamaModel::load(dir_ / "model");
  DumpOptions o;
  o.layers = {0, 1, 2};
  const std::string good = (dir_ / "good.h5").string();
  {
    DumpWriter w(good, model, o, DumpProvenance{});
    w.add_document(DumpInput{ids(25, 2), {}, {}, "doc"});
    w.finish();
  }
  ASSERT_NO_THROW(DumpReader::open(good));
  auto expect_refusal = [&](const std::string& path, const std::string& expect) {
    try {
      DumpReader::open(path);
      ADD_FAILURE() << "accepted " << path;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(expect), std::string::npos) << e.what();
    }
  };
  auto copy = [&](const std::string& name) {
    const std::string p = (dir_ / name).string();
    std::filesystem::copy_file(good, p);
    return p;
  };
  const std::string other_version = copy("v2.h5");
  edit(other_version, [](hid_t f) {
    const int64_t v = 2;
    const hid_t a = H5Aopen(f, "schema_version", H5P_DEFAULT);
    H5Awrite(a, H5T_NATIVE_INT64, &v);
    H5Aclose(a);
  });
  expect_refusal(other_version, "schema version 2 is not supported");

  const std::string missing = copy("missing.h5");
  edit(missing, [](hid_t f) { H5Ldelete(f, "/documents/0/layers/1/v", H5P_DEFAULT); });
  expect_refusal(missing, "missing dataset /documents/0/layers/1/v");

  const std::string incomplete = copy("incomplete.h5");
  edit(incomplete, [](hid_t f) {
    const int64_t v = 0;
    const hid_t a = H5Aopen(f, "complete", H5P_DEFAULT);
    H5Awrite(a, H5T_NATIVE_INT64, &v);
    H5Aclose(a);
  });
  expect_refusal(incomplete, "incomplete file");

  // A dataset present under its name but with a shape that disagrees with the header.
  const std::string lying_shape = copy("lying_shape.h5");
  edit(lying_shape, [&](hid_t f) {
    H5Ldelete(f, "/documents/0/layers/2/k", H5P_DEFAULT);
    const hsize_t dims[3] = {static_cast<hsize_t>(spec_.num_kv_heads), 24, 8};
    const hid_t space = H5Screate_simple(3, dims, nullptr);
    const hid_t d = H5Dcreate2(f, "/documents/0/layers/2/k", H5T_IEEE_F32LE, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    H5Dclose(d);
    H5Sclose(space);
  });
  expect_refusal(lying_shape, "dataset /documents/0/layers/2/k has shape [2,24,8] but the schema requires [2,25,8]");
  // The same through the CLI: one line, exit 1, no output written.
  for (const char* cmd : {"spectrum", "l2corr"}) {
    const std::string out = (dir_ / (std::string(cmd) + "_never.h5")).string();
    const auto r = testing::run_kvscope({cmd, lying_shape, "-o", out});
    EXPECT_EQ(r.code, 1) << cmd;
    EXPECT_NE(r.err.find("has shape [2,24,8] but the schema requires [2,25,8]"), std::string::npos) << cmd << ": " << r.err;
    EXPECT_FALSE(std::filesystem::exists(out)) << cmd;
  }

  // token_ids claiming 2^40 entries (chunked, nothing stored): refused before allocating.
  const std::string huge = copy("huge.h5");
  edit(huge, [](hid_t f) {
    H5Ldelete(f, "/documents/0/token_ids", H5P_DEFAULT);
    const hsize_t dims[1] = {hsize_t{1} << 40}, chunk[1] = {1024};
    const hid_t space = H5Screate_simple(1, dims, nullptr);
    const hid_t plist = H5Pcreate(H5P_DATASET_CREATE);
    H5Pset_chunk(plist, 1, chunk);
    const hid_t d = H5Dcreate2(f, "/documents/0/token_ids", H5T_STD_I64LE, space, H5P_DEFAULT, plist, H5P_DEFAULT);
    H5Dclose(d);
    H5Pclose(plist);
    H5Sclose(space);
  });
  expect_refusal(huge, "claims 1.09951e+12 elements but stores only 0 bytes");

  // Variable-length strings live in the global heap, which libhdf5 1.10 can loop on when
  // corrupt; the reader refuses them before reading.
  const std::string vlen = copy("vlen.h5");
  edit(vlen, [](hid_t f) {
    H5Adelete(f, "attention_mode");
    const hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, H5T_VARIABLE);
    const hid_t space = H5Screate(H5S_SCALAR);
    const hid_t a = H5Acreate2(f, "attention_mode", t, space, H5P_DEFAULT, H5P_DEFAULT);
    const char* value = "summary";
    H5Awrite(a, t, &value);
    H5Aclose(a);
    H5Sclose(space);
    H5Tclose(t);
  });
  expect_refusal(vlen, "attribute 'attention_mode' is a variable-length string");

  const std::string truncated = (dir_ / "truncated.h5").string();
  {
    std::ifstream in(good, std::ios::binary);
    std::string bytes((std::istreambuf_iterator<char>(in)), {});
    std::ofstream(truncated, std::ios::binary) << bytes.substr(0, bytes.size() / 2);
  }
  expect_refusal(truncated, truncated);
}

// Long attributes (a big model config, a long command line) need the 1.8 dense attribute
// storage; UTF-8 and embedded punctuation come back unchanged.
TEST(H5Attributes, LongAndUnicodeStringsRoundTrip) {
  TempDir dir("h5attr");
  const std::string path = (dir / "a.h5").string();
  std::string longest;
  for (int i = 0; i < 20000; ++i) longest += "ab,c ";
  const std::string unicode = "D\xc3\xa9j\xc3\xa0 vu \xe2\x80\x94 \xe6\x97\xa5\xe6\x9c\xac";
  {
    h5::File f = h5::File::create(path);
    f.root().set_attr("long", longest);
    f.root().set_attr("unicode", unicode);
    f.root().set_attr("empty", std::string());
  }
  const h5::File f = h5::File::open_read(path);
  EXPECT_EQ(f.root().attr_string("long"), longest);
  EXPECT_EQ(f.root().attr_string("unicode"), unicode);
  EXPECT_EQ(f.root().attr_string("empty"), "");
}

TEST(DumpGolden, MatchesStoriesGoldens) {
  KVSCOPE_REQUIRE_SHARED();
  TempDir dir("dumpgolden");
  const auto& stories = testing::stories_dir();
  const LlamaModel model = LlamaModel::load(stories);
  std::ifstream in(stories / "golden" / "prompt_ids.json");
  std::string text((std::istreambuf_iterator<char>(in)), {});
  const auto g = testing::read_h5_dataset(stories / "golden" / "golden.h5", "prompt_ids");
  std::vector<int64_t> ids(g.data.begin(), g.data.end());
  DumpOptions o;
  o.layers = {0, 1, 2, 3, 4};
  o.full_attention_layers = o.layers;
  o.heads = {0, 1, 2, 3, 4, 5, 6, 7};
  o.attention = AttentionDump::Full;
  const std::string path = (dir / "g.h5").string();
  {
    DumpWriter w(path, model, o, DumpProvenance{});
    w.add_document(DumpInput{ids, {}, {}, "golden"});
    w.finish();
  }
  const DumpReader r = DumpReader::open(path);
  for (int L = 0; L < 5; ++L) {
    const std::string p = "layers/" + std::to_string(L) + "/";
    for (auto [name, ours, tol] : {std::make_tuple("k_pre_rope", "k_pre_rope", 1e-4), std::make_tuple("v", "v", 1e-4),
                                   std::make_tuple("attn", "attention", 1e-5)}) {
      const auto want = testing::read_h5_dataset(stories / "golden" / "golden.h5", p + name);
      const at::Tensor got = as_tensor(r.read(0, L, ours)).to(at::kDouble);
      ASSERT_EQ(got.sizes().vec(), want.shape);
      EXPECT_LE((got - at::tensor(want.data, at::kDouble).view(want.shape)).abs().max().item<double>(), tol) << p << name;
    }
  }
}

// Starts `kvscope dump` on a long input, interrupts it while it writes its partial file, and
// checks that nothing the reader accepts is left at the output path.
void interrupt_dump(const TempDir& dir, int sig) {
  RandomModelSpec spec;
  spec.hidden_size = 128;
  spec.intermediate_size = 256;
  spec.num_layers = 4;
  spec.num_heads = 4;
  spec.num_kv_heads = 2;
  spec.max_position_embeddings = 4096;
  write_random_model((dir / "model").string(), spec);
  {
    std::ofstream ids(dir / "ids.txt");
    for (int i = 0; i < 3000; ++i) ids << (i * 31 % 256) << ' ';
  }
  const std::string out = (dir / "out.h5").string();
  const pid_t pid = testing::spawn_kvscope({"dump", (dir / "model").string(), "--ids", (dir / "ids.txt").string(), "--attention",
                                            "full", "--chunk", "64", "-o", out});
  const std::string partial = out + ".partial-" + std::to_string(pid);
  // Signalled once 1 MiB of data is in the partial file (the header alone is ~60 KB), so
  // mid-write, not mid-start-up, whatever the machine's speed.
  const bool writing = testing::wait_for_size(partial, 1 << 20);
  kill(pid, sig);
  int status = 0;
  waitpid(pid, &status, 0);
  ASSERT_TRUE(writing) << "the dump never started writing";
  if (sig == SIGINT) {
    EXPECT_TRUE(WIFEXITED(status)) << "SIGINT should be handled, not kill the process";
    EXPECT_EQ(WEXITSTATUS(status), 128 + SIGINT);
    EXPECT_FALSE(std::filesystem::exists(partial)) << "partial file left behind";
  }
  EXPECT_FALSE(std::filesystem::exists(out)) << "an interrupted dump left a file at the output path";
  EXPECT_THROW(DumpReader::open(out), Error);
  if (std::filesystem::exists(partial)) EXPECT_THROW(DumpReader::open(partial), Error);
}

TEST(DumpInterrupt, SigintLeavesNothing) {
  TempDir dir("sigint");
  interrupt_dump(dir, SIGINT);
}

TEST(DumpInterrupt, SigkillLeavesNothingValid) {
  TempDir dir("sigkill");
  interrupt_dump(dir, SIGKILL);
}

TEST(DumpCli, RefusesBadDestinationsBeforeWorking) {
  TempDir dir("dumpcli");
  RandomModelSpec spec;
  write_random_model((dir / "model").string(), spec);
  std::ofstream(dir / "ids.txt") << "1 2 3 4";
  std::ofstream(dir / "exists.h5") << "keep me";
  const auto r1 = testing::run_kvscope({"dump", (dir / "model").string(), "--ids", (dir / "ids.txt").string(), "-o", "/nonexistent/dir/x.h5"});
  EXPECT_EQ(r1.code, 1);
  EXPECT_NE(r1.err.find("does not exist"), std::string::npos) << r1.err;
  const auto r2 = testing::run_kvscope({"dump", (dir / "model").string(), "--ids", (dir / "ids.txt").string(), "-o", (dir / "exists.h5").string()});
  EXPECT_EQ(r2.code, 1);
  EXPECT_NE(r2.err.find("--force"), std::string::npos) << r2.err;
  std::ifstream kept(dir / "exists.h5");
  std::string content((std::istreambuf_iterator<char>(kept)), {});
  EXPECT_EQ(content, "keep me");
  const auto r3 = testing::run_kvscope({"dump", (dir / "model").string(), "--ids", (dir / "ids.txt").string(), "-o",
                                        (dir / "ok.h5").string(), "--layers", "0-9"});
  EXPECT_EQ(r3.code, 1);
  EXPECT_NE(r3.err.find("layer 9 does not exist"), std::string::npos) << r3.err;
  EXPECT_FALSE(std::filesystem::exists(dir / "ok.h5"));
}

}  // namespace
}  // namespace kvscope
