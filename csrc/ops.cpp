// The segrun operator library: schemas, checks, the CPU implementations and the glue to the CUDA
// launchers. The per-element math lives in segrun/*.h, shared with the .cu files.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <mutex>
#include <vector>

#include "segrun/attention_fuse.h"
#include "segrun/kernels.h"
#include "segrun/math.h"

#ifdef SEGRUN_WITH_CUDA
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#endif

namespace segrun {
namespace {

Dtype dtype_of(const at::Tensor& tensor) {
  switch (tensor.scalar_type()) {
    case at::kFloat: return Dtype::Float32;
    case at::kDouble: return Dtype::Float64;
    case at::kHalf: return Dtype::Float16;
    case at::kBFloat16: return Dtype::BFloat16;
    default: TORCH_CHECK(false, "segrun ops take float32, float64, float16 or bfloat16, got ", tensor.scalar_type());
  }
}

Strides4 strides_of(const at::Tensor& t) { return {t.stride(0), t.stride(1), t.stride(2), t.stride(3)}; }

#ifdef SEGRUN_WITH_CUDA
CUstream_st* current_stream() { return reinterpret_cast<CUstream_st*>(c10::cuda::getCurrentCUDAStream().stream()); }

void check_launch(const char* error, const char* op) { TORCH_CHECK(error == nullptr, "segrun::", op, ": ", error); }
#endif

// ---------------------------------------------------------------------------------------------
// confusion_matrix

struct ConfusionInputs {
  at::Tensor logits;      // [N, C, H, W] with H and W flattenable into one stride, or undefined
  at::Tensor prediction;  // int64 contiguous [N, H, W], or undefined
  at::Tensor target;      // int64 contiguous [N, H, W]
  int64_t batch, pixels, stride_n, stride_c, stride_p;
};

ConfusionInputs confusion_inputs(const at::Tensor& input, const at::Tensor& target, int64_t num_classes) {
  TORCH_CHECK(num_classes >= 1, "segrun::confusion_matrix: num_classes must be >= 1, got ", num_classes);
  TORCH_CHECK(!at::isFloatingType(target.scalar_type()), "segrun::confusion_matrix: target must hold integer labels");
  TORCH_CHECK(target.dim() == 3, "segrun::confusion_matrix: target must be [N, H, W], got ", target.sizes());
  TORCH_CHECK(input.device() == target.device(), "segrun::confusion_matrix: input and target on different devices");
  ConfusionInputs in;
  in.target = target.to(at::kLong).contiguous();
  in.batch = target.size(0);
  in.pixels = target.size(1) * target.size(2);
  if (at::isFloatingType(input.scalar_type())) {
    TORCH_CHECK(input.dim() == 4 && input.size(1) == num_classes, "segrun::confusion_matrix: logits must be [N, ",
                num_classes, ", H, W], got ", input.sizes());
    TORCH_CHECK(input.size(0) == target.size(0) && input.size(2) == target.size(1) && input.size(3) == target.size(2),
                "segrun::confusion_matrix: logits ", input.sizes(), " and target ", target.sizes(), " differ");
    dtype_of(input);
    // Contiguous and channels_last logits are read in place: H and W flatten into one stride.
    in.logits = input.stride(2) == input.size(3) * input.stride(3) || input.size(2) == 1 ? input : input.contiguous();
    in.stride_n = in.logits.stride(0);
    in.stride_c = in.logits.stride(1);
    in.stride_p = in.logits.stride(3);
  } else {
    TORCH_CHECK(input.sizes() == target.sizes(), "segrun::confusion_matrix: prediction ", input.sizes(),
                " and target ", target.sizes(), " must both be [N, H, W]");
    in.prediction = input.to(at::kLong).contiguous();
  }
  return in;
}

at::Tensor confusion_matrix_cpu(const at::Tensor& input, const at::Tensor& target, int64_t num_classes,
                                int64_t ignore_index) {
  ConfusionInputs in = confusion_inputs(input, target, num_classes);
  at::Tensor counts = at::zeros({num_classes, num_classes}, target.options().dtype(at::kLong));
  int64_t* total_counts = counts.data_ptr<int64_t>();
  const int64_t cells = num_classes * num_classes;
  const int64_t* target_data = in.target.data_ptr<int64_t>();
  std::mutex merge;
  auto count_range = [&](auto get_prediction, int64_t begin, int64_t end) {
    std::vector<int64_t> local(cells, 0);
    for (int64_t i = begin; i < end; ++i) {
      int64_t cell = confusion_cell(target_data[i], get_prediction(i), num_classes, ignore_index);
      if (cell >= 0) ++local[cell];
    }
    std::lock_guard<std::mutex> lock(merge);
    for (int64_t cell = 0; cell < cells; ++cell) total_counts[cell] += local[cell];
  };
  const int64_t total = in.batch * in.pixels;
  if (in.logits.defined()) {
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, in.logits.scalar_type(), "confusion_matrix_cpu", [&] {
      const scalar_t* logits = in.logits.const_data_ptr<scalar_t>();
      auto predicted = [&](int64_t i) {
        int64_t n = i / in.pixels, p = i - n * in.pixels;
        return first_argmax(logits + n * in.stride_n + p * in.stride_p, in.stride_c, num_classes);
      };
      at::parallel_for(0, total, 1 << 15, [&](int64_t begin, int64_t end) { count_range(predicted, begin, end); });
    });
  } else {
    const int64_t* prediction = in.prediction.data_ptr<int64_t>();
    auto predicted = [&](int64_t i) { return prediction[i]; };
    at::parallel_for(0, total, 1 << 15, [&](int64_t begin, int64_t end) { count_range(predicted, begin, end); });
  }
  return counts;
}

// ---------------------------------------------------------------------------------------------
// rmi_lower_bound: forward returns (half log-det per (image, class) [N, C] float64, saved
// [N, C, kRmiSaved] float64); backward returns d/d probs.

void check_rmi(const at::Tensor& labels, const at::Tensor& probs) {
  TORCH_CHECK(labels.dim() == 4 && labels.sizes() == probs.sizes(), "segrun::rmi_lower_bound: labels ", labels.sizes(),
              " and probs ", probs.sizes(), " must both be [N, C, H, W]");
  TORCH_CHECK(labels.size(2) >= kRmiRadius && labels.size(3) >= kRmiRadius,
              "segrun::rmi_lower_bound: maps smaller than the radius 3: ", labels.sizes());
  TORCH_CHECK(probs.scalar_type() == at::kFloat || probs.scalar_type() == at::kDouble,
              "segrun::rmi_lower_bound: takes float32 or float64 maps, got ", probs.scalar_type());
  TORCH_CHECK(labels.scalar_type() == probs.scalar_type(), "segrun::rmi_lower_bound: labels and probs dtypes differ");
  TORCH_CHECK(labels.device() == probs.device(), "segrun::rmi_lower_bound: labels and probs on different devices");
}

// Checked, contiguous maps, the outputs, and each map's mean (the moments are taken about it, which
// keeps the sums of products small where a class fills or misses the whole map).
struct RmiForward {
  at::Tensor labels, probs, value, saved, label_shift, prob_shift;
  int64_t maps, height, width;

