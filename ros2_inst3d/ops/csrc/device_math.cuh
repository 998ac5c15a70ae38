// Device/host arithmetic shared by the ros2_inst3d CUDA ops. No ATen here, so the per-query
// logic can also be compiled for the host (e.g. to check it against the CPU path without a GPU).
#pragma once

#include <cstdint>

#if defined(__CUDACC__)
#define INST3D_HD __host__ __device__
#else
#define INST3D_HD
#endif

namespace inst3d {

// Squared distance evaluated as ((dx*dx + dy*dy) + dz*dz) with every product and sum rounded
// to float32 on its own. nvcc would otherwise contract a*b+c into one FMA (a different rounding);
// the CPU path computes the same expression with separate float32 numpy/torch operations, so
// both back ends take identical decisions at the radius boundary and in FPS argmax ties.
INST3D_HD inline float squared_distance(const float* a, const float* b) {
  const float dx = a[0] - b[0];
  const float dy = a[1] - b[1];
  const float dz = a[2] - b[2];
#if defined(__CUDA_ARCH__)
  return __fadd_rn(__fadd_rn(__fmul_rn(dx, dx), __fmul_rn(dy, dy)), __fmul_rn(dz, dz));
#else
  volatile float xx = dx * dx;  // volatile: no host-side contraction either (host test harness)
  volatile float yy = dy * dy;
  volatile float zz = dz * dz;
  volatile float xy = xx + yy;
  return xy + zz;
#endif
}

}  // namespace inst3d
