#include "common.h"

#include "core/cores.h"
#include "core/error.h"
#include "core/option_values.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "io/atomic_output.h"
#include "io/input_file.h"

namespace kvscope::tools {
namespace {
std::string g_command_line;
}

void add_input_options(CLI::App* cmd, InputOptions& o) {
  auto* text = cmd->add_option("--text", o.text_file, "UTF-8 text file, tokenised with the model's tokenizer.json (or tokenizer.model)");
  auto* ids = cmd->add_option("--ids", o.ids_file, "pre-tokenised input: token ids separated by whitespace or commas, '#' comments; no BOS added");
  text->excludes(ids);
  ids->excludes(text);
  cmd->add_option("--max-tokens", o.max_tokens, "use only the first N tokens (0 = all)")->check(at_least(0));
}

TokenInput read_input(const std::string& model_dir, const ModelConfig& config, const InputOptions& o) {
  TokenInput in;
  if (!o.ids_file.empty()) {
    in.ids = read_token_ids_file(o.ids_file, config.vocab_size);
    in.source = o.ids_file;
  } else if (!o.text_file.empty()) {
    const std::string text = read_text_file(o.text_file);
    check_utf8_text(text, o.text_file);
    if (text.find_first_not_of(" \t\r\n") == std::string::npos) fail(o.text_file, ": empty text (nothing to score)");
    const auto tok = Tokenizer::load(model_dir, config);
    Encoding enc;
    try {
      enc = tok->encode(text);
    } catch (const Error& e) {
      fail(o.text_file, ": ", e.what());
    }
    // A tokenizer of another model (or a bos_token_id past the embedding) would otherwise
    // fail deep inside the forward pass.
    for (const int64_t id : enc.ids) {
      if (id < 0 || id >= config.vocab_size) {
        fail(o.text_file, ": the tokenizer produced id ", id, ", outside the model's vocabulary (vocab_size ", config.vocab_size,
             "); do the tokenizer files and config.json belong to the same model?");
      }
    }
    in.ids = std::move(enc.ids);
    in.pieces = std::move(enc.pieces);
    in.byte_spans = std::move(enc.byte_spans);
    in.source = o.text_file;
  } else {
    fail("no input: pass --text FILE or --ids FILE");
  }
  if (o.max_tokens > 0 && static_cast<int64_t>(in.ids.size()) > o.max_tokens) {
    in.ids.resize(o.max_tokens);
    if (!in.pieces.empty()) in.pieces.resize(o.max_tokens);
    if (!in.byte_spans.empty()) in.byte_spans.resize(o.max_tokens);
  }
  return in;
}

void add_document_options(CLI::App* cmd, std::vector<std::string>& texts, std::vector<std::string>& ids) {
  auto* t = cmd->add_option("--text", texts, "text file(s), one document each");
  auto* i = cmd->add_option("--ids", ids, "pre-tokenised file(s), one document each (see README: Inputs)");
  t->excludes(i);
  i->excludes(t);
}

std::vector<std::vector<int64_t>> read_documents(const std::string& model_dir, const ModelConfig& config,
                                                 const std::vector<std::string>& texts, const std::vector<std::string>& ids,
                                                 int64_t max_tokens, std::vector<std::string>* sources, std::vector<TokenInput>* full) {
  if (texts.empty() && ids.empty()) fail("no input: pass --text FILE... or --ids FILE...");
  std::vector<std::vector<int64_t>> docs;
  for (const auto& f : texts.empty() ? ids : texts) {
    InputOptions io;
    (texts.empty() ? io.ids_file : io.text_file) = f;
    io.max_tokens = max_tokens;
    TokenInput in = read_input(model_dir, config, io);
    docs.push_back(in.ids);
    if (sources) sources->push_back(f);
    if (full) full->push_back(std::move(in));
  }
  return docs;
}

namespace {

bool same_file(const std::filesystem::path& a, const std::filesystem::path& b) {
  std::error_code ec;
  if (std::filesystem::exists(a, ec) && std::filesystem::exists(b, ec)) return std::filesystem::equivalent(a, b, ec);
  return std::filesystem::weakly_canonical(a, ec) == std::filesystem::weakly_canonical(b, ec);
}

}  // namespace

std::vector<std::string> input_files(const std::string& model_dir, const std::vector<std::string>& texts,
                                     const std::vector<std::string>& ids) {
  std::vector<std::string> files = texts;
  files.insert(files.end(), ids.begin(), ids.end());
  std::error_code ec;
  for (std::filesystem::directory_iterator it(model_dir, ec), end; !ec && it != end; it.increment(ec))
    if (it->is_regular_file(ec)) files.push_back(it->path().string());
  return files;
}

void refuse_output_over_inputs(const std::string& out, const std::vector<std::string>& inputs) {
  for (const std::string& in : inputs) {
    if (!in.empty() && same_file(out, in)) fail(out, ": is also an input of this command; an output never replaces its input");
  }
}

std::string sidecar_path(const std::string& out, const std::string& extension, bool force) {
  std::filesystem::path p(out);
  p.replace_extension(extension);
  std::error_code ec;
  if (same_file(p, out)) {
    fail(out, ": its ", extension, " table would be written over it; give the results file another extension (.h5)");
  }
  if (std::filesystem::exists(p, ec) && !std::filesystem::is_regular_file(p, ec)) {
    fail(p.string(), ": is not a regular file; the ", extension, " table beside ", out, " must be one");
  }
  if (std::filesystem::exists(p, ec) && !force) fail(p.string(), ": already exists; pass --force to overwrite");
  return p.string();
}

void write_text_file(const std::string& path, const std::string& text) {
  AtomicOutput out(path, true);
  {
    std::ofstream f(out.temp_path());
    f << text;
    if (!f.flush()) fail(path, ": write failed (disk full?)");
  }
  out.commit();
}

unsigned read_timeout_seconds() {
  const char* env = std::getenv("KVSCOPE_READ_TIMEOUT");
  if (env && *env) {
    const long v = std::strtol(env, nullptr, 10);
    if (v > 0 && v < 100000) return static_cast<unsigned>(v);
  }
  return 60;
}

std::string command_line() { return g_command_line; }

void set_command_line(int argc, char** argv) {
  std::string s;
  for (int i = 0; i < argc; ++i) {
    std::string a = argv[i];
    const bool quote = a.empty() || a.find_first_of(" \t'\"$\\") != std::string::npos;
    if (i) s += ' ';
    if (quote) {
      s += '\'';
      for (char c : a) s += c == '\'' ? std::string("'\\''") : std::string(1, c);
      s += '\'';
    } else {
      s += a;
    }
  }
  g_command_line = s;
}

int64_t parse_byte_size(const std::string& text, const std::string& option) {
  size_t used = 0;
  double value = -1;
  try {
    value = std::stod(text, &used);
  } catch (...) {
    used = 0;
  }
  std::string unit = text.substr(used);
  if (!unit.empty() && (unit.back() == 'B' || unit.back() == 'b')) unit.pop_back();
  if (unit.size() == 2 && (unit[1] == 'i' || unit[1] == 'I')) unit.pop_back();
  double scale = 0;
  if (unit.empty()) scale = 1;
  else if (unit == "K" || unit == "k") scale = 1024.0;
  else if (unit == "M" || unit == "m") scale = 1024.0 * 1024;
  else if (unit == "G" || unit == "g") scale = 1024.0 * 1024 * 1024;
  else if (unit == "T" || unit == "t") scale = 1024.0 * 1024 * 1024 * 1024;
  if (used == 0 || scale == 0 || !(value > 0) || value * scale > 9.0e18)
    fail(option, " '", text, "': expected a positive size such as 512M, 8G or 1.5GiB");
  return static_cast<int64_t>(value * scale);
}

CLI::Validator at_least(int64_t min, int64_t max) {
  return CLI::Validator(
      [min, max](std::string& text) -> std::string {
        long long v = 0;
        try {
          size_t used = 0;
          v = std::stoll(text, &used);
          if (used != text.size()) throw std::invalid_argument(text);
        } catch (const std::out_of_range&) {
          return concat(text, " is not allowed: must be at most ", max);
        } catch (const std::exception&) {
          return concat("'", text, "': expected a whole number");
        }
        if (v < min) return concat(text, " is not allowed: must be at least ", min);
        if (v > max) return concat(text, " is not allowed: must be at most ", max);
        return std::string();
      },
      "", "");
}

CLI::Validator seed_value() {
  return CLI::Validator(
      [](std::string& text) -> std::string {
        // stoull accepts "-1" and wraps it to 2^64 - 1; a seed is digits only.
        const bool digits = !text.empty() && text.size() <= 20 &&
                            std::all_of(text.begin(), text.end(), [](unsigned char c) { return std::isdigit(c); });
        if (!digits) return concat("'", text, "': expected a whole number from 0 to 18446744073709551615");
        try {
          (void)std::stoull(text);
        } catch (const std::exception&) {
          return concat(text, " is not allowed: must be at most 18446744073709551615");
        }
        return std::string();
      },
      "", "");
}

CLI::Validator thread_count() {
  return CLI::Validator(
      [](std::string& text) -> std::string {
        std::string check = text;
        const std::string whole = at_least(0)(check);
        if (!whole.empty()) return whole;
        const std::string refusal = thread_count_refusal(std::stoll(text));
        return refusal.empty() ? refusal : concat(text, " is not allowed: ", refusal);
      },
      "", "");
}

CLI::Validator non_empty() {
  return CLI::Validator(
      [](std::string& text) -> std::string {
        if (text.find_first_not_of(" \t") == std::string::npos) return "an empty value (leave the option out for its default)";
        return std::string();
      },
      "", "");
}

CLI::Validator finite_in(double low, bool low_allowed, double high) {
  return CLI::Validator(
      [=](std::string& text) -> std::string {
        try {
          size_t used = 0;
          const double v = std::stod(text, &used);
          if (used != text.size()) throw std::invalid_argument(text);
          if (!std::isfinite(v)) return concat(text, " is not allowed: must be a finite number");
          if (v < low || (v == low && !low_allowed) || v > high) {
            return concat(text, " is not allowed: must be ", low_allowed ? "at least " : "above ", low, " and at most ", high);
          }
        } catch (const std::exception&) {
          return concat("'", text, "': expected a number");
        }
        return std::string();
      },
      "", "");
}

}  // namespace kvscope::tools
