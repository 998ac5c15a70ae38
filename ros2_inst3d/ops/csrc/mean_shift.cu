// One flat-kernel mean-shift step, one thread per mode. Contract and CPU twin:
// ros2_inst3d/ops/mean_shift.py (mean_shift_modes, _shift_cpu). Written to mirror the CPU path;
// not yet run on a GPU (no GPU in the session that wrote it). Sums are accumulated in a
// different order than the CPU path's matrix product, so modes agree to float32 rounding, not
// bit for bit; test/test_ia_ops.py compares both with a tolerance where CUDA is available.
#include <vector>

#include "common.cuh"
#include "ops.h"

namespace inst3d {
namespace {

constexpr int kThreads = 128;
constexpr int kMaxDim = 64;

__global__ void mean_shift_step_kernel(const float* __restrict__ modes,
                                       const float* __restrict__ embedding,
                                       const int64_t* __restrict__ mode_item,
                                       const int64_t* __restrict__ offsets, int64_t num_modes,
                                       int64_t dim, float bandwidth_squared,
                                       float* __restrict__ sums, int64_t* __restrict__ counts) {
  const int64_t m = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (m >= num_modes) return;
  const float* mode = modes + m * dim;
  float acc[kMaxDim];
  for (int64_t k = 0; k < dim; ++k) acc[k] = 0.0f;
  int64_t count = 0;
  const int64_t b = mode_item[m];
  for (int64_t i = offsets[b]; i < offsets[b + 1]; ++i) {
    const float* x = embedding + i * dim;
    float d2 = 0.0f;
    for (int64_t k = 0; k < dim; ++k) {
      const float d = __fsub_rn(mode[k], x[k]);
      d2 = __fadd_rn(d2, __fmul_rn(d, d));  // summed over k in order, like the CPU path
    }
    if (d2 < bandwidth_squared) {
      for (int64_t k = 0; k < dim; ++k) acc[k] += x[k];
      ++count;
    }
  }
  for (int64_t k = 0; k < dim; ++k) sums[m * dim + k] = acc[k];
  counts[m] = count;
}

}  // namespace

// modes: (K, D) float32; embedding: (N, D) float32 batch-contiguous; mode_item: (K,) int64;
// offsets: (B + 1,) int64. Returns [sums (K, D) of the points within the window, counts (K,)].
std::vector<at::Tensor> mean_shift_step_cuda_impl(const at::Tensor& modes,
                                                  const at::Tensor& embedding,
                                                  const at::Tensor& mode_item,
                                                  const at::Tensor& offsets,
                                                  double bandwidth_squared) {
  INST3D_CHECK_INPUT(modes, at::kFloat);
  INST3D_CHECK_INPUT(embedding, at::kFloat);
  INST3D_CHECK_INPUT(mode_item, at::kLong);
  INST3D_CHECK_INPUT(offsets, at::kLong);
  TORCH_CHECK(modes.dim() == 2 && embedding.dim() == 2 && modes.size(1) == embedding.size(1),
              "modes and embedding must be (K, D) and (N, D)");
  TORCH_CHECK(modes.size(1) <= kMaxDim, "mean_shift: at most 64 embedding dimensions on CUDA");
  const c10::cuda::CUDAGuard device_guard(modes.device());
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  const int64_t k = modes.size(0);
  at::Tensor sums = at::zeros_like(modes);
  at::Tensor counts = at::zeros({k}, mode_item.options());
  if (k == 0) return {sums, counts};
  mean_shift_step_kernel<<<num_blocks(k, kThreads), kThreads, 0, stream>>>(
      modes.data_ptr<float>(), embedding.data_ptr<float>(), mode_item.data_ptr<int64_t>(),
      offsets.data_ptr<int64_t>(), k, modes.size(1), static_cast<float>(bandwidth_squared),
      sums.data_ptr<float>(), counts.data_ptr<int64_t>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return {sums, counts};
}

}  // namespace inst3d
