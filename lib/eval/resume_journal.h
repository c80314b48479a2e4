#pragma once
// The finished runs of an interrupted `kvscope ppl` sweep, kept beside its output so that
// --resume can skip them. Each run is its own file, OUT.resume/run-KEY.h5 (a ppl results file
// holding that one run), written atomically as the run ends: recording a run costs that run's
// bytes. One file rewritten with every run so far had cost the sum over k of k runs' bytes,
// quadratic in the sweep (86 ms per write at 100 runs of 4,096 tokens; a sweep of thousands
// of runs would have spent hours, and written hundreds of GB, on its checkpoints).
#include <string>
#include <vector>

#include "eval/ppl_results.h"

namespace kvscope {

class ResumeJournal {
 public:
  explicit ResumeJournal(const std::string& output_path);

  // OUT.resume, and OUT.resume.h5: the single file earlier versions kept, still read.
  const std::string& directory() const { return directory_; }
  const std::string& single_file() const { return single_file_; }
  // The paths an output of the sweep must not replace.
  std::vector<std::string> paths() const { return {directory_, single_file_}; }

  // Whether an interrupted sweep left finished runs here (a directory that holds none is
  // not a sweep's state).
  bool has_runs() const;
  // Every finished run, each file checked against this sweep's model and settings first
  // (check_resumable names the first that differs).
  std::vector<PplRun> runs_for(const PplProvenance& now) const;
  // Every finished run, whatever sweep wrote it (tests, counting).
  std::vector<PplRun> runs() const;
  // Writes one finished run as its own file, atomically.
  void record(const PplRun& run, const PplProvenance& provenance, const std::string& model_config_json) const;
  // Removes the runs, the directory and the single file; anything else found in the
  // directory is left, with the directory, and named on stderr.
  void clear() const;

 private:
  std::vector<std::string> run_files() const;
  // One pass over the files: each checked against `now` (when given) and read.
  std::vector<PplRun> read_runs(const PplProvenance* now) const;
  std::string directory_, single_file_;
};

}  // namespace kvscope
