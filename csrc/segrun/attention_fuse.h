// attention_fuse: the per-element math shared by the CUDA kernels and the CPU implementation,
//   out = up(attn * lo) + (1 - up(attn)) * hi, `up` bilinear to hi's size, computed on the fly,
// and the kernels' raw-pointer interface. Both devices interpolate with math.h's bilinear taps,
// horizontally first, and gather each low-resolution pixel's gradient from the output pixels that
// read it (bilinear_readers, bilinear_weight_of); they differ in how they walk the pixels.
#pragma once

#include "segrun/launch.h"
#include "segrun/math.h"

namespace segrun {

// out [N, C, H, W] from hi [N, C, H, W], lo [N, C, h, w] and attn [N, 1 or C, h, w].
struct FuseShape {
  int64_t batch, channels, height, width, low_height, low_width, attn_channels;
  bool align_corners;
  bool out_channels_last;  // the thread order follows the output's memory order
};

// out at one pixel, from the upsampled attn * lo (`weighted`) and attn (`attention`) there.
template <typename acc_t>
SEGRUN_HD acc_t fuse_output(acc_t weighted, acc_t attention, acc_t hi) {
  return weighted + (acc_t(1) - attention) * hi;
}

// d out / d hi at one pixel.
template <typename acc_t>
SEGRUN_HD acc_t fuse_grad_hi(acc_t grad, acc_t attention) {
  return grad * (acc_t(1) - attention);
}

template <typename acc_t>
struct FuseLowGradients {
  acc_t lo;    // d out / d lo at this pixel
  acc_t attn;  // this channel's part of d out / d attn at this pixel
};

// The gradients at one low-resolution pixel of one channel, from up_grad = sum of w * grad and
// up_grad_hi = sum of w * grad * hi over the output pixels that read it with weight w.
template <typename acc_t>
SEGRUN_HD FuseLowGradients<acc_t> fuse_low_gradients(acc_t attention, acc_t lo, acc_t up_grad, acc_t up_grad_hi) {
  return {attention * up_grad, lo * up_grad - up_grad_hi};
}

struct FuseArgs {
  const void* hi;
  Strides4 hi_strides;
  const void* lo;
  Strides4 lo_strides;
  const void* attn;
  Strides4 attn_strides;
  void* out;
  Strides4 out_strides;
  FuseShape shape;
  Dtype dtype;
};

const char* attention_fuse_cuda(const FuseArgs& args, CUstream_st* stream);

// Gradients of attention_fuse: grad_hi (like hi), grad_lo (like lo), grad_attn (like attn).
struct FuseBackwardArgs {
  const void* grad;
  Strides4 grad_strides;
  const void* hi;
  Strides4 hi_strides;
  const void* lo;
  Strides4 lo_strides;
  const void* attn;
  Strides4 attn_strides;
  void* grad_hi;
  Strides4 grad_hi_strides;
  void* grad_lo;
  Strides4 grad_lo_strides;
  void* grad_attn;
  Strides4 grad_attn_strides;
  FuseShape shape;
  Dtype dtype;
};

const char* attention_fuse_backward_cuda(const FuseBackwardArgs& args, CUstream_st* stream);

}  // namespace segrun
