// attention_fuse: the per-element math shared by the CUDA kernels and the CPU implementation,
//   out = up(attn * lo) + (1 - up(attn)) * hi, `up` bilinear to hi's size, computed on the fly,
// and the kernels' raw-pointer interface.
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

template <typename scalar_t>
SEGRUN_HD const scalar_t& at(const scalar_t* data, const Strides4& s, int64_t n, int64_t c, int64_t y, int64_t x) {
  return data[n * s.n + c * s.c + y * s.h + x * s.w];
}

template <typename scalar_t>
SEGRUN_HD scalar_t& at(scalar_t* data, const Strides4& s, int64_t n, int64_t c, int64_t y, int64_t x) {
  return data[n * s.n + c * s.c + y * s.h + x * s.w];
}

// Bilinear sample of channel c of a low-resolution map at destination (y, x); `product` (may be
// nullptr) multiplies each tap by the same tap of a second map first.
template <typename scalar_t, typename acc_t>
SEGRUN_HD acc_t sample(const scalar_t* map, const Strides4& s, const scalar_t* product, const Strides4& ps,
                       int64_t n, int64_t c, int64_t product_c, const Taps<acc_t>& ty, const Taps<acc_t>& tx) {
  auto tap = [&](int64_t y, int64_t x) {
    acc_t value = static_cast<acc_t>(at(map, s, n, c, y, x));
    return product ? value * static_cast<acc_t>(at(product, ps, n, product_c, y, x)) : value;
  };
  return ty.w_lo * (tx.w_lo * tap(ty.lo, tx.lo) + tx.w_hi * tap(ty.lo, tx.hi)) +
         ty.w_hi * (tx.w_lo * tap(ty.hi, tx.lo) + tx.w_hi * tap(ty.hi, tx.hi));
}

template <typename scalar_t, typename acc_t>
SEGRUN_HD acc_t fuse_value(const scalar_t* hi, const Strides4& hs, const scalar_t* lo, const Strides4& ls,
                           const scalar_t* attn, const Strides4& as, const FuseShape& shape, acc_t scale_h,
                           acc_t scale_w, int64_t n, int64_t c, int64_t y, int64_t x) {
  Taps<acc_t> ty = bilinear_taps<acc_t>(y, shape.low_height, scale_h, shape.align_corners);
  Taps<acc_t> tx = bilinear_taps<acc_t>(x, shape.low_width, scale_w, shape.align_corners);
  int64_t attn_c = shape.attn_channels == 1 ? 0 : c;
  acc_t weighted = sample<scalar_t, acc_t>(attn, as, lo, ls, n, attn_c, c, ty, tx);
  acc_t attention = sample<scalar_t, acc_t>(attn, as, static_cast<const scalar_t*>(nullptr), as, n, attn_c, 0, ty, tx);
  return weighted + (acc_t(1) - attention) * static_cast<acc_t>(at(hi, hs, n, c, y, x));
}

// All gradients that flow through one low-resolution pixel (n, attn_c, v, u): grad_lo for each
// channel that uses this attention channel, grad_attn summed over them, and grad_hi for the
// output pixels whose first tap is this pixel (each output pixel has exactly one such owner, so
// every gradient is written once, without atomics).
template <typename scalar_t, typename acc_t>
SEGRUN_HD void fuse_backward_low_pixel(const scalar_t* grad, const Strides4& gs, const scalar_t* hi,
                                       const Strides4& hs, const scalar_t* lo, const Strides4& ls,
                                       const scalar_t* attn, const Strides4& as, scalar_t* grad_hi,
                                       const Strides4& ghs, scalar_t* grad_lo, const Strides4& gls,
                                       scalar_t* grad_attn, const Strides4& gas, const FuseShape& shape,
                                       acc_t scale_h, acc_t scale_w, int64_t n, int64_t attn_c, int64_t v,
                                       int64_t u) {
  const bool ac = shape.align_corners;
  int64_t first_y, last_y, first_x, last_x;
  bilinear_readers(v, shape.low_height, shape.height, ac, &first_y, &last_y);
  bilinear_readers(u, shape.low_width, shape.width, ac, &first_x, &last_x);
  const acc_t attention_here = static_cast<acc_t>(at(attn, as, n, attn_c, v, u));
  const int64_t first_c = shape.attn_channels == 1 ? 0 : attn_c;
  const int64_t end_c = shape.attn_channels == 1 ? shape.channels : attn_c + 1;
  acc_t attn_grad = acc_t(0);
  for (int64_t c = first_c; c < end_c; ++c) {
    const acc_t lo_here = static_cast<acc_t>(at(lo, ls, n, c, v, u));
    acc_t lo_grad = acc_t(0);
    for (int64_t y = first_y; y <= last_y; ++y) {
      Taps<acc_t> ty = bilinear_taps<acc_t>(y, shape.low_height, scale_h, ac);
      acc_t wy = (ty.lo == v ? ty.w_lo : acc_t(0)) + (ty.hi == v ? ty.w_hi : acc_t(0));
      bool owns_row = ty.lo == v;
      if (wy == acc_t(0) && !owns_row) continue;
      for (int64_t x = first_x; x <= last_x; ++x) {
        Taps<acc_t> tx = bilinear_taps<acc_t>(x, shape.low_width, scale_w, ac);
        acc_t wx = (tx.lo == u ? tx.w_lo : acc_t(0)) + (tx.hi == u ? tx.w_hi : acc_t(0));
        bool owns = owns_row && tx.lo == u;
        if (wy * wx == acc_t(0) && !owns) continue;
        acc_t g = static_cast<acc_t>(at(grad, gs, n, c, y, x));
        acc_t weight = wy * wx;
        lo_grad += weight * g;
        attn_grad += weight * (lo_here - static_cast<acc_t>(at(hi, hs, n, c, y, x))) * g;
        if (owns) {
          acc_t attention = sample<scalar_t, acc_t>(attn, as, static_cast<const scalar_t*>(nullptr), as, n, attn_c,
                                                    0, ty, tx);
          at(grad_hi, ghs, n, c, y, x) = static_cast<scalar_t>(g * (acc_t(1) - attention));
        }
      }
    }
    at(grad_lo, gls, n, c, v, u) = static_cast<scalar_t>(attention_here * lo_grad);
  }
  at(grad_attn, gas, n, attn_c, v, u) = static_cast<scalar_t>(attn_grad);
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
