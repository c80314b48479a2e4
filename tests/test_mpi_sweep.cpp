// kvscope ppl and perturb under mpirun: the distributed results equal a single process's,
// run for run and bit for bit; a sweep stopped mid-way resumes under another rank count to
// the same results; a failing rank ends the job with its message instead of leaving the
// others waiting. Also the wire formats that carry results between ranks.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <vector>

#include "core/cores.h"
#include "dist/cluster.h"
#include "eval/perturb_wire.h"
#include "eval/ppl_results.h"
#include "eval/resume_journal.h"
#include "eval/run_output_wire.h"
#include "model/random_model.h"
#include "support/cli.h"
#include "support/error_of.h"
#include "support/test_paths.h"

namespace kvscope {
namespace {

using testing::error_of;
using testing::run_kvscope;

TEST(RunOutputWire, RoundTripsBitForBitAndRefusesDamage) {
  RunOutput o;
  o.nll = {0.1, -0.0, 1e-310, 3.25};  // a negative zero and a subnormal keep their bits
  o.token_index = {5, 6, 7, 9};
  o.max_cache = 17;
  o.resolved_budget = 16;
  o.seconds = 1.5;
  o.policy_seconds = 0.25;
  o.perturbation = {{7, 1, 3, 0.5, 0.9}, {9, 0, 2, 0.125, 0.99}};
  const std::string bytes = encode_run_output(42, o);
  size_t run = 0;
  const RunOutput back = decode_run_output(bytes, &run);
  EXPECT_EQ(run, 42u);
  ASSERT_EQ(back.nll.size(), o.nll.size());
  EXPECT_EQ(std::memcmp(back.nll.data(), o.nll.data(), o.nll.size() * sizeof(double)), 0);
  EXPECT_EQ(back.token_index, o.token_index);
  EXPECT_EQ(back.max_cache, 17);
  EXPECT_EQ(back.resolved_budget, 16);
  EXPECT_EQ(back.perturbation.size(), 2u);
  EXPECT_EQ(back.perturbation[1].head, 2);
  EXPECT_EQ(back.perturbation[1].cosine, 0.99);
  // Every truncation, trailing bytes, and another message's bytes are refused by name.
  for (size_t cut = 0; cut < bytes.size(); ++cut) {
    EXPECT_NE(error_of([&] { decode_run_output(bytes.substr(0, cut), &run); }), "") << cut;
  }
  EXPECT_NE(error_of([&] { decode_run_output(bytes + "x", &run); }).find("past its end"), std::string::npos);
  std::string other = bytes;
  other[0] ^= 1;
  EXPECT_NE(error_of([&] { decode_run_output(other, &run); }).find("not a run's output"), std::string::npos);
}

TEST(PerturbWire, RoundTripsBitForBitAndRefusesDamage) {
  PerturbDocumentResult result;
  result.decode_seconds = 0.5;
  PerturbVariantResult v;
  v.name = "uniform";
  v.cos_output = {1.0, -0.0, 0.25};
  v.kl = {1e-300};
  v.merged = {3, 4, -1, -1};
  v.weights = {0.5, 0.5};
  result.variants = {v, v};
  result.variants[1].name = "evict";
  const std::string bytes = encode_perturb_result(result);
  const PerturbDocumentResult back = decode_perturb_result(bytes);
  ASSERT_EQ(back.variants.size(), 2u);
  EXPECT_EQ(back.variants[1].name, "evict");
  EXPECT_EQ(std::memcmp(back.variants[0].cos_output.data(), v.cos_output.data(), 3 * sizeof(double)), 0);
  EXPECT_EQ(back.variants[0].merged, v.merged);
  EXPECT_EQ(back.variants[0].kl, v.kl);
  EXPECT_EQ(back.decode_seconds, 0.5);
  for (size_t cut = 0; cut < bytes.size(); ++cut) EXPECT_NE(error_of([&] { decode_perturb_result(bytes.substr(0, cut)); }), "") << cut;
  EXPECT_NE(error_of([&] { decode_perturb_result(bytes + "x"); }).find("past its end"), std::string::npos);
}

#ifdef KVSCOPE_TEST_MPIRUN

// mpirun as the tests start it: as root if need be, more ranks than cores, shared-memory
// copies without ptrace (which containers often forbid), and ranks started locally without
// an ssh agent (a fresh container may have none).
std::vector<std::string> mpirun_args(int ranks, const std::vector<std::string>& kvscope_args) {
  std::vector<std::string> a{"--oversubscribe", "--allow-run-as-root", "--mca", "btl_vader_single_copy_mechanism", "none",
                             "--mca", "plm", "isolated", "-np", std::to_string(ranks), KVSCOPE_BINARY};
  a.insert(a.end(), kvscope_args.begin(), kvscope_args.end());
  return a;
}

testing::CliResult mpirun(int ranks, const std::vector<std::string>& kvscope_args) {
  return testing::run_program(KVSCOPE_TEST_MPIRUN, mpirun_args(ranks, kvscope_args));
}

// The processes whose parent is `parent` (mpirun's ranks), from /proc.
std::vector<pid_t> child_processes(pid_t parent) {
  std::vector<pid_t> children;
  for (const auto& e : std::filesystem::directory_iterator("/proc")) {
    const std::string name = e.path().filename().string();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    std::ifstream stat(e.path() / "stat");
    std::string line;
    std::getline(stat, line);
    // pid (comm) state ppid ...; comm may hold spaces and parentheses, so parse after the last ')'.
    const size_t close = line.rfind(')');
    if (close == std::string::npos) continue;
    std::istringstream rest(line.substr(close + 1));
    char state = 0;
    long ppid = 0;
    if (rest >> state >> ppid && ppid == parent) children.push_back(static_cast<pid_t>(std::stol(name)));
  }
  return children;
}

std::map<std::string, PplRun> by_key(const std::string& path) {
  std::map<std::string, PplRun> out;
  for (auto& r : read_ppl_results(path)) out[r.key] = std::move(r);
  return out;
}

// Run for run (by key), bit for bit.
void expect_same_runs(const std::string& expected_path, const std::string& actual_path) {
  const auto expected = by_key(expected_path), actual = by_key(actual_path);
  ASSERT_EQ(expected.size(), actual.size()) << actual_path;
  for (const auto& [key, e] : expected) {
    const auto it = actual.find(key);
    ASSERT_NE(it, actual.end()) << "missing run " << key;
    const PplRun& a = it->second;
    ASSERT_EQ(a.nll.size(), e.nll.size()) << key;
    EXPECT_EQ(std::memcmp(a.nll.data(), e.nll.data(), e.nll.size() * sizeof(double)), 0) << key;
    EXPECT_EQ(a.token_index, e.token_index) << key;
    EXPECT_EQ(a.max_cache, e.max_cache) << key;
    EXPECT_EQ(a.budget, e.budget) << key;
  }
}

// `group` of two HDF5 files holds the same datasets, bit for bit (h5diff compares exactly).
void expect_same_group(const std::string& expected, const std::string& actual, const std::string& group) {
  const auto diff = testing::run_program("/usr/bin/h5diff", {expected, actual, group, group});
  EXPECT_EQ(diff.code, 0) << actual << " " << group << ": " << diff.out << diff.err;
}

class MpiSweep : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new testing::TempDir("mpi");
    RandomModelSpec spec;
    spec.intermediate_size = 172;  // not a multiple of the kernel block
    write_random_model((*dir_ / "m").string(), spec);
    // Documents of different lengths with repeated tokens (ties happen).
    for (int d = 0; d < 3; ++d) {
      std::ofstream ids(*dir_ / ("doc" + std::to_string(d) + ".txt"));
      for (int i = 0; i < 70 - 15 * d; ++i) ids << (i * (5 + d) % 29) + 1 << ' ';
    }
    {
      std::ofstream ids(*dir_ / "long.txt");
      for (int i = 0; i < 1500; ++i) ids << (i * 37 % 251) + 1 << ' ';
    }
  }
  static void TearDownTestSuite() { delete dir_; }
  static std::string p(const std::string& name) { return (*dir_ / name).string(); }

