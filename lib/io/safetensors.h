#pragma once
// Reader for the safetensors format (single file or sharded with model.safetensors.index.json).
// Parsing is separate from mapping so the header validation can be fuzzed on raw bytes.
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace kvscope {

class MappedFile;

enum class StoredDtype { F32, F16, BF16 };
const char* stored_dtype_name(StoredDtype d);
size_t stored_dtype_size(StoredDtype d);

struct TensorRecord {
  std::string name;
  StoredDtype dtype = StoredDtype::F32;
  std::vector<int64_t> shape;
  size_t begin = 0;   // byte offset into the data section
  size_t nbytes = 0;
};

struct SafetensorsHeader {
  std::vector<TensorRecord> tensors;
  std::map<std::string, std::string> metadata;
  size_t data_offset = 0;  // where the data section starts in the file
};

// Validates and parses a whole safetensors file held in memory. Every error names `label`
// (the file) and, where one is involved, the tensor.
SafetensorsHeader parse_safetensors(const std::byte* data, size_t size, const std::string& label);

// One tensor's bytes inside a mapped file, with everything needed to build a tensor from it.
struct TensorView {
  const TensorRecord* record = nullptr;
  const std::byte* data = nullptr;
  std::shared_ptr<const MappedFile> file;
  std::string file_name;
};

class SafetensorsArchive {
 public:
  // Opens `path`: a .safetensors file, or a model directory holding model.safetensors or
  // model.safetensors.index.json (sharded).
  static SafetensorsArchive open(const std::filesystem::path& path);

  bool contains(const std::string& name) const { return tensors_.count(name) != 0; }
  // Errors if the tensor is missing, naming where it was looked for.
  TensorView get(const std::string& name) const;
  std::vector<std::string> names() const;
  const std::string& description() const { return description_; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }

 private:
  struct Shard {
    std::shared_ptr<const MappedFile> file;
    SafetensorsHeader header;
  };
  void add_shard(const std::filesystem::path& file, const std::vector<std::string>* expected);

  std::vector<Shard> shards_;
  std::map<std::string, std::pair<size_t, size_t>> tensors_;  // name -> (shard, record)
  std::map<std::string, std::string> metadata_;
  std::string description_;
};

}  // namespace kvscope
