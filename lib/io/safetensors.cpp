#include "io/safetensors.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstring>
#include <limits>
#include <set>

#include "core/error.h"
#include "io/mapped_file.h"

namespace kvscope {
namespace {

using json = nlohmann::json;

// The format's own limit on the header; anything larger is hostile or corrupt.
constexpr uint64_t kMaxHeaderBytes = 100ull << 20;

bool parse_dtype(const std::string& s, StoredDtype* out) {
  if (s == "F32") *out = StoredDtype::F32;
  else if (s == "F16") *out = StoredDtype::F16;
  else if (s == "BF16") *out = StoredDtype::BF16;
  else return false;
  return true;
}

uint64_t checked_element_count(const std::vector<int64_t>& shape, const std::string& label,
                               const std::string& name) {
  uint64_t count = 1;
  for (int64_t d : shape) {
    if (d != 0 && count > std::numeric_limits<uint64_t>::max() / static_cast<uint64_t>(d)) {
      fail(label, ": tensor '", name, "': shape overflows");
    }
    count *= static_cast<uint64_t>(d);
  }
  return count;
}

}  // namespace

const char* stored_dtype_name(StoredDtype d) {
  switch (d) {
    case StoredDtype::F32: return "F32";
    case StoredDtype::F16: return "F16";
    case StoredDtype::BF16: return "BF16";
  }
  return "?";
}

size_t stored_dtype_size(StoredDtype d) { return d == StoredDtype::F32 ? 4 : 2; }

SafetensorsHeader parse_safetensors(const std::byte* data, size_t size, const std::string& label) {
  if (size < 8) fail(label, ": truncated safetensors file (", size, " bytes; the 8-byte header length is missing)");
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | static_cast<uint8_t>(data[i]);
  if (header_len > kMaxHeaderBytes) {
    fail(label, ": safetensors header length ", header_len, " exceeds the format's 100 MB limit (corrupt or not a safetensors file)");
  }
  if (header_len > size - 8) {
    fail(label, ": safetensors header length ", header_len, " runs past the end of the file (", size, " bytes): file truncated?");
  }
  const char* text = reinterpret_cast<const char*>(data + 8);
  json doc = json::parse(text, text + header_len, nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded()) fail(label, ": safetensors header is not valid JSON");
  if (!doc.is_object()) fail(label, ": safetensors header is not a JSON object");

  SafetensorsHeader out;
  out.data_offset = 8 + static_cast<size_t>(header_len);
  const size_t data_size = size - out.data_offset;
  for (auto it = doc.begin(); it != doc.end(); ++it) {
    const std::string& name = it.key();
    const json& entry = it.value();
    if (name == "__metadata__") {
      if (!entry.is_object()) fail(label, ": __metadata__ is not an object");
      for (auto m = entry.begin(); m != entry.end(); ++m) {
        if (m.value().is_string()) out.metadata[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    if (!entry.is_object()) fail(label, ": tensor '", name, "': entry is not an object");
    const auto dt = entry.find("dtype");
    const auto sh = entry.find("shape");
    const auto off = entry.find("data_offsets");
    if (dt == entry.end() || !dt->is_string()) fail(label, ": tensor '", name, "': missing string 'dtype'");
    if (sh == entry.end() || !sh->is_array()) fail(label, ": tensor '", name, "': missing array 'shape'");
    if (off == entry.end() || !off->is_array() || off->size() != 2) {
      fail(label, ": tensor '", name, "': 'data_offsets' must be [begin, end]");
    }
    TensorRecord rec;
    rec.name = name;
    if (!parse_dtype(dt->get<std::string>(), &rec.dtype)) {
      fail(label, ": tensor '", name, "': unsupported dtype ", dt->get<std::string>(), " (supported: F32, F16, BF16)");
    }
    for (const json& d : *sh) {
      if (!d.is_number_integer() || d.get<int64_t>() < 0) {
        fail(label, ": tensor '", name, "': shape ", sh->dump(), " has a negative or non-integer dimension");
      }
      rec.shape.push_back(d.get<int64_t>());
    }
    for (const json& o : *off) {
      if (!o.is_number_unsigned()) fail(label, ": tensor '", name, "': data_offsets must be non-negative integers");
    }
    const uint64_t begin = (*off)[0].get<uint64_t>();
    const uint64_t end = (*off)[1].get<uint64_t>();
    if (begin > end) fail(label, ": tensor '", name, "': data_offsets [", begin, ", ", end, "] are reversed");
    if (end > data_size) {
      fail(label, ": tensor '", name, "': byte range [", begin, ", ", end, ") lies outside the file's ",
           data_size, "-byte data section (file truncated?)");
    }
    const uint64_t elements = checked_element_count(rec.shape, label, name);
    const uint64_t elem = stored_dtype_size(rec.dtype);
    if (elements > std::numeric_limits<uint64_t>::max() / elem || elements * elem != end - begin) {
      fail(label, ": tensor '", name, "': shape ", sh->dump(), " of ", dt->get<std::string>(), " needs ",
           elements, " elements but its byte range holds ", end - begin, " bytes");
    }
    rec.begin = static_cast<size_t>(begin);
    rec.nbytes = static_cast<size_t>(end - begin);
    out.tensors.push_back(std::move(rec));
  }
  // Two tensors sharing bytes would silently alias each other's weights (the format gives
  // every tensor its own range); zero-size tensors own no bytes.
  std::vector<const TensorRecord*> by_start;
  for (const TensorRecord& r : out.tensors)
    if (r.nbytes) by_start.push_back(&r);
  std::sort(by_start.begin(), by_start.end(), [](const TensorRecord* a, const TensorRecord* b) { return a->begin < b->begin; });
  for (size_t i = 1; i < by_start.size(); ++i) {
    const TensorRecord& a = *by_start[i - 1];
    const TensorRecord& b = *by_start[i];
    if (b.begin < a.begin + a.nbytes) {
      fail(label, ": tensors '", a.name, "' [", a.begin, ", ", a.begin + a.nbytes, ") and '", b.name, "' [", b.begin, ", ",
           b.begin + b.nbytes, ") overlap; each tensor must have its own bytes");
    }
  }
  return out;
}

SafetensorsArchive SafetensorsArchive::open(const std::filesystem::path& path) {
  namespace fs = std::filesystem;
  SafetensorsArchive archive;
  std::error_code ec;
  if (fs::is_regular_file(path, ec)) {
    archive.add_shard(path, nullptr);
    archive.description_ = path.string();
    return archive;
  }
  if (!fs::is_directory(path, ec)) fail(path.string(), ": no such model file or directory");
  const fs::path single = path / "model.safetensors";
  const fs::path index = path / "model.safetensors.index.json";
  if (fs::exists(single)) {
    archive.add_shard(single, nullptr);
    archive.description_ = single.string();
    return archive;
  }
  if (!fs::exists(index)) {
    fail(path.string(), ": no model.safetensors or model.safetensors.index.json (only safetensors weights are supported)");
  }
  MappedFile index_file(index);
  const char* text = reinterpret_cast<const char*>(index_file.data());
  json doc = json::parse(text, text + index_file.size(), nullptr, false);
  if (doc.is_discarded() || !doc.is_object()) fail(index.string(), ": not valid JSON");
  const auto wm = doc.find("weight_map");
  if (wm == doc.end() || !wm->is_object()) fail(index.string(), ": missing object 'weight_map'");
  std::map<std::string, std::vector<std::string>> by_file;
  for (auto it = wm->begin(); it != wm->end(); ++it) {
    if (!it.value().is_string()) fail(index.string(), ": weight_map entry '", it.key(), "' is not a file name");
    const std::string file = it.value().get<std::string>();
    if (file.find('/') != std::string::npos || file == "..") {
      fail(index.string(), ": weight_map entry '", it.key(), "' names a file outside the model directory: ", file);
    }
    by_file[file].push_back(it.key());
  }
  for (const auto& [file, names] : by_file) archive.add_shard(path / file, &names);
  archive.description_ = concat(index.string(), " (", by_file.size(), " shards)");
  return archive;
}

void SafetensorsArchive::add_shard(const std::filesystem::path& file,
                                   const std::vector<std::string>* expected) {
  auto mapped = std::make_shared<const MappedFile>(file);
  Shard shard{mapped, parse_safetensors(mapped->data(), mapped->size(), file.string())};
  const size_t shard_index = shards_.size();
  std::set<std::string> present;
  for (size_t r = 0; r < shard.header.tensors.size(); ++r) {
    const std::string& name = shard.header.tensors[r].name;
    present.insert(name);
    if (expected && std::find(expected->begin(), expected->end(), name) == expected->end()) continue;
    if (tensors_.count(name)) fail(file.string(), ": tensor '", name, "' appears in more than one shard");
    tensors_[name] = {shard_index, r};
  }
  if (expected) {
    for (const std::string& name : *expected) {
      if (!present.count(name)) fail(file.string(), ": tensor '", name, "' is listed in the index but missing from this shard");
    }
  }
  for (const auto& [k, v] : shard.header.metadata) metadata_[k] = v;
  shards_.push_back(std::move(shard));
}

TensorView SafetensorsArchive::get(const std::string& name) const {
  const auto it = tensors_.find(name);
  if (it == tensors_.end()) fail(description_, ": missing tensor '", name, "'");
  const Shard& shard = shards_[it->second.first];
  const TensorRecord& rec = shard.header.tensors[it->second.second];
  return TensorView{&rec, shard.file->data() + shard.header.data_offset + rec.begin, shard.file,
                    shard.file->path().string()};
}

std::vector<std::string> SafetensorsArchive::names() const {
  std::vector<std::string> out;
  for (const auto& kv : tensors_) out.push_back(kv.first);
  return out;
}

}  // namespace kvscope
