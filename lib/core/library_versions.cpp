#include <H5public.h>
#include <torch/version.h>

#include "core/error.h"
#include "core/version.h"

namespace kvscope {

std::string library_versions() {
  unsigned major = 0, minor = 0, release = 0;
  H5get_libversion(&major, &minor, &release);
  return concat("libtorch ", TORCH_VERSION, "; hdf5 ", major, ".", minor, ".", release);
}

}  // namespace kvscope
