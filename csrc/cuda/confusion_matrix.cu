// Confusion matrix in one pass: argmax over the logits fused in (the prediction map is never
// written), per-block histograms in shared memory merged into the result with integer atomics,
// so the counts are exact and do not depend on scheduling.
#include "common.cuh"
#include "segrun/confusion_matrix.h"

namespace segrun {
namespace {

constexpr int kThreads = 256;
constexpr int kMaxCopies = 8;  // histogram copies per block, spread over warps to cut contention

template <typename scalar_t>
__global__ void __launch_bounds__(kThreads)
    confusion_kernel(const scalar_t* logits, int64_t batch, int64_t pixels, int64_t stride_n, int64_t stride_c,
                     int64_t stride_p, const int64_t* prediction, const int64_t* target, int64_t num_classes,
                     int64_t ignore_index, unsigned long long* counts, int copies) {
  extern __shared__ unsigned int histograms[];
  const int64_t cells = num_classes * num_classes;
  const bool in_shared = copies > 0;
  if (in_shared) {
    for (int64_t i = threadIdx.x; i < copies * cells; i += blockDim.x) histograms[i] = 0;
    __syncthreads();
  }
  unsigned int* histogram = histograms + (in_shared ? (threadIdx.x / 32) % copies : 0) * cells;
  const int64_t total = batch * pixels;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total; i += int64_t(gridDim.x) * blockDim.x) {
    int64_t predicted;
    if (logits != nullptr) {
      int64_t n = i / pixels, p = i - n * pixels;
      predicted = first_argmax(logits + n * stride_n + p * stride_p, stride_c, num_classes);
    } else {
      predicted = prediction[i];
    }
    int64_t cell = confusion_cell(target[i], predicted, num_classes, ignore_index);
    if (cell < 0) continue;
    if (in_shared) {
      atomicAdd(histogram + cell, 1u);
    } else {
      atomicAdd(counts + cell, 1ull);
    }
  }
  if (in_shared) {
    __syncthreads();
    for (int64_t cell = threadIdx.x; cell < cells; cell += blockDim.x) {
      unsigned long long sum = 0;
      for (int copy = 0; copy < copies; ++copy) sum += histograms[copy * cells + cell];
      if (sum != 0) atomicAdd(counts + cell, sum);
    }
  }
}

}  // namespace

const char* confusion_matrix_cuda(const ConfusionArgs& args, CUstream_st* stream) {
  const int64_t total = args.batch * args.pixels;
  if (total == 0) return nullptr;
  const int64_t histogram_bytes = args.num_classes * args.num_classes * int64_t(sizeof(unsigned int));
  int device = 0, optin = 0;
  cudaGetDevice(&device);
  cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, device);
  const int64_t budget = histogram_bytes <= 48 * 1024 ? 48 * 1024 : optin;
  // Beyond what shared memory holds, count straight into global memory.
  int copies = histogram_bytes <= budget ? int(budget / histogram_bytes) : 0;
  if (copies > kMaxCopies) copies = kMaxCopies;
  const size_t shared_bytes = size_t(copies) * histogram_bytes;
  const int blocks = int(std::min<int64_t>(ceil_div(total, kThreads), int64_t(multiprocessors()) * 8));
  auto* out = reinterpret_cast<unsigned long long*>(args.counts);
  return dispatch_floating(args.dtype, [&](auto* tag) -> const char* {
    using scalar_t = std::remove_pointer_t<decltype(tag)>;
    auto kernel = confusion_kernel<scalar_t>;
    if (shared_bytes > 48 * 1024) {
      cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(shared_bytes));
    }
    kernel<<<blocks, kThreads, shared_bytes, reinterpret_cast<cudaStream_t>(stream)>>>(
        static_cast<const scalar_t*>(args.logits), args.batch, args.pixels, args.stride_n, args.stride_c,
        args.stride_p, args.prediction, args.target, args.num_classes, args.ignore_index, out, copies);
    return last_error();
  });
}

}  // namespace segrun
