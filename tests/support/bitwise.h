#pragma once
// Bit-for-bit tensor equality: the tests of properties the README promises exactly
// (batches, thread counts, the cache's two bookkeeping paths).
#include <ATen/ATen.h>

#include <cstring>

namespace kvscope::testing {

inline bool bitwise_equal(const at::Tensor& a, const at::Tensor& b) {
  if (a.sizes() != b.sizes() || a.scalar_type() != b.scalar_type()) return false;
  const at::Tensor x = a.contiguous(), y = b.contiguous();
  return std::memcmp(x.data_ptr(), y.data_ptr(), static_cast<size_t>(x.numel() * x.element_size())) == 0;
}

}  // namespace kvscope::testing
