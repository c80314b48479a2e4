#include "io/h5.h"

#include <hdf5.h>
#include <hdf5_hl.h>

#include <algorithm>

#include "core/error.h"
#include "io/h5_kinds.h"

namespace kvscope::h5 {
namespace {

void check(herr_t rc, const std::string& file, const std::string& what) {
  if (rc < 0) fail(file, ": HDF5 failed to ", what, " (disk full, or file not writable/corrupt?)");
}

Id checked(hid_t id, const std::string& file, const std::string& what) {
  if (id < 0) fail(file, ": HDF5 failed to ", what);
  return id;
}

hid_t half_type() {
  // IEEE binary16, which h5py and numpy read as float16.
  const hid_t t = H5Tcopy(H5T_IEEE_F32LE);
  H5Tset_fields(t, 15, 10, 5, 0, 10);
  H5Tset_size(t, 2);
  H5Tset_ebias(t, 15);
  H5Tset_precision(t, 16);
  return t;
}

Handle file_type(Stored s) {
  switch (s) {
    case Stored::Float16: return Handle(half_type(), kType);
    case Stored::Float32: return Handle(H5Tcopy(H5T_IEEE_F32LE), kType);
    case Stored::Float64: return Handle(H5Tcopy(H5T_IEEE_F64LE), kType);
    case Stored::Int64: return Handle(H5Tcopy(H5T_STD_I64LE), kType);
    case Stored::Int32: return Handle(H5Tcopy(H5T_STD_I32LE), kType);
  }
  return {};
}

std::vector<hsize_t> to_hsize(const std::vector<int64_t>& v) { return std::vector<hsize_t>(v.begin(), v.end()); }

void write_attr(Id obj, const std::string& name, hid_t type, hid_t space, const void* data, const std::string& file) {
  if (H5Aexists(obj, name.c_str()) > 0) H5Adelete(obj, name.c_str());
  Handle a(checked(H5Acreate2(obj, name.c_str(), type, space, H5P_DEFAULT, H5P_DEFAULT), file, "create attribute " + name), kAttr);
  check(H5Awrite(a.id(), type, data), file, "write attribute " + name);
}

// Fixed-length, NUL-terminated UTF-8. Variable-length strings live in the file's global
// heap, and libhdf5 1.10 can loop forever reading a corrupt global heap (found by fuzzing
// the dump reader), so kvscope neither writes nor reads them in attributes. h5py returns
// these as bytes; the notebooks decode them.
void set_string_attr(Id obj, const std::string& name, const std::string& value, const std::string& file) {
  Handle t(H5Tcopy(H5T_C_S1), kType);
  H5Tset_size(t.id(), value.size() + 1);
  H5Tset_strpad(t.id(), H5T_STR_NULLTERM);
  H5Tset_cset(t.id(), H5T_CSET_UTF8);
  Handle s(H5Screate(H5S_SCALAR), kSpace);
  write_attr(obj, name, t.id(), s.id(), value.c_str(), file);
}

std::string get_string_attr(Id obj, const std::string& name, const std::string& where) {
  if (H5Aexists(obj, name.c_str()) <= 0) fail(where, ": missing attribute '", name, "'");
  Handle a(checked(H5Aopen(obj, name.c_str(), H5P_DEFAULT), where, "open attribute " + name), kAttr);
  Handle t(H5Aget_type(a.id()), kType);
  if (H5Tget_class(t.id()) != H5T_STRING) fail(where, ": attribute '", name, "' is not a string");
  if (H5Tis_variable_str(t.id()) != 0)
    fail(where, ": attribute '", name,
         "' is a variable-length string; kvscope files store fixed-length strings (this file was written by another "
         "tool or an older kvscope: re-run the command that made it)");
  Handle sp(H5Aget_space(a.id()), kSpace);
  if (H5Sget_simple_extent_npoints(sp.id()) != 1) fail(where, ": attribute '", name, "' is not a scalar");
  const size_t n = H5Tget_size(t.id());
  constexpr size_t kLongestAttribute = size_t{1} << 24;
  if (n == 0 || n > kLongestAttribute) fail(where, ": attribute '", name, "' has an implausible length ", n, " (corrupt file?)");
  // Read as stored (no conversion); any padding scheme leaves the text before the first NUL.
  std::string out(n, '\0');
  check(H5Aread(a.id(), t.id(), out.data()), where, "read attribute " + name);
  out.erase(std::find(out.begin(), out.end(), '\0'), out.end());
  return out;
}

}  // namespace

void quiet_errors() { H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr); }

Handle::~Handle() {
  if (id_ < 0) return;
  switch (kind_) {
    case kFile: H5Fclose(id_); break;
    case kGroup: H5Gclose(id_); break;
    case kDataset: H5Dclose(id_); break;
    case kSpace: H5Sclose(id_); break;
    case kType: H5Tclose(id_); break;
    case kAttr: H5Aclose(id_); break;
    case kPlist: H5Pclose(id_); break;
    default: break;
  }
}

