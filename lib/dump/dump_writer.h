#pragma once
// Writes kvscope dumps: runs the forward pass over each document in prefill chunks and
// writes, layer by layer as they are produced, keys (before/after RoPE), values, optional
// queries, attention summaries and, for chosen layers and heads, full attention rows.
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace kvscope {

class LlamaModel;

enum class AttentionDump { None, Summary, Full };

struct DumpOptions {
  std::vector<int> layers;            // layers to dump
  std::vector<int> full_attention_layers;  // subset of `layers` with full attention (Full only)
  std::vector<int> heads;             // query heads with full attention
  AttentionDump attention = AttentionDump::Summary;
  bool queries = false;
  bool float16 = false;               // stored dtype of the float tensors
  int64_t chunk = 0;                  // prefill chunk; 0 = chosen from memory
};

struct DumpProvenance {
  std::string model_path, tokenizer, command_line;
};

struct DumpInput {
  std::vector<int64_t> ids;
  std::vector<std::string> pieces;                     // empty for pre-tokenised input
  std::vector<std::pair<int64_t, int64_t>> byte_spans;  // empty for pre-tokenised input
  std::string source;
};

class DumpWriter {
 public:
  // Writes to `path` (the caller's temporary file; see AtomicOutput).
  DumpWriter(const std::string& path, const LlamaModel& model, DumpOptions options, const DumpProvenance& provenance);
  ~DumpWriter();
  // progress(tokens done in this document, tokens in it)
  void add_document(const DumpInput& input, const std::function<void(int64_t, int64_t)>& progress = {});
  // Appends the one document of `part`, a finished dump written with the same model and
  // options (by another rank of an MPI job), copied as it is.
  void add_document_from(const std::string& part);
  // Marks the file complete and closes it. A file without this mark is refused by readers.
  void finish();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace kvscope
