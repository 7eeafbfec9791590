// confusion_matrix: the per-pixel math shared by the CUDA kernel and the CPU implementation, and
// the kernel's raw-pointer interface.
#pragma once

#include "segrun/launch.h"
#include "segrun/math.h"

namespace segrun {

// argmax over `count` values `stride` apart, with torch.argmax's semantics: the first maximum
// wins ties, and a NaN counts as larger than any number (the first NaN wins).
template <typename scalar_t>
SEGRUN_HD int64_t first_argmax(const scalar_t* values, int64_t stride, int64_t count) {
  using acc_t = typename Accumulate<scalar_t>::type;  // exact for every input type
  acc_t best = static_cast<acc_t>(values[0]);
  int64_t best_index = 0;
  for (int64_t c = 1; c < count; ++c) {
    acc_t value = static_cast<acc_t>(values[c * stride]);
    if (best == best && (value > best || value != value)) {
      best = value;
      best_index = c;
    }
  }
  return best_index;
}

// Row-major (target, prediction) cell of a num_classes x num_classes matrix, or -1 when the
// pixel is not counted (ignored or out-of-range target, out-of-range prediction).
SEGRUN_HD int64_t confusion_cell(int64_t target, int64_t prediction, int64_t num_classes, int64_t ignore_index) {
  if (target == ignore_index || target < 0 || target >= num_classes) return -1;
  if (prediction < 0 || prediction >= num_classes) return -1;
  return target * num_classes + prediction;
}

// logits (nullptr when `prediction` holds int64 labels [N * HW]) indexed as
// n * stride_n + c * stride_c + p * stride_p for pixel p < HW; target int64 [N * HW]; counts
// int64 [num_classes * num_classes], zeroed by the caller.
struct ConfusionArgs {
  const void* logits;
  Dtype dtype;
  int64_t batch, pixels, stride_n, stride_c, stride_p;
  const int64_t* prediction;
  const int64_t* target;
  int64_t num_classes, ignore_index;
  int64_t* counts;
};

const char* confusion_matrix_cuda(const ConfusionArgs& args, CUstream_st* stream);

}  // namespace segrun
