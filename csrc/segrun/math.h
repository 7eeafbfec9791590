// Per-element math shared by the CUDA kernels and the CPU implementations. Everything here is
// plain C++ on scalars and small fixed-size arrays, compiled for the host by g++ and for both
// host and device by nvcc, so the CPU tests exercise the same code the GPU runs.
#pragma once

#include <cmath>
#include <cstdint>

#ifdef __CUDACC__
#define SEGRUN_HD __host__ __device__ __forceinline__
#else
#define SEGRUN_HD inline
#endif

namespace segrun {

// The arithmetic type of an element type: float for float, half and bfloat16; double for double.
template <typename scalar_t> struct Accumulate { using type = float; };
template <> struct Accumulate<double> { using type = double; };

// ---------------------------------------------------------------------------------------------
// Bilinear resizing, as torch.nn.functional.interpolate(mode="bilinear") computes it for an
// explicit output size: source = scale * dst (align_corners) or scale * (dst + 0.5) - 0.5
// clamped at 0, taps floor(source) and the next index (the last index repeats at the edge).

template <typename acc_t>
SEGRUN_HD acc_t bilinear_scale(int64_t in_size, int64_t out_size, bool align_corners) {
  if (align_corners) {
    return out_size > 1 ? acc_t(in_size - 1) / acc_t(out_size - 1) : acc_t(0);
  }
  return acc_t(in_size) / acc_t(out_size);
}

template <typename acc_t>
struct Taps {
  int64_t lo, hi;  // the two source indices (equal at the last index)
  acc_t w_lo, w_hi;
};

template <typename acc_t>
SEGRUN_HD Taps<acc_t> bilinear_taps(int64_t dst, int64_t in_size, acc_t scale, bool align_corners) {
  acc_t source = align_corners ? scale * acc_t(dst) : scale * (acc_t(dst) + acc_t(0.5)) - acc_t(0.5);
  if (source < acc_t(0)) source = acc_t(0);
  int64_t lo = static_cast<int64_t>(source);
  if (lo > in_size - 1) lo = in_size - 1;
  acc_t w_hi = source - acc_t(lo);
  if (w_hi < acc_t(0)) w_hi = acc_t(0);
  if (w_hi > acc_t(1)) w_hi = acc_t(1);
  Taps<acc_t> taps;
  taps.lo = lo;
  taps.hi = lo < in_size - 1 ? lo + 1 : lo;
  taps.w_lo = acc_t(1) - w_hi;
  taps.w_hi = w_hi;
  return taps;
}

// The weight with which destination index `dst` reads source index `src` (0 when it does not).
template <typename acc_t>
SEGRUN_HD acc_t bilinear_weight_of(int64_t dst, int64_t src, int64_t in_size, acc_t scale, bool align_corners) {
  Taps<acc_t> taps = bilinear_taps<acc_t>(dst, in_size, scale, align_corners);
  acc_t weight = acc_t(0);
  if (taps.lo == src) weight += taps.w_lo;
  if (taps.hi == src) weight += taps.w_hi;
  return weight;
}

// The destination indices [first, last] that may read source index `src`: a conservative window
// (callers check each index with bilinear_weight_of), from inverting the monotone source map.
SEGRUN_HD void bilinear_readers(int64_t src, int64_t in_size, int64_t out_size, bool align_corners,
                                int64_t* first, int64_t* last) {
  if (in_size == 1 || out_size == 1) {
    *first = 0;
    *last = out_size - 1;
    return;
  }
  // dst = (source - offset) / scale; a reader of src has source in (src - 1, src + 1).
  double scale = align_corners ? double(in_size - 1) / double(out_size - 1) : double(in_size) / double(out_size);
  double offset = align_corners ? 0.0 : 0.5 * scale - 0.5;
  int64_t lo = static_cast<int64_t>(floor((double(src) - 1.0 - offset) / scale)) - 1;
  int64_t hi = static_cast<int64_t>(ceil((double(src) + 1.0 - offset) / scale)) + 1;
  if (src == 0) lo = 0;  // sources clamped at 0 (align_corners false) all read index 0
  if (src == in_size - 1) hi = out_size - 1;
  *first = lo < 0 ? 0 : lo;
  *last = hi > out_size - 1 ? out_size - 1 : hi;
}

// ---------------------------------------------------------------------------------------------
// Confusion matrix.

// argmax over `count` values `stride` apart, with torch.argmax's semantics: the first maximum
// wins ties, and a NaN counts as larger than any number (the first NaN wins).
template <typename scalar_t>
SEGRUN_HD int64_t first_argmax(const scalar_t* values, int64_t stride, int64_t count) {
  using acc_t = typename Accumulate<scalar_t>::type;  // exact for every input type
  acc_t best = static_cast<acc_t>(values[0]);
  int64_t best_index = 0;
  for (int64_t c = 1; c < count; ++c) {
    acc_t value = static_cast<acc_t>(values[c * stride]);
    if (best == best && (value > best || value != value)) {
      best = value;
      best_index = c;
    }
  }
  return best_index;
}

// Row-major (target, prediction) cell of a num_classes x num_classes matrix, or -1 when the
// pixel is not counted (ignored or out-of-range target, out-of-range prediction).
SEGRUN_HD int64_t confusion_cell(int64_t target, int64_t prediction, int64_t num_classes, int64_t ignore_index) {
  if (target == ignore_index || target < 0 || target >= num_classes) return -1;
  if (prediction < 0 || prediction >= num_classes) return -1;
  return target * num_classes + prediction;
}

// ---------------------------------------------------------------------------------------------
// RMI lower bound (Zhao et al. 2019) over radius x radius neighbourhoods, radius 3: D = 9.

constexpr int kRmiRadius = 3;
constexpr int kRmiDims = kRmiRadius * kRmiRadius;
// Per (image, class): 9 label sums, 9 probability sums, then the 81 label-label, 81
// probability-probability and 81 label-probability sums of products.
constexpr int kRmiSums = 2 * kRmiDims + 3 * kRmiDims * kRmiDims;
// Per (image, class), kept for backward: the adjoint of the probability covariance (times 2),
// the adjoint of the label-probability cross-covariance, the label means, the probability means.
constexpr int kRmiSaved = 2 * kRmiDims * kRmiDims + 2 * kRmiDims;

// The 9 neighbourhood values of point (y, x), row-major over the offsets, minus `shift`.
template <typename scalar_t, typename acc_t>
SEGRUN_HD void rmi_point(const scalar_t* map, int64_t width, int64_t y, int64_t x, acc_t shift, acc_t* out) {
  for (int dy = 0; dy < kRmiRadius; ++dy) {
    for (int dx = 0; dx < kRmiRadius; ++dx) {
      out[dy * kRmiRadius + dx] = static_cast<acc_t>(map[(y + dy) * width + x + dx]) - shift;
    }
  }
}

// In-place Cholesky factorisation of a symmetric positive definite D x D row-major matrix into
// its lower factor (the upper triangle is zeroed). Returns false if it is not positive definite.
template <int D>
SEGRUN_HD bool cholesky(double* a) {
  for (int j = 0; j < D; ++j) {
    double diagonal = a[j * D + j];
    for (int k = 0; k < j; ++k) diagonal -= a[j * D + k] * a[j * D + k];
    if (!(diagonal > 0.0)) return false;
    diagonal = sqrt(diagonal);
    a[j * D + j] = diagonal;
    for (int i = j + 1; i < D; ++i) {
      double value = a[i * D + j];
      for (int k = 0; k < j; ++k) value -= a[i * D + k] * a[j * D + k];
      a[i * D + j] = value / diagonal;
    }
    for (int i = 0; i < j; ++i) a[i * D + j] = 0.0;
  }
  return true;
}

// Solves L X = B in place (L lower, B D x D row-major).
template <int D>
SEGRUN_HD void solve_lower(const double* lower, double* b) {
  for (int col = 0; col < D; ++col) {
    for (int i = 0; i < D; ++i) {
      double value = b[i * D + col];
      for (int k = 0; k < i; ++k) value -= lower[i * D + k] * b[k * D + col];
      b[i * D + col] = value / lower[i * D + i];
    }
  }
}

// Solves L^T X = B in place (L lower, B D x D row-major).
template <int D>
SEGRUN_HD void solve_lower_transposed(const double* lower, double* b) {
  for (int col = 0; col < D; ++col) {
    for (int i = D - 1; i >= 0; --i) {
      double value = b[i * D + col];
      for (int k = i + 1; k < D; ++k) value -= lower[k * D + i] * b[k * D + col];
      b[i * D + col] = value / lower[i * D + i];
    }
  }
}

// (L L^T)^-1 from the lower factor L.
template <int D>
SEGRUN_HD void inverse_from_cholesky(const double* lower, double* inverse) {
  for (int i = 0; i < D * D; ++i) inverse[i] = (i / D == i % D) ? 1.0 : 0.0;
  solve_lower<D>(lower, inverse);
  solve_lower_transposed<D>(lower, inverse);
}

// Centred covariance from shifted sums: sum (a_i - s)(b_j - t) - (sum a_i - s)(sum b_j - t) / P.
SEGRUN_HD void rmi_covariance(const double* sums_a, const double* sums_b, const double* products, double points,
                              double* cov) {
  for (int i = 0; i < kRmiDims; ++i) {
    for (int j = 0; j < kRmiDims; ++j) {
      cov[i * kRmiDims + j] = products[i * kRmiDims + j] - sums_a[i] * sums_b[j] / points;
    }
  }
}

// From one (image, class)'s sums (layout of kRmiSums, values shifted by label_shift and
// prob_shift), the half log-determinant of the approximate conditional covariance
//   Cov(Y) - Cov(Y,P) (Cov(P) + a I)^-1 Cov(Y,P)^T + a I,
// as the reference computes it (its Cholesky diagonal plus 1e-8 inside the log), and the values
// backward needs (layout of kRmiSaved) for a unit upstream gradient. Returns NaN if a matrix is
// not positive definite.
SEGRUN_HD double rmi_half_log_det(const double* sums, double points, double label_shift, double prob_shift,
                                  double alpha, double* saved) {
  constexpr int D = kRmiDims;
  const double* label_sums = sums;
  const double* prob_sums = sums + D;
  double label_cov[D * D], prob_factor[D * D], cross_cov[D * D];
  rmi_covariance(label_sums, label_sums, sums + 2 * D, points, label_cov);
  rmi_covariance(prob_sums, prob_sums, sums + 2 * D + D * D, points, prob_factor);
  rmi_covariance(label_sums, prob_sums, sums + 2 * D + 2 * D * D, points, cross_cov);

  for (int i = 0; i < D; ++i) prob_factor[i * D + i] += alpha;
  if (!cholesky<D>(prob_factor)) return NAN;
  // S = L^-1 Cov(Y,P)^T, so Cov(Y,P) (Cov(P) + aI)^-1 Cov(Y,P)^T = S^T S.
  double solved[D * D];
  for (int i = 0; i < D; ++i) {
    for (int j = 0; j < D; ++j) solved[i * D + j] = cross_cov[j * D + i];
  }
  solve_lower<D>(prob_factor, solved);
  double conditional[D * D];
  for (int i = 0; i < D; ++i) {
    for (int j = 0; j < D; ++j) {
      double product = 0.0;
      for (int k = 0; k < D; ++k) product += solved[k * D + i] * solved[k * D + j];
      conditional[i * D + j] = label_cov[i * D + j] - product + (i == j ? alpha : 0.0);
    }
  }
  double conditional_factor[D * D];
  for (int i = 0; i < D * D; ++i) conditional_factor[i] = conditional[i];
  if (!cholesky<D>(conditional_factor)) return NAN;
  double half_log_det = 0.0;
  for (int i = 0; i < D; ++i) half_log_det += log(conditional_factor[i * D + i] + 1e-8);

  // Adjoints of v = sum log(L_ii + 1e-8), L L^T = M = Cyy - Cyp Q Cyp^T + aI, Q = (Cpp + aI)^-1:
  //   G = dv/dM = L^-T diag(0.5 L_ii / (L_ii + 1e-8)) L^-1 (0.5 M^-1 but for the 1e-8),
  //   dv/dCyp = -2 G W, dv/dCpp = W^T G W, with W = Cyp Q.
  double g[D * D], q[D * D], w[D * D], gw[D * D];
  double inverse_factor[D * D];
  for (int i = 0; i < D * D; ++i) inverse_factor[i] = (i / D == i % D) ? 1.0 : 0.0;
  solve_lower<D>(conditional_factor, inverse_factor);
  for (int i = 0; i < D; ++i) {
    for (int j = 0; j < D; ++j) {
      double value = 0.0;
      for (int k = 0; k < D; ++k) {
        const double diagonal = conditional_factor[k * D + k];
        value += inverse_factor[k * D + i] * (0.5 * diagonal / (diagonal + 1e-8)) * inverse_factor[k * D + j];
      }
      g[i * D + j] = value;
    }
  }
  inverse_from_cholesky<D>(prob_factor, q);
  for (int i = 0; i < D; ++i) {
    for (int j = 0; j < D; ++j) {
      double value = 0.0;
      for (int k = 0; k < D; ++k) value += cross_cov[i * D + k] * q[k * D + j];
      w[i * D + j] = value;
    }
  }
  for (int i = 0; i < D; ++i) {
    for (int j = 0; j < D; ++j) {
      double value = 0.0;
      for (int k = 0; k < D; ++k) value += g[i * D + k] * w[k * D + j];
      gw[i * D + j] = value;
    }
  }
  double* prob_adjoint = saved;            // 2 dv/dCpp (symmetric), used once per offset pair
  double* cross_adjoint = saved + D * D;   // dv/dCyp
  double* label_means = saved + 2 * D * D;
  double* prob_means = label_means + D;
  for (int i = 0; i < D; ++i) {
    for (int j = 0; j < D; ++j) {
      double value = 0.0;
      for (int k = 0; k < D; ++k) value += w[k * D + i] * gw[k * D + j];
      prob_adjoint[i * D + j] = 2.0 * value;
      cross_adjoint[i * D + j] = -2.0 * gw[i * D + j];
    }
    label_means[i] = label_shift + label_sums[i] / points;
    prob_means[i] = prob_shift + prob_sums[i] / points;
  }
  return half_log_det;
}

// d v / d probs[u][x] for one (image, class): every neighbourhood point whose window holds pixel
// (u, x) contributes through the covariances; the gradient of the means cancels because centred
// values sum to zero. `valid_h` x `valid_w` are the points (map size - radius + 1).
template <typename scalar_t, typename acc_t>
SEGRUN_HD acc_t rmi_grad_pixel(const scalar_t* labels, const scalar_t* probs, int64_t width, int64_t valid_h,
                               int64_t valid_w, int64_t u, int64_t x, const double* saved) {
  constexpr int D = kRmiDims;
  const double* prob_adjoint = saved;
  const double* cross_adjoint = saved + D * D;
  const double* label_means = saved + 2 * D * D;
  const double* prob_means = label_means + D;
  acc_t grad = acc_t(0);
  for (int k = 0; k < D; ++k) {
    int64_t y0 = u - k / kRmiRadius, x0 = x - k % kRmiRadius;
    if (y0 < 0 || x0 < 0 || y0 >= valid_h || x0 >= valid_w) continue;
    for (int j = 0; j < D; ++j) {
      int64_t offset = (y0 + j / kRmiRadius) * width + x0 + j % kRmiRadius;
      acc_t prob = static_cast<acc_t>(probs[offset]) - acc_t(prob_means[j]);
      acc_t label = static_cast<acc_t>(labels[offset]) - acc_t(label_means[j]);
      grad += acc_t(prob_adjoint[k * D + j]) * prob + acc_t(cross_adjoint[j * D + k]) * label;
    }
  }
  return grad;
}

}  // namespace segrun
