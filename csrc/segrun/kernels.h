// Raw-pointer entry points of the CUDA kernels, so the .cu files need only CUDA's headers (they
// compile in seconds) and ops.cpp, the one file that includes torch, stays free of CUDA code.
#pragma once

#include <cstdint>

struct CUstream_st;  // cudaStream_t without including CUDA's headers

namespace segrun {

enum class Dtype { Float32, Float64, Float16, BFloat16 };

// Each returns nullptr on success, else CUDA's error string.

// logits (may be nullptr, then `prediction` holds int64 labels [N * HW]) indexed as
// n * stride_n + c * stride_c + p * stride_p for pixel p < HW; target int64 [N * HW];
// counts int64 [num_classes * num_classes], zeroed by the caller.
const char* confusion_matrix_cuda(const void* logits, Dtype dtype, int64_t batch, int64_t pixels, int64_t stride_n,
                                  int64_t stride_c, int64_t stride_p, const int64_t* prediction,
                                  const int64_t* target, int64_t num_classes, int64_t ignore_index, int64_t* counts,
                                  CUstream_st* stream);

// labels, probs: contiguous [maps, height, width] (float32 or float64); shifts float64 [maps] each;
// sums float64 [maps, kRmiSums] zeroed by the caller; value float64 [maps]; saved float64
// [maps, kRmiSaved].
const char* rmi_forward_cuda(const void* labels, const void* probs, Dtype dtype, int64_t maps, int64_t height,
                             int64_t width, const double* label_shift, const double* prob_shift, double alpha,
                             double* sums, double* value, double* saved, CUstream_st* stream);

// grad_value float64 [maps]; grad_probs like probs.
const char* rmi_backward_cuda(const void* labels, const void* probs, Dtype dtype, int64_t maps, int64_t height,
                              int64_t width, const double* saved, const double* grad_value, void* grad_probs,
                              CUstream_st* stream);

// Strides of a 4-d tensor [N, C, H, W], in elements.
struct Strides4 {
  int64_t n, c, h, w;
};

// out [N, C, H, W] = up(attn * lo) + (1 - up(attn)) * hi; attn has 1 or C channels.
struct FuseShape {
  int64_t batch, channels, height, width, low_height, low_width, attn_channels;
  bool align_corners;
  bool out_channels_last;  // the thread order follows the output's memory order
};

const char* attention_fuse_cuda(const void* hi, Strides4 hi_strides, const void* lo, Strides4 lo_strides,
                                const void* attn, Strides4 attn_strides, void* out, Strides4 out_strides,
                                FuseShape shape, Dtype dtype, CUstream_st* stream);

// Gradients of attention_fuse: grad_hi (like hi), grad_lo (like lo), grad_attn (like attn).
const char* attention_fuse_backward_cuda(const void* grad, Strides4 grad_strides, const void* hi,
                                         Strides4 hi_strides, const void* lo, Strides4 lo_strides, const void* attn,
                                         Strides4 attn_strides, void* grad_hi, Strides4 grad_hi_strides,
                                         void* grad_lo, Strides4 grad_lo_strides, void* grad_attn,
                                         Strides4 grad_attn_strides, FuseShape shape, Dtype dtype,
                                         CUstream_st* stream);

}  // namespace segrun
