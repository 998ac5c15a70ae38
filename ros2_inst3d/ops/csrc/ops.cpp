// Python bindings of the ros2_inst3d CUDA ops. Public API and argument checks:
// ros2_inst3d/ops/*.py (these entry points are private; call the Python functions).
#include <torch/extension.h>

#include "ops.h"

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
