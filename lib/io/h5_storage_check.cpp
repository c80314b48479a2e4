// A file read by kvscope is untrusted, and libhdf5 1.10 sizes its buffers from what the file
// claims: a chunk index entry, a filter mask, a layout message. Found by fuzzing: a chunk
// recorded as 4 GiB made it allocate that much; a 19-byte chunk whose filter mask says
// "deflate skipped" made it copy 64 bytes out of a 19-byte buffer (heap overflow). So before
// any H5Dread, everything libhdf5 would read for the selection is checked against the
// dataset's extent, element type and the file, and refused by name if it disagrees.
#include <hdf5.h>
#include <zlib.h>

#include <string>
#include <vector>

#include "core/error.h"
#include "io/h5.h"
#include "io/h5_kinds.h"

namespace kvscope::h5 {
namespace {

// How many bytes a deflate (zlib) stream inflates to: -1 if it is not one complete stream,
// -2 if it inflates to more than `limit`. Output goes to a scratch buffer: only its length
// matters here.
int64_t inflated_size(const std::vector<unsigned char>& in, int64_t limit) {
  z_stream z{};
  if (inflateInit(&z) != Z_OK) return -1;
  z.next_in = const_cast<unsigned char*>(in.data());
  z.avail_in = static_cast<uInt>(in.size());
  unsigned char scratch[16384];
  int64_t total = 0;
  int rc = Z_OK;
  while (rc == Z_OK && total <= limit) {
    z.next_out = scratch;
    z.avail_out = sizeof(scratch);
    rc = inflate(&z, Z_NO_FLUSH);
    total += static_cast<int64_t>(sizeof(scratch) - z.avail_out);
    if (rc == Z_BUF_ERROR && z.avail_in == 0) break;  // truncated: no more input, no end marker
  }
  const bool complete = rc == Z_STREAM_END && z.avail_in == 0;
  inflateEnd(&z);
  if (total > limit) return -2;
  return complete ? total : -1;
}

hsize_t file_size_of(Id dataset) {
  hsize_t size = 0;
  Handle file(H5Iget_file_id(dataset), kFile);
  H5Fget_filesize(file.id(), &size);
  return size;
}

}  // namespace

void Dataset::check_storage(const std::vector<int64_t>& offset, const std::vector<int64_t>& count, Id mem_type) const {
  const std::string where = file_ + ": " + path_;
  Handle type(H5Dget_type(h_.id()), kType);
  const H5T_class_t cls = H5Tget_class(type.id());
  const size_t element = H5Tget_size(type.id());
  // kvscope stores integers and IEEE floats of 2 to 8 bytes and reads them as numbers;
  // anything else (strings, compounds, references, odd sizes) would be converted by rules
  // the writer never used.
  if (cls != H5T_INTEGER && cls != H5T_FLOAT) fail(where, " does not hold numbers (HDF5 type class ", static_cast<int>(cls), ")");
  if (element != 1 && element != 2 && element != 4 && element != 8) fail(where, " has ", element, "-byte elements");
  if (H5Tget_class(mem_type) == H5T_INTEGER && cls != H5T_INTEGER) fail(where, " holds floating-point values where integers are expected");

  Handle space(H5Dget_space(h_.id()), kSpace);
  const hssize_t points = H5Sget_simple_extent_npoints(space.id());
  if (points < 0) fail(where, " has an unreadable extent (corrupt file?)");
  const double extent_bytes = static_cast<double>(points) * static_cast<double>(element);

  Handle plist(H5Dget_create_plist(h_.id()), kPlist);
  bool deflated = false;
  const int filters = H5Pget_nfilters(plist.id());
  if (filters < 0) fail(where, " has an unreadable filter pipeline (corrupt file?)");
  for (int i = 0; i < filters; ++i) {
    unsigned flags = 0;
    size_t n_values = 0;
    char name[64] = {};
    const H5Z_filter_t id = H5Pget_filter2(plist.id(), static_cast<unsigned>(i), &flags, &n_values, nullptr, sizeof(name), name, nullptr);
    // What kvscope writes: shuffle, then deflate.
    if (id == H5Z_FILTER_DEFLATE) deflated = true;
    else if (id != H5Z_FILTER_SHUFFLE) fail(where, " uses HDF5 filter ", static_cast<int>(id), " ('", name, "'), which kvscope does not read");
  }

  const hsize_t file_bytes = file_size_of(h_.id());
  switch (H5Pget_layout(plist.id())) {
    case H5D_CHUNKED:
      check_chunks(offset, count, element, deflated);
      return;
    case H5D_CONTIGUOUS:
    case H5D_COMPACT: {
      if (filters > 0) fail(where, " is filtered but not chunked (corrupt file?)");
      const hsize_t stored = H5Dget_storage_size(h_.id());
      // Never written: libhdf5 returns fill values and reads nothing from the file.
      if (stored == 0 && H5Pget_layout(plist.id()) == H5D_CONTIGUOUS) return;
      if (static_cast<double>(stored) != extent_bytes)
        fail(where, " stores ", stored, " bytes for an extent of ", extent_bytes, " bytes (corrupt file?)");
      if (H5Pget_layout(plist.id()) == H5D_CONTIGUOUS) {
        const haddr_t addr = H5Dget_offset(h_.id());
        if (addr == HADDR_UNDEF || addr > file_bytes || stored > file_bytes - addr)
          fail(where, " lies outside the file (", stored, " bytes at offset ", addr, "; corrupt or truncated file?)");
      }
      return;
    }
    default:
      fail(where, " has a storage layout kvscope does not read (corrupt file?)");
  }
}

void Dataset::check_chunks(const std::vector<int64_t>& offset, const std::vector<int64_t>& count, size_t element_bytes,
                           bool deflated) const {
  // Only the chunks the read touches are looked up, so reading one head costs in
  // proportion to what it reads, not to the whole dataset.
  const std::string where = file_ + ": " + path_;
  Handle plist(H5Dget_create_plist(h_.id()), kPlist);
  const int rank = H5Pget_chunk(plist.id(), 0, nullptr);
  if (rank <= 0 || static_cast<size_t>(rank) != offset.size()) fail(where, " has an unreadable chunk layout (corrupt file?)");
  std::vector<hsize_t> chunk(static_cast<size_t>(rank));
  H5Pget_chunk(plist.id(), rank, chunk.data());
  double nominal_d = static_cast<double>(element_bytes);
  for (hsize_t c : chunk) {
    if (c == 0) fail(where, " has an unreadable chunk layout (corrupt file?)");
    nominal_d *= static_cast<double>(c);
  }
  if (nominal_d > 4294967295.0) fail(where, " has chunks of ", nominal_d, " bytes (corrupt file?)");
  const auto nominal = static_cast<hsize_t>(nominal_d);
  // Deflate's worst case is a little over the input; an uncompressed chunk is exactly its size.
  const double largest = deflated ? nominal_d * 1.01 + 1024.0 : nominal_d;
  const hsize_t file_bytes = file_size_of(h_.id());
  std::vector<unsigned char> raw;
  // Walk the origins of the chunks covering [offset, offset + count), last axis fastest.
  std::vector<hsize_t> first(chunk.size()), origin(chunk.size());
  for (size_t d = 0; d < chunk.size(); ++d) first[d] = origin[d] = static_cast<hsize_t>(offset[d]) / chunk[d] * chunk[d];
  for (;;) {
    unsigned mask = 0;
    haddr_t addr = HADDR_UNDEF;
    hsize_t size = 0;
    auto at = [&] {
      std::string text;
      for (hsize_t o : origin) text += (text.empty() ? "" : ",") + std::to_string(o);
      return "the chunk at [" + text + "] of " + path_;
    };
    if (H5Dget_chunk_info_by_coord(h_.id(), origin.data(), &mask, &addr, &size) < 0)
      fail(file_, ": cannot locate ", at(), " (corrupt file?)");
    // A chunk never written reads as fill values; nothing is sized from the file for it.
    if (addr != HADDR_UNDEF) {
      if (static_cast<double>(size) > largest || addr > file_bytes || size > file_bytes - addr)
        fail(file_, ": ", at(), " lies outside the file or claims ", size, " bytes (corrupt file?)");
      // kvscope applies every filter to every chunk; libhdf5 would size a chunk that skips
      // one from its stored bytes and then copy a whole chunk out of it.
      if (mask != 0) fail(file_, ": ", at(), " is stored with some of its filters skipped (filter mask ", mask, "; corrupt file?)");
      if (!deflated && size != nominal)
        fail(file_, ": ", at(), " stores ", size, " bytes, not the chunk's ", nominal, " (corrupt file?)");
      if (deflated) {
        raw.resize(static_cast<size_t>(size));
        uint32_t read_mask = 0;
        if (H5Dread_chunk(h_.id(), H5P_DEFAULT, origin.data(), &read_mask, raw.data()) < 0)
          fail(file_, ": cannot read ", at(), " (truncated or corrupt file?)");
        const int64_t inflated = inflated_size(raw, static_cast<int64_t>(nominal));
        if (inflated == -1) fail(file_, ": ", at(), " is not a complete deflate stream (corrupt file?)");
        if (inflated != static_cast<int64_t>(nominal))
          fail(file_, ": ", at(), " inflates to ", inflated == -2 ? "more than" : std::to_string(inflated), " bytes, not the chunk's ",
               nominal, " (corrupt file?)");
      }
    }
    size_t d = chunk.size();
    while (d > 0) {
      --d;
      origin[d] += chunk[d];
      if (origin[d] < static_cast<hsize_t>(offset[d] + count[d])) break;
      origin[d] = first[d];
      if (d == 0) return;
    }
  }
}

}  // namespace kvscope::h5
