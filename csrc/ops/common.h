// What every op's torch file (csrc/ops/<op>.cpp) uses to hand tensors to the raw-pointer
// interface of segrun/launch.h and to report a failed CUDA launch.
#pragma once

// Only the per-operator ATen headers below, not ATen/ATen.h, which would take much of each file's
// compile time; this define makes including ATen's all-operators headers an error. Include this
// file first.
#define TORCH_ASSERT_ONLY_METHOD_OPERATORS

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <ATen/ops/zeros.h>
#include <torch/library.h>

#include "segrun/launch.h"

#ifdef SEGRUN_WITH_CUDA
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#endif

namespace segrun {

inline Dtype dtype_of(const at::Tensor& tensor) {
  switch (tensor.scalar_type()) {
    case at::kFloat: return Dtype::Float32;
    case at::kDouble: return Dtype::Float64;
    case at::kHalf: return Dtype::Float16;
    case at::kBFloat16: return Dtype::BFloat16;
    default: TORCH_CHECK(false, "segrun ops take float32, float64, float16 or bfloat16, got ", tensor.scalar_type());
  }
}

inline Strides4 strides_of(const at::Tensor& t) { return {t.stride(0), t.stride(1), t.stride(2), t.stride(3)}; }

#ifdef SEGRUN_WITH_CUDA
inline CUstream_st* current_stream() {
  return reinterpret_cast<CUstream_st*>(c10::cuda::getCurrentCUDAStream().stream());
}

inline void check_launch(const char* error, const char* op) { TORCH_CHECK(error == nullptr, "segrun::", op, ": ", error); }
#endif

}  // namespace segrun
