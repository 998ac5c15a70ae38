// Instance-aware farthest point sampling (ISBNet IA-FPS), one thread block per batch item.
// Contract and CPU twin: ros2_inst3d/ops/sampling.py (instance_aware_fps, _ia_fps_cpu).
// Written to mirror the CPU path step for step; not yet run on a GPU (no GPU in the session that
// wrote it): test/test_ia_ops.py compares both paths wherever CUDA is available.
#include <cfloat>

#include "common.cuh"
#include "ops.h"

namespace inst3d {
namespace {

constexpr int kThreads = 512;  // power of two (tree reduction below)

// Larger distance wins; equal distances go to the smaller row, like np.argmax on the CPU path.
__device__ __forceinline__ void keep_best(float& best_d, int64_t& best_i, float d, int64_t i) {
  if (d > best_d || (d == best_d && i < best_i)) {
    best_d = d;
    best_i = i;
  }
}

// min_dist holds, per point, -1 when the point may not be picked (not a candidate, a seed, or
// already picked) and otherwise the float32 squared distance to the nearest sample so far
// (+inf before the first one). Every eligible value is >= 0, so fminf keeps the -1 marks.
__global__ void __launch_bounds__(kThreads)
ia_fps_kernel(const float* __restrict__ xyz, const bool* __restrict__ eligible,
              const int64_t* __restrict__ offsets, const int64_t* __restrict__ sample_offsets,
              const int64_t* __restrict__ seeds, const int64_t* __restrict__ seed_offsets,
              float* __restrict__ min_dist, int64_t* __restrict__ out) {
  __shared__ float shared_d[kThreads];
  __shared__ int64_t shared_i[kThreads];
  const int64_t b = blockIdx.x;
  const int64_t n0 = offsets[b], n1 = offsets[b + 1];
  const int64_t s0 = sample_offsets[b], s1 = sample_offsets[b + 1];
  if (s1 <= s0) return;  // block-uniform
  const int tid = threadIdx.x;
  for (int64_t i = n0 + tid; i < n1; i += kThreads) {
    float d = eligible[i] ? INFINITY : -1.0f;
    for (int64_t k = seed_offsets[b]; k < seed_offsets[b + 1]; ++k) {
      const int64_t r = seeds[k];
      const float sx[3] = {xyz[3 * r], xyz[3 * r + 1], xyz[3 * r + 2]};
      d = fminf(d, squared_distance(xyz + 3 * i, sx));
    }
    min_dist[i] = d;
  }
  __syncthreads();
  for (int64_t s = s0; s < s1; ++s) {
    float best_d = -2.0f;
    int64_t best_i = INT64_MAX;
    for (int64_t i = n0 + tid; i < n1; i += kThreads) keep_best(best_d, best_i, min_dist[i], i);
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
    const int64_t last = shared_i[0];
    if (tid == 0) {
      out[s] = last;
      min_dist[last] = -1.0f;
    }
    __syncthreads();
    const float lx[3] = {xyz[3 * last], xyz[3 * last + 1], xyz[3 * last + 2]};
    for (int64_t i = n0 + tid; i < n1; i += kThreads) {
      min_dist[i] = fminf(min_dist[i], squared_distance(xyz + 3 * i, lx));
    }
    __syncthreads();  // all distances updated (and shared_i[0] read) before the next round
  }
}

}  // namespace

// xyz: (N, 3) float32; eligible: (N,) bool (candidates minus seeds); offsets: (B + 1,) int64;
// sample_offsets: (B + 1,) int64 output offsets (the host clamps each item's count to its
// eligible points); seeds: (S0,) int64 sorted global rows; seed_offsets: (B + 1,) int64 seed
// offsets per item. Returns (S,) int64 global row indices in sampling order.
at::Tensor instance_aware_fps_cuda(const at::Tensor& xyz, const at::Tensor& eligible,
                                   const at::Tensor& offsets, const at::Tensor& sample_offsets,
                                   const at::Tensor& seeds, const at::Tensor& seed_offsets,
                                   int64_t num_samples) {
  INST3D_CHECK_INPUT(xyz, at::kFloat);
  INST3D_CHECK_INPUT(eligible, at::kBool);
  INST3D_CHECK_INPUT(offsets, at::kLong);
  INST3D_CHECK_INPUT(sample_offsets, at::kLong);
  INST3D_CHECK_INPUT(seeds, at::kLong);
  INST3D_CHECK_INPUT(seed_offsets, at::kLong);
  TORCH_CHECK(xyz.dim() == 2 && xyz.size(1) == 3, "xyz must be (N, 3)");
  TORCH_CHECK(eligible.numel() == xyz.size(0), "eligible must be (N,)");
  TORCH_CHECK(offsets.numel() == sample_offsets.numel() &&
                  seed_offsets.numel() == offsets.numel(),
              "offsets, sample_offsets and seed_offsets must be (B + 1,)");
  const c10::cuda::CUDAGuard device_guard(xyz.device());
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  at::Tensor out = at::empty({num_samples}, offsets.options());
  const int64_t num_batches = offsets.numel() - 1;
  if (num_samples == 0 || num_batches == 0) return out;
  at::Tensor min_dist = at::empty({xyz.size(0)}, xyz.options());
  ia_fps_kernel<<<static_cast<unsigned int>(num_batches), kThreads, 0, stream>>>(
      xyz.data_ptr<float>(), eligible.data_ptr<bool>(), offsets.data_ptr<int64_t>(),
      sample_offsets.data_ptr<int64_t>(), seeds.data_ptr<int64_t>(),
      seed_offsets.data_ptr<int64_t>(), min_dist.data_ptr<float>(), out.data_ptr<int64_t>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return out;
}

}  // namespace inst3d
