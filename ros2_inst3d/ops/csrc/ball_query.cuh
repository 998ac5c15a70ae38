// Per-query logic of the grid ball query (host + device, no ATen; see ball_query.cu).
#pragma once

#include <cstdint>

#include "device_math.cuh"

namespace inst3d {

// Points sorted by the linear key of their grid cell, key = ((b*dx + x)*dy + y)*dz + z.
struct BallQueryGrid {
  const float* sorted_xyz;      // (N, 3) points in cell-key order
  const int64_t* sorted_index;  // (N,) original row of each sorted point
  const int64_t* cell_keys;     // (C,) ascending keys of the non-empty cells
  const int64_t* cell_start;    // (C + 1,) sorted rows of cell c: [cell_start[c], cell_start[c+1])
  int64_t num_cells;
  int64_t num_points;
  int64_t dx, dy, dz;           // grid extent in cells
};

INST3D_HD inline int64_t find_cell(const BallQueryGrid& g, int64_t key) {
  int64_t lo = 0, hi = g.num_cells;
  while (lo < hi) {
    const int64_t mid = lo + (hi - lo) / 2;
    if (g.cell_keys[mid] < key) lo = mid + 1; else hi = mid;
  }
  return (lo < g.num_cells && g.cell_keys[lo] == key) ? lo : -1;
}

// Calls visit(original_row) for every point with squared_distance < r2 in the 27 cells around
// the query cell (b, x, y, z), in grid order, until visit returns false.
template <typename Visit>
INST3D_HD inline void for_each_neighbor(const BallQueryGrid& g, const float* q, const int64_t* cell,
                                        float r2, Visit& visit) {
  for (int ox = -1; ox <= 1; ++ox) {
    const int64_t x = cell[1] + ox;
    if (x < 0 || x >= g.dx) continue;
    for (int oy = -1; oy <= 1; ++oy) {
      const int64_t y = cell[2] + oy;
      if (y < 0 || y >= g.dy) continue;
      for (int oz = -1; oz <= 1; ++oz) {
        const int64_t z = cell[3] + oz;
        if (z < 0 || z >= g.dz) continue;
        const int64_t c = find_cell(g, ((cell[0] * g.dx + x) * g.dy + y) * g.dz + z);
        if (c < 0) continue;
        for (int64_t s = g.cell_start[c]; s < g.cell_start[c + 1]; ++s) {
          if (squared_distance(q, g.sorted_xyz + 3 * s) < r2) {
            if (!visit(g.sorted_index[s])) return;
          }
        }
      }
    }
  }
}

// Counts neighbours with original row <= max_row, stopping at `limit`.
struct CountUpTo {
  int64_t max_row, limit, count;
  INST3D_HD bool operator()(int64_t row) {
    if (row <= max_row) ++count;
    return count < limit;
  }
};

struct WriteUpTo {
  int64_t max_row;
  int64_t* out;
  int64_t written;
  INST3D_HD bool operator()(int64_t row) {
    if (row <= max_row) out[written++] = row;
    return true;
  }
};

// Number of neighbours of the query, capped at max_neighbors + 1 (enough to know it overflows).
INST3D_HD inline int64_t count_neighbors(const BallQueryGrid& g, const float* q, const int64_t* cell,
                                         float r2, int64_t max_neighbors) {
  CountUpTo counter{g.num_points, max_neighbors + 1, 0};
  for_each_neighbor(g, q, cell, r2, counter);
  return counter.count;
}

// Writes the neighbours of the query into out (unsorted). count is count_neighbors' result.
// When it exceeds max_neighbors, only the max_neighbors smallest rows are written: the row
// threshold is found by bisection, re-scanning the cells each step, so no scratch memory is
// needed and the result matches the CPU path's "first K by index".
INST3D_HD inline int64_t fill_neighbors(const BallQueryGrid& g, const float* q, const int64_t* cell,
                                        float r2, int64_t max_neighbors, int64_t count, int64_t* out) {
  int64_t max_row = g.num_points;
  if (count > max_neighbors) {
    int64_t lo = 0, hi = g.num_points - 1;
    while (lo < hi) {
      const int64_t mid = lo + (hi - lo) / 2;
      CountUpTo counter{mid, max_neighbors, 0};
      for_each_neighbor(g, q, cell, r2, counter);
      if (counter.count >= max_neighbors) hi = mid; else lo = mid + 1;
    }
    max_row = lo;
  }
  WriteUpTo writer{max_row, out, 0};
  for_each_neighbor(g, q, cell, r2, writer);
  return writer.written;
}

}  // namespace inst3d
