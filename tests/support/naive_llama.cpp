#include "support/naive_llama.h"

#include <algorithm>
#include <cmath>

namespace kvscope::testing {
namespace {

using Vec = std::vector<double>;
using Mat = std::vector<Vec>;

Mat to_mat(const at::Tensor& t) {
  const at::Tensor d = t.to(at::kDouble).contiguous();
  const int64_t rows = d.size(0), cols = d.size(1);
  Mat m(rows, Vec(cols));
  const double* p = d.data_ptr<double>();
  for (int64_t r = 0; r < rows; ++r) for (int64_t c = 0; c < cols; ++c) m[r][c] = p[r * cols + c];
  return m;
}

Vec to_vec(const at::Tensor& t) {
  const at::Tensor d = t.to(at::kDouble).contiguous();
  return Vec(d.data_ptr<double>(), d.data_ptr<double>() + d.numel());
}

Vec matvec(const Mat& w, const Vec& x) {
  Vec y(w.size(), 0.0);
  for (size_t r = 0; r < w.size(); ++r) for (size_t c = 0; c < x.size(); ++c) y[r] += w[r][c] * x[c];
  return y;
}

Vec rmsnorm(const Vec& x, const Vec& w, double eps) {
  double ss = 0;
  for (double v : x) ss += v * v;
  const double inv = 1.0 / std::sqrt(ss / x.size() + eps);
  Vec y(x.size());
  for (size_t i = 0; i < x.size(); ++i) y[i] = x[i] * inv * w[i];
  return y;
}

double frequency(const NaiveConfig& c, int j) {
  double f = std::pow(c.theta, -2.0 * j / c.head_dim);
  if (c.rope_type == "linear") return f / c.factor;
  if (c.rope_type == "llama3") {
    const double wavelen = 2 * M_PI / f;
    const double low = c.original_max_position / c.low_freq_factor;
    const double high = c.original_max_position / c.high_freq_factor;
    if (wavelen < high) return f;
    if (wavelen > low) return f / c.factor;
    const double s = (c.original_max_position / wavelen - c.low_freq_factor) / (c.high_freq_factor - c.low_freq_factor);
    return (1 - s) * f / c.factor + s * f;
  }
  return f;
}

// HF rotate_half layout: element j pairs with element j + d/2.
Vec rotate(const NaiveConfig& c, const Vec& x, int pos) {
  const int half = c.head_dim / 2;
  Vec y(x.size());
  for (int j = 0; j < half; ++j) {
    const double a = pos * frequency(c, j);
    y[j] = x[j] * std::cos(a) - x[j + half] * std::sin(a);
    y[j + half] = x[j + half] * std::cos(a) + x[j] * std::sin(a);
  }
  return y;
}

}  // namespace

NaiveTrace naive_forward(const NaiveConfig& c, const std::map<std::string, at::Tensor>& t,
                         const std::vector<int64_t>& ids) {
  const int T = static_cast<int>(ids.size()), hd = c.head_dim, group = c.heads / c.kv_heads;
  const Mat embed = to_mat(t.at("model.embed_tokens.weight"));
  std::vector<Vec> h(T);
  for (int i = 0; i < T; ++i) h[i] = embed[ids[i]];
  NaiveTrace trace;
  for (int L = 0; L < c.layers; ++L) {
    const std::string p = "model.layers." + std::to_string(L) + ".";
    const Mat wq = to_mat(t.at(p + "self_attn.q_proj.weight")), wk = to_mat(t.at(p + "self_attn.k_proj.weight"));
    const Mat wv = to_mat(t.at(p + "self_attn.v_proj.weight")), wo = to_mat(t.at(p + "self_attn.o_proj.weight"));
    const Mat wg = to_mat(t.at(p + "mlp.gate_proj.weight")), wu = to_mat(t.at(p + "mlp.up_proj.weight"));
    const Mat wd = to_mat(t.at(p + "mlp.down_proj.weight"));
    const Vec n1 = to_vec(t.at(p + "input_layernorm.weight")), n2 = to_vec(t.at(p + "post_attention_layernorm.weight"));
    Vec bq(c.heads * hd, 0.0), bk(c.kv_heads * hd, 0.0), bv(c.kv_heads * hd, 0.0);
    if (c.bias) {
      bq = to_vec(t.at(p + "self_attn.q_proj.bias"));
      bk = to_vec(t.at(p + "self_attn.k_proj.bias"));
      bv = to_vec(t.at(p + "self_attn.v_proj.bias"));
    }
    using Heads = std::vector<std::vector<Vec>>;
    Heads q(c.heads, std::vector<Vec>(T)), kpre(c.kv_heads, std::vector<Vec>(T)), k(c.kv_heads, std::vector<Vec>(T)),
        v(c.kv_heads, std::vector<Vec>(T));
    for (int i = 0; i < T; ++i) {
      const Vec x = rmsnorm(h[i], n1, c.eps);
      Vec qa = matvec(wq, x), ka = matvec(wk, x), va = matvec(wv, x);
      for (int j = 0; j < c.heads * hd; ++j) qa[j] += bq[j];
      for (int j = 0; j < c.kv_heads * hd; ++j) { ka[j] += bk[j]; va[j] += bv[j]; }
      for (int hh = 0; hh < c.heads; ++hh) q[hh][i] = rotate(c, Vec(qa.begin() + hh * hd, qa.begin() + (hh + 1) * hd), i);
      for (int g = 0; g < c.kv_heads; ++g) {
        kpre[g][i] = Vec(ka.begin() + g * hd, ka.begin() + (g + 1) * hd);
        k[g][i] = rotate(c, kpre[g][i], i);
        v[g][i] = Vec(va.begin() + g * hd, va.begin() + (g + 1) * hd);
      }
    }
    std::vector<std::vector<Vec>> attn(c.heads, std::vector<Vec>(T, Vec(T, 0.0)));
    std::vector<Vec> attn_out(T, Vec(c.heads * hd, 0.0));
    for (int hh = 0; hh < c.heads; ++hh) {
      const int g = hh / group;
      for (int i = 0; i < T; ++i) {
        double mx = -1e300;
        Vec s(i + 1);
        const int first = c.sliding_window > 0 ? std::max(0, i - c.sliding_window + 1) : 0;
        for (int j = first; j <= i; ++j) {
          double dot = 0;
          for (int d = 0; d < hd; ++d) dot += q[hh][i][d] * k[g][j][d];
          s[j] = dot / std::sqrt(static_cast<double>(hd));
          mx = std::max(mx, s[j]);
        }
        double z = 0;
        for (int j = first; j <= i; ++j) z += std::exp(s[j] - mx);
        for (int j = first; j <= i; ++j) {
          attn[hh][i][j] = std::exp(s[j] - mx) / z;
          for (int d = 0; d < hd; ++d) attn_out[i][hh * hd + d] += attn[hh][i][j] * v[g][j][d];
        }
      }
    }
    for (int i = 0; i < T; ++i) {
      const Vec o = matvec(wo, attn_out[i]);
      for (int d = 0; d < c.hidden; ++d) h[i][d] += o[d];
      const Vec x = rmsnorm(h[i], n2, c.eps);
      const Vec gt = matvec(wg, x), up = matvec(wu, x);
      Vec act(gt.size());
      for (size_t j = 0; j < gt.size(); ++j) act[j] = gt[j] / (1 + std::exp(-gt[j])) * up[j];
      const Vec down = matvec(wd, act);
      for (int d = 0; d < c.hidden; ++d) h[i][d] += down[d];
    }
    trace.k_pre.push_back(kpre);
    trace.k_post.push_back(k);
    trace.v.push_back(v);
    trace.q_post.push_back(q);
    trace.attn.push_back(attn);
  }
  const Vec nf = to_vec(t.at("model.norm.weight"));
  const Mat head = to_mat(t.at(c.tied ? "model.embed_tokens.weight" : "lm_head.weight"));
  for (int i = 0; i < T; ++i) trace.logits.push_back(matvec(head, rmsnorm(h[i], nf, c.eps)));
  return trace;
}

}  // namespace kvscope::testing
