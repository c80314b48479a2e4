#pragma once
// A thin RAII layer over the HDF5 C API: every call is checked and failures become
// kvscope::Error naming the file and object. Only what kvscope's schemas use.
#include <cstdint>
#include <string>
#include <vector>

namespace kvscope::h5 {

using Id = int64_t;  // hid_t

// Silences HDF5's own error-stack printing; kvscope reports errors itself.
void quiet_errors();

class Handle {
 public:
  Handle() = default;
  Handle(Id id, int kind) : id_(id), kind_(kind) {}
  ~Handle();
  Handle(Handle&& o) noexcept : id_(o.id_), kind_(o.kind_) { o.id_ = -1; }
  Handle& operator=(Handle&& o) noexcept;
  Handle(const Handle&) = delete;
  Handle& operator=(const Handle&) = delete;
  Id id() const { return id_; }
  bool valid() const { return id_ >= 0; }

 private:
  Id id_ = -1;
  int kind_ = 0;
};

enum class Stored { Float16, Float32, Float64, Int64, Int32 };

class File;

// A group or the file's root.
class Group {
 public:
  Group(Handle h, std::string path, std::string file) : h_(std::move(h)), path_(std::move(path)), file_(std::move(file)) {}
  Group create_group(const std::string& name) const;
  Group open_group(const std::string& name) const;
  // Copies `source`'s member `source_name` (a group with everything under it, attributes
  // included; possibly from another file) here as `name`.
  void copy_from(const Group& source, const std::string& source_name, const std::string& name) const;
  bool has(const std::string& name) const;
  std::vector<std::string> children() const;

  void set_attr(const std::string& name, const std::string& value) const;
  void set_attr(const std::string& name, int64_t value) const;
  void set_attr(const std::string& name, double value) const;
  void set_attr(const std::string& name, const std::vector<int64_t>& value) const;
  std::string attr_string(const std::string& name) const;
  int64_t attr_int(const std::string& name) const;
  double attr_double(const std::string& name) const;
  bool has_attr(const std::string& name) const;

  // Chunked, shuffled and deflated dataset; `dims` is written as a "dims" attribute naming
  // each axis (comma-separated).
  class Dataset create_dataset(const std::string& name, const std::vector<int64_t>& shape, Stored type,
                               const std::string& dims) const;
  class Dataset open_dataset(const std::string& name) const;
  void write_strings(const std::string& name, const std::vector<std::string>& values, const std::string& dims) const;
  const std::string& path() const { return path_; }
  const std::string& file() const { return file_; }
  Id id() const { return h_.id(); }

 private:
  Handle h_;
  std::string path_, file_;
};

class Dataset {
 public:
  Dataset(Handle h, std::string path, std::string file) : h_(std::move(h)), path_(std::move(path)), file_(std::move(file)) {}
  std::vector<int64_t> shape() const;
  // Writes a block of native float/int64 data at `offset` with extent `count`.
  void write_block(const std::vector<int64_t>& offset, const std::vector<int64_t>& count, const float* data) const;
  void write_block(const std::vector<int64_t>& offset, const std::vector<int64_t>& count, const int64_t* data) const;
  void write_block(const std::vector<int64_t>& offset, const std::vector<int64_t>& count, const int32_t* data) const;
  void write_block(const std::vector<int64_t>& offset, const std::vector<int64_t>& count, const double* data) const;
  void read_all(std::vector<float>& out) const;
  void read_all(std::vector<double>& out) const;
  void read_all(std::vector<int64_t>& out) const;
  // Reads the block [offset, offset + count) as float.
  void read_block(const std::vector<int64_t>& offset, const std::vector<int64_t>& count, std::vector<float>& out) const;
  void set_attr(const std::string& name, const std::string& value) const;
  void set_attr(const std::string& name, const std::vector<int64_t>& value) const;
  std::string attr_string(const std::string& name) const;
  const std::string& path() const { return path_; }

 private:
  void write_impl(const std::vector<int64_t>& offset, const std::vector<int64_t>& count, Id mem_type, const void* data) const;
  void read_impl(const std::vector<int64_t>& offset, const std::vector<int64_t>& count, Id mem_type, void* data) const;
  // What libhdf5 will read for [offset, offset + count) matches the dataset's extent, type
  // and filters, and lies inside the file (h5_storage_check.cpp); refused by name otherwise.
  void check_storage(const std::vector<int64_t>& offset, const std::vector<int64_t>& count, Id mem_type) const;
  void check_chunks(const std::vector<int64_t>& offset, const std::vector<int64_t>& count, size_t element_bytes,
                    bool deflated) const;
  template <typename T>
  void read_all_as(std::vector<T>& out, Id mem_type) const;
  size_t checked_element_count(const std::vector<int64_t>& count, size_t element_bytes) const;
  friend class Group;
  Handle h_;
  std::string path_, file_;
};

class File {
 public:
  static File create(const std::string& path);
  static File open_read(const std::string& path);
  Group root() const;
  void flush() const;
  void close();
  const std::string& path() const { return path_; }

 private:
  Handle h_;
  std::string path_;
};

}  // namespace kvscope::h5
