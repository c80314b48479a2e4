#include "io/atomic_output.h"

#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <vector>

#include "core/error.h"

namespace kvscope {
namespace {

// Fixed-size table readable from a signal handler without locks or allocation.
constexpr int kMaxPending = 16;
char g_pending[kMaxPending][4096];
volatile sig_atomic_t g_used[kMaxPending];
std::mutex g_mutex;

int register_pending(const std::string& path) {
  std::lock_guard<std::mutex> lock(g_mutex);
  for (int i = 0; i < kMaxPending; ++i) {
    if (!g_used[i] && path.size() < sizeof(g_pending[i])) {
      std::memcpy(g_pending[i], path.c_str(), path.size() + 1);
      g_used[i] = 1;
      return i;
    }
  }
  return -1;
}

void unregister_pending(int slot) {
  if (slot < 0) return;
  std::lock_guard<std::mutex> lock(g_mutex);
  g_used[slot] = 0;
}

extern "C" void on_interrupt(int sig) {
  for (int i = 0; i < kMaxPending; ++i) {
    if (g_used[i]) ::unlink(g_pending[i]);
  }
  const char msg[] = "kvscope: interrupted; partial output removed\n";
  (void)!::write(2, msg, sizeof(msg) - 1);
  ::_exit(128 + sig);
}

}  // namespace

AtomicOutput::AtomicOutput(const std::filesystem::path& final_path, bool overwrite) : final_(final_path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (final_.empty()) fail("no output path given");
  if (fs::is_directory(final_, ec)) fail(final_.string(), ": is a directory; give a file name");
  // Only a regular file is ever replaced: renaming over a device or a FIFO would destroy it.
  if (fs::exists(final_, ec) && !fs::is_regular_file(final_, ec)) {
    fail(final_.string(), ": is not a regular file (a device, FIFO or socket); outputs must be regular files");
  }
  if (fs::exists(final_, ec) && !overwrite) {
    fail(final_.string(), ": already exists; pass --force to overwrite it or choose another --out");
  }
  fs::path dir = final_.parent_path();
  if (dir.empty()) dir = ".";
  if (!fs::is_directory(dir, ec)) fail(final_.string(), ": directory '", dir.string(), "' does not exist");
  if (::access(dir.c_str(), W_OK) != 0) fail(final_.string(), ": directory '", dir.string(), "' is not writable");
  overwrite_ = overwrite;
  temp_ = final_;
  temp_ += ".partial-" + std::to_string(::getpid());
  slot_ = register_pending(temp_.string());
}

AtomicOutput::~AtomicOutput() {
  if (!committed_) {
    std::error_code ec;
    std::filesystem::remove(temp_, ec);
  }
  unregister_pending(slot_);
}

void AtomicOutput::commit() {
  std::error_code ec;
  if (std::filesystem::exists(final_, ec) && !std::filesystem::is_regular_file(final_, ec)) {
    fail(final_.string(), ": became something other than a regular file while kvscope ran; the output is not moved there");
  }
  if (!overwrite_) {
    // Another run that wrote the same path first wins; this one refuses, as it would have
    // had that run finished before it started.
    if (::renameat2(AT_FDCWD, temp_.c_str(), AT_FDCWD, final_.c_str(), RENAME_NOREPLACE) != 0) {
      const int err = errno;
      if (err == EEXIST) fail(final_.string(), ": was written by another run while this one ran; pass --force to overwrite it");
      fail(final_.string(), ": cannot move the finished output into place: ", std::strerror(err));
    }
  } else {
    std::filesystem::rename(temp_, final_, ec);
    if (ec) fail(final_.string(), ": cannot move the finished output into place: ", ec.message());
  }
  committed_ = true;
}

void install_interrupt_cleanup() {
  struct sigaction sa {};
  sa.sa_handler = on_interrupt;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
}

}  // namespace kvscope
