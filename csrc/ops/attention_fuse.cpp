// segrun::attention_fuse and its backward: their schemas, checks, CPU implementations and the
// glue to their CUDA kernels (csrc/cuda/attention_fuse.cu). The math is in
// segrun/attention_fuse.h.
#include "common.h"

#include <algorithm>
#include <vector>

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

void check_grad(const at::Tensor& grad, const at::Tensor& hi) {
  TORCH_CHECK(grad.sizes() == hi.sizes() && grad.scalar_type() == hi.scalar_type(),
              "segrun::attention_fuse_backward: grad must be like pred_hi");
}

bool empty(const FuseShape& s) { return s.batch * s.channels * s.height * s.width * s.low_height * s.low_width == 0; }

// One dimension's bilinear resampling: each destination index's taps and, per source index, the
// destination indices that read it with their weights (those of source src are entries
// [first[src], first[src + 1]) of reader and weight).
template <typename acc_t>
struct Resampling {
  std::vector<Taps<acc_t>> taps;
  std::vector<int64_t> first, reader;
  std::vector<acc_t> weight;

  Resampling(int64_t in_size, int64_t out_size, bool align_corners) {
    const acc_t scale = bilinear_scale<acc_t>(in_size, out_size, align_corners);
    for (int64_t dst = 0; dst < out_size; ++dst) taps.push_back(bilinear_taps<acc_t>(dst, in_size, scale, align_corners));
    for (int64_t src = 0; src < in_size; ++src) {
      first.push_back(static_cast<int64_t>(reader.size()));
      int64_t first_dst, last_dst;
      bilinear_readers(src, in_size, out_size, align_corners, &first_dst, &last_dst);
      for (int64_t dst = first_dst; dst <= last_dst; ++dst) {
        const acc_t w = bilinear_weight_of<acc_t>(dst, src, in_size, scale, align_corners);
        if (w != acc_t(0)) {
          reader.push_back(dst);
          weight.push_back(w);
        }
      }
    }
    first.push_back(static_cast<int64_t>(reader.size()));
  }
};

// The low rows of one plane interpolated to the output's width: attn and (with lo) attn * lo. It
// holds the two rows the current output row reads; consecutive output rows mostly read the same.
template <typename scalar_t, typename acc_t>
class InterpolatedRows {
 public:
  InterpolatedRows(const Resampling<acc_t>& columns, int64_t low_width)
      : columns_(columns), low_width_(low_width), width_(static_cast<int64_t>(columns.taps.size())),
        values_(4 * width_) {}

  // lo may be nullptr: attention only.
  void start(const scalar_t* attn, const scalar_t* lo) {
    attn_ = attn;
    lo_ = lo;
    index_[0] = index_[1] = -1;
  }

  // Low row v as [attention (width values), weighted (width values)], keeping row `other` if held.
  const acc_t* row(int64_t v, int64_t other) {
    for (int slot = 0; slot < 2; ++slot) {
      if (index_[slot] == v) return values_.data() + slot * 2 * width_;
    }
    const int slot = index_[0] == other ? 1 : 0;
    index_[slot] = v;
    acc_t* attention = values_.data() + slot * 2 * width_;
    acc_t* weighted = attention + width_;
    const scalar_t* attn_row = attn_ + v * low_width_;
    const scalar_t* lo_row = lo_ ? lo_ + v * low_width_ : nullptr;
    for (int64_t x = 0; x < width_; ++x) {
      const Taps<acc_t>& tx = columns_.taps[x];
      const acc_t at_lo = static_cast<acc_t>(attn_row[tx.lo]), at_hi = static_cast<acc_t>(attn_row[tx.hi]);
      attention[x] = bilinear_mix(tx, at_lo, at_hi);
      if (lo_row) {
        weighted[x] = bilinear_mix(tx, at_lo * static_cast<acc_t>(lo_row[tx.lo]), at_hi * static_cast<acc_t>(lo_row[tx.hi]));
      }
    }
    return attention;
  }

 private:
  const Resampling<acc_t>& columns_;
  const int64_t low_width_, width_;
  std::vector<acc_t> values_;
  const scalar_t* attn_ = nullptr;
  const scalar_t* lo_ = nullptr;
  int64_t index_[2] = {-1, -1};
};

// The CPU implementations walk contiguous NCHW planes, one plane (n, c) per task: rows of the
// output contiguous in memory, so the inner loops run over neighbouring elements.
struct Planes {
  const FuseShape& shape;
  int64_t plane, low_plane;

