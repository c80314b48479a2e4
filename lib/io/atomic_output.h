#pragma once
#include <filesystem>
#include <string>

namespace kvscope {

// An output file that appears under its final name only when complete. Writers write to
// temp_path() (same directory, so the final rename is atomic) and call commit(); if they
// throw, or the process is interrupted, the final path is never touched. A crash can leave
// a "*.partial-PID" file behind, which no reader takes for a result.
class AtomicOutput {
 public:
  // Fails up front if the directory is missing or unwritable, if the path exists and is not
  // a regular file, or if it exists and `overwrite` is false. Without `overwrite`, commit()
  // refuses a file that appeared meanwhile (another run of the same command).
  AtomicOutput(const std::filesystem::path& final_path, bool overwrite);
  ~AtomicOutput();
  AtomicOutput(const AtomicOutput&) = delete;
  AtomicOutput& operator=(const AtomicOutput&) = delete;

  const std::filesystem::path& temp_path() const { return temp_; }
  const std::filesystem::path& final_path() const { return final_; }
  void commit();

 private:
  std::filesystem::path final_, temp_;
  bool committed_ = false;
  bool overwrite_ = false;
  int slot_ = -1;
};

// Removes every registered temp file on SIGINT/SIGTERM, then exits with 128+signal.
void install_interrupt_cleanup();

}  // namespace kvscope
