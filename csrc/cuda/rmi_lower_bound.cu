// RMI lower bound without the 2 * 9 shifted copies the original stacks: the moments of every
// (image, class) are accumulated straight from the pooled maps, the 9x9 algebra runs in float64
// in the kernel, and backward computes d/d(probabilities) in one pass from the 9x9 adjoints.
// Extra memory: O(maps * 189) doubles.
#include "common.cuh"
#include "segrun/rmi_lower_bound.h"

namespace segrun {
namespace {

constexpr int kThreads = 256;
constexpr int kD = kRmiDims;
// Moment groups, one kernel launch each, so a thread holds at most 54 double accumulators:
// 0 = label sums and label-label products (upper triangle), 1 = the same for probabilities,
// 2..4 = label-probability products for label offsets 3 * (group - 2) .. + 2.

template <int Group>
struct GroupSize {
  static constexpr int value = Group < 2 ? kD + kD * (kD + 1) / 2 : 3 * kD;
};

// Where accumulator k of a group goes in the kRmiSums layout (and its mirror, or -1).
template <int Group>
__device__ __forceinline__ void sum_slots(int k, int* slot, int* mirror) {
  *mirror = -1;
  if (Group >= 2) {
    int i = 3 * (Group - 2) + k / kD, j = k % kD;
    *slot = 2 * kD + 2 * kD * kD + i * kD + j;
    return;
  }
  const int base_sums = Group == 0 ? 0 : kD;
  const int base_products = 2 * kD + (Group == 0 ? 0 : kD * kD);
  if (k < kD) {
    *slot = base_sums + k;
    return;
  }
  int index = k - kD, i = 0;
  while (index >= kD - i) index -= kD - i++;  // upper triangle, row-major
  int j = i + index;
  *slot = base_products + i * kD + j;
  if (i != j) *mirror = base_products + j * kD + i;
}

template <typename scalar_t, int Group>
__global__ void __launch_bounds__(kThreads)
    rmi_moments_kernel(const scalar_t* labels, const scalar_t* probs, int64_t height, int64_t width,
                       const double* label_shift, const double* prob_shift, double* sums) {
  constexpr int K = GroupSize<Group>::value;
  const int64_t map = blockIdx.x;  // maps on x, which has room for any batch x classes
  const int64_t valid_w = width - kRmiRadius + 1, points = (height - kRmiRadius + 1) * valid_w;
  const scalar_t* label_map = labels + map * height * width;
  const scalar_t* prob_map = probs + map * height * width;
  double acc[K];
#pragma unroll
  for (int k = 0; k < K; ++k) acc[k] = 0.0;
  for (int64_t i = blockIdx.y * int64_t(blockDim.x) + threadIdx.x; i < points; i += int64_t(gridDim.y) * blockDim.x) {
    const int64_t y = i / valid_w, x = i - (i / valid_w) * valid_w;
    double a[kD], b[kD];
    if (Group == 0) {
      rmi_point<scalar_t, double>(label_map, width, y, x, label_shift[map], a);
    } else {
      rmi_point<scalar_t, double>(prob_map, width, y, x, prob_shift[map], b);
    }
    if (Group >= 2) rmi_point<scalar_t, double>(label_map, width, y, x, label_shift[map], a);
    if (Group < 2) {
      const double* v = Group == 0 ? a : b;
#pragma unroll
      for (int k = 0; k < kD; ++k) acc[k] += v[k];
      int k = kD;
#pragma unroll
      for (int r = 0; r < kD; ++r) {
#pragma unroll
        for (int c = r; c < kD; ++c) acc[k++] += v[r] * v[c];
      }
    } else {
#pragma unroll
      for (int r = 0; r < 3; ++r) {
#pragma unroll
        for (int c = 0; c < kD; ++c) acc[r * kD + c] += a[3 * (Group - 2) + r] * b[c];
      }
    }
  }
  // Block reduction: warp shuffles, then one partial per warp in shared memory.
  __shared__ double partial[kThreads / 32][K];
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
#pragma unroll
  for (int k = 0; k < K; ++k) {
    double value = acc[k];
    for (int offset = 16; offset > 0; offset /= 2) value += __shfl_down_sync(0xffffffffu, value, offset);
    if (lane == 0) partial[warp][k] = value;
  }
  __syncthreads();
  for (int k = threadIdx.x; k < K; k += blockDim.x) {
    double value = 0.0;
    for (int w = 0; w < int(blockDim.x / 32); ++w) value += partial[w][k];
    int slot, mirror;
    sum_slots<Group>(k, &slot, &mirror);
    atomicAdd(sums + map * kRmiSums + slot, value);
    if (mirror >= 0) atomicAdd(sums + map * kRmiSums + mirror, value);
  }
}

__global__ void rmi_log_det_kernel(int64_t maps, double points, const double* label_shift, const double* prob_shift,
                                   double alpha, const double* sums, double* value, double* saved) {
  const int64_t map = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (map >= maps) return;
  value[map] = rmi_half_log_det(sums + map * kRmiSums, points, label_shift[map], prob_shift[map], alpha,
                                saved + map * kRmiSaved);
}

template <typename scalar_t>
__global__ void __launch_bounds__(kThreads)
    rmi_backward_kernel(const scalar_t* labels, const scalar_t* probs, int64_t height, int64_t width,
                        const double* saved, const double* grad_value, scalar_t* grad_probs) {
  __shared__ double map_saved[kRmiSaved];
  const int64_t map = blockIdx.x;
  for (int i = threadIdx.x; i < kRmiSaved; i += blockDim.x) map_saved[i] = saved[map * kRmiSaved + i];
  __syncthreads();
  const int64_t pixels = height * width, offset = map * pixels;
  const double upstream = grad_value[map];
  for (int64_t i = blockIdx.y * int64_t(blockDim.x) + threadIdx.x; i < pixels; i += int64_t(gridDim.y) * blockDim.x) {
    const int64_t u = i / width, x = i - (i / width) * width;
    // float64: the adjoints of ill-conditioned (small, near-constant) maps are large and cancel.
    double grad = rmi_grad_pixel<scalar_t, double>(labels + offset, probs + offset, width, height - kRmiRadius + 1,
                                                  width - kRmiRadius + 1, u, x, map_saved);
    grad_probs[offset + i] = static_cast<scalar_t>(upstream * grad);
  }
}

template <typename scalar_t, int Group>
void launch_moments(const RmiForwardArgs& args, cudaStream_t stream) {
  const int64_t points = (args.height - kRmiRadius + 1) * (args.width - kRmiRadius + 1);
  const int64_t blocks_per_map = std::max<int64_t>(1, std::min<int64_t>(ceil_div(points, kThreads * 8), 256));
  const dim3 grid{unsigned(args.maps), unsigned(blocks_per_map)};
  rmi_moments_kernel<scalar_t, Group><<<grid, kThreads, 0, stream>>>(
      static_cast<const scalar_t*>(args.labels), static_cast<const scalar_t*>(args.probs), args.height, args.width,
      args.label_shift, args.prob_shift, args.sums);
}

}  // namespace

const char* rmi_forward_cuda(const RmiForwardArgs& args, CUstream_st* stream) {
  if (args.dtype != Dtype::Float32 && args.dtype != Dtype::Float64) return "rmi_forward_cuda takes float32 or float64 maps";
  auto cuda_stream = reinterpret_cast<cudaStream_t>(stream);
  auto launch_all = [&](auto* tag) {
    using scalar_t = std::remove_pointer_t<decltype(tag)>;
    launch_moments<scalar_t, 0>(args, cuda_stream);
    launch_moments<scalar_t, 1>(args, cuda_stream);
    launch_moments<scalar_t, 2>(args, cuda_stream);
    launch_moments<scalar_t, 3>(args, cuda_stream);
    launch_moments<scalar_t, 4>(args, cuda_stream);
  };
  if (args.dtype == Dtype::Float32) {
    launch_all(static_cast<float*>(nullptr));
  } else {
    launch_all(static_cast<double*>(nullptr));
  }
  const double points = double((args.height - kRmiRadius + 1) * (args.width - kRmiRadius + 1));
  rmi_log_det_kernel<<<unsigned(ceil_div(args.maps, 32)), 32, 0, cuda_stream>>>(
      args.maps, points, args.label_shift, args.prob_shift, args.alpha, args.sums, args.value, args.saved);
  return last_error();
}

const char* rmi_backward_cuda(const RmiBackwardArgs& args, CUstream_st* stream) {
  if (args.dtype != Dtype::Float32 && args.dtype != Dtype::Float64) return "rmi_backward_cuda takes float32 or float64 maps";
  const int64_t pixels = args.height * args.width;
  const dim3 grid{unsigned(args.maps),
                  unsigned(std::max<int64_t>(1, std::min<int64_t>(ceil_div(pixels, kThreads), 1024)))};
  auto cuda_stream = reinterpret_cast<cudaStream_t>(stream);
  auto launch = [&](auto* tag) {
    using scalar_t = std::remove_pointer_t<decltype(tag)>;
    rmi_backward_kernel<scalar_t><<<grid, kThreads, 0, cuda_stream>>>(
        static_cast<const scalar_t*>(args.labels), static_cast<const scalar_t*>(args.probs), args.height, args.width,
        args.saved, args.grad_value, static_cast<scalar_t*>(args.grad_probs));
  };
  if (args.dtype == Dtype::Float32) {
    launch(static_cast<float*>(nullptr));
  } else {
    launch(static_cast<double*>(nullptr));
  }
  return last_error();
}

}  // namespace segrun
