#include "eval/document_run.h"

#include <algorithm>

#include "cache/policy_registry.h"
#include "core/error.h"
#include "eval/score.h"
#include "model/device.h"

namespace kvscope {

PolicyCacheConfig policy_cache_config(const LlamaModel& model, const RunConfig& config) {
  const ModelConfig& c = model.config();
  return PolicyCacheConfig{c.num_layers, c.num_heads, c.num_kv_heads, c.head_dim, model.dtype(), model.device(), config.positions,
                           config.aggregation};
}

DocumentRun::DocumentRun(const LlamaModel& model, const std::vector<int64_t>& ids, const std::vector<Window>& windows,
                         const RunConfig& config, std::function<void(int64_t)> on_token, DecisionObserver* decisions)
    : model_(model),
      ids_(ids),
      windows_(windows),
      config_(config),
      on_token_(std::move(on_token)),
      decisions_(decisions),
      all_(at::tensor(ids, at::TensorOptions().dtype(at::kLong))),
      started_(std::chrono::steady_clock::now()) {}

void DocumentRun::open_window() {
  const Window& win = windows_[window_];
  len_ = win.end - win.begin;
  const bool full = policy_info(config_.policy).traits.keeps_everything;
  budget_ = full ? len_ : config_.budget.resolve(len_);
  if (window_ == 0) out_.resolved_budget = budget_;
  const int64_t context = model_.config().max_position_embeddings;
  if ((config_.positions == PositionMode::Original || full) && len_ > context) {
    fail("a window of ", len_, " tokens exceeds the model's context of ", context,
         full ? " (use a smaller --window or --max-tokens)" : " with --positions original (use --positions in-cache, or a smaller --window)");
  }
  // In-cache positions run up to the largest cache length: budget + 1 while a token is
  // being added.
  if (config_.positions == PositionMode::InCache && !full && std::min(budget_ + 1, len_) > context) {
    fail("budget ", budget_, " exceeds the model's context of ", context);
  }
  PolicyOptions po = config_.options;
  po.budget = budget_;
  cache_ = std::make_unique<PolicyCache>(policy_cache_config(model_, config_), std::shared_ptr<CachePolicy>(make_policy(config_.policy, po)),
                                         model_.rope(), full ? len_ : budget_);
  // Both the perturbation log and a caller's observer see every decision.
  observers_.clear();
  if (config_.log_perturbation) observers_.add(&log_);
  if (decisions_) observers_.add(decisions_);
  cache_->set_decision_observer(observers_.empty() ? nullptr : &observers_);
  pos_ = 0;
  window_open_ = true;
}

void DocumentRun::collect_nll() {
  if (pending_nll_.empty()) return;
  const at::Tensor all = at::cat(pending_nll_).to(at::kCPU).contiguous();
  out_.nll.insert(out_.nll.end(), all.data_ptr<double>(), all.data_ptr<double>() + all.numel());
  pending_nll_.clear();
}

void DocumentRun::close_window() {
  collect_nll();
  for (int64_t l = 0; l < model_.config().num_layers; ++l) out_.max_cache = std::max(out_.max_cache, cache_->size(static_cast<int>(l)));
  out_.policy_seconds += cache_->policy_seconds();
  cache_.reset();
  window_open_ = false;
  ++window_;
}

void DocumentRun::keep(const at::Tensor& logits, int64_t first_row_pos) {
  // Row r of `logits` is the model at absolute position first_row_pos + r and predicts
  // token first_row_pos + r + 1.
  const Window& win = windows_[window_];
  std::vector<int64_t> targets, rows;
  for (int64_t r = 0; r < logits.size(0); ++r) {
    const int64_t target = first_row_pos + r + 1;
    if (target >= win.score_from && target < win.end) {
      rows.push_back(r);
      targets.push_back(ids_[target]);
    }
  }
  if (rows.empty()) return;
  const auto n = static_cast<int64_t>(rows.size());
  const at::Tensor sel = rows.back() - rows.front() + 1 == n ? logits.narrow(0, rows.front(), n)
                                                             : logits.index_select(0, upload(rows, logits.device()));
  // Left on the model's device until the window closes: a GPU then never waits for the host
  // between decode steps.
  pending_nll_.push_back(negative_log_likelihoods(sel, upload(targets, logits.device())));
  for (const int64_t r : rows) out_.token_index.push_back(first_row_pos + r + 1);
  if (on_token_) on_token_(n);
}

void DocumentRun::advance() {
  while (!finished()) {
    if (!window_open_) open_window();
    const Window& win = windows_[window_];
    const int64_t prefill_len = config_.prefill ? std::min(budget_, len_) : 0;
    if (pos_ < prefill_len) {
      const int64_t n = std::min(config_.prefill_chunk, prefill_len - pos_);
      keep(model_.forward(all_.narrow(0, win.begin + pos_, n), pos_, *cache_), win.begin + pos_);
      pos_ += n;
      continue;
    }
    if (pos_ < len_ - 1) return;
    close_window();
  }
}

LlamaModel::DecodeSlot DocumentRun::next_step() {
  const Window& win = windows_[window_];
  log_.set_step(win.begin + pos_);
  return LlamaModel::DecodeSlot{ids_[win.begin + pos_], pos_, cache_.get(), nullptr};
}

void DocumentRun::accept(const at::Tensor& logits) {
  keep(logits, windows_[window_].begin + pos_);
  for (int64_t l = 0; l < model_.config().num_layers; ++l) out_.max_cache = std::max(out_.max_cache, cache_->size(static_cast<int>(l)));
  ++pos_;
}

RunOutput DocumentRun::take_output() {
  collect_nll();
  out_.perturbation = log_.events();
  out_.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started_).count();
  return std::move(out_);
}

}  // namespace kvscope
