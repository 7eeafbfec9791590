// attention_fuse forward and backward with the bilinear upsampling computed on the fly: the
// upsampled attention and attention * prediction are never materialised.
#include "common.cuh"
#include "segrun/attention_fuse.h"

namespace segrun {
namespace {

constexpr int kThreads = 256;

template <typename scalar_t>
__global__ void __launch_bounds__(kThreads)
    fuse_forward_kernel(const scalar_t* hi, Strides4 hs, const scalar_t* lo, Strides4 ls, const scalar_t* attn,
                        Strides4 as, scalar_t* out, Strides4 os, FuseShape shape) {
  using acc_t = typename Accumulate<scalar_t>::type;
  const acc_t scale_h = bilinear_scale<acc_t>(shape.low_height, shape.height, shape.align_corners);
  const acc_t scale_w = bilinear_scale<acc_t>(shape.low_width, shape.width, shape.align_corners);
  const int64_t total = shape.batch * shape.channels * shape.height * shape.width;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total; i += int64_t(gridDim.x) * blockDim.x) {
    int64_t n, c, y, x, rest = i;
    if (shape.out_channels_last) {  // memory order n, y, x, c: neighbouring threads write neighbouring bytes
      c = rest % shape.channels, rest /= shape.channels;
      x = rest % shape.width, rest /= shape.width;
      y = rest % shape.height, n = rest / shape.height;
    } else {
      x = rest % shape.width, rest /= shape.width;
      y = rest % shape.height, rest /= shape.height;
      c = rest % shape.channels, n = rest / shape.channels;
    }
    at(out, os, n, c, y, x) =
        static_cast<scalar_t>(fuse_value<scalar_t, acc_t>(hi, hs, lo, ls, attn, as, shape, scale_h, scale_w, n, c, y, x));
  }
}

template <typename scalar_t>
__global__ void __launch_bounds__(kThreads)
    fuse_backward_kernel(const scalar_t* grad, Strides4 gs, const scalar_t* hi, Strides4 hs, const scalar_t* lo,
                         Strides4 ls, const scalar_t* attn, Strides4 as, scalar_t* grad_hi, Strides4 ghs,
                         scalar_t* grad_lo, Strides4 gls, scalar_t* grad_attn, Strides4 gas, FuseShape shape) {
  using acc_t = typename Accumulate<scalar_t>::type;
  const acc_t scale_h = bilinear_scale<acc_t>(shape.low_height, shape.height, shape.align_corners);
  const acc_t scale_w = bilinear_scale<acc_t>(shape.low_width, shape.width, shape.align_corners);
  const int64_t total = shape.batch * shape.attn_channels * shape.low_height * shape.low_width;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total; i += int64_t(gridDim.x) * blockDim.x) {
    int64_t rest = i;
    const int64_t u = rest % shape.low_width;
    rest /= shape.low_width;
    const int64_t v = rest % shape.low_height;
    rest /= shape.low_height;
    const int64_t attn_c = rest % shape.attn_channels, n = rest / shape.attn_channels;
    fuse_backward_low_pixel<scalar_t, acc_t>(grad, gs, hi, hs, lo, ls, attn, as, grad_hi, ghs, grad_lo, gls,
                                             grad_attn, gas, shape, scale_h, scale_w, n, attn_c, v, u);
  }
}

int blocks_for(int64_t total) {
  return int(std::max<int64_t>(1, std::min<int64_t>(ceil_div(total, kThreads), int64_t(multiprocessors()) * 32)));
}

}  // namespace

const char* attention_fuse_cuda(const FuseArgs& args, CUstream_st* stream) {
  const FuseShape& shape = args.shape;
  const int64_t total = shape.batch * shape.channels * shape.height * shape.width;
  if (total == 0) return nullptr;
  return dispatch_floating(args.dtype, [&](auto* tag) -> const char* {
    using scalar_t = std::remove_pointer_t<decltype(tag)>;
    fuse_forward_kernel<scalar_t><<<blocks_for(total), kThreads, 0, reinterpret_cast<cudaStream_t>(stream)>>>(
        static_cast<const scalar_t*>(args.hi), args.hi_strides, static_cast<const scalar_t*>(args.lo),
        args.lo_strides, static_cast<const scalar_t*>(args.attn), args.attn_strides,
        static_cast<scalar_t*>(args.out), args.out_strides, shape);
    return last_error();
  });
}

const char* attention_fuse_backward_cuda(const FuseBackwardArgs& args, CUstream_st* stream) {
  const FuseShape& shape = args.shape;
  const int64_t total = shape.batch * shape.attn_channels * shape.low_height * shape.low_width;
  if (total == 0 || shape.height * shape.width == 0) return nullptr;
  return dispatch_floating(args.dtype, [&](auto* tag) -> const char* {
    using scalar_t = std::remove_pointer_t<decltype(tag)>;
    fuse_backward_kernel<scalar_t><<<blocks_for(total), kThreads, 0, reinterpret_cast<cudaStream_t>(stream)>>>(
        static_cast<const scalar_t*>(args.grad), args.grad_strides, static_cast<const scalar_t*>(args.hi),
        args.hi_strides, static_cast<const scalar_t*>(args.lo), args.lo_strides,
        static_cast<const scalar_t*>(args.attn), args.attn_strides, static_cast<scalar_t*>(args.grad_hi),
        args.grad_hi_strides, static_cast<scalar_t*>(args.grad_lo), args.grad_lo_strides,
        static_cast<scalar_t*>(args.grad_attn), args.grad_attn_strides, shape);
    return last_error();
  });
}

}  // namespace segrun
