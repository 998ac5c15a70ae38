// Connected components of a neighbour graph by lock-free union-find (connected_components.cuh).
// Contract and CPU twin: ros2_inst3d/ops/clustering.py.
#include "common.cuh"
#include "ops.h"
#include "connected_components.cuh"

namespace inst3d {
namespace {

constexpr int kThreads = 256;

__global__ void init_parent_kernel(int32_t* parent, int64_t num_points) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < num_points) parent[i] = static_cast<int32_t>(i);
}

__global__ void unite_edges_kernel(const int64_t* __restrict__ row, const int64_t* __restrict__ col,
                                   int64_t num_edges, const int64_t* __restrict__ labels,
                                   int32_t* parent) {
  const int64_t e = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (e >= num_edges) return;
  const int64_t i = row[e];
  const int64_t j = col[e];
  if (i == j) return;
  if (labels != nullptr && (labels[i] < 0 || labels[i] != labels[j])) return;
  unite(parent, static_cast<int32_t>(i), static_cast<int32_t>(j));
}

__global__ void root_kernel(const int32_t* parent, int64_t num_points, int64_t* __restrict__ root) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < num_points) root[i] = find_root(parent, static_cast<int32_t>(i));
}

}  // namespace

// row/col: (E,) int64 edges (treated as undirected); labels: (N,) int64 or an empty tensor for
// "no class constraint" (an edge joins i and j only if labels[i] == labels[j] >= 0).
// Returns (N,) int64: the smallest point index of each point's component.
at::Tensor connected_components_cuda(const at::Tensor& row, const at::Tensor& col,
                                     const at::Tensor& labels, int64_t num_points) {
  INST3D_CHECK_INPUT(row, at::kLong);
  INST3D_CHECK_INPUT(col, at::kLong);
  TORCH_CHECK(row.numel() == col.numel(), "row and col must have the same length");
  TORCH_CHECK(num_points >= 0 && num_points < (int64_t{1} << 31),
              "connected_components_cuda supports fewer than 2^31 points, got ", num_points);
  const bool has_labels = labels.numel() > 0;
  if (has_labels) {
    INST3D_CHECK_INPUT(labels, at::kLong);
    TORCH_CHECK(labels.numel() == num_points, "labels must be (N,)");
  }
  const c10::cuda::CUDAGuard device_guard(row.device());
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();

  at::Tensor parent = at::empty({num_points}, row.options().dtype(at::kInt));
  at::Tensor root = at::empty({num_points}, row.options());
  if (num_points == 0) return root;
  init_parent_kernel<<<num_blocks(num_points, kThreads), kThreads, 0, stream>>>(
      parent.data_ptr<int32_t>(), num_points);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  const int64_t num_edges = row.numel();
  if (num_edges > 0) {
    unite_edges_kernel<<<num_blocks(num_edges, kThreads), kThreads, 0, stream>>>(
        row.data_ptr<int64_t>(), col.data_ptr<int64_t>(), num_edges,
        has_labels ? labels.data_ptr<int64_t>() : nullptr, parent.data_ptr<int32_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }
  root_kernel<<<num_blocks(num_points, kThreads), kThreads, 0, stream>>>(
      parent.data_ptr<int32_t>(), num_points, root.data_ptr<int64_t>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return root;
}

}  // namespace inst3d
