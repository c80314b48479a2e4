// The integrity catalogue (README, "Fuzzing and hostile input"): each case is a reproducer
// that once crashed, destroyed data, hung, read without bound or gave a silently wrong
// number; each must now be refused by name with a non-zero exit, and leave nothing behind.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <thread>
#include <tuple>

#include "core/error.h"
#include "io/atomic_output.h"
#include "io/mapped_file.h"
#include "io/safetensors.h"
#include "model/random_model.h"
#include "support/cli.h"
#include "support/test_paths.h"
#include "support/tiny_models.h"

namespace kvscope {
namespace {

namespace fs = std::filesystem;

class Integrity : public ::testing::Test {
 protected:
  void SetUp() override {
    write_random_model((dir_ / "m").string(), testing::cli_model_spec());
    std::ofstream(dir_ / "ids.txt") << "1 5 9 13 2 7 3 8 4 6 1 5 9 13 2 7 3 8 4 6 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25 26 27 28";
  }
  std::string m() const { return (dir_ / "m").string(); }
  std::string p(const std::string& name) const { return (dir_ / name).string(); }
  // Refused: exit code 1 or 2 (usage), the message found, no signal.
  void expect_refused(const std::vector<std::string>& args, const std::string& message) {
    const auto r = testing::run_kvscope(args);
    ASSERT_TRUE(r.exited) << "killed by signal " << r.signal << ": " << r.err;
    EXPECT_TRUE(r.code == 1 || r.code == 2) << r.code << " " << r.err;
    EXPECT_NE(r.err.find("kvscope: error: "), std::string::npos) << r.err;
    EXPECT_NE(r.err.find(message), std::string::npos) << "expected '" << message << "' in: " << r.err;
  }
  testing::TempDir dir_{"integrity"};
};

TEST_F(Integrity, MoreSinksThanTheBudgetIsRefusedForEveryPolicy) {
  for (const std::string policy : {"streaming", "cam", "h2o", "weightedkv"}) {
    expect_refused({"ppl", m(), "--ids", p("ids.txt"), "--budget", "16", "--sinks", "17", "--policy", policy, "-o", p("x.h5")},
                   "exceed the budget");
  }
}

TEST_F(Integrity, OutputsAreRegularFilesAndNeverTheirInputs) {
  expect_refused({"dump", m(), "--ids", p("ids.txt"), "-o", "/dev/null", "--force"}, "not a regular file");
  expect_refused({"ppl", m(), "--ids", p("ids.txt"), "--policy", "full", "-o", p("run.csv")}, "table would be written over it");
  expect_refused({"ppl", m(), "--ids", p("ids.txt"), "--policy", "full", "-o", p("run.md")}, "table would be written over it");
  expect_refused({"dump", m(), "--ids", p("ids.txt"), "-o", p("ids.txt"), "--force"}, "is also an input");
  // The model's own files are inputs too: --force never writes over its config or weights.
  const auto config_before = fs::file_size(fs::path(m()) / "config.json");
  expect_refused({"ppl", m(), "--ids", p("ids.txt"), "--policy", "full", "-o", m() + "/config.json", "--force"}, "is also an input");
  expect_refused({"dump", m(), "--ids", p("ids.txt"), "-o", m() + "/model.safetensors", "--force"}, "is also an input");
  expect_refused({"perturb", m(), "--ids", p("ids.txt"), "--at", "8", "--steps", "5", "-o", m() + "/config.json", "--force"},
                 "is also an input");
  EXPECT_EQ(fs::file_size(fs::path(m()) / "config.json"), config_before);
  ASSERT_EQ(testing::run_kvscope({"dump", m(), "--ids", p("ids.txt"), "-o", p("d.h5")}).code, 0);
  const auto before = fs::file_size(p("d.h5"));
  expect_refused({"spectrum", p("d.h5"), "-o", p("d.h5"), "--force"}, "is also an input");
  expect_refused({"l2corr", p("d.h5"), "-o", p("d.h5"), "--force"}, "is also an input");
  expect_refused({"spectrum", p("d.h5"), "-o", p("d.csv"), "--force"}, "table would be written over it");
  EXPECT_EQ(fs::file_size(p("d.h5")), before);
}

TEST_F(Integrity, AnOutputWrittenMeanwhileIsNotReplacedWithoutForce) {
  const fs::path out = dir_ / "race.h5";
  AtomicOutput a(out, false);
  std::ofstream(a.temp_path()) << "second";
  std::ofstream(out) << "first";  // another run finished first
  try {
    a.commit();
    FAIL() << "replaced a file another run wrote";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("was written by another run"), std::string::npos) << e.what();
  }
  std::ifstream in(out);
  std::string content;
  in >> content;
  EXPECT_EQ(content, "first");
}

TEST_F(Integrity, InputsMustBeRegularUtf8Files) {
  ASSERT_EQ(::mkfifo(p("fifo").c_str(), 0600), 0);
  expect_refused({"score", m(), "--text", p("fifo")}, "not a regular file");
  expect_refused({"ppl", m(), "--ids", p("fifo"), "-o", p("f.h5")}, "not a regular file");
  expect_refused({"score", m(), "--text", "/dev/zero"}, "not a regular file");
  expect_refused({"score", m(), "--ids", "/dev/urandom"}, "not a regular file");
  {
    std::ofstream f(p("binary.txt"), std::ios::binary);
    f << "text then" << '\0' << "a NUL";
  }
  expect_refused({"score", m(), "--text", p("binary.txt")}, "a NUL byte at offset 9");
  std::ofstream(p("latin1.txt"), std::ios::binary) << "caf\xe9 au lait";
  expect_refused({"score", m(), "--text", p("latin1.txt")}, "invalid UTF-8 at byte offset 3");
  std::ofstream(p("overlong.txt"), std::ios::binary) << "a\xc0\xafz";
  expect_refused({"score", m(), "--text", p("overlong.txt")}, "invalid UTF-8 at byte offset 1");
  {
    std::ofstream f(p("nul_ids.txt"), std::ios::binary);
    f << "1 2 3\n4" << '\0' << "5\n";
  }
  expect_refused({"score", m(), "--ids", p("nul_ids.txt")}, ":2: a NUL byte");
  std::ofstream(p("empty.txt")) << "  \n";
  expect_refused({"generate", m(), "--text", p("empty.txt")}, "empty text");
}

TEST_F(Integrity, NonFiniteWeightsAreRefusedNamingTheTensor) {
  std::streamoff offset = 0;
  {
    const SafetensorsArchive archive = SafetensorsArchive::open(dir_ / "m" / "model.safetensors");
    const TensorView v = archive.get("model.layers.0.mlp.up_proj.weight");
    offset = reinterpret_cast<const char*>(v.data) - reinterpret_cast<const char*>(v.file->data());
  }
  std::fstream f(dir_ / "m" / "model.safetensors", std::ios::in | std::ios::out | std::ios::binary);
  const float nan = std::numeric_limits<float>::quiet_NaN();
  f.seekp(offset + 4 * 5);
  f.write(reinterpret_cast<const char*>(&nan), 4);
  f.close();
  expect_refused({"score", m(), "--ids", p("ids.txt")}, "tensor 'model.layers.0.mlp.up_proj.weight' holds a non-finite value");
}

TEST_F(Integrity, TokenIdsOutsideTheVocabularyAreRefused) {
  const fs::path model = dir_ / "tb";
  fs::copy(fs::path(KVSCOPE_SOURCE_DIR) / "data/models/tinybooks", model);
  std::ifstream in(model / "config.json");
  std::string config((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  in.close();
  const std::string bos = "\"bos_token_id\": 1";
  const size_t at = config.find(bos);
  ASSERT_NE(at, std::string::npos) << config;
  config.replace(at, bos.size(), "\"bos_token_id\": 99999");
  std::ofstream(model / "config.json") << config;
  // generate starts from BOS; score prepends it to the text.
  expect_refused({"generate", model.string(), "--max-new", "2"}, "bos_token_id 99999 is outside the vocabulary (vocab_size 4096)");
  std::ofstream(p("words.txt")) << "In the beginning";
  expect_refused({"score", model.string(), "--text", p("words.txt")}, "outside the model's vocabulary (vocab_size 4096)");
}

// A dump changed after it was written, with h5py (Debian's python3), then read by an analysis.
TEST_F(Integrity, CraftedDumpsAreRefusedByName) {
  ASSERT_EQ(testing::run_kvscope({"dump", m(), "--ids", p("ids.txt"), "-o", p("good.h5")}).code, 0);
  struct Case {
    std::string python, command, expect;
  };
  const std::vector<Case> cases{
      {"f['documents/0/layers/0/k'][0, 0, 0] = float('inf')", "spectrum", "holds a non-finite value (NaN or Inf)"},
      {"f['documents/0/layers/1/key_norm'][0, 3] = float('nan')", "l2corr", "holds a non-finite value (NaN or Inf)"},
      {"f['documents/0/layers/0/attention_received_others'][1, 2] = -0.5", "l2corr", "attention is never negative"},
      {"f['documents/0/layers/0/query_count'][4] = 0", "l2corr", "every token is seen by at least its own query"},
      {"f.attrs['num_documents'] = 0", "l2corr", "num_documents is 0"},
  };
  int i = 0;
  for (const Case& c : cases) {
    const std::string file = p("crafted" + std::to_string(i++) + ".h5");
    fs::copy_file(p("good.h5"), file);
    const std::string script = "import h5py\nf = h5py.File('" + file + "', 'r+')\n" + c.python + "\nf.close()\n";
    std::ofstream(p("craft.py")) << script;
    ASSERT_EQ(std::system(("/usr/bin/python3 " + p("craft.py")).c_str()), 0) << c.python;
    expect_refused({c.command, file, "-o", p("out.h5"), "--force"}, c.expect);
  }
  expect_refused({"spectrum", p("good.h5"), "-o", p("s.h5"), "--kinds", ""}, "--kinds: no values given");
  expect_refused({"spectrum", p("good.h5"), "-o", p("s.h5"), "--kinds", "k,k"}, "'k' is given twice");
  expect_refused({"spectrum", p("good.h5"), "-o", p("s.h5"), "--tokens", "0:99999"}, "reaches past document 0");
}

TEST_F(Integrity, TrainingOptionsAreRangeChecked) {
  std::ofstream(p("train.txt")) << "a small training text";
  for (const auto& [option, value, expect] : std::vector<std::tuple<std::string, std::string, std::string>>{
           {"--lr", "nan", "must be a finite number"}, {"--lr", "0", "must be above 0"}, {"--steps", "0", "must be at least 1"},
           {"--steps", "-3", "must be at least 1"}, {"--batch", "0", "must be at least 1"}, {"--seq-len", "0", "must be at least 2"},
           {"--min-lr-ratio", "1.5", "at most 1"}}) {
    expect_refused({"train", "--train", p("train.txt"), "-o", p("trained"), option, value}, expect);
    EXPECT_FALSE(fs::exists(p("trained"))) << option;
  }
  // A vocabulary the text cannot fill: spm_train's own reason, not a question about packages.
  const auto r = testing::run_kvscope({"train", "--train", p("train.txt"), "-o", p("trained"), "--vocab", "5000", "--steps", "1"});
  EXPECT_EQ(r.code, 1) << r.err;
  EXPECT_NE(r.err.find("spm_train failed: "), std::string::npos) << r.err;
  EXPECT_EQ(r.err.find("installed"), std::string::npos) << r.err;
}

TEST_F(Integrity, ThreadCountsAreBounded) {
  const int cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  expect_refused({"score", m(), "--ids", p("ids.txt"), "--threads", "-1"}, "--threads: -1");
  expect_refused({"score", m(), "--ids", p("ids.txt"), "--threads", std::to_string(cores + 1)}, "cores");
  expect_refused({"score", m(), "--ids", p("ids.txt"), "--blas-threads", "100000"}, "cores");
  if (cores >= 2 && cores < 4) {
    expect_refused({"score", m(), "--ids", p("ids.txt"), "--threads", "2", "--blas-threads", "2"}, "oversubscribes");
  }
}

TEST_F(Integrity, RandomModelSpecsAreCheckedBeforeAnythingIsWritten) {
  expect_refused({"random-model", p("bad"), "--spec", "hidden=64,heads=6,kv_heads=4"}, "--spec");
  EXPECT_FALSE(fs::exists(p("bad")));
  expect_refused({"random-model", p("huge"), "--spec", "layers=1000,hidden=4096,mlp=11008,heads=32,kv_heads=32"}, "GiB");
  EXPECT_FALSE(fs::exists(p("huge")));
  // bench writes its random model under TMPDIR: a private one shows whether anything is left.
  fs::create_directory(p("tmp"));
  const char* old_tmp = std::getenv("TMPDIR");
  const std::string saved = old_tmp ? old_tmp : "";
  ::setenv("TMPDIR", p("tmp").c_str(), 1);
  expect_refused({"bench", "--random", "hidden=1099511627776"}, "--random hidden");
  if (old_tmp) ::setenv("TMPDIR", saved.c_str(), 1);
  else ::unsetenv("TMPDIR");
  EXPECT_TRUE(fs::is_empty(p("tmp")));
  expect_refused({"bench", m(), "--random", "layers=2"}, "not both");
}

TEST_F(Integrity, UsageErrorsSayWhatIsAllowed) {
  expect_refused({"ppl", m(), "--ids", p("ids.txt"), "-o", p("u.h5"), "--batch", "0"}, "--batch: 0 is not allowed: must be at least 1");
  expect_refused({"ppl", m(), "--ids", p("ids.txt"), "-o", p("u.h5"), "--max-tokens", "-1"}, "must be at least 0");
  expect_refused({"score", m(), "--ids", p("ids.txt"), "--chunk", "0"}, "--chunk: 0 is not allowed");
  expect_refused({"ppl", m(), "--ids", p("ids.txt"), "-o", p("u.h5"), "--cam-merge", "0"}, "must be at least 1");
}

TEST(SafetensorsIntegrity, OverlappingTensorsAreRefused) {
  testing::TempDir dir("overlap");
  const std::string header = R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})";
  {
    std::ofstream f(dir / "model.safetensors", std::ios::binary);
    const uint64_t n = header.size();
    f.write(reinterpret_cast<const char*>(&n), 8);
    f << header << std::string(12, '\0');
  }
  try {
    SafetensorsArchive::open(dir / "model.safetensors");
    FAIL() << "overlapping tensors accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("tensors 'a' [0, 8) and 'b' [4, 12) overlap"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace kvscope
