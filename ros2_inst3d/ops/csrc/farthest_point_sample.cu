// Farthest point sampling, one thread block per batch item.
// Contract and CPU twin: ros2_inst3d/ops/sampling.py.
#include <cfloat>

#include "common.cuh"
#include "ops.h"

namespace inst3d {
namespace {

constexpr int kThreads = 512;  // power of two (tree reduction below)

// Larger distance wins; equal distances go to the smaller row, like torch.argmax on the CPU path.
__device__ __forceinline__ void keep_best(float& best_d, int64_t& best_i, float d, int64_t i) {
  if (d > best_d || (d == best_d && i < best_i)) {
    best_d = d;
    best_i = i;
  }
}

__global__ void __launch_bounds__(kThreads)
fps_kernel(const float* __restrict__ xyz, const int64_t* __restrict__ offsets,
           const int64_t* __restrict__ sample_offsets, const int64_t* __restrict__ start,
           float* __restrict__ min_dist, int64_t* __restrict__ out) {
  __shared__ float shared_d[kThreads];
  __shared__ int64_t shared_i[kThreads];
  const int64_t b = blockIdx.x;
  const int64_t n0 = offsets[b], n1 = offsets[b + 1];
  const int64_t s0 = sample_offsets[b], s1 = sample_offsets[b + 1];
  if (s1 <= s0) return;  // block-uniform
  const int tid = threadIdx.x;
  int64_t last = n0 + start[b];
  if (tid == 0) out[s0] = last;
  for (int64_t s = s0 + 1; s < s1; ++s) {
    const float lx[3] = {xyz[3 * last], xyz[3 * last + 1], xyz[3 * last + 2]};
    float best_d = -1.0f;
    int64_t best_i = INT64_MAX;
    for (int64_t i = n0 + tid; i < n1; i += kThreads) {
      const float d = fminf(min_dist[i], squared_distance(xyz + 3 * i, lx));
      min_dist[i] = d;
      keep_best(best_d, best_i, d, i);
    }
    shared_d[tid] = best_d;
    shared_i[tid] = best_i;
    __syncthreads();
    for (int stride = kThreads / 2; stride > 0; stride >>= 1) {
      if (tid < stride) {
        float d = shared_d[tid];
        int64_t i = shared_i[tid];
        keep_best(d, i, shared_d[tid + stride], shared_i[tid + stride]);
        shared_d[tid] = d;
        shared_i[tid] = i;
      }
      __syncthreads();
    }
    last = shared_i[0];
    if (tid == 0) out[s] = last;
    __syncthreads();  // everyone has read shared_i[0] before the next round overwrites it
  }
}

}  // namespace

// xyz: (N, 3) float32; offsets: (B + 1,) int64 point offsets; sample_offsets: (B + 1,) int64
// output offsets (samples per item = diff); start: (B,) int64 first sample, relative to the item.
// Returns (S,) int64 global row indices in sampling order.
at::Tensor farthest_point_sample_cuda(const at::Tensor& xyz, const at::Tensor& offsets,
                                      const at::Tensor& sample_offsets, const at::Tensor& start,
                                      int64_t num_samples) {
  INST3D_CHECK_INPUT(xyz, at::kFloat);
  INST3D_CHECK_INPUT(offsets, at::kLong);
  INST3D_CHECK_INPUT(sample_offsets, at::kLong);
  INST3D_CHECK_INPUT(start, at::kLong);
  TORCH_CHECK(xyz.dim() == 2 && xyz.size(1) == 3, "xyz must be (N, 3)");
  TORCH_CHECK(offsets.numel() == sample_offsets.numel() && start.numel() == offsets.numel() - 1,
              "offsets, sample_offsets must be (B + 1,) and start (B,)");
  const c10::cuda::CUDAGuard device_guard(xyz.device());
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  at::Tensor out = at::empty({num_samples}, offsets.options());
  const int64_t num_batches = offsets.numel() - 1;
  if (num_samples == 0 || num_batches == 0) return out;
  at::Tensor min_dist = at::full({xyz.size(0)}, INFINITY, xyz.options());
  fps_kernel<<<static_cast<unsigned int>(num_batches), kThreads, 0, stream>>>(
      xyz.data_ptr<float>(), offsets.data_ptr<int64_t>(), sample_offsets.data_ptr<int64_t>(),
      start.data_ptr<int64_t>(), min_dist.data_ptr<float>(), out.data_ptr<int64_t>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return out;
}

}  // namespace inst3d
