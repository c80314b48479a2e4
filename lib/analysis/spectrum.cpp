#include "analysis/spectrum.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <map>

#include "analysis/spectrum_metrics.h"
#include "analysis/svd.h"
#include "core/error.h"
#include "dump/dump_reader.h"
#include "io/h5.h"
#include "io/provenance.h"

namespace kvscope {
namespace {

struct Job {
  std::vector<double> matrix;  // column-major [rows, cols]: one token per row, so columns are contiguous
  int64_t rows, cols;
  std::vector<double> sigma;
  bool gram_fell_back = false;
};

std::vector<double> column_centred(std::vector<double> m, int64_t rows, int64_t cols) {
  for (int64_t c = 0; c < cols; ++c) {
    double* column = m.data() + c * rows;
    double mean = 0;
    for (int64_t r = 0; r < rows; ++r) mean += column[r];
    mean /= static_cast<double>(rows);
    for (int64_t r = 0; r < rows; ++r) column[r] -= mean;
  }
  return m;
}

void compute(Job& j, const SpectrumOptions& o) {
  constexpr auto layout = MatrixLayout::ColumnMajor;
  if (o.single_precision) {
    std::vector<float> f(j.matrix.begin(), j.matrix.end());
    const auto s = singular_values(f, j.rows, j.cols, layout);
    j.sigma.assign(s.begin(), s.end());
  } else {
    std::optional<GramSingularValues> gram;
    if (o.gram) gram = gram_singular_values(j.matrix, j.rows, j.cols, layout, o.gram_tolerance);
    j.gram_fell_back = o.gram && !gram;
    j.sigma = gram ? std::move(gram->sigma) : singular_values(j.matrix, j.rows, j.cols, layout);
  }
  j.matrix.clear();
  j.matrix.shrink_to_fit();
}

struct Accumulator {
  std::vector<double> sum, sum_sq;
  int64_t n = 0;
  void add(const std::vector<double>& v) {
    if (sum.empty()) { sum.assign(v.size(), 0); sum_sq.assign(v.size(), 0); }
    const size_t k = std::min(sum.size(), v.size());
    sum.resize(k);
    sum_sq.resize(k);
    for (size_t i = 0; i < k; ++i) { sum[i] += v[i]; sum_sq[i] += v[i] * v[i]; }
    ++n;
  }
  std::vector<double> mean() const {
    std::vector<double> m(sum.size());
    for (size_t i = 0; i < m.size(); ++i) m[i] = n ? sum[i] / n : 0;
    return m;
  }
  std::vector<double> std() const {
    std::vector<double> s(sum.size());
    for (size_t i = 0; i < s.size(); ++i) s[i] = n ? std::sqrt(std::max(0.0, sum_sq[i] / n - (sum[i] / n) * (sum[i] / n))) : 0;
    return s;
  }
};

void write_vector(const h5::Group& g, const std::string& name, const std::vector<double>& v, const std::string& dims) {
  const int64_t n = static_cast<int64_t>(v.size());
  auto d = g.create_dataset(name, {n}, h5::Stored::Float64, dims);
  if (n) d.write_block({0}, {n}, v.data());
}

void write_matrix(const h5::Group& g, const std::string& name, const std::vector<std::vector<double>>& rows, const std::string& dims) {
  const int64_t r = static_cast<int64_t>(rows.size()), c = rows.empty() ? 0 : static_cast<int64_t>(rows[0].size());
  std::vector<double> flat;
  for (const auto& row : rows) flat.insert(flat.end(), row.begin(), row.end());
  auto d = g.create_dataset(name, {r, c}, h5::Stored::Float64, dims);
  if (r > 0 && c > 0) d.write_block({0, 0}, {r, c}, flat.data());
}

}  // namespace

SpectrumReport run_spectrum(const DumpReader& dump, const SpectrumOptions& o, const std::string& out_path,
                                             const std::string& csv_path, const std::string& command_line,
                                             const std::function<void(int64_t, int64_t)>& progress) {
  if (o.gram && o.single_precision) fail("the Gram route computes in float64; leave out single precision (--float)");
  if (o.gram && !(o.gram_tolerance > 0 && o.gram_tolerance < 1)) fail("--gram-tolerance must lie in (0, 1), got ", o.gram_tolerance);
  if (o.kinds.empty()) fail("--kinds: no matrix kinds given (known: k_pre_rope, k, v)");
  for (const auto& k : o.kinds) {
    if (k != "k_pre_rope" && k != "k" && k != "v") fail("--kinds: unknown matrix kind '", k, "' (known: k_pre_rope, k, v)");
  }
  // A range past a document's end would be cut silently: refuse it instead.
  for (size_t d = 0; d < dump.documents().size(); ++d) {
    const int64_t T = static_cast<int64_t>(dump.documents()[d].token_ids.size());
    if (o.token_begin >= T || o.token_end > T) {
      fail("--tokens ", o.token_begin, ":", o.token_end < 0 ? std::string() : std::to_string(o.token_end), " reaches past document ", d,
           ", which has ", T, " tokens");
    }
  }
  const int64_t KV = dump.num_kv_heads(), hd = dump.head_dim();
  h5::File file = h5::File::create(out_path);
  std::ofstream csv(csv_path);
  if (!csv) fail(csv_path, ": cannot open for writing");
  csv << "document,layer,head,kind,rows,sigma1,rank90,rank95,rank99,entropy_rank\n";
  std::map<std::string, Accumulator> curve_norm, curve_energy, curve_fraction;                    // by kind
  std::map<std::pair<std::string, int64_t>, Accumulator> rank90, rank95, rank99, entropy, layer90;  // by (kind, layer)
  const int64_t total = static_cast<int64_t>(dump.documents().size() * dump.layers().size());
  int64_t done = 0;
  SpectrumReport report;
  {
    const h5::Group root = file.root();
    write_provenance(root, kSpectrumSchemaName, kSpectrumSchemaVersion, command_line);
    write_source_dump(root, dump.path(), dump.attribute("model_path"), dump.attribute("model_config"), dump.attribute("created"));
    std::string kinds;
    for (const auto& k : o.kinds) kinds += (kinds.empty() ? "" : ",") + k;
    root.set_attr("kinds", kinds);
    root.set_attr("center", int64_t{o.center});
    root.set_attr("precision", std::string(o.single_precision ? "float32" : "float64"));
    root.set_attr("method", std::string(o.gram ? "gram" : "exact"));
    if (o.gram) root.set_attr("gram_tolerance", o.gram_tolerance);
    root.set_attr("token_begin", o.token_begin);
    root.set_attr("token_end", o.token_end);
    root.set_attr("layers", dump.attribute("layers"));
    root.set_attr("num_kv_heads", KV);
    root.set_attr("head_dim", hd);
    root.set_attr("num_documents", static_cast<int64_t>(dump.documents().size()));
    const h5::Group docs = root.create_group("documents");
    for (size_t d = 0; d < dump.documents().size(); ++d) {
      const int64_t T = static_cast<int64_t>(dump.documents()[d].token_ids.size());
      const int64_t b = std::clamp<int64_t>(o.token_begin, 0, T);
      const int64_t e = o.token_end < 0 ? T : std::clamp<int64_t>(o.token_end, b, T);
      const int64_t rows = e - b;
      if (rows < 2) fail("token range [", b, ", ", e, ") of document ", d, " has fewer than 2 tokens");
      const h5::Group dg = docs.create_group(std::to_string(d));
      dg.set_attr("rows", rows);
      const h5::Group layers = dg.create_group("layers");
      for (int64_t layer : dump.layers()) {
        // HDF5 reads stay on this thread; the SVDs of the layer run in parallel.
        std::vector<Job> jobs;
        std::vector<std::pair<std::string, int64_t>> labels;  // (kind, head or -1 for the layer matrix)
        for (const auto& kind : o.kinds) {
          const FloatArray a = dump.read(static_cast<int64_t>(d), layer, kind);  // [KV, T, hd]
          std::vector<double> whole(rows * KV * hd);
          for (int64_t h = 0; h < KV; ++h) {
            std::vector<double> m(rows * hd);
            for (int64_t t = 0; t < rows; ++t)
              for (int64_t c = 0; c < hd; ++c) {
                const double x = a.data[(h * T + b + t) * hd + c];
                m[c * rows + t] = x;
                whole[(h * hd + c) * rows + t] = x;
              }
            if (o.per_head) {
              jobs.push_back(Job{o.center ? column_centred(std::move(m), rows, hd) : std::move(m), rows, hd, {}});
              labels.emplace_back(kind, h);
            }
          }
          if (o.per_layer) {
            jobs.push_back(Job{o.center ? column_centred(std::move(whole), rows, KV * hd) : std::move(whole), rows, KV * hd, {}});
            labels.emplace_back(kind, -1);
          }
        }
        parallel_for(
            static_cast<int64_t>(jobs.size()),
            [&](int64_t i) {
              try {
                compute(jobs[i], o);
              } catch (const Error& err) {
                // Say which matrix: LAPACK itself knows only its shape.
                const auto& [kind, head] = labels[static_cast<size_t>(i)];
                fail(dump.path(), ": document ", d, " layer ", layer, " ", kind, head < 0 ? " (all heads)" : concat(" KV head ", head), ": ",
                     err.what());
              }
            },
            o.threads);

        report.matrices += static_cast<int64_t>(jobs.size());
        for (const Job& j : jobs) report.gram_fallbacks += j.gram_fell_back;
        const h5::Group lg = layers.create_group(std::to_string(layer));
        for (const auto& kind : o.kinds) {
          const h5::Group kg = lg.create_group(kind);
          std::vector<std::vector<double>> sig, nrm, frac, en;
          std::vector<double> r90, r95, r99, ent;
          for (size_t i = 0; i < jobs.size(); ++i) {
            if (labels[i].first != kind) continue;
            const SpectrumMetrics m = spectrum_metrics(jobs[i].sigma);
            const int64_t h = labels[i].second;
            char line[256];
            std::snprintf(line, sizeof(line), "%zu,%lld,%s,%s,%lld,%.9g,%d,%d,%d,%.6f\n", d, static_cast<long long>(layer),
                          h < 0 ? "all" : std::to_string(h).c_str(), kind.c_str(), static_cast<long long>(rows),
                          jobs[i].sigma.empty() ? 0.0 : jobs[i].sigma[0], m.rank90, m.rank95, m.rank99, m.entropy_rank);
            csv << line;
            if (h < 0) {
              write_vector(kg, "layer_singular_values", jobs[i].sigma, "index");
              write_vector(kg, "layer_normalized", m.normalized, "index");
              write_vector(kg, "layer_energy", m.energy, "index");
              kg.set_attr("layer_rank90", static_cast<int64_t>(m.rank90));
              kg.set_attr("layer_rank95", static_cast<int64_t>(m.rank95));
              kg.set_attr("layer_rank99", static_cast<int64_t>(m.rank99));
              kg.set_attr("layer_entropy_rank", m.entropy_rank);
              layer90[{kind, layer}].add({static_cast<double>(m.rank90)});
              continue;
            }
            sig.push_back(jobs[i].sigma);
            nrm.push_back(m.normalized);
            frac.push_back(m.fraction);
            en.push_back(m.energy);
            r90.push_back(m.rank90);
            r95.push_back(m.rank95);
            r99.push_back(m.rank99);
            ent.push_back(m.entropy_rank);
            curve_norm[kind].add(m.normalized);
            curve_energy[kind].add(m.energy);
            curve_fraction[kind].add(m.fraction);
            rank90[{kind, layer}].add({static_cast<double>(m.rank90)});
            rank95[{kind, layer}].add({static_cast<double>(m.rank95)});
            rank99[{kind, layer}].add({static_cast<double>(m.rank99)});
            entropy[{kind, layer}].add({m.entropy_rank});
          }
          if (!sig.empty()) {
            write_matrix(kg, "singular_values", sig, "kv_head,index");
            write_matrix(kg, "normalized", nrm, "kv_head,index");
            write_matrix(kg, "fraction", frac, "kv_head,index");
            write_matrix(kg, "energy", en, "kv_head,index");
            write_vector(kg, "rank90", r90, "kv_head");
            write_vector(kg, "rank95", r95, "kv_head");
            write_vector(kg, "rank99", r99, "kv_head");
            write_vector(kg, "entropy_rank", ent, "kv_head");
          }
        }
        if (progress) progress(++done, total);
      }
    }
    const h5::Group agg = root.create_group("aggregate");
    for (const auto& kind : o.kinds) {
      const h5::Group kg = agg.create_group(kind);
      if (curve_norm.count(kind)) {
        write_vector(kg, "normalized_mean", curve_norm[kind].mean(), "index");
        write_vector(kg, "normalized_std", curve_norm[kind].std(), "index");
        write_vector(kg, "energy_mean", curve_energy[kind].mean(), "index");
        write_vector(kg, "energy_std", curve_energy[kind].std(), "index");
        write_vector(kg, "fraction_mean", curve_fraction[kind].mean(), "index");
      }
      std::vector<double> m90, s90, m95, m99, me, se;
      for (int64_t layer : dump.layers()) {
        m90.push_back(rank90[{kind, layer}].mean().empty() ? 0 : rank90[{kind, layer}].mean()[0]);
        s90.push_back(rank90[{kind, layer}].std().empty() ? 0 : rank90[{kind, layer}].std()[0]);
        m95.push_back(rank95[{kind, layer}].mean().empty() ? 0 : rank95[{kind, layer}].mean()[0]);
        m99.push_back(rank99[{kind, layer}].mean().empty() ? 0 : rank99[{kind, layer}].mean()[0]);
        me.push_back(entropy[{kind, layer}].mean().empty() ? 0 : entropy[{kind, layer}].mean()[0]);
        se.push_back(entropy[{kind, layer}].std().empty() ? 0 : entropy[{kind, layer}].std()[0]);
      }
      write_vector(kg, "rank90_mean", m90, "layer");
      write_vector(kg, "rank90_std", s90, "layer");
      write_vector(kg, "rank95_mean", m95, "layer");
      write_vector(kg, "rank99_mean", m99, "layer");
      write_vector(kg, "entropy_rank_mean", me, "layer");
      write_vector(kg, "entropy_rank_std", se, "layer");
    }
    if (o.gram) root.set_attr("gram_fallbacks", report.gram_fallbacks);
    mark_complete(root);
  }
  file.flush();
  file.close();
  if (!csv.flush()) fail(csv_path, ": write failed (disk full?)");

  std::vector<SpectrumSummaryRow>& rows = report.rows;
  for (int64_t layer : dump.layers()) {
    for (const auto& kind : o.kinds) {
      auto first = [](const Accumulator& a) { return a.n ? a.mean()[0] : std::nan(""); };
      rows.push_back(SpectrumSummaryRow{layer, kind, first(rank90[{kind, layer}]), first(rank95[{kind, layer}]),
                                        first(rank99[{kind, layer}]), first(entropy[{kind, layer}]), first(layer90[{kind, layer}])});
    }
  }
  return report;
}

}  // namespace kvscope
