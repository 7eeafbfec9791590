// rmi_lower_bound, the RMI lower bound (Zhao et al. 2019) over kRmiRadius x kRmiRadius
// neighbourhoods: the math shared by the CUDA kernels and the CPU implementation (the
// kRmiDims x kRmiDims algebra in float64, its adjoints and the per-pixel gradient), and the
// kernels' raw-pointer interface.
#pragma once

#include "segrun/launch.h"
#include "segrun/math.h"

namespace segrun {

// The radius the compiled op is written for, the study's (segrun/ops/rmi_lower_bound.py RADIUS
// on the Python side; other radii run PyTorch there), and the dimension of a point.
constexpr int kRmiRadius = 3;
constexpr int kRmiDims = kRmiRadius * kRmiRadius;
// Per (image, class): kRmiDims label sums, kRmiDims probability sums, then the kRmiDims^2
// label-label, probability-probability and label-probability sums of products.
constexpr int kRmiSums = 2 * kRmiDims + 3 * kRmiDims * kRmiDims;
// Per (image, class), kept for backward: the adjoint of the probability covariance (times 2),
// the adjoint of the label-probability cross-covariance, the label means, the probability means.
constexpr int kRmiSaved = 2 * kRmiDims * kRmiDims + 2 * kRmiDims;

// The kRmiDims neighbourhood values of point (y, x), row-major over the offsets, minus `shift`.
template <typename scalar_t, typename acc_t>
SEGRUN_HD void rmi_point(const scalar_t* map, int64_t width, int64_t y, int64_t x, acc_t shift, acc_t* out) {
  for (int dy = 0; dy < kRmiRadius; ++dy) {
    for (int dx = 0; dx < kRmiRadius; ++dx) {
      out[dy * kRmiRadius + dx] = static_cast<acc_t>(map[(y + dy) * width + x + dx]) - shift;
    }
  }
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

// labels, probs: contiguous [maps, height, width] (float32 or float64); shifts float64 [maps] each;
// sums float64 [maps, kRmiSums] zeroed by the caller; value float64 [maps]; saved float64
// [maps, kRmiSaved].
struct RmiForwardArgs {
  const void* labels;
  const void* probs;
  Dtype dtype;
  int64_t maps, height, width;
  const double* label_shift;
  const double* prob_shift;
  double alpha;
  double* sums;
  double* value;
  double* saved;
};

const char* rmi_forward_cuda(const RmiForwardArgs& args, CUstream_st* stream);

// labels, probs and saved as forward's; grad_value float64 [maps]; grad_probs like probs.
struct RmiBackwardArgs {
  const void* labels;
  const void* probs;
  Dtype dtype;
  int64_t maps, height, width;
  const double* saved;
  const double* grad_value;
  void* grad_probs;
};

const char* rmi_backward_cuda(const RmiBackwardArgs& args, CUstream_st* stream);

}  // namespace segrun
