#include "io/safetensors_writer.h"

#include <nlohmann/json.hpp>

#include <fstream>

#include "core/error.h"
#include "io/atomic_output.h"

namespace kvscope {

void write_safetensors(const std::filesystem::path& path,
                       const std::vector<std::pair<std::string, at::Tensor>>& tensors,
                       const std::map<std::string, std::string>& metadata, bool overwrite) {
  nlohmann::ordered_json header;
  if (!metadata.empty()) header["__metadata__"] = metadata;
  std::vector<at::Tensor> host;
  size_t offset = 0;
  for (const auto& [name, t] : tensors) {
    std::string dtype;
    switch (t.scalar_type()) {
      case at::kFloat: dtype = "F32"; break;
      case at::kHalf: dtype = "F16"; break;
      case at::kBFloat16: dtype = "BF16"; break;
      default: fail("write_safetensors: tensor '", name, "' has unsupported dtype ", c10::toString(t.scalar_type()));
    }
    at::Tensor h = t.detach().to(at::kCPU).contiguous();
    const size_t bytes = static_cast<size_t>(h.numel()) * h.element_size();
    header[name] = {{"dtype", dtype}, {"shape", h.sizes().vec()}, {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
    host.push_back(h);
  }
  std::string text = header.dump();
  while ((text.size() + 8) % 8 != 0) text.push_back(' ');  // keep the data section 8-byte aligned
  AtomicOutput out(path, overwrite);
  {
    std::ofstream f(out.temp_path(), std::ios::binary);
    if (!f) fail(path.string(), ": cannot open for writing");
    uint64_t n = text.size();
    char len[8];
    for (int i = 0; i < 8; ++i) len[i] = static_cast<char>((n >> (8 * i)) & 0xff);
    f.write(len, 8);
    f.write(text.data(), static_cast<std::streamsize>(text.size()));
    for (const at::Tensor& h : host) {
      f.write(static_cast<const char*>(h.data_ptr()), static_cast<std::streamsize>(h.numel() * h.element_size()));
    }
    f.flush();
    if (!f) fail(path.string(), ": write failed (disk full?)");
  }
  out.commit();
}

}  // namespace kvscope
