// Shared helpers of the ros2_inst3d CUDA ops (host side: tensor checks, launch sizes).
#pragma once

#include <ATen/ATen.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include <cstdint>

#include "device_math.cuh"

#define INST3D_CHECK_CUDA(x) TORCH_CHECK((x).is_cuda(), #x " must be a CUDA tensor")
#define INST3D_CHECK_CONTIGUOUS(x) TORCH_CHECK((x).is_contiguous(), #x " must be contiguous")
#define INST3D_CHECK_DTYPE(x, dtype) \
  TORCH_CHECK((x).scalar_type() == (dtype), #x " must be " #dtype ", got ", (x).scalar_type())
#define INST3D_CHECK_INPUT(x, dtype) \
  INST3D_CHECK_CUDA(x);              \
  INST3D_CHECK_CONTIGUOUS(x);        \
  INST3D_CHECK_DTYPE(x, dtype)

namespace inst3d {

inline unsigned int num_blocks(int64_t work, int threads) {
  return static_cast<unsigned int>((work + threads - 1) / threads);
}

}  // namespace inst3d
