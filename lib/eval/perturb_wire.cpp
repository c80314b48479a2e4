#include "eval/perturb_wire.h"

#include <cstdint>

#include "core/byte_codec.h"
#include "core/error.h"

namespace kvscope {
namespace {
constexpr uint64_t kMagic = 0x4b56505254423031ull;  // "KVPRTB01"
}

std::string encode_perturb_result(const PerturbDocumentResult& result) {
  ByteWriter w;
  w.put(kMagic);
  w.put(result.decode_seconds);
  w.put(result.total_seconds);
  w.put(static_cast<uint64_t>(result.variants.size()));
  for (const PerturbVariantResult& v : result.variants) {
    w.put_string(v.name);
    for (const auto* field : {&v.cos_output, &v.rel_output, &v.cos_attention_dropped, &v.cos_attention_added, &v.kl, &v.weights})
      w.put_vector(*field);
    w.put_vector(v.merged);
  }
  return w.take();
}

PerturbDocumentResult decode_perturb_result(const std::string& bytes) {
  ByteReader r(bytes, "a perturbation result message");
  if (r.get<uint64_t>() != kMagic) fail("a message that is not a perturbation result arrived where one was expected");
  PerturbDocumentResult result;
  result.decode_seconds = r.get<double>();
  result.total_seconds = r.get<double>();
  const uint64_t variants = r.get<uint64_t>();
  if (variants > bytes.size()) fail("a perturbation result message is truncated (", variants, " variants announced)");
  for (uint64_t i = 0; i < variants; ++i) {
    PerturbVariantResult v;
    v.name = r.get_string();
    for (auto* field : {&v.cos_output, &v.rel_output, &v.cos_attention_dropped, &v.cos_attention_added, &v.kl, &v.weights})
      *field = r.get_vector<double>();
    v.merged = r.get_vector<int64_t>();
    result.variants.push_back(std::move(v));
  }
  r.expect_end();
  return result;
}

}  // namespace kvscope
