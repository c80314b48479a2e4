#include "eval/ppl.h"

#include <ATen/ATen.h>

#include <cmath>

#include "core/error.h"
#include "eval/document_run.h"
#include "model/llama.h"

namespace kvscope {

Protocol parse_protocol(const std::string& name) {
  if (name == "stream") return Protocol::Stream;
  if (name == "sliding") return Protocol::Sliding;
  if (name == "chunks") return Protocol::Chunks;
  fail("unknown protocol '", name, "' (known: stream, sliding, chunks)");
}

const char* protocol_name(Protocol p) {
  switch (p) {
    case Protocol::Stream: return "stream";
    case Protocol::Sliding: return "sliding";
    case Protocol::Chunks: return "chunks";
  }
  return "?";
}

std::vector<Window> make_windows(Protocol p, int64_t length, int64_t window, int64_t stride) {
  std::vector<Window> out;
  if (length < 2) fail("a document needs at least 2 tokens to score, got ", length);
  if (p == Protocol::Stream) return {Window{0, length, 1}};
  if (window < 2) fail("--window must be at least 2 tokens");
  if (length < window) fail("the text has ", length, " tokens, shorter than one window of ", window, " (lower --window or use --protocol stream)");
  if (p == Protocol::Chunks) {
    for (int64_t b = 0; b + 1 < length; b += window) {
      const int64_t e = std::min(length, b + window);
      out.push_back(Window{b, e, b + 1});
    }
    return out;
  }
  if (stride <= 0 || stride > window) fail("--stride must be in [1, window]");
  // The fixed-length recipe: windows start every `stride` tokens; each scores only the
  // tokens after the previous window's end.
  int64_t prev_end = 0;
  for (int64_t b = 0; b < length; b += stride) {
    const int64_t e = std::min(length, b + window);
    out.push_back(Window{b, e, std::max(prev_end, b + 1)});
    prev_end = e;
    if (e == length) break;
  }
  return out;
}

std::string BudgetSpec::label() const {
  if (tokens > 0) return std::to_string(tokens);
  // A ratio keeps its decimal point, so "1.0" (the whole window) never reads as one token.
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%g", ratio);
  std::string s = buf;
  if (s.find_first_of(".e") == std::string::npos) s += ".0";
  return s;
}

int64_t BudgetSpec::resolve(int64_t window_length) const {
  if (tokens > 0) return tokens;
  return std::max<int64_t>(1, static_cast<int64_t>(std::llround(ratio * static_cast<double>(window_length))));
}

BudgetSpec parse_budget(const std::string& text) {
  BudgetSpec b;
  const bool fractional = text.find('.') != std::string::npos;
  try {
    size_t used = 0;
    if (fractional) {
      b.ratio = std::stod(text, &used);
    } else {
      const long long v = std::stoll(text, &used);
      b.tokens = v;
      if (v <= 0) fail("--budget ", text, ": must be positive");
    }
    if (used != text.size()) throw std::invalid_argument(text);
  } catch (const Error&) {
    throw;
  } catch (...) {
    fail("--budget '", text, "': expected a token count (e.g. 256) or a ratio in (0, 1] (e.g. 0.25)");
  }
  if (fractional && !(b.ratio > 0.0 && b.ratio <= 1.0)) fail("--budget ", text, ": a ratio must be in (0, 1]");
  return b;
}

RunOutput run_document(const LlamaModel& model, const std::vector<int64_t>& ids, const std::vector<Window>& windows,
                       const RunConfig& cfg, const std::function<void(int64_t)>& on_token, DecisionObserver* decisions) {
  // The same steps a batched sweep takes, with a batch of one: identical results by design.
  DocumentRun run(model, ids, windows, cfg, on_token, decisions);
  for (run.advance(); !run.finished(); run.advance()) run.accept(model.forward_step({run.next_step()}));
  return run.take_output();
}

}  // namespace kvscope
