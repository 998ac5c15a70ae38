"""The streaming benchmark's inputs: every common PointCloud2 layout decodes to the right values."""

from __future__ import annotations

import numpy as np
import pytest

from ros2_inst3d.bench_stream import LAYOUTS, bench_decode_layouts, layout_cloud
from ros2_inst3d.cloud import _all_finite, decode

FORMATS = {2: "u1", 4: "<u2", 6: "<u4", 7: "<f4"}


@pytest.mark.parametrize("name, fields, step", LAYOUTS, ids=[layout[0] for layout in LAYOUTS])
def test_every_benchmark_layout_decodes_exactly(name, fields, step):
    msg = layout_cloud(name, fields, step, 1000)
    dtype = np.dtype({"names": [f[0] for f in fields],
                      "formats": [FORMATS[f[2]] for f in fields],
                      "offsets": [f[1] for f in fields], "itemsize": step})
    ref = np.frombuffer(np.asarray(msg.data).tobytes(), dtype=dtype)
    scan = decode(msg)
    assert scan.num_points == msg.width * msg.height
    np.testing.assert_array_equal(scan.xyz, np.column_stack([ref["x"], ref["y"], ref["z"]]))
    names = {f[0] for f in fields}
    assert (scan.rgb is not None) == ("rgb" in names)
    if "rgb" in names:
        packed = ref["rgb"].view("<u4")
        np.testing.assert_array_equal(
            scan.rgb, np.column_stack([(packed >> 16) & 255, (packed >> 8) & 255, packed & 255]))
    assert (scan.intensity is not None) == ("intensity" in names)
    if "intensity" in names:
        np.testing.assert_array_equal(scan.intensity, ref["intensity"])


def test_finite_check_survives_overflowing_sums_and_finds_nan_and_inf():
    big = np.full((1000, 3), 3.0e38, np.float32)   # finite, but the sum overflows
    assert _all_finite(big)
    for bad in (np.nan, np.inf, -np.inf):
        values = np.zeros((1000, 3), np.float32)
        values[777, 1] = bad
        assert not _all_finite(values)


def test_layout_table_has_every_layout_at_every_size_and_the_organised_cloud_once():
    rows = bench_decode_layouts(sizes=(5000, 20000), repeats=1)
    flat = [name for name, _, _ in LAYOUTS if "organised" not in name]
    organised = [name for name, _, _ in LAYOUTS if "organised" in name]
    assert [(r["layout"], r["points"]) for r in rows] == (
        [(n, 5000) for n in flat] + [(n, 640 * 480) for n in organised]
        + [(n, 20000) for n in flat])
    assert all(r["decode_ms"] > 0 and r["copy_ms"] > 0 and r["ratio"] > 0 for r in rows)
