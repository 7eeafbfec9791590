// The types of the raw-pointer interface between each op's torch file (csrc/ops/<op>.cpp) and
// its CUDA launcher (csrc/cuda/<op>.cu), declared in the op's header (segrun/<op>.h): plain C++,
// so the .cu files need only CUDA's headers (they compile in seconds) and the torch files no CUDA
// code. Every launcher returns nullptr on success, else CUDA's error string.
#pragma once

#include <cstdint>

struct CUstream_st;  // cudaStream_t without including CUDA's headers

namespace segrun {

enum class Dtype { Float32, Float64, Float16, BFloat16 };

// Strides of a 4-d tensor [N, C, H, W], in elements.
struct Strides4 {
  int64_t n, c, h, w;
};

}  // namespace segrun