  static std::vector<std::string> sweep(const std::string& out) {
    return {"ppl", p("m"), "--ids", p("doc0.txt"), p("doc1.txt"), p("doc2.txt"), "-o", out, "--budget", "8,20", "--batch", "3"};
  }
  static inline testing::TempDir* dir_ = nullptr;
};

TEST_F(MpiSweep, DistributedResultsEqualASingleProcessBitForBit) {
  const auto single = run_kvscope(sweep(p("single.h5")));
  ASSERT_EQ(single.code, 0) << single.err;
  for (const int ranks : {2, 3}) {
    const std::string out = p("ranks" + std::to_string(ranks) + ".h5");
    const auto r = mpirun(ranks, sweep(out));
    ASSERT_EQ(r.code, 0) << r.err;
    expect_same_runs(p("single.h5"), out);
    EXPECT_NE(r.err.find(std::to_string(ranks) + " ranks"), std::string::npos) << r.err;
    // One writer: the tables are printed once.
    EXPECT_EQ(r.out.find("| policy"), r.out.rfind("| policy")) << r.out;
  }
  // Under mpirun with one rank, the job is one process as before.
  const auto one = mpirun(1, sweep(p("ranks1.h5")));
  ASSERT_EQ(one.code, 0) << one.err;
  expect_same_runs(p("single.h5"), p("ranks1.h5"));
}

