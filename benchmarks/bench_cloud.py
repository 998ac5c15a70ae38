"""PointCloud2 decode speed against one copy of the cloud's data buffer, in the same run.

    python -m pytest benchmarks/bench_cloud.py --benchmark-enable

Each size is one pytest-benchmark group holding ``decode`` and its ``copy`` baseline, so the
table's relative column is the ratio (goal: decode of 1M x, y, z, rgb, intensity points at most
3x the copy). ``ros2-inst3d bench --decode`` prints the same comparison in thread CPU time.
"""

from __future__ import annotations

import numpy as np
import pytest

from ros2_inst3d.bench import benchmark_cloud
from ros2_inst3d.cloud import decode

SIZES = [100_000, 1_000_000]
POINT_STEPS = [20, 32]  # compact (encode_xyz), PCL-style 16-byte-aligned padding


@pytest.fixture(scope="module", params=[(n, s) for n in SIZES for s in POINT_STEPS],
                ids=lambda p: f"{p[0]}pts-{p[1]}B")
def cloud(request):
    return benchmark_cloud(*request.param)


def test_decode(benchmark, cloud):
    benchmark.group = f"decode {cloud.width} points, point_step {cloud.point_step}"
    scan = benchmark(decode, cloud)
    assert scan.num_points == cloud.width and scan.rgb is not None


def test_copy_baseline(benchmark, cloud):
    benchmark.group = f"decode {cloud.width} points, point_step {cloud.point_step}"
    copied = benchmark(lambda: np.frombuffer(cloud.data, np.uint8).copy())
    assert copied.size == cloud.row_step