Handle& Handle::operator=(Handle&& o) noexcept {
  if (this != &o) {
    this->~Handle();
    id_ = o.id_;
    kind_ = o.kind_;
    o.id_ = -1;
  }
  return *this;
}

File File::create(const std::string& path) {
  quiet_errors();
  File f;
  f.path_ = path;
  // The 1.8 format stores attributes over 64 KiB densely (a long command line or model
  // config would otherwise fail), and every libhdf5 since 1.8 and h5py read it.
  Handle access(H5Pcreate(H5P_FILE_ACCESS), kPlist);
  H5Pset_libver_bounds(access.id(), H5F_LIBVER_V18, H5F_LIBVER_V18);
  f.h_ = Handle(checked(H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, access.id()), path, "create the file"), kFile);
  return f;
}

File File::open_read(const std::string& path) {
  quiet_errors();
  if (H5Fis_hdf5(path.c_str()) <= 0) fail(path, ": not an HDF5 file (missing, truncated or another format)");
  File f;
  f.path_ = path;
  f.h_ = Handle(checked(H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT), path, "open the file (truncated or corrupt?)"), kFile);
  return f;
}

Group File::root() const {
  return Group(Handle(checked(H5Gopen2(h_.id(), "/", H5P_DEFAULT), path_, "open /"), kGroup), "/", path_);
}

void File::flush() const { check(H5Fflush(h_.id(), H5F_SCOPE_GLOBAL), path_, "flush"); }

void File::close() {
  if (h_.valid()) {
    const Id id = h_.id();
    Handle released(std::move(h_));
    (void)id;
  }
}

Group Group::create_group(const std::string& name) const {
  const std::string p = path_ == "/" ? "/" + name : path_ + "/" + name;
  return Group(Handle(checked(H5Gcreate2(h_.id(), name.c_str(), H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT), file_, "create group " + p), kGroup), p, file_);
}

void Group::copy_from(const Group& source, const std::string& source_name, const std::string& name) const {
  if (!source.has(source_name)) fail(source.file(), ": missing ", source_name, " to copy");
  if (H5Ocopy(source.id(), source_name.c_str(), h_.id(), name.c_str(), H5P_DEFAULT, H5P_DEFAULT) < 0)
    fail(file_, ": HDF5 failed to copy ", source.file(), ":", source_name, " to ", path_, "/", name);
}

Group Group::open_group(const std::string& name) const {
  const std::string p = path_ == "/" ? "/" + name : path_ + "/" + name;
  if (!has(name)) fail(file_, ": missing group ", p, " (incomplete file?)");
  return Group(Handle(checked(H5Gopen2(h_.id(), name.c_str(), H5P_DEFAULT), file_, "open group " + p), kGroup), p, file_);
}

bool Group::has(const std::string& name) const { return H5Lexists(h_.id(), name.c_str(), H5P_DEFAULT) > 0; }

std::vector<std::string> Group::children() const {
  std::vector<std::string> names;
  H5Literate(h_.id(), H5_INDEX_NAME, H5_ITER_INC, nullptr,
             [](hid_t, const char* name, const H5L_info_t*, void* data) -> herr_t {
               static_cast<std::vector<std::string>*>(data)->push_back(name);
               return 0;
             },
             &names);
  return names;
}

void Group::set_attr(const std::string& name, const std::string& value) const { set_string_attr(h_.id(), name, value, file_); }

void Group::set_attr(const std::string& name, int64_t value) const {
  Handle s(H5Screate(H5S_SCALAR), kSpace);
  write_attr(h_.id(), name, H5T_NATIVE_INT64, s.id(), &value, file_);
}

void Group::set_attr(const std::string& name, double value) const {
  Handle s(H5Screate(H5S_SCALAR), kSpace);
  write_attr(h_.id(), name, H5T_NATIVE_DOUBLE, s.id(), &value, file_);
}

void Group::set_attr(const std::string& name, const std::vector<int64_t>& value) const {
  hsize_t n = value.size();
  Handle s(H5Screate_simple(1, &n, nullptr), kSpace);
  write_attr(h_.id(), name, H5T_NATIVE_INT64, s.id(), value.data(), file_);
}

bool Group::has_attr(const std::string& name) const { return H5Aexists(h_.id(), name.c_str()) > 0; }

std::string Group::attr_string(const std::string& name) const { return get_string_attr(h_.id(), name, file_ + ":" + path_); }

