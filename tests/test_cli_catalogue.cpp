// The bad-input catalogue, through the CLI, for every command: missing, empty, wrong-type and
// hostile inputs; outputs that exist or cannot be written; interrupts mid-run. Every case
// ends with one clear line, a non-zero exit and no signal death, leaves nothing a reader
// accepts at the output path, and never overwrites a file without --force.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fcntl.h>

#include <fstream>
#include <thread>

#include "model/random_model.h"
#include "support/cli.h"
#include "support/test_paths.h"

namespace kvscope {
namespace {

using testing::run_kvscope;

class Catalogue : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new testing::TempDir("catalogue");
    RandomModelSpec spec;
    spec.max_position_embeddings = 4096;
    write_random_model((*dir_ / "m").string(), spec);
    std::ofstream(*dir_ / "ids.txt") << "1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20";
    std::ofstream(*dir_ / "empty.txt") << "";
    std::ofstream(*dir_ / "garbage.bin", std::ios::binary) << std::string("\x89PNG\r\n\x1a\n\0\0\0\rIHDR", 16);
    std::ofstream(*dir_ / "not_hdf5.h5") << "just text";
    {
      std::ofstream long_ids(*dir_ / "long_ids.txt");
      for (int i = 0; i < 3000; ++i) long_ids << (i * 37 % 256) << ' ';
    }
    // A complete dump, and an HDF5 file that is a valid kvscope result but not a dump.
    ASSERT_EQ(run_kvscope({"dump", m(), "--ids", p("ids.txt"), "-o", p("dump.h5")}).code, 0);
    ASSERT_EQ(run_kvscope({"ppl", m(), "--ids", p("ids.txt"), "--policy", "full", "-o", p("ppl.h5")}).code, 0);
  }
  static void TearDownTestSuite() { delete dir_; }
  static std::string p(const std::string& name) { return (*dir_ / name).string(); }
  static std::string m() { return p("m"); }

  static void expect_refusal(const std::vector<std::string>& args, const std::string& expect) {
    const auto r = run_kvscope(args);
    std::string cmd;
    for (const auto& a : args) cmd += a + " ";
    EXPECT_TRUE(r.exited) << cmd << "killed by signal " << r.signal;
    EXPECT_NE(r.code, 0) << cmd;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << cmd << "\n" << r.err;
    EXPECT_NE(r.err.find(expect), std::string::npos) << cmd << "\nexpected '" << expect << "' in: " << r.err;
  }
  static inline testing::TempDir* dir_ = nullptr;
};

TEST_F(Catalogue, MissingInputs) {
  const std::string nope = p("nope");
  expect_refusal({"info", nope}, "no such file or directory");
  expect_refusal({"score", nope, "--ids", p("ids.txt")}, "no such file or directory");
  expect_refusal({"generate", nope}, "no such file or directory");
  expect_refusal({"dump", m(), "--ids", nope, "-o", p("o1.h5")}, "cannot read");
  expect_refusal({"spectrum", nope, "-o", p("o2.h5")}, "not an HDF5 file");
  expect_refusal({"l2corr", nope, "-o", p("o3.h5")}, "not an HDF5 file");
  expect_refusal({"ppl", m(), "--ids", nope, "-o", p("o4.h5")}, "cannot read");
  expect_refusal({"perturb", m(), "--ids", nope, "-o", p("o5.h5")}, "cannot read");
  expect_refusal({"bench", nope}, "no such file or directory");
  for (const char* out : {"o1.h5", "o2.h5", "o3.h5", "o4.h5", "o5.h5"}) EXPECT_FALSE(std::filesystem::exists(p(out))) << out;
}

