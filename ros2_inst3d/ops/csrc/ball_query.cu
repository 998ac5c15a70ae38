// Batched radius search on a uniform grid (cell edge ~ radius), first-K-by-index cap.
// Contract and CPU twin: ros2_inst3d/ops/neighbors.py.
#include <vector>

#include "ball_query.cuh"
#include "common.cuh"
#include "ops.h"

namespace inst3d {
namespace {

constexpr int kThreads = 256;

__global__ void ball_query_count_kernel(BallQueryGrid grid, const float* __restrict__ query,
                                        const int64_t* __restrict__ query_cell, int64_t num_queries,
                                        float r2, int64_t max_neighbors, int64_t* __restrict__ count) {
  const int64_t m = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (m >= num_queries) return;
  count[m] = count_neighbors(grid, query + 3 * m, query_cell + 4 * m, r2, max_neighbors);
}

__global__ void ball_query_fill_kernel(BallQueryGrid grid, const float* __restrict__ query,
                                       const int64_t* __restrict__ query_cell, int64_t num_queries,
                                       float r2, int64_t max_neighbors,
                                       const int64_t* __restrict__ count,
                                       const int64_t* __restrict__ ptr, int64_t* __restrict__ index) {
  const int64_t m = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (m >= num_queries) return;
  fill_neighbors(grid, query + 3 * m, query_cell + 4 * m, r2, max_neighbors, count[m],
                 index + ptr[m]);
}

}  // namespace

std::vector<at::Tensor> ball_query_grid_cuda(const at::Tensor& query, const at::Tensor& query_cell,
                                             const at::Tensor& sorted_xyz,
                                             const at::Tensor& sorted_index,
                                             const at::Tensor& cell_keys,
                                             const at::Tensor& cell_start, int64_t dx, int64_t dy,
                                             int64_t dz, double radius_squared,
                                             int64_t max_neighbors) {
  INST3D_CHECK_INPUT(query, at::kFloat);
  INST3D_CHECK_INPUT(query_cell, at::kLong);
  INST3D_CHECK_INPUT(sorted_xyz, at::kFloat);
  INST3D_CHECK_INPUT(sorted_index, at::kLong);
  INST3D_CHECK_INPUT(cell_keys, at::kLong);
  INST3D_CHECK_INPUT(cell_start, at::kLong);
  TORCH_CHECK(query.dim() == 2 && query.size(1) == 3, "query must be (M, 3)");
  TORCH_CHECK(query_cell.dim() == 2 && query_cell.size(1) == 4 && query_cell.size(0) == query.size(0),
              "query_cell must be (M, 4) [batch, x, y, z]");
  TORCH_CHECK(sorted_xyz.dim() == 2 && sorted_xyz.size(1) == 3, "sorted_xyz must be (N, 3)");
  TORCH_CHECK(sorted_index.numel() == sorted_xyz.size(0), "sorted_index must be (N,)");
  TORCH_CHECK(cell_start.numel() == cell_keys.numel() + 1, "cell_start must be (C + 1,)");
  TORCH_CHECK(max_neighbors >= 1, "max_neighbors must be >= 1");

  const c10::cuda::CUDAGuard device_guard(query.device());
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  const int64_t num_queries = query.size(0);
  const auto long_options = query_cell.options();

  BallQueryGrid grid{sorted_xyz.data_ptr<float>(), sorted_index.data_ptr<int64_t>(),
                     cell_keys.data_ptr<int64_t>(), cell_start.data_ptr<int64_t>(),
                     cell_keys.numel(), sorted_xyz.size(0), dx, dy, dz};
  const float r2 = static_cast<float>(radius_squared);  // already a float32 value (see neighbors.py)

  at::Tensor count = at::empty({num_queries}, long_options);
  if (num_queries > 0) {
    ball_query_count_kernel<<<num_blocks(num_queries, kThreads), kThreads, 0, stream>>>(
        grid, query.data_ptr<float>(), query_cell.data_ptr<int64_t>(), num_queries, r2,
        max_neighbors, count.data_ptr<int64_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }
  at::Tensor ptr = at::zeros({num_queries + 1}, long_options);
  ptr.slice(0, 1).copy_(at::cumsum(at::clamp_max(count, max_neighbors), 0));
  const int64_t total = num_queries > 0 ? ptr[num_queries].item<int64_t>() : 0;
  at::Tensor index = at::empty({total}, long_options);
  if (total > 0) {
    ball_query_fill_kernel<<<num_blocks(num_queries, kThreads), kThreads, 0, stream>>>(
        grid, query.data_ptr<float>(), query_cell.data_ptr<int64_t>(), num_queries, r2,
        max_neighbors, count.data_ptr<int64_t>(), ptr.data_ptr<int64_t>(),
        index.data_ptr<int64_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }
  return {index, ptr};
}

}  // namespace inst3d
