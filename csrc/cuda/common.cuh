// Launch helpers shared by the .cu files (CUDA headers only, no torch).
#pragma once

#include <algorithm>
#include <type_traits>

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "segrun/launch.h"
#include "segrun/math.h"

namespace segrun {

inline const char* last_error() {
  cudaError_t error = cudaGetLastError();
  return error == cudaSuccess ? nullptr : cudaGetErrorString(error);
}

inline int multiprocessors() {
  int device = 0, count = 0;
  cudaGetDevice(&device);
  cudaDeviceGetAttribute(&count, cudaDevAttrMultiProcessorCount, device);
  return count > 0 ? count : 1;
}

inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Calls f with a null pointer of the element type that `dtype` names.
template <typename F>
const char* dispatch_floating(Dtype dtype, F&& f) {
  switch (dtype) {
    case Dtype::Float32: return f(static_cast<float*>(nullptr));
    case Dtype::Float64: return f(static_cast<double*>(nullptr));
    case Dtype::Float16: return f(static_cast<__half*>(nullptr));
    case Dtype::BFloat16: return f(static_cast<__nv_bfloat16*>(nullptr));
  }
  return "unsupported dtype";
}

}  // namespace segrun
