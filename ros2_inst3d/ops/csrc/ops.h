// Host entry points of the ros2_inst3d CUDA ops: defined in the .cu files, bound in ops.cpp.
// Public API and argument checks: ros2_inst3d/ops/*.py (these are private; call the Python
// functions). Plain C++ (no CUDA types), so the host compiler of ops.cpp can include it.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <vector>

namespace inst3d {

// ball_query.cu: grid ball query -> (index (E,), ptr (M+1,)).
std::vector<at::Tensor> ball_query_grid_cuda(const at::Tensor& query, const at::Tensor& query_cell,
                                             const at::Tensor& sorted_xyz,
                                             const at::Tensor& sorted_index,
                                             const at::Tensor& cell_keys,
                                             const at::Tensor& cell_start, int64_t dx, int64_t dy,
                                             int64_t dz, double radius_squared,
                                             int64_t max_neighbors);
// connected_components.cu: union-find -> smallest point index of each point's component.
at::Tensor connected_components_cuda(const at::Tensor& row, const at::Tensor& col,
                                     const at::Tensor& labels, int64_t num_points);
// farthest_point_sample.cu: batched farthest point sampling -> (S,) global rows.
at::Tensor farthest_point_sample_cuda(const at::Tensor& xyz, const at::Tensor& offsets,
                                      const at::Tensor& sample_offsets, const at::Tensor& start,
                                      int64_t num_samples);
// instance_aware_fps.cu: FPS over eligible points, continuing from seeds -> (S,) global rows.
at::Tensor instance_aware_fps_cuda(const at::Tensor& xyz, const at::Tensor& eligible,
                                   const at::Tensor& offsets, const at::Tensor& sample_offsets,
                                   const at::Tensor& seeds, const at::Tensor& seed_offsets,
                                   int64_t num_samples);
// mean_shift.cu: one flat-kernel mean-shift step of every mode -> (modes, counts).
std::vector<at::Tensor> mean_shift_step_cuda_impl(const at::Tensor& modes,
                                                  const at::Tensor& embedding,
                                                  const at::Tensor& mode_item,
                                                  const at::Tensor& offsets,
                                                  double bandwidth_squared);

}  // namespace inst3d
