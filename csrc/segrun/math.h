// Per-element math shared by the CUDA kernels and the CPU implementations, here what several ops
// use and in segrun/<op>.h each op's own. Everything is plain C++ on scalars and small fixed-size
// arrays, compiled for the host by g++ and for both host and device by nvcc, so the CPU tests
// exercise the same code the GPU runs.
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

// The interpolation between a value at taps.lo and one at taps.hi.
template <typename acc_t>
SEGRUN_HD acc_t bilinear_mix(const Taps<acc_t>& taps, acc_t at_lo, acc_t at_hi) {
  return taps.w_lo * at_lo + taps.w_hi * at_hi;
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
// Small dense linear algebra on D x D row-major matrices.

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

}  // namespace segrun
