// The CUDA entry points of a build without the CUDA backend (chosen by
// src/CMakeLists.txt when LONGATTN_HAVE_CUDA is off).
#include "core/backend.hpp"

namespace longattn::core {

std::unique_ptr<Backend> make_cuda_backend(const BackendConfig&) {
  throw Unsupported(
      "[longattn::cuda] this build of longattn has no CUDA backend (configure with "
      "-DLONGATTN_CUDA=ON and a CUDA toolkit)");
}

bool cuda_available() { return false; }

std::vector<std::int64_t> cuda_head_dims() { return {}; }

std::shared_ptr<void> cuda_upload(const void*, std::size_t) {
  throw Unsupported("[longattn::cuda] this build of longattn has no CUDA backend");
}

}  // namespace longattn::core
