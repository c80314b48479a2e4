#include "support/golden.h"

#include <hdf5.h>

#include <stdexcept>

namespace kvscope::testing {

H5Array read_h5_dataset(const std::filesystem::path& file, const std::string& name) {
  const hid_t f = H5Fopen(file.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
  if (f < 0) throw std::runtime_error("cannot open " + file.string());
  const hid_t d = H5Dopen2(f, name.c_str(), H5P_DEFAULT);
  if (d < 0) { H5Fclose(f); throw std::runtime_error("no dataset " + name); }
  const hid_t s = H5Dget_space(d);
  const int rank = H5Sget_simple_extent_ndims(s);
  std::vector<hsize_t> dims(rank);
  H5Sget_simple_extent_dims(s, dims.data(), nullptr);
  H5Array out;
  size_t n = 1;
  for (hsize_t x : dims) { out.shape.push_back(static_cast<int64_t>(x)); n *= x; }
  out.data.resize(n);
  H5Dread(d, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, out.data.data());
  H5Sclose(s);
  H5Dclose(d);
  H5Fclose(f);
  return out;
}

}  // namespace kvscope::testing
