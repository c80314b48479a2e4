#pragma once
// Reads kvscope dumps. Every analysis goes through this reader; it refuses files of another
// schema version and files that are incomplete, with a message that says which and why.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace kvscope {

struct FloatArray {
  std::vector<int64_t> shape;
  std::vector<float> data;
};

struct DumpDocument {
  std::string source;
  std::vector<int64_t> token_ids;
  bool has_token_strings = false;
};

class DumpReader {
 public:
  // `watchdog_seconds` > 0 ends the process with a clear error if validation takes longer:
  // libhdf5 1.10 can loop forever on some corrupted files (found by fuzzing), and a command
  // line tool must not hang. Library users who prefer their own guard pass 0.
  static DumpReader open(const std::string& path, unsigned watchdog_seconds = 0);
  DumpReader(DumpReader&&) noexcept;
  ~DumpReader();

  const std::string& path() const { return path_; }
  int64_t num_layers() const { return num_layers_; }     // of the model
  int64_t num_heads() const { return num_heads_; }
  int64_t num_kv_heads() const { return num_kv_heads_; }
  int64_t head_dim() const { return head_dim_; }
  const std::vector<int64_t>& layers() const { return layers_; }  // dumped layers
  const std::vector<int64_t>& full_attention_layers() const { return full_layers_; }
  const std::vector<int64_t>& full_attention_heads() const { return full_heads_; }
  const std::string& attention_mode() const { return attention_mode_; }
  bool has_queries() const { return has_queries_; }
  const std::vector<DumpDocument>& documents() const { return documents_; }
  std::string attribute(const std::string& name) const;

  // name: k_pre_rope, k, v, q, attention, key_norm, ... (see the schema).
  FloatArray read(int64_t document, int64_t layer, const std::string& name) const;
  // One head's slice along the first axis of a [heads, ...] dataset.
  FloatArray read_head(int64_t document, int64_t layer, const std::string& name, int64_t head) const;
  // Fails, naming the dataset and element, if any value is NaN or Inf.
  void require_finite(const FloatArray& a, const std::string& dataset) const;

 private:
  DumpReader() = default;
  struct Impl;
  std::unique_ptr<Impl> impl_;
  std::string path_, attention_mode_;
  int64_t num_layers_ = 0, num_heads_ = 0, num_kv_heads_ = 0, head_dim_ = 0;
  std::vector<int64_t> layers_, full_layers_, full_heads_;
  bool has_queries_ = false;
  std::vector<DumpDocument> documents_;
};

}  // namespace kvscope