TEST_F(Catalogue, EmptyAndWrongTypeInputs) {
  expect_refusal({"score", m(), "--ids", p("empty.txt")}, "no token ids");
  expect_refusal({"score", m(), "--ids", p("garbage.bin")}, "is not a token id");
  expect_refusal({"dump", m(), "--ids", p("empty.txt"), "-o", p("o6.h5")}, "no token ids");
  expect_refusal({"ppl", m(), "--ids", p("garbage.bin"), "-o", p("o7.h5")}, "is not a token id");
  expect_refusal({"perturb", m(), "--ids", p("ids.txt"), "--at", "10", "--steps", "50", "-o", p("o8.h5")}, "needs 60");
  expect_refusal({"info", p("not_hdf5.h5")}, "not an HDF5 file");
  expect_refusal({"info", p("ppl.h5")}, "not a kvscope.dump file");
  expect_refusal({"spectrum", p("ppl.h5"), "-o", p("o9.h5")}, "not a kvscope.dump file");
  expect_refusal({"l2corr", p("empty.txt"), "-o", p("o10.h5")}, "not an HDF5 file");
  expect_refusal({"info", p("m") + "/config.json"}, "not an HDF5 file");
  expect_refusal({"train", "--train", p("empty.txt"), "-o", p("trained")}, "empty training text");
  expect_refusal({"perturb", m(), "--ids", p("ids.txt"), "--at", "3", "--steps", "5", "-o", p("o11.h5")}, "leaves no token to merge");
  expect_refusal({"random-model", m()}, "already exists");
  for (const char* out : {"o6.h5", "o7.h5", "o8.h5", "o9.h5", "o10.h5", "o11.h5"}) EXPECT_FALSE(std::filesystem::exists(p(out))) << out;
}

// passkey and needle need a tokenizer (the random model has none) and a readable haystack of words.
TEST_F(Catalogue, RetrievalInputs) {
  const std::string model = std::string(KVSCOPE_SOURCE_DIR) + "/data/models/tinybooks";
  expect_refusal({"passkey", m(), "-o", p("r1.h5"), "--lengths", "300"}, "tokenizer");
  expect_refusal({"needle", model, "--haystack", p("nope"), "-o", p("r2.h5"), "--lengths", "300"}, "cannot read");
  expect_refusal({"needle", model, "--haystack", p("empty.txt"), "-o", p("r3.h5"), "--lengths", "300"}, "--haystack");
  expect_refusal({"needle", model, "--haystack", p("garbage.bin"), "-o", p("r4.h5"), "--lengths", "300"}, "UTF-8");
  expect_refusal({"needle", model, "--haystack", p("ids.txt"), "-o", p("r5.h5"), "--lengths", "300"}, "haystack is too short");
  expect_refusal({"needle", model, "--haystack", p("ids.txt"), "-o", p("ids.txt"), "--lengths", "300"}, "never replaces its input");
  expect_refusal({"passkey", model, "-o", model + "/config.json", "--force", "--lengths", "300"}, "never replaces its input");
  for (const char* out : {"r1.h5", "r2.h5", "r3.h5", "r4.h5", "r5.h5"}) EXPECT_FALSE(std::filesystem::exists(p(out))) << out;
}

TEST_F(Catalogue, ExistingOutputsAreNeverOverwrittenWithoutForce) {
  const std::vector<std::vector<std::string>> commands{
      {"dump", m(), "--ids", p("ids.txt"), "-o"},
      {"spectrum", p("dump.h5"), "-o"},
      {"l2corr", p("dump.h5"), "-o"},
      {"ppl", m(), "--ids", p("ids.txt"), "--policy", "full", "-o"},
      {"perturb", m(), "--ids", p("ids.txt"), "--at", "8", "--steps", "5", "-o"},
      {"passkey", std::string(KVSCOPE_SOURCE_DIR) + "/data/models/tinybooks", "--lengths", "300", "--depths", "0.5", "--key-seeds", "0",
       "--policy", "full", "-o"},
  };
  for (auto args : commands) {
    const std::string out = p("keep-" + args[0] + ".h5");
    std::ofstream(out) << "precious";
    args.push_back(out);
    expect_refusal(args, "--force");
    std::ifstream in(out);
    std::string content((std::istreambuf_iterator<char>(in)), {});
    EXPECT_EQ(content, "precious") << args[0];
    args.push_back("--force");
    EXPECT_EQ(run_kvscope(args).code, 0) << args[0];
  }
}

