#include "eval/ppl_results.h"

#include <cmath>
#include <map>
#include <numeric>
#include <sstream>

#include <type_traits>

#include "core/error.h"
#include "io/h5.h"
#include "io/provenance.h"

namespace kvscope {

namespace {

// The full-cache run of each document, by document index; refuses a pair scored on other tokens.
std::map<int64_t, const PplRun*> full_runs(const std::vector<PplRun>& runs) {
  std::map<int64_t, const PplRun*> full;
  for (const PplRun& r : runs)
    if (r.budget_label == "full") full[r.document] = &r;
  for (const PplRun& r : runs) {
    const auto it = full.find(r.document);
    if (it != full.end() && r.token_index != it->second->token_index) {
      fail("internal: run ", r.policy, " ", r.budget_label, " scored other tokens than the full cache on document ", r.document);
    }
  }
  return full;
}

}  // namespace

BootstrapOptions bootstrap_options(const SweepSettings& s) { return BootstrapOptions{s.bootstrap, s.bootstrap_seed, s.bootstrap_block}; }

std::vector<std::optional<PplDifference>> paired_per_run(const std::vector<PplRun>& runs, const BootstrapOptions& bootstrap) {
  const auto full = full_runs(runs);
  std::vector<std::optional<PplDifference>> out(runs.size());
  for (size_t i = 0; i < runs.size(); ++i) {
    const auto it = full.find(runs[i].document);
    if (runs[i].budget_label == "full" || it == full.end()) continue;
    out[i] = paired_ppl_difference({runs[i].nll}, {it->second->nll}, bootstrap);
  }
  return out;
}

std::vector<PplRow> summarise(const std::vector<PplRun>& runs, const BootstrapOptions& bootstrap) {
  const auto full = full_runs(runs);
  std::vector<std::vector<std::vector<double>>> run_docs, full_docs;  // per row: the run's and the full cache's NLL per document
  std::vector<bool> pairable;
  std::vector<PplRow> rows;
  std::map<std::string, size_t> index;
  std::vector<std::vector<double>> pooled;
  std::vector<double> seconds, policy;
  for (const PplRun& r : runs) {
    const std::string key = r.policy + "|" + r.budget_label + "|" + r.weighting;
    if (!index.count(key)) {
      index[key] = rows.size();
      PplRow row;
      row.policy = r.policy;
      row.budget_label = r.budget_label;
      row.weighting = r.weighting;
      row.budget = r.budget;
      rows.push_back(row);
      pooled.emplace_back();
      seconds.push_back(0);
      policy.push_back(0);
      run_docs.emplace_back();
      full_docs.emplace_back();
      pairable.push_back(r.budget_label != "full");
    }
    const size_t i = index[key];
    const auto reference = full.find(r.document);
    if (reference == full.end()) {
      pairable[i] = false;
    } else {
      run_docs[i].push_back(r.nll);
      full_docs[i].push_back(reference->second->nll);
    }
    pooled[i].insert(pooled[i].end(), r.nll.begin(), r.nll.end());
    seconds[i] += r.seconds;
    policy[i] += r.policy_seconds;
    rows[i].max_cache = std::max(rows[i].max_cache, r.max_cache);
  }
  for (size_t i = 0; i < rows.size(); ++i) {
    const auto& v = pooled[i];
    const double n = static_cast<double>(v.size());
    const double mean = n > 0 ? std::accumulate(v.begin(), v.end(), 0.0) / n : 0.0;
    double var = 0;
    for (double x : v) var += (x - mean) * (x - mean);
    const double se = n > 1 ? std::sqrt(var / (n - 1) / n) : 0.0;
    rows[i].tokens = static_cast<int64_t>(v.size());
    rows[i].mean_nll = mean;
    rows[i].ppl = std::exp(mean);
    rows[i].ppl_low = std::exp(mean - 1.96 * se);
    rows[i].ppl_high = std::exp(mean + 1.96 * se);
    rows[i].tokens_per_second = seconds[i] > 0 ? n / seconds[i] : 0.0;
    rows[i].policy_us_per_token = n > 0 ? 1e6 * policy[i] / n : 0.0;
    if (pairable[i]) rows[i].paired = paired_ppl_difference(run_docs[i], full_docs[i], bootstrap);
  }
  return rows;
}

std::string markdown_table(const std::vector<PplRow>& rows, const std::string& caption) {
  std::ostringstream o;
  if (!caption.empty()) o << caption << "\n\n";
  o << "| policy | budget | weighting | PPL | 95% CI | PPL - full | paired 95% CI | mean NLL | tokens | max cache | tok/s | cache us/tok |\n";
  o << "|---|---|---|---|---|---|---|---|---|---|---|---|\n";
  char buf[512], paired[128];
  for (const PplRow& r : rows) {
    if (r.paired) std::snprintf(paired, sizeof(paired), "%+.3f | %+.3f to %+.3f", r.paired->delta_ppl, r.paired->low, r.paired->high);
    else std::snprintf(paired, sizeof(paired), "- | -");
    std::snprintf(buf, sizeof(buf), "| %s | %s | %s | %.3f | %.3f-%.3f | %s | %.4f | %lld | %lld | %.1f | %.1f |\n", r.policy.c_str(),
                  r.budget_label.c_str(), r.weighting.empty() ? "-" : r.weighting.c_str(), r.ppl, r.ppl_low, r.ppl_high, paired,
                  r.mean_nll, static_cast<long long>(r.tokens), static_cast<long long>(r.max_cache), r.tokens_per_second,
                  r.policy_us_per_token);
    o << buf;
  }
  return o.str();
}

std::string csv_table(const std::vector<PplRow>& rows) {
  std::ostringstream o;
  o << "policy,budget,weighting,ppl,ppl_ci_low,ppl_ci_high,ppl_minus_full,paired_ci_low,paired_ci_high,mean_nll,tokens,max_cache,"
       "tokens_per_second,cache_us_per_token\n";
  char buf[512], paired[128];
  for (const PplRow& r : rows) {
    if (r.paired) std::snprintf(paired, sizeof(paired), "%.6f,%.6f,%.6f", r.paired->delta_ppl, r.paired->low, r.paired->high);
    else std::snprintf(paired, sizeof(paired), ",,");
    std::snprintf(buf, sizeof(buf), "%s,%s,%s,%.6f,%.6f,%.6f,%s,%.6f,%lld,%lld,%.3f,%.3f\n", r.policy.c_str(), r.budget_label.c_str(),
                  r.weighting.c_str(), r.ppl, r.ppl_low, r.ppl_high, paired, r.mean_nll, static_cast<long long>(r.tokens),
                  static_cast<long long>(r.max_cache), r.tokens_per_second, r.policy_us_per_token);
    o << buf;
  }
  return o.str();
}

namespace {

// Settings as root attributes: strings as they are, numbers and flags as int64.
struct SettingWriter {
  const h5::Group& root;
  template <typename T>
  void operator()(const T& value, const SettingInfo& info) const {
    if constexpr (std::is_same_v<T, std::string>) root.set_attr(info.name, value);
    else root.set_attr(info.name, static_cast<int64_t>(value));
  }
};

struct SettingComparer {
  const h5::Group& root;
  const std::string& path;
  template <typename T>
  void operator()(const T& value, const SettingInfo& info) const {
    if (!info.affects_numbers) return;
    std::string was, now;
    if constexpr (std::is_same_v<T, std::string>) {
      was = "'" + root.attr_string(info.name) + "'";
      now = "'" + value + "'";
    } else {
      was = std::to_string(root.attr_int(info.name));
      now = std::to_string(static_cast<int64_t>(value));
    }
    if (was != now) {
      fail(path, ": was written with ", info.name, " ", was, ", this sweep has ", now,
           "; run with the same settings to resume, or --force to start over");
    }
  }
};

}  // namespace

namespace {

// A paired difference from the full cache, as attributes of a run's or a row's group.
void write_paired(const h5::Group& g, const PplDifference& d) {
  g.set_attr("paired_delta_ppl", d.delta_ppl);
  g.set_attr("paired_ci_low", d.low);
  g.set_attr("paired_ci_high", d.high);
  g.set_attr("paired_delta_nll", d.delta_nll);
}

}  // namespace

void write_ppl_results(const std::string& path, const std::vector<PplRun>& runs, const PplProvenance& p,
                       const std::string& model_config_json, const std::vector<PplRow>* summary) {
  h5::File file = h5::File::create(path);
  {
    const h5::Group root = file.root();
    write_provenance(root, kPplSchemaName, kPplSchemaVersion, p.command_line);
    root.set_attr("model_path", p.model_path);
    root.set_attr("model_config", model_config_json);
    SweepSettings settings = p.settings;
    settings.for_each(SettingWriter{root});
    root.set_attr("batch", p.batch);
    std::string sources;
    for (const auto& s : p.sources) sources += (sources.empty() ? "" : "\n") + s;
    root.set_attr("sources", sources);
    root.set_attr("num_runs", static_cast<int64_t>(runs.size()));
    const BootstrapOptions bootstrap = bootstrap_options(p.settings);
    const auto paired = summary ? paired_per_run(runs, bootstrap) : std::vector<std::optional<PplDifference>>(runs.size());
    const h5::Group group = root.create_group("runs");
    for (size_t i = 0; i < runs.size(); ++i) {
      const PplRun& r = runs[i];
      const h5::Group g = group.create_group(std::to_string(i));
      if (paired[i]) write_paired(g, *paired[i]);
      g.set_attr("policy", r.policy);
      g.set_attr("key", r.key);
      g.set_attr("budget_label", r.budget_label);
      g.set_attr("budget", r.budget);
      g.set_attr("weighting", r.weighting);
      g.set_attr("receiver", r.receiver);
      g.set_attr("document", r.document);
      g.set_attr("source", r.source);
      g.set_attr("max_cache", r.max_cache);
      g.set_attr("seconds", r.seconds);
      g.set_attr("policy_seconds", r.policy_seconds);
      const int64_t n = static_cast<int64_t>(r.nll.size());
      auto d = g.create_dataset("nll", {n}, h5::Stored::Float64, "scored_token");
      if (n) d.write_block({0}, {n}, r.nll.data());
      auto ti = g.create_dataset("token_index", {n}, h5::Stored::Int64, "scored_token");
      if (n) ti.write_block({0}, {n}, r.token_index.data());
      if (!r.perturbation_step.empty()) {
        const int64_t m = static_cast<int64_t>(r.perturbation_step.size());
        const h5::Group pg = g.create_group("perturbation");
        pg.create_dataset("step", {m}, h5::Stored::Int64, "event").write_block({0}, {m}, r.perturbation_step.data());
        pg.create_dataset("layer", {m}, h5::Stored::Int64, "event").write_block({0}, {m}, r.perturbation_layer.data());
        pg.create_dataset("head", {m}, h5::Stored::Int64, "event").write_block({0}, {m}, r.perturbation_head.data());
        pg.create_dataset("relative_change", {m}, h5::Stored::Float64, "event").write_block({0}, {m}, r.perturbation_relative_change.data());
        pg.create_dataset("cosine", {m}, h5::Stored::Float64, "event").write_block({0}, {m}, r.perturbation_cosine.data());
      }
    }
    // The rows of the table, pooled over documents, with their paired differences.
    const std::vector<PplRow> rows = summary ? *summary : std::vector<PplRow>{};
    const h5::Group summary = root.create_group("summary");
    summary.set_attr("num_rows", static_cast<int64_t>(rows.size()));
    for (size_t i = 0; i < rows.size(); ++i) {
      const PplRow& row = rows[i];
      const h5::Group g = summary.create_group(std::to_string(i));
      g.set_attr("policy", row.policy);
      g.set_attr("budget_label", row.budget_label);
      g.set_attr("budget", row.budget);
      g.set_attr("weighting", row.weighting);
      g.set_attr("ppl", row.ppl);
      g.set_attr("ppl_ci_low", row.ppl_low);
      g.set_attr("ppl_ci_high", row.ppl_high);
      g.set_attr("tokens", row.tokens);
      if (row.paired) write_paired(g, *row.paired);
    }
    mark_complete(root);
  }
  file.flush();
  file.close();
}

void check_resumable(const std::string& path, const PplProvenance& now) {
  h5::File file = h5::File::open_read(path);
  const h5::Group root = file.root();
  check_schema(root, path, kPplSchemaName, kPplSchemaVersion, "delete it and start over");
  if (root.attr_string("model_path") != now.model_path) {
    fail(path, ": was written for model '", root.attr_string("model_path"), "', this sweep uses '", now.model_path,
         "'; run with the same model to resume, or --force to start over");
  }
  SweepSettings settings = now.settings;
  settings.for_each(SettingComparer{root, path});
}

std::vector<PplRun> read_ppl_results(const std::string& path) {
  h5::File file = h5::File::open_read(path);
  const h5::Group root = file.root();
  check_schema(root, path, kPplSchemaName, kPplSchemaVersion, "re-run kvscope ppl");
  std::vector<PplRun> runs;
  const int64_t n = root.attr_int("num_runs");
  const h5::Group group = root.open_group("runs");
  for (int64_t i = 0; i < n; ++i) {
    const h5::Group g = group.open_group(std::to_string(i));
    PplRun r;
    r.policy = g.attr_string("policy");
    r.key = g.attr_string("key");
    r.budget_label = g.attr_string("budget_label");
    r.budget = g.attr_int("budget");
    r.weighting = g.attr_string("weighting");
    r.receiver = g.attr_string("receiver");
    r.document = g.attr_int("document");
    r.source = g.attr_string("source");
    r.max_cache = g.attr_int("max_cache");
    r.seconds = g.attr_double("seconds");
    r.policy_seconds = g.attr_double("policy_seconds");
    g.open_dataset("nll").read_all(r.nll);
    if (g.has("perturbation")) {
      const h5::Group pg = g.open_group("perturbation");
      pg.open_dataset("step").read_all(r.perturbation_step);
      pg.open_dataset("layer").read_all(r.perturbation_layer);
      pg.open_dataset("head").read_all(r.perturbation_head);
      pg.open_dataset("relative_change").read_all(r.perturbation_relative_change);
      pg.open_dataset("cosine").read_all(r.perturbation_cosine);
    }
    g.open_dataset("token_index").read_all(r.token_index);
    if (r.nll.size() != r.token_index.size()) fail(path, ": run ", i, " has mismatched nll and token_index");
    runs.push_back(std::move(r));
  }
  return runs;
}

}  // namespace kvscope
