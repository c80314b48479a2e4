#include "analysis/l2corr.h"

#include <cmath>
#include <fstream>
#include <map>

#include "analysis/correlation.h"
#include "core/error.h"
#include "dump/dump_reader.h"
#include "io/h5.h"
#include "io/provenance.h"

namespace kvscope {
namespace {

void write_flat(const h5::Group& g, const std::string& name, const std::vector<double>& v, const std::vector<int64_t>& shape,
                const std::string& dims) {
  auto d = g.create_dataset(name, shape, h5::Stored::Float64, dims);
  if (!v.empty()) d.write_block(std::vector<int64_t>(shape.size(), 0), shape, v.data());
}

}  // namespace

std::vector<L2CorrSummaryRow> run_l2corr(const DumpReader& dump, const L2CorrOptions& o, const std::string& out_path,
                                         const std::string& csv_path, const std::string& command_line,
                                         const std::function<void(int64_t, int64_t)>& progress) {
  if (dump.attention_mode() == "none") {
    fail(dump.path(), ": has no attention summaries (dumped with --attention none); re-run kvscope dump with --attention summary");
  }
  const int64_t H = dump.num_heads(), KV = dump.num_kv_heads(), group = H / KV;
  const int R = o.ratio_steps;
  std::vector<double> ratios(R);
  for (int r = 0; r < R; ++r) ratios[r] = static_cast<double>(r) / R;
  std::ofstream csv(csv_path);
  if (!csv) fail(csv_path, ": cannot open for writing");
  csv << "document,layer,head,kv_head,spearman,pearson,alr,tokens\n";
  const size_t L = dump.layers().size();
  std::vector<double> sp_sum(L * H, 0), pe_sum(L * H, 0), alr_sum(L * H, 0);
  std::vector<double> l2_sum(L * H * R, 0), or_sum(L * H * R, 0), rn_sum(L * H * R, 0);
  std::vector<int64_t> n_docs(L * H, 0);
  h5::File file = h5::File::create(out_path);
  const int64_t total = static_cast<int64_t>(dump.documents().size() * L);
  int64_t done = 0;
  {
    const h5::Group root = file.root();
    write_provenance(root, kL2CorrSchemaName, kL2CorrSchemaVersion, command_line);
    write_source_dump(root, dump.path(), dump.attribute("model_path"), dump.attribute("model_config"), dump.attribute("created"));
    root.set_attr("layers", dump.attribute("layers"));
    root.set_attr("include_self", int64_t{o.include_self});
    root.set_attr("seed", static_cast<int64_t>(o.seed));
    root.set_attr("num_heads", H);
    root.set_attr("num_kv_heads", KV);
    root.set_attr("num_documents", static_cast<int64_t>(dump.documents().size()));
    write_flat(root, "compression_ratios", ratios, {R}, "ratio");
    const h5::Group docs = root.create_group("documents");
    for (size_t d = 0; d < dump.documents().size(); ++d) {
      const int64_t T = static_cast<int64_t>(dump.documents()[d].token_ids.size());
      if (T < 3) fail(dump.path(), ": document ", d, " has ", T, " tokens; l2corr needs at least 3");
      const h5::Group lgroups = docs.create_group(std::to_string(d)).create_group("layers");
      for (size_t li = 0; li < L; ++li) {
        const int64_t layer = dump.layers()[li];
        const FloatArray norms = dump.read(static_cast<int64_t>(d), layer, "key_norm");  // [KV, T]
        const FloatArray received = dump.read(static_cast<int64_t>(d), layer, o.include_self ? "attention_received" : "attention_received_others");
        const FloatArray count = dump.read(static_cast<int64_t>(d), layer, "query_count");  // [T]
        const FloatArray last = dump.read(static_cast<int64_t>(d), layer, "last_query_attention");  // [H, T]
        // What a softmax and a norm can produce; anything else is a corrupt or crafted dump.
        auto require = [&](const FloatArray& a, const char* name, float min, const char* why) {
          for (size_t i = 0; i < a.data.size(); ++i) {
            if (a.data[i] < min) {
              fail(dump.path(), ": document ", d, " layer ", layer, ": ", name, " is ", a.data[i], " at element ", i, " (", why, ")");
            }
          }
        };
        require(norms, "key_norm", 0.0f, "a norm is never negative");
        require(received, "attention received", 0.0f, "attention is never negative");
        require(last, "last_query_attention", 0.0f, "attention is never negative");
        require(count, "query_count", 1.0f, "every token is seen by at least its own query");
        std::vector<double> sp(H), pe(H), alr(H), l2c(H * R), orc(H * R), rnc(H * R);
        for (int64_t h = 0; h < H; ++h) {
          const int64_t kv = h / group;
          // Mean attention from later queries; the last token has none once self is excluded.
          std::vector<double> x, y;
          for (int64_t j = 0; j < T; ++j) {
            const double queries = count.data[j] - (o.include_self ? 0.0 : 1.0);
            if (queries <= 0) continue;
            x.push_back(norms.data[kv * T + j]);
            y.push_back(received.data[h * T + j] / queries);
          }
          sp[h] = spearman(x, y);
          pe[h] = pearson(x, y);
          // ALR: the next query's attention over the cached tokens, its own key excluded.
          std::vector<double> a(last.data.begin() + h * T, last.data.begin() + h * T + (T - 1));
          std::vector<double> n(norms.data.begin() + kv * T, norms.data.begin() + kv * T + (T - 1));
          alr[h] = attention_loss_ratio(a, n);
          const AttentionLoss loss = attention_loss(a, n, o.seed + static_cast<uint64_t>(h));
          const int64_t cached = T - 1;
          for (int r = 0; r < R; ++r) {
            const auto m = static_cast<size_t>(std::floor(ratios[r] * static_cast<double>(cached)));
            l2c[h * R + r] = loss.l2[m];
            orc[h * R + r] = loss.oracle[m];
            rnc[h * R + r] = loss.random[m];
          }
          char line[256];
          std::snprintf(line, sizeof(line), "%zu,%lld,%lld,%lld,%.6f,%.6f,%.6f,%lld\n", d, static_cast<long long>(layer),
                        static_cast<long long>(h), static_cast<long long>(kv), sp[h], pe[h], alr[h], static_cast<long long>(T));
          csv << line;
          const size_t k = li * H + h;
          if (std::isfinite(sp[h]) && std::isfinite(pe[h])) {
            sp_sum[k] += sp[h];
            pe_sum[k] += pe[h];
            alr_sum[k] += alr[h];
            for (int r = 0; r < R; ++r) {
              l2_sum[k * R + r] += l2c[h * R + r];
              or_sum[k * R + r] += orc[h * R + r];
              rn_sum[k * R + r] += rnc[h * R + r];
            }
            ++n_docs[k];
          }
        }
        const h5::Group g = lgroups.create_group(std::to_string(layer));
        write_flat(g, "spearman", sp, {H}, "head");
        write_flat(g, "pearson", pe, {H}, "head");
        write_flat(g, "alr", alr, {H}, "head");
        write_flat(g, "loss_l2", l2c, {H, R}, "head,ratio");
        write_flat(g, "loss_oracle", orc, {H, R}, "head,ratio");
        write_flat(g, "loss_random", rnc, {H, R}, "head,ratio");
        if (progress) progress(++done, total);
      }
    }
    const h5::Group agg = root.create_group("aggregate");
    auto mean_of = [&](const std::vector<double>& sum, int64_t width) {
      std::vector<double> out(sum.size());
      for (size_t i = 0; i < sum.size(); ++i) {
        const int64_t n = n_docs[i / width];
        out[i] = n ? sum[i] / n : std::nan("");
      }
      return out;
    };
    const int64_t Li = static_cast<int64_t>(L);
    write_flat(agg, "spearman_mean", mean_of(sp_sum, 1), {Li, H}, "layer,head");
    write_flat(agg, "pearson_mean", mean_of(pe_sum, 1), {Li, H}, "layer,head");
    write_flat(agg, "alr_mean", mean_of(alr_sum, 1), {Li, H}, "layer,head");
    write_flat(agg, "loss_l2_mean", mean_of(l2_sum, R), {Li, H, R}, "layer,head,ratio");
    write_flat(agg, "loss_oracle_mean", mean_of(or_sum, R), {Li, H, R}, "layer,head,ratio");
    write_flat(agg, "loss_random_mean", mean_of(rn_sum, R), {Li, H, R}, "layer,head,ratio");
    mark_complete(root);
  }
  file.flush();
  file.close();
  if (!csv.flush()) fail(csv_path, ": write failed (disk full?)");
  std::vector<L2CorrSummaryRow> rows;
  for (size_t li = 0; li < L; ++li) {
    double s = 0, p = 0, a = 0;
    int64_t n = 0;
    for (int64_t h = 0; h < H; ++h) {
      const size_t k = li * H + h;
      if (!n_docs[k]) continue;
      s += sp_sum[k] / n_docs[k];
      p += pe_sum[k] / n_docs[k];
      a += alr_sum[k] / n_docs[k];
      ++n;
    }
    rows.push_back(L2CorrSummaryRow{dump.layers()[li], n ? s / n : std::nan(""), n ? p / n : std::nan(""), n ? a / n : std::nan("")});
  }
  return rows;
}

}  // namespace kvscope
