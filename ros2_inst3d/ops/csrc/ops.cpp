// Python bindings of the ros2_inst3d CUDA ops. Public API and argument checks:
// ros2_inst3d/ops/*.py (these entry points are private; call the Python functions).
#include <torch/extension.h>

#include <vector>

namespace inst3d {
std::vector<at::Tensor> ball_query_grid_cuda(const at::Tensor& query, const at::Tensor& query_cell,
                                             const at::Tensor& sorted_xyz,
                                             const at::Tensor& sorted_index,
                                             const at::Tensor& cell_keys,
                                             const at::Tensor& cell_start, int64_t dx, int64_t dy,
                                             int64_t dz, double radius_squared,
                                             int64_t max_neighbors);
at::Tensor connected_components_cuda(const at::Tensor& row, const at::Tensor& col,
                                     const at::Tensor& labels, int64_t num_points);
at::Tensor farthest_point_sample_cuda(const at::Tensor& xyz, const at::Tensor& offsets,
                                      const at::Tensor& sample_offsets, const at::Tensor& start,
                                      int64_t num_samples);
at::Tensor instance_aware_fps_cuda(const at::Tensor& xyz, const at::Tensor& eligible,
                                   const at::Tensor& offsets, const at::Tensor& sample_offsets,
                                   const at::Tensor& seeds, const at::Tensor& seed_offsets,
                                   int64_t num_samples);
std::vector<at::Tensor> mean_shift_step_cuda_impl(const at::Tensor& modes,
                                                  const at::Tensor& embedding,
                                                  const at::Tensor& mode_item,
                                                  const at::Tensor& offsets,
                                                  double bandwidth_squared);
}  // namespace inst3d

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "ros2_inst3d grouping ops (CUDA kernels)";
  m.def("ball_query_grid", &inst3d::ball_query_grid_cuda,
        "grid ball query -> (index (E,), ptr (M+1,)), rows unsorted within a query");
  m.def("connected_components", &inst3d::connected_components_cuda,
        "union-find components -> smallest point index of each point's component");
  m.def("farthest_point_sample", &inst3d::farthest_point_sample_cuda,
        "batched farthest point sampling -> (S,) global rows");
  m.def("instance_aware_fps", &inst3d::instance_aware_fps_cuda,
        "FPS over eligible points, continuing from seeds -> (S,) global rows");
  m.def("mean_shift_step", &inst3d::mean_shift_step_cuda_impl,
        "one flat-kernel mean-shift step of every mode -> (modes, counts)");
}
