#include "build_info.h"

#include <ATen/Config.h>
#include <torch/version.h>

#ifndef CONVPOOL_TORCH_VERSION
#define CONVPOOL_TORCH_VERSION TORCH_VERSION
#endif

namespace convpool {

std::map<std::string, std::string> build_info() {
  std::map<std::string, std::string> info;
  info["torch_version"] = CONVPOOL_TORCH_VERSION;
#ifdef CONVPOOL_WITH_CUDA
  info["cuda"] = "yes";
  info["cuda_version"] = CONVPOOL_CUDA_VERSION;
#else
  info["cuda"] = "no";
  info["cuda_version"] = "none";
#endif
#ifdef _OPENMP
  info["openmp"] = "yes (" + std::to_string(_OPENMP) + ")";
#else
  info["openmp"] = "no";
#endif
#if AT_PARALLEL_OPENMP
  info["parallel_backend"] = "OpenMP";
#elif AT_PARALLEL_NATIVE
  info["parallel_backend"] = "native thread pool";
#else
  info["parallel_backend"] = "unknown";
#endif
  return info;
}

}  // namespace convpool
