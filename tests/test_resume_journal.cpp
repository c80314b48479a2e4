// The resume journal of `kvscope ppl`: one file per finished run, written atomically, read
// back with each file's provenance checked, and removed without touching what it did not write.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>

#include "core/error.h"
#include "eval/resume_journal.h"
#include "support/test_paths.h"

namespace kvscope {
namespace {

namespace fs = std::filesystem;

PplRun run_with_key(const std::string& key, double first_nll) {
  PplRun r;
  r.policy = "h2o";
  r.budget_label = "128";
  r.budget = 128;
  r.key = key;
  r.source = "doc";
  r.nll = {first_nll, first_nll + 0.5, first_nll + 1.0};
  r.token_index = {1, 2, 3};
  return r;
}

PplProvenance provenance(const std::string& model) { return PplProvenance{model, "kvscope ppl", SweepSettings{}, {"doc"}}; }

ino_t inode(const fs::path& p) {
  struct stat st{};
  EXPECT_EQ(::stat(p.c_str(), &st), 0) << p;
  return st.st_ino;
}

TEST(ResumeJournal, KeepsEachRunInItsOwnFileWrittenOnce) {
  testing::TempDir dir("journal");
  const ResumeJournal journal((dir / "out.h5").string());
  EXPECT_FALSE(journal.has_runs());
  journal.record(run_with_key("00000000000000aa", 1.0), provenance("m"), "{}");
  ASSERT_TRUE(journal.has_runs());
  const fs::path first = fs::path(journal.directory()) / "run-00000000000000aa.h5";
  const ino_t first_inode = inode(first);
  journal.record(run_with_key("00000000000000bb", 2.0), provenance("m"), "{}");
  journal.record(run_with_key("00000000000000cc", 3.0), provenance("m"), "{}");
  // Recording later runs leaves the earlier run's file as it was: not rewritten, not replaced.
  EXPECT_EQ(inode(first), first_inode);
  size_t files = 0;
  for (const auto& e : fs::directory_iterator(journal.directory())) files += e.is_regular_file();
  EXPECT_EQ(files, 3u);

  std::map<std::string, std::vector<double>> by_key;
  for (const PplRun& r : journal.runs_for(provenance("m"))) by_key[r.key] = r.nll;
  ASSERT_EQ(by_key.size(), 3u);
  EXPECT_EQ(by_key["00000000000000bb"], (std::vector<double>{2.0, 2.5, 3.0}));
  // The same key again replaces its own file only.
  journal.record(run_with_key("00000000000000bb", 7.0), provenance("m"), "{}");
  by_key.clear();
  for (const PplRun& r : journal.runs()) by_key[r.key] = r.nll;
  EXPECT_EQ(by_key.size(), 3u);
  EXPECT_EQ(by_key["00000000000000bb"].front(), 7.0);
}

TEST(ResumeJournal, ChecksEveryFilesModelAndReadsTheEarlierSingleFile) {
  testing::TempDir dir("journal-check");
  const ResumeJournal journal((dir / "out.h5").string());
  journal.record(run_with_key("0000000000000001", 1.0), provenance("m"), "{}");
  // The single file earlier versions rewrote with every run is read beside the directory.
  write_ppl_results(journal.single_file(), {run_with_key("0000000000000002", 2.0)}, provenance("other"), "{}", nullptr);
  EXPECT_EQ(journal.runs().size(), 2u);
  try {
    journal.runs_for(provenance("m"));
    ADD_FAILURE() << "a finished run of another model was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("'other', this sweep uses 'm'"), std::string::npos) << e.what();
  }
}

TEST(ResumeJournal, ClearRemovesOnlyWhatItWrote) {
  testing::TempDir dir("journal-clear");
  const ResumeJournal journal((dir / "out.h5").string());
  journal.record(run_with_key("0000000000000001", 1.0), provenance("m"), "{}");
  write_ppl_results(journal.single_file(), {run_with_key("0000000000000002", 2.0)}, provenance("m"), "{}", nullptr);
  // What a process killed mid-write leaves.
  std::ofstream(fs::path(journal.directory()) / "run-0000000000000003.h5.partial-12345") << "half";
  journal.clear();
  EXPECT_FALSE(fs::exists(journal.directory()));
  EXPECT_FALSE(fs::exists(journal.single_file()));
  EXPECT_FALSE(journal.has_runs());

  journal.record(run_with_key("0000000000000001", 1.0), provenance("m"), "{}");
  std::ofstream(fs::path(journal.directory()) / "notes.txt") << "mine";
  journal.clear();
  EXPECT_TRUE(fs::exists(fs::path(journal.directory()) / "notes.txt"));
  EXPECT_FALSE(journal.has_runs());
}

TEST(ResumeJournal, RefusesWhatItCannotUse) {
  testing::TempDir dir("journal-bad");
  const ResumeJournal journal((dir / "out.h5").string());
  // An empty directory is no sweep's state.
  fs::create_directory(journal.directory());
  EXPECT_FALSE(journal.has_runs());
  fs::remove(journal.directory());
  std::ofstream(journal.directory()) << "not a directory";
  EXPECT_THROW(journal.has_runs(), Error);
  EXPECT_THROW(journal.record(run_with_key("0000000000000001", 1.0), provenance("m"), "{}"), Error);
  fs::remove(journal.directory());
  EXPECT_THROW(journal.record(run_with_key("../../escape", 1.0), provenance("m"), "{}"), Error);
  EXPECT_FALSE(fs::exists(journal.directory()));
}

}  // namespace
}  // namespace kvscope
