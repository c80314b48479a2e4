#pragma once
// Linear layers for a handful of rows (decode steps, one row per run of a batch) whose
// result for each row is bit-for-bit independent of how many other rows are in the call.
//
// BLAS gemm is not: OpenBLAS picks different kernels and blockings for different row
// counts (measured: rows of a 16-row product differ from the same rows computed alone),
// so a batched sweep would not reproduce a one-at-a-time run. Here every output element is
// a dot product with one fixed summation order: 8 (16 with AVX-512) interleaved partial sums
// over k, a fixed reduction tree, then the tail in order. Rows only change how many dot products
// share one pass over the weights, which is what makes a batch cheaper than its runs alone.
#include <ATen/ATen.h>

#include <string>

namespace kvscope {

// Auto: AVX2 with FMA where the CPU has it, else generic, or the one the environment
// variable KVSCOPE_ROW_KERNELS names (avx512, avx2-wide, avx2, generic; AVX-512 was measured
// no faster, see row_linear.cpp). Avx2Wide runs AVX2's instructions with AVX-512VL's 32
// registers, so larger tiles share each load; it gives Avx2's bits and is Auto's choice where
// the CPU has AVX-512VL. Each gives batch- and thread-invariant rows; the others differ
// between them by float32 rounding.
enum class RowKernelIsa { Auto, Avx512, Avx2Wide, Avx2, Generic };

// Whether `isa` can run on this CPU (Auto and Generic always can).
bool row_kernels_available(RowKernelIsa isa);
// "this CPU has avx512, avx2, generic", for messages.
std::string row_linear_isa_names();

// Whether row_linear can run on this weight (contiguous float32 on CPU); otherwise callers
// fall back to mv/mm, which agree to rounding but not bit for bit across row counts.
bool row_linear_supported(const at::Tensor& weight);

// x [B, K] float32, weight [N, K], optional bias [N] -> [B, N]. Parallel over N on the
// worker pool (per-element order does not depend on the split).
at::Tensor row_linear(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias = {},
                      RowKernelIsa isa = RowKernelIsa::Auto);

// row_linear on raw row-major float32 buffers, for callers that already hold them (decode
// attention over each KV head's slice of the cache): identical numbers, no tensor
// bookkeeping. y[B, N] = x[B, K] w[N, K]^T (+ bias[N], may be null).
void row_linear_raw(const float* x, int64_t B, const float* w, int64_t N, int64_t K, const float* bias, float* y,
                    RowKernelIsa isa = RowKernelIsa::Auto);
// Several weights applied to the same rows in one parallel section (a layer's q, k and v;
// its gate and up): part i computes y_i[B, n_i] = x[B, K] w_i[n_i, K]^T (+ bias_i). Each
// element is the same dot product row_linear_raw computes; one section instead of several
// saves the threads a hand-over per weight.
struct RowLinearPart {
  const float* w;
  int64_t n;
  const float* bias;  // [n] or null
  float* y;
};
void row_linear_parts_raw(const float* x, int64_t B, int64_t K, const RowLinearPart* parts, int count,
                          RowKernelIsa isa = RowKernelIsa::Auto);
// out[G, D] = p[G, S] m[S, D] (float32, row-major): each output row is sum_s p[g, s] * m[s, :]
// accumulated in order of s, so again independent of G. Decode attention uses it for
// probabilities times values.
void weighted_row_sum_raw(const float* p, int64_t G, int64_t S, const float* m, int64_t D, float* out,
                          RowKernelIsa isa = RowKernelIsa::Auto);

// The instruction set Auto resolves to on this machine ("avx512", "avx2-fma, 32 registers",
// "avx2-fma" or "generic").
const char* row_linear_isa();

}  // namespace kvscope
