// What libhdf5 would read is checked before it reads: HDF5 files are built here with the raw
// C API (chunks written byte for byte with H5Dwrite_chunk), each broken in one way that
// libhdf5 1.10 does not catch itself, and kvscope's reader must refuse each by name, while
// the layouts kvscope writes (shuffle + deflate, partial edge chunks, contiguous) still read
// back exactly.
#include <gtest/gtest.h>
#include <hdf5.h>
#include <zlib.h>

#include <cstring>
#include <numeric>

#include "core/error.h"
#include "io/h5.h"
#include "support/test_paths.h"

namespace kvscope {
namespace {

using testing::TempDir;

struct Built {
  hid_t file, space, plist, dset;
};

// A 1-D int64 dataset of `n` elements in chunks of `chunk` (0: contiguous), with the given
// filters, in a new file.
Built build(const std::string& path, hsize_t n, hsize_t chunk, bool shuffle, bool deflate, bool fletcher = false) {
  Built b{};
  b.file = H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  b.space = H5Screate_simple(1, &n, nullptr);
  b.plist = H5Pcreate(H5P_DATASET_CREATE);
  if (chunk) H5Pset_chunk(b.plist, 1, &chunk);
  if (shuffle) H5Pset_shuffle(b.plist);
  if (deflate) H5Pset_deflate(b.plist, 4);
  if (fletcher) H5Pset_fletcher32(b.plist);
  b.dset = H5Dcreate2(b.file, "x", H5T_STD_I64LE, b.space, H5P_DEFAULT, b.plist, H5P_DEFAULT);
  return b;
}

void close(const Built& b) {
  H5Dclose(b.dset);
  H5Pclose(b.plist);
  H5Sclose(b.space);
  H5Fclose(b.file);
}

std::vector<unsigned char> deflate_bytes(const void* data, size_t n) {
  uLongf out_len = compressBound(n);
  std::vector<unsigned char> out(out_len);
  EXPECT_EQ(compress2(out.data(), &out_len, static_cast<const Bytef*>(data), n, 4), Z_OK);
  out.resize(out_len);
  return out;
}

std::string read_error(const std::string& path) {
  const h5::File f = h5::File::open_read(path);
  std::vector<int64_t> v;
  try {
    f.root().open_dataset("x").read_all(v);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(H5Storage, LayoutsKvscopeWritesReadBackExactly) {
  TempDir dir("h5storage");
  // 10 elements in chunks of 4: the last chunk is partial, as most of a dump's are.
  for (const auto& [shuffle, deflate, chunk] : {std::tuple{true, true, 4}, {false, true, 4}, {true, false, 4}, {false, false, 0}}) {
    const std::string path = (dir / "ok.h5").string();
    const Built b = build(path, 10, static_cast<hsize_t>(chunk), shuffle, deflate);
    std::vector<int64_t> want(10);
    std::iota(want.begin(), want.end(), 1000);
    H5Dwrite(b.dset, H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, want.data());
    close(b);
    const h5::File f = h5::File::open_read(path);
    std::vector<int64_t> got;
    f.root().open_dataset("x").read_all(got);
    EXPECT_EQ(got, want) << shuffle << deflate << chunk;
  }
}

TEST(H5Storage, DeflatedChunkThatInflatesShortIsRefused) {
  TempDir dir("h5storage");
  const std::string path = (dir / "short.h5").string();
  const Built b = build(path, 8, 8, false, true);
  const int64_t half[4] = {1, 2, 3, 4};  // 32 bytes where the chunk holds 64
  const auto z = deflate_bytes(half, sizeof(half));
  const hsize_t origin = 0;
  ASSERT_GE(H5Dwrite_chunk(b.dset, H5P_DEFAULT, 0, &origin, z.size(), z.data()), 0);
  close(b);
  const std::string err = read_error(path);
  EXPECT_NE(err.find("the chunk at [0] of /x inflates to 32 bytes, not the chunk's 64"), std::string::npos) << err;
}

TEST(H5Storage, DeflatedChunkThatIsNotAStreamIsRefused) {
  TempDir dir("h5storage");
  const std::string path = (dir / "garbage.h5").string();
  const Built b = build(path, 8, 8, false, true);
  const unsigned char junk[20] = {0x78, 0x9c, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18};
  const hsize_t origin = 0;
  ASSERT_GE(H5Dwrite_chunk(b.dset, H5P_DEFAULT, 0, &origin, sizeof(junk), junk), 0);
  close(b);
  const std::string err = read_error(path);
  EXPECT_NE(err.find("is not a complete deflate stream"), std::string::npos) << err;
}

TEST(H5Storage, ChunkStoredWithAFilterSkippedIsRefused) {
  TempDir dir("h5storage");
  const std::string path = (dir / "mask.h5").string();
  const Built b = build(path, 8, 8, true, true);
  const unsigned char raw[19] = {};
  const hsize_t origin = 0;
  // Mask bit 1: the deflate filter was not applied, so libhdf5 takes 19 bytes as the chunk.
  ASSERT_GE(H5Dwrite_chunk(b.dset, H5P_DEFAULT, 1u << 1, &origin, sizeof(raw), raw), 0);
  close(b);
  const std::string err = read_error(path);
  EXPECT_NE(err.find("is stored with some of its filters skipped (filter mask 2"), std::string::npos) << err;
}

TEST(H5Storage, UnfilteredChunkOfTheWrongSizeIsRefused) {
  TempDir dir("h5storage");
  const std::string path = (dir / "unfiltered.h5").string();
  const Built b = build(path, 8, 8, false, false);
  const unsigned char raw[19] = {};
  const hsize_t origin = 0;
  ASSERT_GE(H5Dwrite_chunk(b.dset, H5P_DEFAULT, 0, &origin, sizeof(raw), raw), 0);
  close(b);
  const std::string err = read_error(path);
  EXPECT_NE(err.find("stores 19 bytes, not the chunk's 64"), std::string::npos) << err;
}

TEST(H5Storage, FilterKvscopeDoesNotWriteIsRefusedByName) {
  TempDir dir("h5storage");
  const std::string path = (dir / "fletcher.h5").string();
  const Built b = build(path, 8, 8, false, false, /*fletcher=*/true);
  const std::vector<int64_t> v(8, 7);
  H5Dwrite(b.dset, H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, v.data());
  close(b);
  const std::string err = read_error(path);
  EXPECT_NE(err.find("uses HDF5 filter 3 ("), std::string::npos) << err;
}

TEST(H5Storage, FloatsWhereIntegersAreExpectedAreRefused) {
  TempDir dir("h5storage");
  const std::string path = (dir / "float.h5").string();
  const hid_t file = H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  const hsize_t n = 4;
  const hid_t space = H5Screate_simple(1, &n, nullptr);
  const hid_t d = H5Dcreate2(file, "x", H5T_IEEE_F64LE, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  const double v[4] = {1.5, 2, 3, 4};
  H5Dwrite(d, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, v);
  H5Dclose(d);
  H5Sclose(space);
  H5Fclose(file);
  const std::string err = read_error(path);
  EXPECT_NE(err.find("/x holds floating-point values where integers are expected"), std::string::npos) << err;
}

}  // namespace
}  // namespace kvscope
