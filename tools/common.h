#pragma once
// What every command shares, without LibTorch: input documents, output checks, option
// validators. A command that loads a model also includes model_runtime.h.
#include <CLI/CLI.hpp>

#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "model/config.h"
#include "model/tokenizer.h"

namespace kvscope::tools {

struct InputOptions {
  std::string text_file;
  std::string ids_file;
  int64_t max_tokens = 0;  // 0 = all
};

void add_input_options(CLI::App* cmd, InputOptions& o);

struct TokenInput {
  std::vector<int64_t> ids;
  std::vector<std::string> pieces;                     // empty for --ids input
  std::vector<std::pair<int64_t, int64_t>> byte_spans;  // empty for --ids input
  std::string source;                                  // file it came from
};

// Reads --text (tokenised with the model's tokenizer) or --ids, and truncates to
// --max-tokens. Errors on empty input and on ids outside the vocabulary.
TokenInput read_input(const std::string& model_dir, const ModelConfig& config, const InputOptions& o);

// --text FILE... / --ids FILE... (one document per file, mutually exclusive), read back
// with read_documents.
void add_document_options(CLI::App* cmd, std::vector<std::string>& texts, std::vector<std::string>& ids);

// Several documents from --text FILE... or --ids FILE... (exactly one kind), each truncated
// to max_tokens (0 = all). `sources` receives the file names.
std::vector<std::vector<int64_t>> read_documents(const std::string& model_dir, const ModelConfig& config,
                                                 const std::vector<std::string>& texts, const std::vector<std::string>& ids,
                                                 int64_t max_tokens, std::vector<std::string>* sources = nullptr,
                                                 std::vector<TokenInput>* full = nullptr);

// OUT with its extension replaced ("results.h5" -> "results.csv"), for tables written
// beside a results file. Fails if it exists and `force` is false.
std::string sidecar_path(const std::string& out, const std::string& extension, bool force);
// What a model command reads, for the output checks below: the files directly inside
// `model_dir` (config, weights, tokenizer, ...) and its --text and --ids files.
std::vector<std::string> input_files(const std::string& model_dir, const std::vector<std::string>& texts,
                                     const std::vector<std::string>& ids);
// Fails when `out` names the same file as one of `inputs`: an output never replaces its input.
void refuse_output_over_inputs(const std::string& out, const std::vector<std::string>& inputs);
// Writes a small text file atomically.
void write_text_file(const std::string& path, const std::string& text);

// Seconds a dump may take to validate before the command gives up on it (libhdf5 can hang
// on corrupt files): KVSCOPE_READ_TIMEOUT, default 60.
unsigned read_timeout_seconds();

// "512M", "8G", "1.5GiB", "1000000" (bytes) -> bytes; a clear error otherwise.
int64_t parse_byte_size(const std::string& text, const std::string& option);

// An integer option's check in kvscope's words ("must be at least MIN", "expected a whole
// number") instead of CLI11's floating-point range text.
// `max` bounds values that are representable but absurd (a thread count of a million).
CLI::Validator at_least(int64_t min, int64_t max = std::numeric_limits<int64_t>::max());
// A seed: any whole number in [0, 2^64 - 1]; a negative one is refused, not wrapped.
CLI::Validator seed_value();
// A text option given explicitly must say something: "" is refused, not read as the default.
CLI::Validator non_empty();
// A thread count: 0 (the measured default) up to this machine's cores; more threads than
// cores only wait on each other.
CLI::Validator thread_count();
// A real-valued option: finite, above `low` (or equal to it when `low_allowed`), at most `high`.
CLI::Validator finite_in(double low, bool low_allowed, double high);

// The command line as typed, for provenance records.
std::string command_line();
void set_command_line(int argc, char** argv);

}  // namespace kvscope::tools
