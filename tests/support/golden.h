#pragma once
// Reads the stories260K goldens (golden.h5 and greedy.json) with the HDF5 C API.
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace kvscope::testing {

struct H5Array {
  std::vector<int64_t> shape;
  std::vector<double> data;
};

H5Array read_h5_dataset(const std::filesystem::path& file, const std::string& name);

}  // namespace kvscope::testing