  RmiForward(const at::Tensor& labels_in, const at::Tensor& probs_in) {
    check_rmi(labels_in, probs_in);
    labels = labels_in.contiguous();
    probs = probs_in.contiguous();
    maps = labels.size(0) * labels.size(1);
    height = labels.size(2);
    width = labels.size(3);
    auto options = labels.options().dtype(at::kDouble);
    value = at::empty({labels.size(0), labels.size(1)}, options);
    saved = at::empty({labels.size(0), labels.size(1), kRmiSaved}, options);
    label_shift = labels.mean({2, 3}, false, at::kDouble).contiguous();
    prob_shift = probs.mean({2, 3}, false, at::kDouble).contiguous();
  }
};

std::tuple<at::Tensor, at::Tensor> rmi_forward_cpu(const at::Tensor& labels_in, const at::Tensor& probs_in,
                                                   double alpha) {
  RmiForward rmi(labels_in, probs_in);
  const at::Tensor &labels = rmi.labels, &probs = rmi.probs, &value = rmi.value, &saved = rmi.saved;
  const at::Tensor &label_shift = rmi.label_shift, &prob_shift = rmi.prob_shift;
  const int64_t maps = rmi.maps, height = rmi.height, width = rmi.width;
  const int64_t valid_h = height - kRmiRadius + 1, valid_w = width - kRmiRadius + 1;
  AT_DISPATCH_FLOATING_TYPES(probs.scalar_type(), "rmi_forward_cpu", [&] {
    const scalar_t* label_data = labels.const_data_ptr<scalar_t>();
    const scalar_t* prob_data = probs.const_data_ptr<scalar_t>();
    at::parallel_for(0, maps, 1, [&](int64_t begin, int64_t end) {
      for (int64_t map = begin; map < end; ++map) {
        const double ls = label_shift.data_ptr<double>()[map], ps = prob_shift.data_ptr<double>()[map];
        double sums[kRmiSums] = {0.0};
        double* products = sums + 2 * kRmiDims;
        for (int64_t y = 0; y < valid_h; ++y) {
          for (int64_t x = 0; x < valid_w; ++x) {
            double a[kRmiDims], b[kRmiDims];
            rmi_point<scalar_t, double>(label_data + map * height * width, width, y, x, ls, a);
            rmi_point<scalar_t, double>(prob_data + map * height * width, width, y, x, ps, b);
            for (int i = 0; i < kRmiDims; ++i) {
              sums[i] += a[i];
              sums[kRmiDims + i] += b[i];
              for (int j = 0; j < kRmiDims; ++j) {
                products[i * kRmiDims + j] += a[i] * a[j];
                products[kRmiDims * kRmiDims + i * kRmiDims + j] += b[i] * b[j];
                products[2 * kRmiDims * kRmiDims + i * kRmiDims + j] += a[i] * b[j];
              }
            }
          }
        }
        value.data_ptr<double>()[map] = rmi_half_log_det(sums, double(valid_h * valid_w), ls, ps, alpha,
                                                         saved.data_ptr<double>() + map * kRmiSaved);
      }
    });
  });
  return {value, saved};
}

at::Tensor rmi_backward_cpu(const at::Tensor& grad_value, const at::Tensor& labels_in, const at::Tensor& probs_in,
                            const at::Tensor& saved_in) {
  check_rmi(labels_in, probs_in);
  at::Tensor labels = labels_in.contiguous(), probs = probs_in.contiguous();
  at::Tensor saved = saved_in.to(at::kDouble).contiguous(), upstream = grad_value.to(at::kDouble).contiguous();
  const int64_t maps = labels.size(0) * labels.size(1), height = labels.size(2), width = labels.size(3);
  at::Tensor grad = at::empty_like(probs, at::MemoryFormat::Contiguous);
  AT_DISPATCH_FLOATING_TYPES(probs.scalar_type(), "rmi_backward_cpu", [&] {
    const scalar_t* label_data = labels.const_data_ptr<scalar_t>();
    const scalar_t* prob_data = probs.const_data_ptr<scalar_t>();
    scalar_t* grad_data = grad.data_ptr<scalar_t>();
    at::parallel_for(0, maps * height, 16, [&](int64_t begin, int64_t end) {
      for (int64_t row = begin; row < end; ++row) {
        const int64_t map = row / height, u = row % height, offset = map * height * width;
        const double scale = upstream.data_ptr<double>()[map];
        for (int64_t x = 0; x < width; ++x) {
          // float64: the adjoints of ill-conditioned (small, near-constant) maps are large and cancel.
          double value = rmi_grad_pixel<scalar_t, double>(label_data + offset, prob_data + offset, width,
                                                          height - kRmiRadius + 1, width - kRmiRadius + 1, u, x,
                                                          saved.data_ptr<double>() + map * kRmiSaved);
          grad_data[offset + u * width + x] = static_cast<scalar_t>(scale * value);
        }
      }
    });
  });
  return grad;
}

// ---------------------------------------------------------------------------------------------
// attention_fuse

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

// ---------------------------------------------------------------------------------------------
// CUDA glue

#ifdef SEGRUN_WITH_CUDA
at::Tensor confusion_matrix_cuda_op(const at::Tensor& input, const at::Tensor& target, int64_t num_classes,
                                    int64_t ignore_index) {
  c10::cuda::CUDAGuard guard(input.device());
  ConfusionInputs in = confusion_inputs(input, target, num_classes);
  at::Tensor counts = at::zeros({num_classes, num_classes}, target.options().dtype(at::kLong));
  const bool from_logits = in.logits.defined();
  check_launch(confusion_matrix_cuda(from_logits ? in.logits.const_data_ptr() : nullptr,
                                     from_logits ? dtype_of(in.logits) : Dtype::Float32, in.batch, in.pixels,
                                     in.stride_n, in.stride_c, in.stride_p,
                                     from_logits ? nullptr : in.prediction.const_data_ptr<int64_t>(),
                                     in.target.const_data_ptr<int64_t>(), num_classes, ignore_index,
                                     counts.data_ptr<int64_t>(), current_stream()),
               "confusion_matrix");
  return counts;
}

std::tuple<at::Tensor, at::Tensor> rmi_forward_cuda_op(const at::Tensor& labels_in, const at::Tensor& probs_in,
                                                       double alpha) {
  c10::cuda::CUDAGuard guard(probs_in.device());
  RmiForward rmi(labels_in, probs_in);
  at::Tensor sums = at::zeros({rmi.maps, kRmiSums}, rmi.value.options());
  check_launch(rmi_forward_cuda(rmi.labels.const_data_ptr(), rmi.probs.const_data_ptr(), dtype_of(rmi.probs),
                                rmi.maps, rmi.height, rmi.width, rmi.label_shift.const_data_ptr<double>(),
                                rmi.prob_shift.const_data_ptr<double>(), alpha, sums.data_ptr<double>(),
                                rmi.value.data_ptr<double>(), rmi.saved.data_ptr<double>(), current_stream()),
               "rmi_lower_bound_forward");
  return {rmi.value, rmi.saved};
}

at::Tensor rmi_backward_cuda_op(const at::Tensor& grad_value, const at::Tensor& labels_in, const at::Tensor& probs_in,
                                const at::Tensor& saved_in) {
  check_rmi(labels_in, probs_in);
  c10::cuda::CUDAGuard guard(probs_in.device());
  at::Tensor labels = labels_in.contiguous(), probs = probs_in.contiguous();
  at::Tensor saved = saved_in.to(at::kDouble).contiguous(), upstream = grad_value.to(at::kDouble).contiguous();
  at::Tensor grad = at::empty_like(probs, at::MemoryFormat::Contiguous);
  check_launch(rmi_backward_cuda(labels.const_data_ptr(), probs.const_data_ptr(), dtype_of(probs),
                                 labels.size(0) * labels.size(1), labels.size(2), labels.size(3),
                                 saved.const_data_ptr<double>(), upstream.const_data_ptr<double>(), grad.data_ptr(),
                                 current_stream()),
               "rmi_lower_bound_backward");
  return grad;
}

at::Tensor attention_fuse_cuda_op(const at::Tensor& hi, const at::Tensor& lo, const at::Tensor& attn,
                                  bool align_corners) {
  FuseShape shape = fuse_shape(hi, lo, attn, align_corners);
  c10::cuda::CUDAGuard guard(hi.device());
  at::Tensor out = at::empty_like(hi);
  if (empty(shape)) return out;
  check_launch(attention_fuse_cuda(hi.const_data_ptr(), strides_of(hi), lo.const_data_ptr(), strides_of(lo),
                                   attn.const_data_ptr(), strides_of(attn), out.data_ptr(), strides_of(out), shape,
                                   dtype_of(hi), current_stream()),
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
  check_launch(attention_fuse_backward_cuda(
                   grad.const_data_ptr(), strides_of(grad), hi.const_data_ptr(), strides_of(hi), lo.const_data_ptr(),
                   strides_of(lo), attn.const_data_ptr(), strides_of(attn), grad_hi.data_ptr(), strides_of(grad_hi),
                   grad_lo.data_ptr(), strides_of(grad_lo), grad_attn.data_ptr(), strides_of(grad_attn), shape,
                   dtype_of(hi), current_stream()),
               "attention_fuse_backward");
  return {grad_hi, grad_lo, grad_attn};
}
#endif

}  // namespace
}  // namespace segrun

