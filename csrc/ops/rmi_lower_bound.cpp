// segrun::rmi_lower_bound_forward and _backward: their schemas, checks, CPU implementations and
// the glue to their CUDA kernels (csrc/cuda/rmi_lower_bound.cu). Forward returns (half log-det
// per (image, class) [N, C] float64, saved [N, C, kRmiSaved] float64); backward returns
// d/d probs. The math is in segrun/rmi_lower_bound.h.
#include "common.h"
#include "segrun/rmi_lower_bound.h"

namespace segrun {
namespace {

void check_rmi(const at::Tensor& labels, const at::Tensor& probs) {
  TORCH_CHECK(labels.dim() == 4 && labels.sizes() == probs.sizes(), "segrun::rmi_lower_bound: labels ", labels.sizes(),
              " and probs ", probs.sizes(), " must both be [N, C, H, W]");
  TORCH_CHECK(labels.size(2) >= kRmiRadius && labels.size(3) >= kRmiRadius,
              "segrun::rmi_lower_bound: maps smaller than the radius ", kRmiRadius, ": ", labels.sizes());
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

#ifdef SEGRUN_WITH_CUDA
std::tuple<at::Tensor, at::Tensor> rmi_forward_cuda_op(const at::Tensor& labels_in, const at::Tensor& probs_in,
                                                       double alpha) {
  c10::cuda::CUDAGuard guard(probs_in.device());
  RmiForward rmi(labels_in, probs_in);
  at::Tensor sums = at::zeros({rmi.maps, kRmiSums}, rmi.value.options());
  check_launch(rmi_forward_cuda({.labels = rmi.labels.const_data_ptr(),
                                 .probs = rmi.probs.const_data_ptr(),
                                 .dtype = dtype_of(rmi.probs),
                                 .maps = rmi.maps,
                                 .height = rmi.height,
                                 .width = rmi.width,
                                 .label_shift = rmi.label_shift.const_data_ptr<double>(),
                                 .prob_shift = rmi.prob_shift.const_data_ptr<double>(),
                                 .alpha = alpha,
                                 .sums = sums.data_ptr<double>(),
                                 .value = rmi.value.data_ptr<double>(),
                                 .saved = rmi.saved.data_ptr<double>()},
                                current_stream()),
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
  check_launch(rmi_backward_cuda({.labels = labels.const_data_ptr(),
                                  .probs = probs.const_data_ptr(),
                                  .dtype = dtype_of(probs),
                                  .maps = labels.size(0) * labels.size(1),
                                  .height = labels.size(2),
                                  .width = labels.size(3),
                                  .saved = saved.const_data_ptr<double>(),
                                  .grad_value = upstream.const_data_ptr<double>(),
                                  .grad_probs = grad.data_ptr()},
                                 current_stream()),
               "rmi_lower_bound_backward");
  return grad;
}
#endif

}  // namespace
}  // namespace segrun

TORCH_LIBRARY_FRAGMENT(segrun, m) {
  m.def("rmi_lower_bound_forward(Tensor labels, Tensor probs, float alpha) -> (Tensor, Tensor)");
  m.def("rmi_lower_bound_backward(Tensor grad_value, Tensor labels, Tensor probs, Tensor saved) -> Tensor");
}

TORCH_LIBRARY_IMPL(segrun, CPU, m) {
  m.impl("rmi_lower_bound_forward", &segrun::rmi_forward_cpu);
  m.impl("rmi_lower_bound_backward", &segrun::rmi_backward_cpu);
}

#ifdef SEGRUN_WITH_CUDA
TORCH_LIBRARY_IMPL(segrun, CUDA, m) {
  m.impl("rmi_lower_bound_forward", &segrun::rmi_forward_cuda_op);
  m.impl("rmi_lower_bound_backward", &segrun::rmi_backward_cuda_op);
}
#endif
