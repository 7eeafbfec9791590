// segrun::confusion_matrix: its schema, checks, CPU implementation and the glue to its CUDA
// kernel (csrc/cuda/confusion_matrix.cu). The per-pixel math is in segrun/confusion_matrix.h.
#include "common.h"

#include <mutex>
#include <vector>

#include "segrun/confusion_matrix.h"

namespace segrun {
namespace {

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

#ifdef SEGRUN_WITH_CUDA
at::Tensor confusion_matrix_cuda_op(const at::Tensor& input, const at::Tensor& target, int64_t num_classes,
                                    int64_t ignore_index) {
  c10::cuda::CUDAGuard guard(input.device());
  ConfusionInputs in = confusion_inputs(input, target, num_classes);
  at::Tensor counts = at::zeros({num_classes, num_classes}, target.options().dtype(at::kLong));
  const bool from_logits = in.logits.defined();
  check_launch(confusion_matrix_cuda({.logits = from_logits ? in.logits.const_data_ptr() : nullptr,
                                      .dtype = from_logits ? dtype_of(in.logits) : Dtype::Float32,
                                      .batch = in.batch,
                                      .pixels = in.pixels,
                                      .stride_n = in.stride_n,
                                      .stride_c = in.stride_c,
                                      .stride_p = in.stride_p,
                                      .prediction = from_logits ? nullptr : in.prediction.const_data_ptr<int64_t>(),
                                      .target = in.target.const_data_ptr<int64_t>(),
                                      .num_classes = num_classes,
                                      .ignore_index = ignore_index,
                                      .counts = counts.data_ptr<int64_t>()},
                                     current_stream()),
               "confusion_matrix");
  return counts;
}
#endif

}  // namespace
}  // namespace segrun

TORCH_LIBRARY_FRAGMENT(segrun, m) {
  m.def("confusion_matrix(Tensor input, Tensor target, int num_classes, int ignore_index) -> Tensor");
}

TORCH_LIBRARY_IMPL(segrun, CPU, m) { m.impl("confusion_matrix", &segrun::confusion_matrix_cpu); }

#ifdef SEGRUN_WITH_CUDA
TORCH_LIBRARY_IMPL(segrun, CUDA, m) { m.impl("confusion_matrix", &segrun::confusion_matrix_cuda_op); }
#endif
