// segrun::attention_fuse and its backward: their schemas, checks, CPU implementations and the
// glue to their CUDA kernels (csrc/cuda/attention_fuse.cu). The math is in
// segrun/attention_fuse.h.
#include "common.h"
#include "segrun/attention_fuse.h"

namespace segrun {
namespace {

FuseShape fuse_shape(const at::Tensor& hi, const at::Tensor& lo, const at::Tensor& attn, bool align_corners) {
  TORCH_CHECK(hi.dim() == 4 && lo.dim() == 4 && attn.dim() == 4, "segrun::attention_fuse takes 4-d tensors");
  TORCH_CHECK(lo.size(0) == hi.size(0) && lo.size(1) == hi.size(1), "segrun::attention_fuse: pred_lo ", lo.sizes(),
              " and pred_hi ", hi.sizes(), " differ in batch or classes");
  TORCH_CHECK(attn.size(0) == lo.size(0) && (attn.size(1) == 1 || attn.size(1) == lo.size(1)) &&
                  attn.size(2) == lo.size(2) && attn.size(3) == lo.size(3),
              "segrun::attention_fuse: attn_lo ", attn.sizes(), " must be [N, 1, h, w] beside pred_lo ", lo.sizes());
  TORCH_CHECK(hi.scalar_type() == lo.scalar_type() && hi.scalar_type() == attn.scalar_type(),
              "segrun::attention_fuse: inputs must share one dtype");
  TORCH_CHECK(hi.device() == lo.device() && hi.device() == attn.device(),
              "segrun::attention_fuse: inputs on different devices");
  dtype_of(hi);
  FuseShape shape;
  shape.batch = hi.size(0);
  shape.channels = hi.size(1);
  shape.height = hi.size(2);
  shape.width = hi.size(3);
  shape.low_height = lo.size(2);
  shape.low_width = lo.size(3);
  shape.attn_channels = attn.size(1);
  shape.align_corners = align_corners;
  shape.out_channels_last = hi.suggest_memory_format() == at::MemoryFormat::ChannelsLast;
  return shape;
}

// The gradients of attention_fuse, each laid out like its input, after checking grad.
std::tuple<at::Tensor, at::Tensor, at::Tensor> fuse_backward_outputs(const at::Tensor& grad, const at::Tensor& hi,
                                                                     const at::Tensor& lo, const at::Tensor& attn) {
  TORCH_CHECK(grad.sizes() == hi.sizes() && grad.scalar_type() == hi.scalar_type(),
              "segrun::attention_fuse_backward: grad must be like pred_hi");
  return {at::empty_like(hi), at::empty_like(lo), at::empty_like(attn)};
}

bool empty(const FuseShape& s) { return s.batch * s.channels * s.height * s.width * s.low_height * s.low_width == 0; }

at::Tensor attention_fuse_cpu(const at::Tensor& hi, const at::Tensor& lo, const at::Tensor& attn, bool align_corners) {
  FuseShape shape = fuse_shape(hi, lo, attn, align_corners);
  at::Tensor out = at::empty_like(hi);
  if (empty(shape)) return out;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, hi.scalar_type(), "attention_fuse_cpu", [&] {
    using acc_t = typename Accumulate<scalar_t>::type;
    const acc_t scale_h = bilinear_scale<acc_t>(shape.low_height, shape.height, align_corners);
    const acc_t scale_w = bilinear_scale<acc_t>(shape.low_width, shape.width, align_corners);
    const scalar_t *hi_data = hi.const_data_ptr<scalar_t>(), *lo_data = lo.const_data_ptr<scalar_t>();
    const scalar_t* attn_data = attn.const_data_ptr<scalar_t>();
    scalar_t* out_data = out.data_ptr<scalar_t>();
    Strides4 hs = strides_of(hi), ls = strides_of(lo), as = strides_of(attn), os = strides_of(out);
    at::parallel_for(0, shape.batch * shape.channels * shape.height, 4, [&](int64_t begin, int64_t end) {
      for (int64_t row = begin; row < end; ++row) {
        const int64_t y = row % shape.height, c = (row / shape.height) % shape.channels;
        const int64_t n = row / (shape.height * shape.channels);
        for (int64_t x = 0; x < shape.width; ++x) {
          at(out_data, os, n, c, y, x) = static_cast<scalar_t>(fuse_value<scalar_t, acc_t>(
              hi_data, hs, lo_data, ls, attn_data, as, shape, scale_h, scale_w, n, c, y, x));
        }
      }
    });
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> attention_fuse_backward_cpu(const at::Tensor& grad,
                                                                           const at::Tensor& hi, const at::Tensor& lo,
                                                                           const at::Tensor& attn,
                                                                           bool align_corners) {
  FuseShape shape = fuse_shape(hi, lo, attn, align_corners);
  at::Tensor grad_hi, grad_lo, grad_attn;  // std::tie, not a structured binding: lambdas capture these (C++17)
  std::tie(grad_hi, grad_lo, grad_attn) = fuse_backward_outputs(grad, hi, lo, attn);
  if (empty(shape)) return {grad_hi.zero_(), grad_lo.zero_(), grad_attn.zero_()};
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, hi.scalar_type(), "attention_fuse_backward_cpu", [&] {
    using acc_t = typename Accumulate<scalar_t>::type;
    const acc_t scale_h = bilinear_scale<acc_t>(shape.low_height, shape.height, align_corners);
    const acc_t scale_w = bilinear_scale<acc_t>(shape.low_width, shape.width, align_corners);
    Strides4 gs = strides_of(grad), hs = strides_of(hi), ls = strides_of(lo), as = strides_of(attn);
    Strides4 ghs = strides_of(grad_hi), gls = strides_of(grad_lo), gas = strides_of(grad_attn);
    const scalar_t *grad_data = grad.const_data_ptr<scalar_t>(), *hi_data = hi.const_data_ptr<scalar_t>();
    const scalar_t *lo_data = lo.const_data_ptr<scalar_t>(), *attn_data = attn.const_data_ptr<scalar_t>();
    scalar_t *grad_hi_data = grad_hi.data_ptr<scalar_t>(), *grad_lo_data = grad_lo.data_ptr<scalar_t>();
    scalar_t* grad_attn_data = grad_attn.data_ptr<scalar_t>();
    at::parallel_for(0, shape.batch * shape.attn_channels * shape.low_height, 1, [&](int64_t begin, int64_t end) {
      for (int64_t row = begin; row < end; ++row) {
        const int64_t v = row % shape.low_height, attn_c = (row / shape.low_height) % shape.attn_channels;
        const int64_t n = row / (shape.low_height * shape.attn_channels);
        for (int64_t u = 0; u < shape.low_width; ++u) {
          fuse_backward_low_pixel<scalar_t, acc_t>(grad_data, gs, hi_data, hs, lo_data, ls, attn_data, as,
                                                   grad_hi_data, ghs, grad_lo_data, gls, grad_attn_data, gas, shape,
                                                   scale_h, scale_w, n, attn_c, v, u);
        }
      }
    });
  });
  return {grad_hi, grad_lo, grad_attn};
}

#ifdef SEGRUN_WITH_CUDA
at::Tensor attention_fuse_cuda_op(const at::Tensor& hi, const at::Tensor& lo, const at::Tensor& attn,
                                  bool align_corners) {
  FuseShape shape = fuse_shape(hi, lo, attn, align_corners);
  c10::cuda::CUDAGuard guard(hi.device());
  at::Tensor out = at::empty_like(hi);
  if (empty(shape)) return out;
  check_launch(attention_fuse_cuda({.hi = hi.const_data_ptr(),
                                    .hi_strides = strides_of(hi),
                                    .lo = lo.const_data_ptr(),
                                    .lo_strides = strides_of(lo),
                                    .attn = attn.const_data_ptr(),
                                    .attn_strides = strides_of(attn),
                                    .out = out.data_ptr(),
                                    .out_strides = strides_of(out),
                                    .shape = shape,
                                    .dtype = dtype_of(hi)},
                                   current_stream()),
               "attention_fuse");
  return out;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> attention_fuse_backward_cuda_op(const at::Tensor& grad,
                                                                               const at::Tensor& hi,
                                                                               const at::Tensor& lo,
                                                                               const at::Tensor& attn,
                                                                               bool align_corners) {
  FuseShape shape = fuse_shape(hi, lo, attn, align_corners);
  c10::cuda::CUDAGuard guard(hi.device());
  at::Tensor grad_hi, grad_lo, grad_attn;  // std::tie, not a structured binding: lambdas capture these (C++17)
  std::tie(grad_hi, grad_lo, grad_attn) = fuse_backward_outputs(grad, hi, lo, attn);
  if (empty(shape)) return {grad_hi.zero_(), grad_lo.zero_(), grad_attn.zero_()};
  check_launch(attention_fuse_backward_cuda({.grad = grad.const_data_ptr(),
                                             .grad_strides = strides_of(grad),
                                             .hi = hi.const_data_ptr(),
                                             .hi_strides = strides_of(hi),
                                             .lo = lo.const_data_ptr(),
                                             .lo_strides = strides_of(lo),
                                             .attn = attn.const_data_ptr(),
                                             .attn_strides = strides_of(attn),
                                             .grad_hi = grad_hi.data_ptr(),
                                             .grad_hi_strides = strides_of(grad_hi),
                                             .grad_lo = grad_lo.data_ptr(),
                                             .grad_lo_strides = strides_of(grad_lo),
                                             .grad_attn = grad_attn.data_ptr(),
                                             .grad_attn_strides = strides_of(grad_attn),
                                             .shape = shape,
                                             .dtype = dtype_of(hi)},
                                            current_stream()),
               "attention_fuse_backward");
  return {grad_hi, grad_lo, grad_attn};
}
#endif

}  // namespace
}  // namespace segrun

TORCH_LIBRARY_FRAGMENT(segrun, m) {
  m.def("attention_fuse(Tensor pred_hi, Tensor pred_lo, Tensor attn_lo, bool align_corners) -> Tensor");
  m.def(
      "attention_fuse_backward(Tensor grad, Tensor pred_hi, Tensor pred_lo, Tensor attn_lo, bool align_corners)"
      " -> (Tensor, Tensor, Tensor)");
}

TORCH_LIBRARY_IMPL(segrun, CPU, m) {
  m.impl("attention_fuse", &segrun::attention_fuse_cpu);
  m.impl("attention_fuse_backward", &segrun::attention_fuse_backward_cpu);
}

#ifdef SEGRUN_WITH_CUDA
TORCH_LIBRARY_IMPL(segrun, CUDA, m) {
  m.impl("attention_fuse", &segrun::attention_fuse_cuda_op);
  m.impl("attention_fuse_backward", &segrun::attention_fuse_backward_cuda_op);
}
#endif