  explicit Planes(const FuseShape& s)
      : shape(s), plane(s.height * s.width), low_plane(s.low_height * s.low_width) {}

  int64_t attn_offset(int64_t p) const {
    const int64_t n = p / shape.channels, c = p % shape.channels;
    return (n * shape.attn_channels + (shape.attn_channels == 1 ? 0 : c)) * low_plane;
  }
};

template <typename scalar_t>
void fuse_forward_planes(const FuseShape& shape, const scalar_t* hi, const scalar_t* lo, const scalar_t* attn,
                         scalar_t* out) {
  using acc_t = typename Accumulate<scalar_t>::type;
  const Resampling<acc_t> rows(shape.low_height, shape.height, shape.align_corners);
  const Resampling<acc_t> columns(shape.low_width, shape.width, shape.align_corners);
  const Planes planes(shape);
  at::parallel_for(0, shape.batch * shape.channels, 1, [&](int64_t begin, int64_t end) {
    InterpolatedRows<scalar_t, acc_t> low_rows(columns, shape.low_width);
    for (int64_t p = begin; p < end; ++p) {
      low_rows.start(attn + planes.attn_offset(p), lo + p * planes.low_plane);
      for (int64_t y = 0; y < shape.height; ++y) {
        const Taps<acc_t> ty = rows.taps[y];  // a copy: the output row cannot alias it, so the loop vectorises
        const acc_t* top = low_rows.row(ty.lo, ty.hi);
        const acc_t* bottom = low_rows.row(ty.hi, ty.lo);
        const scalar_t* hi_row = hi + p * planes.plane + y * shape.width;
        scalar_t* out_row = out + p * planes.plane + y * shape.width;
        for (int64_t x = 0; x < shape.width; ++x) {
          const acc_t weighted = bilinear_mix(ty, top[shape.width + x], bottom[shape.width + x]);
          const acc_t attention = bilinear_mix(ty, top[x], bottom[x]);
          out_row[x] = static_cast<scalar_t>(fuse_output(weighted, attention, static_cast<acc_t>(hi_row[x])));
        }
      }
    }
  });
}

// grad_hi, grad_lo and each channel's share of grad_attn ([N, C, h, w], summed over channels by
// the caller where one attention map serves them all).
template <typename scalar_t, typename acc_t>
void fuse_backward_planes(const FuseShape& shape, const scalar_t* grad, const scalar_t* hi, const scalar_t* lo,
                          const scalar_t* attn, scalar_t* grad_hi, scalar_t* grad_lo, acc_t* attn_share) {
  const Resampling<acc_t> rows(shape.low_height, shape.height, shape.align_corners);
  const Resampling<acc_t> columns(shape.low_width, shape.width, shape.align_corners);
  const Planes planes(shape);
  const int64_t width = shape.width, low_width = shape.low_width;
  at::parallel_for(0, shape.batch * shape.channels, 1, [&](int64_t begin, int64_t end) {
    InterpolatedRows<scalar_t, acc_t> low_rows(columns, low_width);
    // Per low row: the output gradient (and gradient x hi) summed down the columns over the
    // output rows that read it, each with its weight.
    std::vector<acc_t> column_grad(width), column_grad_hi(width);
    for (int64_t p = begin; p < end; ++p) {
      const scalar_t* attn_plane = attn + planes.attn_offset(p);
      const scalar_t* grad_plane = grad + p * planes.plane;
      const scalar_t* hi_plane = hi + p * planes.plane;
      low_rows.start(attn_plane, nullptr);
      for (int64_t y = 0; y < shape.height; ++y) {
        const Taps<acc_t> ty = rows.taps[y];
        const acc_t* top = low_rows.row(ty.lo, ty.hi);
        const acc_t* bottom = low_rows.row(ty.hi, ty.lo);
        const scalar_t* grad_row = grad_plane + y * width;
        scalar_t* grad_hi_row = grad_hi + p * planes.plane + y * width;
        for (int64_t x = 0; x < width; ++x) {
          grad_hi_row[x] =
              static_cast<scalar_t>(fuse_grad_hi(static_cast<acc_t>(grad_row[x]), bilinear_mix(ty, top[x], bottom[x])));
        }
      }
      for (int64_t v = 0; v < shape.low_height; ++v) {
        std::fill(column_grad.begin(), column_grad.end(), acc_t(0));
        std::fill(column_grad_hi.begin(), column_grad_hi.end(), acc_t(0));
        for (int64_t k = rows.first[v]; k < rows.first[v + 1]; ++k) {
          const acc_t wy = rows.weight[k];
          const scalar_t* grad_row = grad_plane + rows.reader[k] * width;
          const scalar_t* hi_row = hi_plane + rows.reader[k] * width;
          for (int64_t x = 0; x < width; ++x) {
            const acc_t weighted = wy * static_cast<acc_t>(grad_row[x]);
            column_grad[x] += weighted;
            column_grad_hi[x] += weighted * static_cast<acc_t>(hi_row[x]);
          }
        }
        const int64_t low_row = v * low_width;
        for (int64_t u = 0; u < low_width; ++u) {
          acc_t up_grad = acc_t(0), up_grad_hi = acc_t(0);
          for (int64_t k = columns.first[u]; k < columns.first[u + 1]; ++k) {
            up_grad += columns.weight[k] * column_grad[columns.reader[k]];
            up_grad_hi += columns.weight[k] * column_grad_hi[columns.reader[k]];
          }
          const FuseLowGradients<acc_t> low = fuse_low_gradients(
              static_cast<acc_t>(attn_plane[low_row + u]), static_cast<acc_t>(lo[p * planes.low_plane + low_row + u]),
              up_grad, up_grad_hi);
          grad_lo[p * planes.low_plane + low_row + u] = static_cast<scalar_t>(low.lo);
          attn_share[p * planes.low_plane + low_row + u] = low.attn;
        }
      }
    }
  });
}

