#pragma once
// The kinds of HDF5 identifier a Handle closes, shared by the files that implement h5.h.
namespace kvscope::h5 {

enum Kind { kFile = 1, kGroup, kDataset, kSpace, kType, kAttr, kPlist };

}  // namespace kvscope::h5