TEST_F(Catalogue, UnwritableOutputs) {
  for (const std::string out : {"/nonexistent-dir/x.h5", "/proc/kvscope-test.h5"}) {
    const auto r = run_kvscope({"dump", m(), "--ids", p("ids.txt"), "-o", out});
    EXPECT_TRUE(r.exited);
    EXPECT_EQ(r.code, 1) << out;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
    EXPECT_NE(r.err.find(out), std::string::npos) << r.err;
  }
  expect_refusal({"spectrum", p("dump.h5"), "-o", "/nonexistent-dir/s.h5"}, "does not exist");
  // Options read only by another mode are refused, not ignored.
  expect_refusal({"spectrum", p("dump.h5"), "-o", p("g1.h5"), "--gram-tolerance", "0.1"}, "--gram-tolerance is read only with --method gram");
  expect_refusal({"spectrum", p("dump.h5"), "-o", p("g2.h5"), "--method", "gram", "--float"}, "--float");
  expect_refusal({"bench", "--random", "layers=1", "--svd-method", "gram"}, "--svd-method is not read by");
  expect_refusal({"ppl", m(), "--ids", p("ids.txt"), "-o", p("m")}, "is a directory");
}

// SIGTERM (and SIGINT) mid-run: exit 128 + signal through kvscope's handler, nothing left at
// the output path, no partial file left behind.
// True once the process catches SIGINT and SIGTERM (its handlers are installed), read from
// /proc/PID/status; before that a signal would kill it during start-up.
bool handlers_installed(pid_t pid) {
  std::ifstream status("/proc/" + std::to_string(pid) + "/status");
  for (std::string line; std::getline(status, line);) {
    if (line.rfind("SigCgt:", 0) == 0) {
      const unsigned long long mask = std::stoull(line.substr(7), nullptr, 16);
      return (mask >> (SIGINT - 1) & 1) && (mask >> (SIGTERM - 1) & 1);
    }
  }
  return false;
}

// Signals the command once it is at work, shown by an event rather than by time: its partial
// output growing past 1 MiB (commands that write as they go; `stderr_text` empty), or a line
// on stderr containing `stderr_text` (commands that write at the end). Each run is long enough
// (3,000 tokens) that it is still working when the signal arrives.
void interrupt(const std::vector<std::string>& args, const std::string& out, int sig, const std::string& stderr_text) {
  const std::string err = out + ".stderr";
  const pid_t pid = testing::spawn_kvscope(args, err);
  const std::string partial = out + ".partial-" + std::to_string(pid);
  for (int i = 0; i < 30000 && !handlers_installed(pid); ++i) usleep(1000);
  const bool at_work = stderr_text.empty() ? testing::wait_for_size(partial, 1 << 20) : testing::wait_for_text(err, stderr_text);
  kill(pid, sig);
  int status = 0;
  waitpid(pid, &status, 0);
  ASSERT_TRUE(at_work) << args[0] << ": never got to work";
  ASSERT_TRUE(WIFEXITED(status)) << args[0] << ": died of signal " << WTERMSIG(status);
  EXPECT_EQ(WEXITSTATUS(status), 128 + sig) << args[0] << " finished before the signal";
  EXPECT_FALSE(std::filesystem::exists(out)) << args[0];
  EXPECT_FALSE(std::filesystem::exists(partial)) << args[0];
  std::filesystem::remove(err);
}

TEST_F(Catalogue, InterruptsMidRun) {
  interrupt({"dump", m(), "--ids", p("long_ids.txt"), "--attention", "full", "--chunk", "16", "-o", p("int-dump.h5")},
            p("int-dump.h5"), SIGTERM, "");
  // ppl prints its batch and memory line once the sweep is set up, just before decoding.
  interrupt({"ppl", m(), "--ids", p("long_ids.txt"), "--budget", "16", "--policy", "full,h2o,weightedkv", "-o", p("int-ppl.h5")},
            p("int-ppl.h5"), SIGTERM, "ppl: batch");
  // perturb says what it will do just before decoding (about 8 s of it).
  interrupt({"perturb", m(), "--ids", p("long_ids.txt"), "--at", "100", "--steps", "2800", "-o", p("int-perturb.h5")},
            p("int-perturb.h5"), SIGINT, "perturb: 1 document(s)");
}

}  // namespace
}  // namespace kvscope
