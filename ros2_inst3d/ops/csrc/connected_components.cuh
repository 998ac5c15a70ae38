// Lock-free union-find shared by the connected-components kernel (host + device, no ATen).
//
// Only roots are ever re-parented, always under a smaller root (compare-and-swap), so parents
// strictly decrease along every chain and the final root of a component is its smallest point
// index: the canonical component id, whatever the order in which threads ran.
#pragma once

#include <cstdint>

#include "device_math.cuh"

namespace inst3d {

INST3D_HD inline int32_t compare_and_swap(int32_t* address, int32_t expected, int32_t desired) {
#if defined(__CUDA_ARCH__)
  return atomicCAS(address, expected, desired);
#else
  __atomic_compare_exchange_n(address, &expected, desired, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
  return expected;  // the value seen: equals the old expected on success
#endif
}

INST3D_HD inline int32_t find_root(const int32_t* parent, int32_t x) {
  // volatile: re-read parents other threads may have hooked meanwhile. A stale read is harmless:
  // it only yields an older ancestor, and the compare-and-swap in unite() rechecks it.
  const volatile int32_t* p = parent;
  int32_t up = p[x];
  while (up != x) {
    x = up;
    up = p[x];
  }
  return x;
}

INST3D_HD inline void unite(int32_t* parent, int32_t a, int32_t b) {
  while (true) {
    a = find_root(parent, a);
    b = find_root(parent, b);
    if (a == b) return;
    if (a < b) {
      const int32_t t = a;
      a = b;
      b = t;
    }
    const int32_t seen = compare_and_swap(parent + a, a, b);  // hook the larger root under the smaller
    if (seen == a) return;
    a = seen;  // a stopped being a root meanwhile; retry from its new parent
  }
}

}  // namespace inst3d
