#pragma once
// Plain values and vectors of them as bytes, for messages between the ranks of one job
// (same binary, same machine type): numbers travel as their bits. The reader refuses, by
// name, bytes that end early or run past a count, so a malformed message never reads past
// its end.
#include <cstdint>
#include <cstring>
#include <string>
#include <type_traits>
#include <vector>

#include "core/error.h"

namespace kvscope {

class ByteWriter {
 public:
  template <typename T>
  void put(const T& v) {
    static_assert(std::is_trivially_copyable_v<T>);
    bytes_.append(reinterpret_cast<const char*>(&v), sizeof(T));
  }
  template <typename T>
  void put_vector(const std::vector<T>& v) {
    static_assert(std::is_trivially_copyable_v<T>);
    put(static_cast<uint64_t>(v.size()));
    if (!v.empty()) bytes_.append(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(T));
  }
  void put_string(const std::string& s) {
    put(static_cast<uint64_t>(s.size()));
    bytes_ += s;
  }
  std::string take() { return std::move(bytes_); }

 private:
  std::string bytes_;
};

class ByteReader {
 public:
  // `what` names the message in errors ("a run's output message").
  ByteReader(const std::string& bytes, std::string what) : bytes_(bytes), what_(std::move(what)) {}
  template <typename T>
  T get() {
    static_assert(std::is_trivially_copyable_v<T>);
    if (sizeof(T) > bytes_.size() - at_) fail(what_, " is truncated");
    T v;
    std::memcpy(&v, bytes_.data() + at_, sizeof(T));
    at_ += sizeof(T);
    return v;
  }
  template <typename T>
  std::vector<T> get_vector() {
    const uint64_t n = get<uint64_t>();
    if (n > (bytes_.size() - at_) / sizeof(T)) fail(what_, " is truncated (", n, " items announced)");
    std::vector<T> v(static_cast<size_t>(n));
    if (n) std::memcpy(v.data(), bytes_.data() + at_, n * sizeof(T));
    at_ += n * sizeof(T);
    return v;
  }
  std::string get_string() {
    const uint64_t n = get<uint64_t>();
    if (n > bytes_.size() - at_) fail(what_, " is truncated (", n, " bytes announced)");
    std::string s = bytes_.substr(at_, static_cast<size_t>(n));
    at_ += static_cast<size_t>(n);
    return s;
  }
  void expect_end() const {
    if (at_ != bytes_.size()) fail(what_, " has ", bytes_.size() - at_, " bytes past its end");
  }

 private:
  const std::string& bytes_;
  std::string what_;
  size_t at_ = 0;
};

}  // namespace kvscope