int64_t Group::attr_int(const std::string& name) const {
  const std::string where = file_ + ":" + path_;
  if (!has_attr(name)) fail(where, ": missing attribute '", name, "'");
  Handle a(checked(H5Aopen(h_.id(), name.c_str(), H5P_DEFAULT), where, "open attribute " + name), kAttr);
  Handle sp(H5Aget_space(a.id()), kSpace);
  if (H5Sget_simple_extent_npoints(sp.id()) != 1) fail(where, ": attribute '", name, "' is not a scalar");
  Handle t(H5Aget_type(a.id()), kType);
  if (H5Tget_class(t.id()) != H5T_INTEGER) fail(where, ": attribute '", name, "' is not an integer");
  int64_t v = 0;
  check(H5Aread(a.id(), H5T_NATIVE_INT64, &v), where, "read attribute " + name);
  return v;
}

double Group::attr_double(const std::string& name) const {
  const std::string where = file_ + ":" + path_;
  if (!has_attr(name)) fail(where, ": missing attribute '", name, "'");
  Handle a(checked(H5Aopen(h_.id(), name.c_str(), H5P_DEFAULT), where, "open attribute " + name), kAttr);
  double v = 0;
  check(H5Aread(a.id(), H5T_NATIVE_DOUBLE, &v), where, "read attribute " + name);
  return v;
}

Dataset Group::create_dataset(const std::string& name, const std::vector<int64_t>& shape, Stored type,
                              const std::string& dims) const {
  const std::string p = path_ == "/" ? "/" + name : path_ + "/" + name;
  const auto hs = to_hsize(shape);
  Handle space(H5Screate_simple(static_cast<int>(hs.size()), hs.data(), nullptr), kSpace);
  Handle plist(H5Pcreate(H5P_DATASET_CREATE), kPlist);
  bool empty = false;
  for (int64_t d : shape) empty |= d == 0;
  if (!empty && !shape.empty()) {
    // Chunks of ~64k elements along the trailing axes keep compression effective and let
    // a reader pull one head or one token range without inflating the whole dataset.
    std::vector<hsize_t> chunk(hs);
    size_t total = 1;
    for (hsize_t c : chunk) total *= c;
    for (size_t i = 0; i < chunk.size() && total > 65536; ++i) {
      while (chunk[i] > 1 && total > 65536) {
        total /= chunk[i];
        chunk[i] = (chunk[i] + 1) / 2;
        total *= chunk[i];
      }
    }
    H5Pset_chunk(plist.id(), static_cast<int>(chunk.size()), chunk.data());
    H5Pset_shuffle(plist.id());
    H5Pset_deflate(plist.id(), 4);
  }
  Handle t = file_type(type);
  Dataset d(Handle(checked(H5Dcreate2(h_.id(), name.c_str(), t.id(), space.id(), H5P_DEFAULT, plist.id(), H5P_DEFAULT),
                           file_, "create dataset " + p),
                   kDataset),
            p, file_);
  if (!dims.empty()) d.set_attr("dims", dims);
  return d;
}

Dataset Group::open_dataset(const std::string& name) const {
  const std::string p = path_ == "/" ? "/" + name : path_ + "/" + name;
  if (!has(name)) fail(file_, ": missing dataset ", p, " (incomplete file?)");
  return Dataset(Handle(checked(H5Dopen2(h_.id(), name.c_str(), H5P_DEFAULT), file_, "open dataset " + p), kDataset), p, file_);
}

void Group::write_strings(const std::string& name, const std::vector<std::string>& values, const std::string& dims) const {
  const std::string p = path_ == "/" ? "/" + name : path_ + "/" + name;
  hsize_t n = values.size();
  Handle space(H5Screate_simple(1, &n, nullptr), kSpace);
  Handle t(H5Tcopy(H5T_C_S1), kType);
  H5Tset_size(t.id(), H5T_VARIABLE);
  H5Tset_cset(t.id(), H5T_CSET_UTF8);
  Dataset d(Handle(checked(H5Dcreate2(h_.id(), name.c_str(), t.id(), space.id(), H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT), file_,
                           "create dataset " + p),
                   kDataset),
            p, file_);
  std::vector<const char*> ptrs;
  for (const auto& s : values) ptrs.push_back(s.c_str());
  if (n) check(H5Dwrite(d.h_.id(), t.id(), H5S_ALL, H5S_ALL, H5P_DEFAULT, ptrs.data()), file_, "write " + p);
  if (!dims.empty()) d.set_attr("dims", dims);
}

std::vector<int64_t> Dataset::shape() const {
  Handle s(H5Dget_space(h_.id()), kSpace);
  const int rank = H5Sget_simple_extent_ndims(s.id());
  if (rank < 0) fail(file_, ": cannot read the shape of ", path_);
  std::vector<hsize_t> dims(rank);
  H5Sget_simple_extent_dims(s.id(), dims.data(), nullptr);
  return std::vector<int64_t>(dims.begin(), dims.end());
}

