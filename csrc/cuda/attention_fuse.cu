// attention_fuse forward and backward with the bilinear upsampling computed on the fly: the
// upsampled attention and attention * prediction are never materialised. Forward and grad_hi take
// one output pixel per thread, grad_lo and grad_attn one low-resolution pixel per thread.
#include "common.cuh"
#include "segrun/attention_fuse.h"

namespace segrun {
namespace {

constexpr int kThreads = 256;

template <typename scalar_t>
__device__ __forceinline__ const scalar_t& at(const scalar_t* data, const Strides4& s, int64_t n, int64_t c, int64_t y,
                                              int64_t x) {
  return data[n * s.n + c * s.c + y * s.h + x * s.w];
}

template <typename scalar_t>
__device__ __forceinline__ scalar_t& at(scalar_t* data, const Strides4& s, int64_t n, int64_t c, int64_t y, int64_t x) {
  return data[n * s.n + c * s.c + y * s.h + x * s.w];
}

// Bilinear sample of channel c of a low-resolution map at taps (ty, tx), horizontally first as the
// CPU implementation; `product` (may be nullptr) multiplies each tap by the same tap of a second
// map (channel product_c) first.
template <typename scalar_t, typename acc_t>
__device__ __forceinline__ acc_t sample(const scalar_t* map, const Strides4& s, const scalar_t* product,
                                        const Strides4& ps, int64_t n, int64_t c, int64_t product_c,
                                        const Taps<acc_t>& ty, const Taps<acc_t>& tx) {
  auto tap = [&](int64_t y, int64_t x) {
    acc_t value = static_cast<acc_t>(at(map, s, n, c, y, x));
    return product ? value * static_cast<acc_t>(at(product, ps, n, product_c, y, x)) : value;
  };
  return bilinear_mix(ty, bilinear_mix(tx, tap(ty.lo, tx.lo), tap(ty.lo, tx.hi)),
                      bilinear_mix(tx, tap(ty.hi, tx.lo), tap(ty.hi, tx.hi)));
}

// The output pixel (n, c, y, x) of thread index i, in the output's memory order: neighbouring
// threads read and write neighbouring bytes.
struct Pixel {
  int64_t n, c, y, x;
};

__device__ __forceinline__ Pixel pixel_of(int64_t i, const FuseShape& shape) {
  Pixel p;
  if (shape.out_channels_last) {  // memory order n, y, x, c
    p.c = i % shape.channels, i /= shape.channels;
    p.x = i % shape.width, i /= shape.width;
    p.y = i % shape.height, p.n = i / shape.height;
  } else {
    p.x = i % shape.width, i /= shape.width;
    p.y = i % shape.height, i /= shape.height;
    p.c = i % shape.channels, p.n = i / shape.channels;
  }
  return p;
}

template <typename scalar_t>
__global__ void __launch_bounds__(kThreads)
    fuse_forward_kernel(const scalar_t* hi, Strides4 hs, const scalar_t* lo, Strides4 ls, const scalar_t* attn,
                        Strides4 as, scalar_t* out, Strides4 os, FuseShape shape) {
  using acc_t = typename Accumulate<scalar_t>::type;
  const acc_t scale_h = bilinear_scale<acc_t>(shape.low_height, shape.height, shape.align_corners);
  const acc_t scale_w = bilinear_scale<acc_t>(shape.low_width, shape.width, shape.align_corners);
  const int64_t total = shape.batch * shape.channels * shape.height * shape.width;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total; i += int64_t(gridDim.x) * blockDim.x) {
    const Pixel p = pixel_of(i, shape);
    const Taps<acc_t> ty = bilinear_taps<acc_t>(p.y, shape.low_height, scale_h, shape.align_corners);
    const Taps<acc_t> tx = bilinear_taps<acc_t>(p.x, shape.low_width, scale_w, shape.align_corners);
    const int64_t attn_c = shape.attn_channels == 1 ? 0 : p.c;
    const acc_t weighted = sample<scalar_t, acc_t>(attn, as, lo, ls, p.n, attn_c, p.c, ty, tx);
    const acc_t attention =
        sample<scalar_t, acc_t>(attn, as, static_cast<const scalar_t*>(nullptr), as, p.n, attn_c, 0, ty, tx);
    at(out, os, p.n, p.c, p.y, p.x) =
        static_cast<scalar_t>(fuse_output(weighted, attention, static_cast<acc_t>(at(hi, hs, p.n, p.c, p.y, p.x))));
  }
}

// grad_hi, one output pixel per thread in the output's memory order (as forward).
template <typename scalar_t>
__global__ void __launch_bounds__(kThreads)
    fuse_grad_hi_kernel(const scalar_t* grad, Strides4 gs, const scalar_t* attn, Strides4 as, scalar_t* grad_hi,
                        Strides4 ghs, FuseShape shape) {
  using acc_t = typename Accumulate<scalar_t>::type;
  const acc_t scale_h = bilinear_scale<acc_t>(shape.low_height, shape.height, shape.align_corners);
  const acc_t scale_w = bilinear_scale<acc_t>(shape.low_width, shape.width, shape.align_corners);
  const int64_t total = shape.batch * shape.channels * shape.height * shape.width;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total; i += int64_t(gridDim.x) * blockDim.x) {
    const Pixel p = pixel_of(i, shape);
    const Taps<acc_t> ty = bilinear_taps<acc_t>(p.y, shape.low_height, scale_h, shape.align_corners);
    const Taps<acc_t> tx = bilinear_taps<acc_t>(p.x, shape.low_width, scale_w, shape.align_corners);
    const int64_t attn_c = shape.attn_channels == 1 ? 0 : p.c;
    const acc_t attention =
        sample<scalar_t, acc_t>(attn, as, static_cast<const scalar_t*>(nullptr), as, p.n, attn_c, 0, ty, tx);
    at(grad_hi, ghs, p.n, p.c, p.y, p.x) =
        static_cast<scalar_t>(fuse_grad_hi(static_cast<acc_t>(at(grad, gs, p.n, p.c, p.y, p.x)), attention));
  }
}