TEST_F(MpiSweep, StoppedMidwayResumesUnderAnotherRankCount) {
  const std::vector<std::string> args{"ppl", p("m"), "--ids", p("long.txt"), "-o", p("resumed.h5"), "--budget", "16,32,64",
                                      "--no-prefill", "--batch", "1"};
  const auto single = run_kvscope({"ppl", p("m"), "--ids", p("long.txt"), "-o", p("resume-single.h5"), "--budget", "16,32,64",
                                   "--no-prefill", "--batch", "1"});
  ASSERT_EQ(single.code, 0) << single.err;
  const ResumeJournal resume(p("resumed.h5"));
  const pid_t pid = testing::spawn_program(KVSCOPE_TEST_MPIRUN, mpirun_args(2, args), p("stopped.stderr"));
  // Stopped once the first finished run is on disk: each run's file appears atomically.
  ASSERT_TRUE(testing::wait_until([&] { return resume.has_runs(); }));
  // SIGTERM to every process of the job at once, as a batch scheduler's cancel sends it:
  // mpirun alone took about a second to pass it on, long enough for this small sweep to end.
  for (const pid_t rank : child_processes(pid)) kill(rank, SIGTERM);
  kill(pid, SIGTERM);
  int status = 0;
  waitpid(pid, &status, 0);
  ASSERT_FALSE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "the sweep finished before it could be stopped";
  EXPECT_FALSE(std::filesystem::exists(p("resumed.h5")));
  const size_t kept = resume.runs().size();
  EXPECT_GE(kept, 1u);
  EXPECT_LT(kept, by_key(p("resume-single.h5")).size());

  std::vector<std::string> again = args;
  again.push_back("--resume");
  const auto r = mpirun(3, again);
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.err.find("resuming: " + std::to_string(kept) + " of"), std::string::npos) << r.err;
  expect_same_runs(p("resume-single.h5"), p("resumed.h5"));
  EXPECT_FALSE(std::filesystem::exists(resume.directory()));
}

// mpirun's MPMD form gives each rank its own command line: here one rank's document is
// missing, or differs, and the job ends with that rank's message and a non-zero exit.
TEST_F(MpiSweep, AFailingRankEndsTheJobWithItsMessage) {
  const auto mpmd = [&](const std::string& rank1_ids, const std::string& out) {
    std::vector<std::string> a = mpirun_args(1, {"ppl", p("m"), "--ids", p("doc0.txt"), "-o", out, "--budget", "8"});
    a.insert(a.end(), {":", "-np", "1", KVSCOPE_BINARY, "ppl", p("m"), "--ids", rank1_ids, "-o", out, "--budget", "8"});
    return testing::run_program("/usr/bin/timeout", [&] {
      std::vector<std::string> t{"120", KVSCOPE_TEST_MPIRUN};
      t.insert(t.end(), a.begin(), a.end());
      return t;
    }());
  };
  const auto missing = mpmd(p("nope.txt"), p("fail1.h5"));
  EXPECT_NE(missing.code, 0);
  EXPECT_NE(missing.code, 124) << "the job hung instead of ending";
  EXPECT_NE(missing.err.find("kvscope: error: rank 1: "), std::string::npos) << missing.err;
  EXPECT_NE(missing.err.find("nope.txt"), std::string::npos) << missing.err;
  EXPECT_FALSE(std::filesystem::exists(p("fail1.h5")));

  const auto different = mpmd(p("doc1.txt"), p("fail2.h5"));
  EXPECT_NE(different.code, 0);
  EXPECT_NE(different.code, 124) << "the job hung instead of ending";
  EXPECT_NE(different.err.find("rank 1 was given different work from rank 0's"), std::string::npos) << different.err;
  EXPECT_FALSE(std::filesystem::exists(p("fail2.h5")));
}

