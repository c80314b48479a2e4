#pragma once
// The element-wise and per-row steps of a CPU float32 decode step, on raw row-major
// buffers: RMSNorm, SiLU-gated products, softmax, residual adds. A decode step on a small
// model is mostly these small operations; as plain loops they cost no operator dispatch or
// allocation. Every row is computed alone in one fixed order, so a row's result does not
// depend on the other rows of a batch or on the thread that computes it. Formulas: methods
// §1.1.
#include <cstdint>

namespace kvscope {

// y[r] = (x[r] * inv_rms(x[r])) * weight for each of `rows` rows of `dim` floats, where the
// mean square is summed in float64 in order and inv_rms = 1 / sqrt(mean + eps) is rounded
// to float once.
void rms_norm_rows(const float* x, int64_t rows, int64_t dim, const float* weight, double eps, float* y);

// gate[i] = silu(gate[i]) * up[i] for n floats; silu(g) = g / (1 + exp(-g)) in float, exp
// as exp_in_place computes it.
void silu_times(float* gate, const float* up, int64_t n);

// In place over one row of n scores: exp(s - max) in float (exp_in_place), summed in float64 (methods §1.1),
// each scaled by the float reciprocal of the sum. A row whose every score is -inf (all
// keys masked) becomes NaN, as at::softmax gives.
void softmax_row(float* scores, int64_t n);

// v[i] = exp(v[i]) in float32, within 2 ulp (methods §1.1); the same value for an element
// wherever it sits in v, with or without AVX2. Below -87.34 gives 0, above 88.38 infinity.
void exp_in_place(float* v, int64_t n);

// h[i] += delta[i] for n floats.
void add_into(float* h, const float* delta, int64_t n);

}  // namespace kvscope
