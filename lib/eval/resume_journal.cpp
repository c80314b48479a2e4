#include "eval/resume_journal.h"

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <system_error>

#include "core/error.h"
#include "io/atomic_output.h"

namespace kvscope {
namespace {

namespace fs = std::filesystem;

constexpr const char* kPrefix = "run-";
constexpr const char* kSuffix = ".h5";

bool is_run_file_name(const std::string& name) {
  const std::string prefix = kPrefix, suffix = kSuffix;
  return name.size() > prefix.size() + suffix.size() && name.compare(0, prefix.size(), prefix) == 0 &&
         name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// What AtomicOutput leaves of a run file when the process is killed before it commits.
bool is_partial_run_file_name(const std::string& name) {
  const std::string prefix = kPrefix, partial = std::string(kSuffix) + ".partial-";
  return name.compare(0, prefix.size(), prefix) == 0 && name.find(partial) != std::string::npos;
}

}  // namespace

ResumeJournal::ResumeJournal(const std::string& output_path)
    : directory_(output_path + ".resume"), single_file_(output_path + ".resume.h5") {}

std::vector<std::string> ResumeJournal::run_files() const {
  std::vector<std::string> files;
  std::error_code ec;
  if (fs::exists(single_file_, ec)) files.push_back(single_file_);
  if (!fs::exists(directory_, ec)) return files;
  if (!fs::is_directory(directory_, ec)) fail(directory_, ": expected the directory of an interrupted sweep's finished runs; move it away");
  std::vector<std::string> runs;
  for (const fs::directory_entry& e : fs::directory_iterator(directory_)) {
    if (is_run_file_name(e.path().filename().string()) && e.is_regular_file()) runs.push_back(e.path().string());
  }
  // Directory order is the file system's; a fixed order keeps messages and reuse reproducible.
  std::sort(runs.begin(), runs.end());
  files.insert(files.end(), runs.begin(), runs.end());
  return files;
}

bool ResumeJournal::has_runs() const { return !run_files().empty(); }

std::vector<PplRun> ResumeJournal::read_runs(const PplProvenance* now) const {
  std::vector<PplRun> all;
  for (const std::string& file : run_files()) {
    if (now) check_resumable(file, *now);
    std::vector<PplRun> more = read_ppl_results(file);
    all.insert(all.end(), std::make_move_iterator(more.begin()), std::make_move_iterator(more.end()));
  }
  return all;
}

std::vector<PplRun> ResumeJournal::runs_for(const PplProvenance& now) const { return read_runs(&now); }

std::vector<PplRun> ResumeJournal::runs() const { return read_runs(nullptr); }

void ResumeJournal::record(const PplRun& run, const PplProvenance& provenance, const std::string& model_config_json) const {
  // Keys are 16 hex digits (sweep_plan.cpp); anything else would not make a safe file name.
  if (run.key.empty() || run.key.find_first_not_of("0123456789abcdef") != std::string::npos)
    fail("internal: run key '", run.key, "' is not a hex digest");
  std::error_code ec;
  fs::create_directories(directory_, ec);
  if (ec) fail(directory_, ": cannot create the directory for finished runs (", ec.message(), ")");
  AtomicOutput file(fs::path(directory_) / (kPrefix + run.key + kSuffix), /*overwrite=*/true);
  write_ppl_results(file.temp_path().string(), {run}, provenance, model_config_json, /*summary=*/nullptr);
  file.commit();
}

void ResumeJournal::clear() const {
  std::error_code ec;
  fs::remove(single_file_, ec);
  if (!fs::is_directory(directory_, ec)) return;
  std::vector<std::string> others;
  for (const fs::directory_entry& e : fs::directory_iterator(directory_, ec)) {
    const std::string name = e.path().filename().string();
    if (is_run_file_name(name) || is_partial_run_file_name(name))
      fs::remove(e.path(), ec);
    else
      others.push_back(name);
  }
  if (others.empty()) {
    fs::remove(directory_, ec);
  } else {
    std::fprintf(stderr, "kvscope: left %s in place: it also holds %s, which kvscope did not write\n", directory_.c_str(), others.front().c_str());
  }
}

}  // namespace kvscope