// perturb spreads its documents over the ranks; every dataset of the result equals a single
// process's, bit for bit (h5diff compares exactly), and so does the CSV summary.
TEST_F(MpiSweep, PerturbUnderMpiEqualsASingleProcess) {
  const auto args = [&](const std::string& out) {
    return std::vector<std::string>{"perturb", p("m"), "--ids", p("doc0.txt"), p("doc1.txt"), p("doc2.txt"), p("doc0.txt"),
                                    "-o", out, "--at", "12", "--steps", "15"};
  };
  const auto single = run_kvscope(args(p("perturb1.h5")));
  ASSERT_EQ(single.code, 0) << single.err;
  for (const int ranks : {2, 3}) {
    const std::string out = p("perturb-ranks" + std::to_string(ranks) + ".h5");
    const auto r = mpirun(ranks, args(out));
    ASSERT_EQ(r.code, 0) << r.err;
    EXPECT_NE(r.err.find(std::to_string(ranks) + " ranks"), std::string::npos) << r.err;
    for (const char* group : {"/documents", "/aggregate"}) expect_same_group(p("perturb1.h5"), out, group);
    std::ifstream a(p("perturb1.csv")), b(p("perturb-ranks" + std::to_string(ranks) + ".csv"));
    EXPECT_EQ(std::string(std::istreambuf_iterator<char>(a), {}), std::string(std::istreambuf_iterator<char>(b), {}));
  }
}

// dump spreads its documents over the ranks, each writing one-document parts beside the
// output that rank 0 copies in document order: every document equals a single process's
// bit for bit, the dump passes the reader's checks, and no part is left behind.
TEST_F(MpiSweep, DumpUnderMpiEqualsASingleProcess) {
  const auto args = [&](const std::string& out) {
    return std::vector<std::string>{"dump", p("m"), "--ids", p("doc0.txt"), p("doc1.txt"), p("doc2.txt"), p("doc1.txt"),
                                    "-o", out, "--attention", "full", "--queries"};
  };
  const auto single = run_kvscope(args(p("dump1.h5")));
  ASSERT_EQ(single.code, 0) << single.err;
  for (const int ranks : {2, 3}) {
    testing::TempDir where("mpi-dump");
    const std::string out = (where / "dump.h5").string();
    const auto r = mpirun(ranks, args(out));
    ASSERT_EQ(r.code, 0) << r.err;
    expect_same_group(p("dump1.h5"), out, "/documents");
    EXPECT_EQ(run_kvscope({"info", out}).code, 0);
    std::vector<std::string> left;
    for (const auto& e : std::filesystem::directory_iterator(where.path())) left.push_back(e.path().filename().string());
    EXPECT_EQ(left, std::vector<std::string>{"dump.h5"});
  }
}

TEST_F(MpiSweep, CommandsThatDoNotDistributeRefuseSeveralRanks) {
  const auto r = mpirun(2, {"score", p("m"), "--ids", p("doc0.txt")});
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.err.find("kvscope score runs as one process (dump, ppl, perturb share their work"), std::string::npos) << r.err;
  // Help and usage errors are printed once, not once per rank.
  const auto help = mpirun(3, {"ppl", "--help"});
  EXPECT_EQ(help.code, 0);
  ASSERT_NE(help.out.find("Usage"), std::string::npos) << help.out;
  EXPECT_EQ(help.out.find("Usage"), help.out.rfind("Usage")) << help.out;
  const auto usage = mpirun(3, {"ppl", p("m"), "--ids", p("doc0.txt"), "-o", p("u.h5"), "--batch", "0"});
  EXPECT_NE(usage.code, 0);
  ASSERT_NE(usage.err.find("--batch: 0 is not allowed"), std::string::npos) << usage.err;
  EXPECT_EQ(usage.err.find("--batch: 0 is not allowed"), usage.err.rfind("--batch: 0 is not allowed")) << usage.err;
}

// Ranks on one node split its cores: an explicit thread count is checked against the rank's
// share, not the whole machine.
TEST_F(MpiSweep, ThreadCountsAreCheckedAgainstEachRanksShareOfTheCores) {
  const int cores = machine_cores();
  if (cores < 2) GTEST_SKIP() << "one core: no count fits the machine but not a rank's share";
  const std::string threads = std::to_string(cores / 2 + 1);  // fits the machine, not half of it
  const auto r = mpirun(2, {"ppl", p("m"), "--ids", p("doc0.txt"), "-o", p("t.h5"), "--budget", "8", "--blas-threads", threads});
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.err.find("--blas-threads " + threads + " oversubscribes this rank's share of " + std::to_string(cores / 2)), std::string::npos)
      << r.err;
  const auto alone = testing::run_kvscope({"ppl", p("m"), "--ids", p("doc0.txt"), "-o", p("t1.h5"), "--budget", "8", "--blas-threads", threads});
  EXPECT_EQ(alone.code, 0) << alone.err;
}

#else

TEST(MpiSweep, BuiltWithoutMpi) {
  EXPECT_FALSE(cluster::built_with_mpi());
  GTEST_SKIP() << "kvscope was built without MPI (install libopenmpi-dev and openmpi-bin: scripts/setup.sh)";
}

#endif

}  // namespace
}  // namespace kvscope