TORCH_LIBRARY(segrun, m) {
  m.def("confusion_matrix(Tensor input, Tensor target, int num_classes, int ignore_index) -> Tensor");
  m.def("rmi_lower_bound_forward(Tensor labels, Tensor probs, float alpha) -> (Tensor, Tensor)");
  m.def("rmi_lower_bound_backward(Tensor grad_value, Tensor labels, Tensor probs, Tensor saved) -> Tensor");
  m.def("attention_fuse(Tensor pred_hi, Tensor pred_lo, Tensor attn_lo, bool align_corners) -> Tensor");
  m.def(
      "attention_fuse_backward(Tensor grad, Tensor pred_hi, Tensor pred_lo, Tensor attn_lo, bool align_corners)"
      " -> (Tensor, Tensor, Tensor)");
}

TORCH_LIBRARY_IMPL(segrun, CPU, m) {
  m.impl("confusion_matrix", &segrun::confusion_matrix_cpu);
  m.impl("rmi_lower_bound_forward", &segrun::rmi_forward_cpu);
  m.impl("rmi_lower_bound_backward", &segrun::rmi_backward_cpu);
  m.impl("attention_fuse", &segrun::attention_fuse_cpu);
  m.impl("attention_fuse_backward", &segrun::attention_fuse_backward_cpu);
}

#ifdef SEGRUN_WITH_CUDA
TORCH_LIBRARY_IMPL(segrun, CUDA, m) {
  m.impl("confusion_matrix", &segrun::confusion_matrix_cuda_op);
  m.impl("rmi_lower_bound_forward", &segrun::rmi_forward_cuda_op);
  m.impl("rmi_lower_bound_backward", &segrun::rmi_backward_cuda_op);
  m.impl("attention_fuse", &segrun::attention_fuse_cuda_op);
  m.impl("attention_fuse_backward", &segrun::attention_fuse_backward_cuda_op);
}
#endif
