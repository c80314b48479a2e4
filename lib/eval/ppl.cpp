#include "eval/ppl.h"

#include <ATen/ATen.h>

#include <chrono>
#include <cmath>

#include "core/error.h"
#include "eval/score.h"
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
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%g", ratio);
  return buf;
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
  RunOutput out;
  const auto t0 = std::chrono::steady_clock::now();
  const at::Tensor all = at::tensor(ids, at::TensorOptions().dtype(at::kLong));
  const int64_t context = model.config().max_position_embeddings;
  for (size_t w = 0; w < windows.size(); ++w) {
    const Window& win = windows[w];
    const int64_t len = win.end - win.begin;
    const bool full = cfg.policy == "full";
    const int64_t budget = full ? len : cfg.budget.resolve(len);
    if (w == 0) out.resolved_budget = budget;
    if (cfg.cache.positions == PositionMode::Original && len > context) {
      fail("a window of ", len, " tokens exceeds the model's context of ", context,
           " with --positions original (use --positions in-cache, or a smaller --window)");
    }
    // In-cache positions run up to the largest cache length: budget + 1 while a token is
    // being added, or the window for the full cache.
    if (cfg.cache.positions == PositionMode::InCache && std::min(budget + 1, len) > context) {
      fail("budget ", budget, " exceeds the model's context of ", context);
    }
    PolicyOptions po = cfg.options;
    po.budget = budget;
    PolicyCache cache(cfg.cache, std::shared_ptr<CachePolicy>(make_policy(cfg.policy, po)), model.rope(), full ? len : budget);
    PerturbationLog log;
    cache.set_decision_observer(cfg.log_perturbation ? &log : decisions);
    auto keep = [&](const at::Tensor& logits, int64_t first_row_pos) {
      // Row r of `logits` is the model at absolute position first_row_pos + r and predicts
      // token first_row_pos + r + 1.
      std::vector<int64_t> targets;
      std::vector<int64_t> rows;
      for (int64_t r = 0; r < logits.size(0); ++r) {
        const int64_t target = first_row_pos + r + 1;
        if (target >= win.score_from && target < win.end) { rows.push_back(r); targets.push_back(ids[target]); }
      }
      if (rows.empty()) return;
      const at::Tensor sel = logits.index_select(0, at::tensor(rows, at::kLong).to(logits.device()));
      const auto nll = negative_log_likelihoods(sel, targets);
      for (size_t i = 0; i < nll.size(); ++i) {
        out.nll.push_back(nll[i]);
        out.token_index.push_back(first_row_pos + rows[i] + 1);
      }
      if (on_token) on_token(static_cast<int64_t>(nll.size()));
    };
    int64_t pos = 0;  // within the window
    if (cfg.prefill) {
      const int64_t prefill_len = std::min(budget, len);
      for (; pos < prefill_len;) {
        const int64_t n = std::min(cfg.prefill_chunk, prefill_len - pos);
        keep(model.forward(all.narrow(0, win.begin + pos, n), pos, cache), win.begin + pos);
        pos += n;
      }
    }
    for (; pos < len - 1; ++pos) {
      log.set_step(win.begin + pos);
      keep(model.forward(all.narrow(0, win.begin + pos, 1), pos, cache), win.begin + pos);
      for (int64_t l = 0; l < model.config().num_layers; ++l) out.max_cache = std::max(out.max_cache, cache.size(static_cast<int>(l)));
    }
    for (int64_t l = 0; l < model.config().num_layers; ++l) out.max_cache = std::max(out.max_cache, cache.size(static_cast<int>(l)));
    out.policy_seconds += cache.policy_seconds();
    out.perturbation.insert(out.perturbation.end(), log.events().begin(), log.events().end());
  }
  out.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return out;
}

}  // namespace kvscope