// grad_lo and grad_attn, one low-resolution pixel (n, attn_c, v, u) per thread: each gathers, for
// every channel its attention serves, the output gradient from the pixels that read it (so every
// gradient is written once, without atomics).
template <typename scalar_t>
__global__ void __launch_bounds__(kThreads)
    fuse_grad_low_kernel(const scalar_t* grad, Strides4 gs, const scalar_t* hi, Strides4 hs, const scalar_t* lo,
                         Strides4 ls, const scalar_t* attn, Strides4 as, scalar_t* grad_lo, Strides4 gls,
                         scalar_t* grad_attn, Strides4 gas, FuseShape shape) {
  using acc_t = typename Accumulate<scalar_t>::type;
  const bool ac = shape.align_corners;
  const acc_t scale_h = bilinear_scale<acc_t>(shape.low_height, shape.height, ac);
  const acc_t scale_w = bilinear_scale<acc_t>(shape.low_width, shape.width, ac);
  const int64_t total = shape.batch * shape.attn_channels * shape.low_height * shape.low_width;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total; i += int64_t(gridDim.x) * blockDim.x) {
    int64_t rest = i;
    const int64_t u = rest % shape.low_width;
    rest /= shape.low_width;
    const int64_t v = rest % shape.low_height;
    rest /= shape.low_height;
    const int64_t attn_c = rest % shape.attn_channels, n = rest / shape.attn_channels;
    int64_t first_y, last_y, first_x, last_x;
    bilinear_readers(v, shape.low_height, shape.height, ac, &first_y, &last_y);
    bilinear_readers(u, shape.low_width, shape.width, ac, &first_x, &last_x);
    const acc_t attention = static_cast<acc_t>(at(attn, as, n, attn_c, v, u));
    const int64_t first_c = shape.attn_channels == 1 ? 0 : attn_c;
    const int64_t end_c = shape.attn_channels == 1 ? shape.channels : attn_c + 1;
    acc_t attn_grad = acc_t(0);
    for (int64_t c = first_c; c < end_c; ++c) {
      acc_t up_grad = acc_t(0), up_grad_hi = acc_t(0);
      for (int64_t y = first_y; y <= last_y; ++y) {
        const acc_t wy = bilinear_weight_of<acc_t>(y, v, shape.low_height, scale_h, ac);
        if (wy == acc_t(0)) continue;
        for (int64_t x = first_x; x <= last_x; ++x) {
          const acc_t wx = bilinear_weight_of<acc_t>(x, u, shape.low_width, scale_w, ac);
          if (wx == acc_t(0)) continue;
          const acc_t weighted = wy * wx * static_cast<acc_t>(at(grad, gs, n, c, y, x));
          up_grad += weighted;
          up_grad_hi += weighted * static_cast<acc_t>(at(hi, hs, n, c, y, x));
        }
      }
      const FuseLowGradients<acc_t> low =
          fuse_low_gradients(attention, static_cast<acc_t>(at(lo, ls, n, c, v, u)), up_grad, up_grad_hi);
      at(grad_lo, gls, n, c, v, u) = static_cast<scalar_t>(low.lo);
      attn_grad += low.attn;
    }
    at(grad_attn, gas, n, attn_c, v, u) = static_cast<scalar_t>(attn_grad);
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
  const int64_t total_hi = shape.batch * shape.channels * shape.height * shape.width;
  const int64_t total_low = shape.batch * shape.attn_channels * shape.low_height * shape.low_width;
  if (total_hi == 0 || total_low == 0) return nullptr;
  return dispatch_floating(args.dtype, [&](auto* tag) -> const char* {
    using scalar_t = std::remove_pointer_t<decltype(tag)>;
    const cudaStream_t on = reinterpret_cast<cudaStream_t>(stream);
    fuse_grad_hi_kernel<scalar_t><<<blocks_for(total_hi), kThreads, 0, on>>>(
        static_cast<const scalar_t*>(args.grad), args.grad_strides, static_cast<const scalar_t*>(args.attn),
        args.attn_strides, static_cast<scalar_t*>(args.grad_hi), args.grad_hi_strides, shape);
    if (const char* error = last_error()) return error;
    fuse_grad_low_kernel<scalar_t><<<blocks_for(total_low), kThreads, 0, on>>>(
        static_cast<const scalar_t*>(args.grad), args.grad_strides, static_cast<const scalar_t*>(args.hi),
        args.hi_strides, static_cast<const scalar_t*>(args.lo), args.lo_strides,
        static_cast<const scalar_t*>(args.attn), args.attn_strides, static_cast<scalar_t*>(args.grad_lo),
        args.grad_lo_strides, static_cast<scalar_t*>(args.grad_attn), args.grad_attn_strides, shape);
    return last_error();
  });
}

}  // namespace segrun