// `result`, computed in contiguous memory, laid out as empty_like(like) (as the fake tensors say),
// copied only for an input laid out otherwise (channels_last).
at::Tensor laid_out_like(const at::Tensor& result, const at::Tensor& like) {
  if (like.is_contiguous()) return result;
  return at::empty_like(like).copy_(result);
}

at::Tensor attention_fuse_cpu(const at::Tensor& hi, const at::Tensor& lo, const at::Tensor& attn, bool align_corners) {
  FuseShape shape = fuse_shape(hi, lo, attn, align_corners);
  if (empty(shape)) return at::empty_like(hi);
  const at::Tensor hi_c = hi.contiguous(), lo_c = lo.contiguous(), attn_c = attn.contiguous();
  at::Tensor out = at::empty(hi.sizes(), hi.options());
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, hi.scalar_type(), "attention_fuse_cpu", [&] {
    fuse_forward_planes<scalar_t>(shape, hi_c.const_data_ptr<scalar_t>(), lo_c.const_data_ptr<scalar_t>(),
                                  attn_c.const_data_ptr<scalar_t>(), out.data_ptr<scalar_t>());
  });
  return laid_out_like(out, hi);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> attention_fuse_backward_cpu(const at::Tensor& grad,
                                                                           const at::Tensor& hi, const at::Tensor& lo,
                                                                           const at::Tensor& attn,
                                                                           bool align_corners) {
  FuseShape shape = fuse_shape(hi, lo, attn, align_corners);
  check_grad(grad, hi);
  if (empty(shape)) return {at::empty_like(hi).zero_(), at::empty_like(lo).zero_(), at::empty_like(attn).zero_()};
  const at::Tensor grad_c = grad.contiguous(), hi_c = hi.contiguous(), lo_c = lo.contiguous();
  const at::Tensor attn_c = attn.contiguous();
  at::Tensor grad_hi = at::empty(hi.sizes(), hi.options()), grad_lo = at::empty(lo.sizes(), lo.options());
  at::Tensor attn_share;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, hi.scalar_type(), "attention_fuse_backward_cpu", [&] {
    using acc_t = typename Accumulate<scalar_t>::type;
    attn_share = at::empty(lo.sizes(), lo.options().dtype(c10::CppTypeToScalarType<acc_t>::value));
    fuse_backward_planes<scalar_t, acc_t>(shape, grad_c.const_data_ptr<scalar_t>(), hi_c.const_data_ptr<scalar_t>(),
                                          lo_c.const_data_ptr<scalar_t>(), attn_c.const_data_ptr<scalar_t>(),
                                          grad_hi.data_ptr<scalar_t>(), grad_lo.data_ptr<scalar_t>(),
                                          attn_share.data_ptr<acc_t>());
  });
  at::Tensor grad_attn = at::empty_like(attn);
  grad_attn.copy_(shape.attn_channels == 1 ? attn_share.sum(at::IntArrayRef{1}, /*keepdim=*/true) : attn_share);
  return {laid_out_like(grad_hi, hi), laid_out_like(grad_lo, lo), grad_attn};
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
  check_grad(grad, hi);
  at::Tensor grad_hi = at::empty_like(hi), grad_lo = at::empty_like(lo), grad_attn = at::empty_like(attn);
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