void Dataset::write_impl(const std::vector<int64_t>& offset, const std::vector<int64_t>& count, Id mem_type, const void* data) const {
  Handle fs(H5Dget_space(h_.id()), kSpace);
  const auto off = to_hsize(offset), cnt = to_hsize(count);
  check(H5Sselect_hyperslab(fs.id(), H5S_SELECT_SET, off.data(), nullptr, cnt.data(), nullptr), file_, "select in " + path_);
  Handle ms(H5Screate_simple(static_cast<int>(cnt.size()), cnt.data(), nullptr), kSpace);
  check(H5Dwrite(h_.id(), mem_type, ms.id(), fs.id(), H5P_DEFAULT, data), file_, "write " + path_);
}

void Dataset::read_impl(const std::vector<int64_t>& offset, const std::vector<int64_t>& count, Id mem_type, void* data) const {
  check_storage(offset, count, mem_type);
  Handle fs(H5Dget_space(h_.id()), kSpace);
  const auto off = to_hsize(offset), cnt = to_hsize(count);
  check(H5Sselect_hyperslab(fs.id(), H5S_SELECT_SET, off.data(), nullptr, cnt.data(), nullptr), file_, "select in " + path_);
  Handle ms(H5Screate_simple(static_cast<int>(cnt.size()), cnt.data(), nullptr), kSpace);
  if (H5Dread(h_.id(), mem_type, ms.id(), fs.id(), H5P_DEFAULT, data) < 0) fail(file_, ": cannot read ", path_, " (truncated or corrupt file?)");
}

void Dataset::write_block(const std::vector<int64_t>& o, const std::vector<int64_t>& c, const float* d) const { write_impl(o, c, H5T_NATIVE_FLOAT, d); }
void Dataset::write_block(const std::vector<int64_t>& o, const std::vector<int64_t>& c, const int64_t* d) const { write_impl(o, c, H5T_NATIVE_INT64, d); }
void Dataset::write_block(const std::vector<int64_t>& o, const std::vector<int64_t>& c, const int32_t* d) const { write_impl(o, c, H5T_NATIVE_INT32, d); }
void Dataset::write_block(const std::vector<int64_t>& o, const std::vector<int64_t>& c, const double* d) const { write_impl(o, c, H5T_NATIVE_DOUBLE, d); }

namespace {
size_t element_count(const std::vector<int64_t>& s) {
  size_t n = 1;
  for (int64_t d : s) n *= static_cast<size_t>(d);
  return n;
}
}  // namespace

size_t Dataset::checked_element_count(const std::vector<int64_t>& count, size_t element_bytes) const {
  // A corrupt header can claim any shape; allocating for it would abort instead of failing
  // cleanly. Deflate cannot shrink data more than about 1032:1, so a dataset that claims far
  // more elements than its stored bytes could hold is lying.
  constexpr double kMaxDeflateRatio = 1100.0;
  constexpr double kSlackBytes = 1 << 20;
  double elements = 1;
  for (int64_t d : count) elements *= static_cast<double>(d);
  const double stored = static_cast<double>(H5Dget_storage_size(h_.id()));
  if (elements * static_cast<double>(element_bytes) > kMaxDeflateRatio * stored + kSlackBytes)
    fail(file_, ": dataset ", path_, " claims ", elements, " elements but stores only ", stored, " bytes (corrupt file?)");
  return element_count(count);
}

template <typename T>
void Dataset::read_all_as(std::vector<T>& out, Id mem_type) const {
  const auto s = shape();
  out.resize(checked_element_count(s, sizeof(T)));
  if (!out.empty()) read_impl(std::vector<int64_t>(s.size(), 0), s, mem_type, out.data());
}
void Dataset::read_all(std::vector<float>& out) const { read_all_as(out, H5T_NATIVE_FLOAT); }
void Dataset::read_all(std::vector<double>& out) const { read_all_as(out, H5T_NATIVE_DOUBLE); }
void Dataset::read_all(std::vector<int64_t>& out) const { read_all_as(out, H5T_NATIVE_INT64); }
void Dataset::read_block(const std::vector<int64_t>& o, const std::vector<int64_t>& c, std::vector<float>& out) const {
  out.resize(checked_element_count(c, sizeof(float)));
  if (!out.empty()) read_impl(o, c, H5T_NATIVE_FLOAT, out.data());
}

void Dataset::set_attr(const std::string& name, const std::string& value) const { set_string_attr(h_.id(), name, value, file_); }
void Dataset::set_attr(const std::string& name, const std::vector<int64_t>& value) const {
  hsize_t n = value.size();
  Handle s(H5Screate_simple(1, &n, nullptr), kSpace);
  write_attr(h_.id(), name, H5T_NATIVE_INT64, s.id(), value.data(), file_);
}
std::string Dataset::attr_string(const std::string& name) const { return get_string_attr(h_.id(), name, file_ + ":" + path_); }

}  // namespace kvscope::h5
