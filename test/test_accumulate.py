"""Tests for ros2_inst3d.accumulate.ScanAccumulator: limits under random add sequences
(hypothesis), dedupe against a slow dict reference, and hand-made scenarios."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ros2_inst3d.accumulate import MISSING_RGB, SCALAR_FIELDS, AccumulatedCloud, ScanAccumulator

PROPERTY = settings(max_examples=60, deadline=None)
SECOND = 1_000_000_000


@st.composite
def scans(draw, max_points=40):
    """One scan on a 5 cm lattice (so points share dedupe voxels), with optional rgb/intensity."""
    n = draw(st.integers(0, max_points))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    xyz = (rng.integers(-6, 6, size=(n, 3)) * 0.05 + 0.01).astype(np.float32)
    rgb = rng.integers(0, 256, size=(n, 3), dtype=np.uint8) if draw(st.booleans()) else None
    intensity = rng.uniform(0, 100, size=n).astype(np.float32) if draw(st.booleans()) else None
    return xyz, rgb, intensity


@st.composite
def add_sequences(draw):
    """Scans with stamps that mostly advance but sometimes arrive late (even beyond the window)."""
    steps = draw(st.lists(st.integers(-1500, 1000), min_size=1, max_size=12))
    stamp = 10 * SECOND
    sequence = []
    for step_ms in steps:
        stamp += step_ms * 1_000_000
        sequence.append((*draw(scans()), stamp))
    return sequence


def voxel_key(point, size):
    return tuple(math.floor(float(c) / size) for c in point)


def reference_dedupe(stored_scans, size):
    """Slow reference: walk scans oldest to newest; within a scan the first point of a voxel wins,
    a newer scan replaces the voxel's point. Returns sorted rows (x, y, z, stamp)."""
    winner = {}
    for xyz, _rgb, _intensity, stamp in stored_scans:
        seen_in_scan = set()
        for p in xyz:
            key = voxel_key(p, size)
            if key in seen_in_scan:
                continue
            seen_in_scan.add(key)
            winner[key] = (float(p[0]), float(p[1]), float(p[2]), stamp)
    return sorted(winner.values())


def rows(cloud: AccumulatedCloud):
    return sorted(
        (float(p[0]), float(p[1]), float(p[2]), int(s)) for p, s in zip(cloud.xyz, cloud.stamp_ns, strict=True)
    )


# ---------------------------------------------------------------------------------------------
# Limits under random input (hypothesis)
# ---------------------------------------------------------------------------------------------


@PROPERTY
@given(
    sequence=add_sequences(),
    window_s=st.sampled_from([0.5, 2.0, math.inf]),
    max_scans=st.integers(1, 6),
    max_points=st.integers(1, 120),
    dedupe_voxel=st.sampled_from([0.0, 0.1]),
)
def test_limits_hold_and_every_point_is_accounted_for(sequence, window_s, max_scans, max_points, dedupe_voxel):
    acc = ScanAccumulator(window_s, max_scans, max_points, dedupe_voxel)
    added = 0
    accepted_stamps = []
    points_by_stamp: dict[int, set] = {}
    for xyz, rgb, intensity, stamp in sequence:
        late_before = acc.dropped_late_scans
        acc.add(xyz, rgb, intensity, stamp)
        added += len(xyz)
        if acc.dropped_late_scans == late_before:
            accepted_stamps.append(stamp)
        points_by_stamp.setdefault(stamp, set()).update(map(tuple, xyz.tolist()))

        assert acc.num_points <= max_points
        assert acc.num_scans <= max_scans
        stats = acc.stats()
        assert added == (
            stats["num_points"]
            + stats["dropped_budget_points"]
            + stats["dropped_late_points"]
            + stats["dropped_duplicate_points"]
            + stats["expired_points"]
        )
        cloud = acc.cloud()
        assert cloud.num_scans == acc.num_scans
        assert cloud.num_points <= acc.num_points <= max_points
        assert cloud.xyz.dtype == np.float32 and cloud.stamp_ns.dtype == np.int64
        # The newest scan is never evicted, and nothing older than the window survives.
        assert cloud.newest_stamp_ns == max(accepted_stamps)
        if cloud.num_points:
            assert cloud.stamp_ns.max() <= cloud.newest_stamp_ns
            assert cloud.stamp_ns.min() >= cloud.oldest_stamp_ns
            assert np.all(np.diff(cloud.stamp_ns) >= 0), "points are in scan order, oldest first"
        if not math.isinf(window_s):
            assert cloud.oldest_stamp_ns >= cloud.newest_stamp_ns - window_s * SECOND
        # Every point is one that was added with that stamp.
        for p, s in zip(cloud.xyz.tolist(), cloud.stamp_ns.tolist(), strict=True):
            assert tuple(p) in points_by_stamp[s]
        if dedupe_voxel:
            keys = [voxel_key(p, dedupe_voxel) for p in cloud.xyz]
            assert len(keys) == len(set(keys)), "one point per dedupe voxel"


@PROPERTY
@given(stored=st.lists(scans(), min_size=1, max_size=6), data=st.data())
def test_dedupe_matches_slow_reference(stored, data):
    stamps = sorted(data.draw(st.lists(st.integers(0, 50), min_size=len(stored), max_size=len(stored))))
    # Add in a shuffled order: the result depends on stamps, not on arrival order (ties aside).
    order = data.draw(st.permutations(range(len(stored))))
    if len(set(stamps)) < len(stamps):
        order = list(range(len(stored)))  # equal stamps: later arrival wins, keep arrival = stamp order
    acc = ScanAccumulator(math.inf, max_scans=100, max_points=10_000, dedupe_voxel=0.1)
    for i in order:
        xyz, rgb, intensity = stored[i]
        acc.add(xyz, rgb, intensity, stamps[i] * SECOND)
    in_stamp_order = [(xyz, None, None, s * SECOND) for (xyz, _, _), s in zip(stored, stamps, strict=True)]
    expected = reference_dedupe(in_stamp_order, 0.1)
    assert rows(acc.cloud()) == expected


def straightforward_window(acc: ScanAccumulator):
    """The window computed from scratch from the stored scans (stamp order): every stored point,
    then per dedupe voxel the last one (= the newest scan's), in scan order. Slow and obvious."""
    stored = list(acc._scans)
    xyz = [p for s in stored for p in s.xyz.tolist()]
    stamps = [s.stamp_ns for s in stored for _ in range(s.num_points)]
    rgb = None
    if any(s.rgb is not None for s in stored):
        rgb = [c for s in stored for c in (s.rgb.tolist() if s.rgb is not None
                                           else [MISSING_RGB.tolist()] * s.num_points)]
    scalars = {}  # intensity, ring: NaN for the scans without
    for name in SCALAR_FIELDS:
        if any(name in s.scalars for s in stored):
            scalars[name] = [v for s in stored for v in (
                s.scalars[name].tolist() if name in s.scalars else [float("nan")] * s.num_points)]
    keep = list(range(len(xyz)))
    if acc.dedupe_voxel > 0:
        last = {}
        for i, p in enumerate(xyz):
            last[voxel_key(np.float32(p), acc.dedupe_voxel)] = i
        keep = sorted(last.values())
    return ([xyz[i] for i in keep], None if rgb is None else [rgb[i] for i in keep],
            {name: [values[i] for i in keep] for name, values in scalars.items()},
            [stamps[i] for i in keep])


def assert_window_is_straightforward(acc: ScanAccumulator) -> None:
    cloud = acc.cloud()
    xyz, rgb, scalars, stamps = straightforward_window(acc)
    assert cloud.xyz.dtype == np.float32 and cloud.xyz.tolist() == (xyz or [])
    assert cloud.stamp_ns.dtype == np.int64 and cloud.stamp_ns.tolist() == stamps
    if rgb is None:
        assert cloud.rgb is None
    else:
        assert cloud.rgb.dtype == np.uint8 and cloud.rgb.tolist() == rgb
    for name in SCALAR_FIELDS:
        if name not in scalars:
            assert getattr(cloud, name) is None and name not in cloud.fields()
        else:
            np.testing.assert_array_equal(getattr(cloud, name), np.array(scalars[name], np.float32))
            assert cloud.fields()[name] is getattr(cloud, name)
    assert cloud.num_scans == acc.num_scans
    assert (cloud.newest_stamp_ns, cloud.oldest_stamp_ns) == (acc.newest_stamp_ns, acc.oldest_stamp_ns)


operations = st.one_of(
    st.tuples(st.just("add"), scans(), st.integers(-700, 900)),   # late ones, equal stamps too
    st.tuples(st.just("add"), scans(), st.integers(-5000, -3000)),  # refused as too late
    st.tuples(st.just("cloud")),
    st.tuples(st.just("clear")),                                       # the node's time jump
    st.tuples(st.just("voxel"), st.sampled_from([0.0, 0.05, 0.1, 0.25])),
    st.tuples(st.just("limits"), st.integers(1, 6), st.integers(1, 150)),
)


@settings(max_examples=150, deadline=None)
@given(ops=st.lists(operations, min_size=1, max_size=25), window_s=st.sampled_from([0.5, 2.0]))
def test_incremental_window_equals_the_straightforward_computation(ops, window_s):
    """The cross-scan dedupe is kept incrementally between cloud() calls; whatever happens in
    between (scans arriving late, expiring, evicted by budget or count, empty scans, a clear,
    the dedupe voxel or the limits changing), the cloud is the one computed from scratch."""
    acc = ScanAccumulator(window_s, 4, 120, 0.1)
    stamp = 10 * SECOND
    for op in ops:
        if op[0] == "add":
            (xyz, rgb, intensity), step_ms = op[1], op[2]
            stamp = max(0, stamp + step_ms * 1_000_000) if step_ms > -3000 else stamp
            # a beam index on the scans without colour: windows mix scans with and without one
            ring = np.arange(len(xyz)) % 64 if rgb is None else None
            acc.add(xyz, rgb, intensity, stamp if step_ms > -3000 else stamp + step_ms * 1_000_000,
                    ring=ring)
        elif op[0] == "cloud":
            assert_window_is_straightforward(acc)
        elif op[0] == "clear":
            acc.clear()
        elif op[0] == "voxel":
            acc.dedupe_voxel = op[1]
        else:
            acc.max_scans, acc.max_points = op[1], op[2]
    assert_window_is_straightforward(acc)


def test_incremental_window_with_a_late_scan_after_a_cloud():
    """A scan older than one already in the window (and already deduped against) loses the
    voxels they share and wins those it shares with older ones; with and without a cloud()
    in between, and with equal stamps (later arrival is newer)."""
    a, b, c = cube(300, seed=1), cube(300, seed=2), cube(300, seed=3)
    for between in (True, False):
        acc = ScanAccumulator(5.0, 10, 10_000, 0.2)
        acc.add(a, None, None, 1 * SECOND)
        acc.add(c, None, None, 3 * SECOND)
        if between:
            assert_window_is_straightforward(acc)
        acc.add(b, None, None, 2 * SECOND)      # late: between a and c
        assert_window_is_straightforward(acc)
        acc.add(a, None, None, 2 * SECOND)      # same stamp as b, arrived later: newer than b
        assert_window_is_straightforward(acc)
        assert set(acc.cloud().stamp_ns.tolist()) <= {2 * SECOND, 3 * SECOND}


def test_incremental_window_after_many_overlapping_scans():
    """Larger, realistic: a sensor moving through one cloud, the window holding 5 of its scans
    at a time, a cloud after every 1-3 scans, then a time jump and the same again."""
    rng = np.random.default_rng(3)
    room = rng.uniform(0, 4, size=(6000, 3)).astype(np.float32)
    acc = ScanAccumulator(0.45, 10, 100_000, 0.1)
    stamp = SECOND
    for round_ in range(2):
        for k in range(12):
            pick = rng.choice(len(room), size=1500, replace=False)
            rgb = rng.integers(0, 256, size=(1500, 3), dtype=np.uint8) if k % 3 else None
            acc.add(room[pick] + np.float32(0.01 * k), rgb, None, stamp)
            stamp += SECOND // 10
            if k % 2:
                assert_window_is_straightforward(acc)
        assert acc.num_scans == 5
        acc.clear()
        stamp -= 3 * SECOND


@PROPERTY
@given(scan=scans(max_points=60), voxel=st.sampled_from([0.05, 0.1, 0.25]), gap_ms=st.integers(0, 400))
def test_dedupe_is_idempotent(scan, voxel, gap_ms):
    xyz, rgb, intensity = scan
    once = ScanAccumulator(1.0, 10, 10_000, voxel)
    once.add(xyz, rgb, intensity, SECOND)
    twice = ScanAccumulator(1.0, 10, 10_000, voxel)
    twice.add(xyz, rgb, intensity, SECOND)
    twice.add(xyz, rgb, intensity, SECOND + gap_ms * 1_000_000)
    a, b = once.cloud(), twice.cloud()
    np.testing.assert_array_equal(a.xyz, b.xyz)
    if rgb is None:
        assert a.rgb is None and b.rgb is None
    else:
        np.testing.assert_array_equal(a.rgb, b.rgb)
    if intensity is None:
        assert a.intensity is None and b.intensity is None
    else:
        np.testing.assert_array_equal(a.intensity, b.intensity)
    # Deduping an already deduped cloud changes nothing.
    again = ScanAccumulator(1.0, 10, 10_000, voxel)
    again.add(a.xyz, a.rgb, a.intensity, SECOND)
    np.testing.assert_array_equal(again.cloud().xyz, a.xyz)
    assert again.dropped_duplicate_points == 0


# ---------------------------------------------------------------------------------------------
# Scenarios
# ---------------------------------------------------------------------------------------------


def cube(n, offset=0.0, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.uniform(0, 1, size=(n, 3)) + offset).astype(np.float32)


def test_time_window_drops_old_scans():
    acc = ScanAccumulator(window_s=1.5, max_scans=100, max_points=10_000)
    for t in range(4):
        acc.add(cube(10, offset=10.0 * t), None, None, t * SECOND)
    cloud = acc.cloud()
    assert cloud.num_scans == 2 and cloud.oldest_stamp_ns == 2 * SECOND and cloud.newest_stamp_ns == 3 * SECOND
    assert set(cloud.stamp_ns.tolist()) == {2 * SECOND, 3 * SECOND}
    assert acc.expired_scans == 2 and acc.expired_points == 20
    # The window edge is inclusive: a scan exactly window_s older than the newest stays.
    acc.add(cube(10), None, None, int(4.5 * SECOND))
    assert acc.oldest_stamp_ns == 3 * SECOND
    acc.add(cube(10), None, None, int(4.5 * SECOND) + 1)
    assert acc.oldest_stamp_ns == int(4.5 * SECOND)


def test_scan_count_keeps_newest():
    acc = ScanAccumulator(window_s=math.inf, max_scans=3, max_points=10_000)
    for t in range(5):
        acc.add(cube(4, seed=t), None, None, t)
    assert acc.num_scans == 3
    np.testing.assert_array_equal(acc.cloud().stamp_ns, np.repeat([2, 3, 4], 4))
    np.testing.assert_array_equal(acc.cloud().xyz[-4:], cube(4, seed=4))


def test_point_budget_drops_oldest_scans_and_counts_them():
    acc = ScanAccumulator(window_s=math.inf, max_scans=100, max_points=250)
    for t in range(4):
        acc.add(cube(100, seed=t), None, None, t)
    assert acc.num_points == 200 and acc.num_scans == 2
    assert acc.dropped_budget_points == 200
    np.testing.assert_array_equal(acc.cloud().xyz, np.concatenate([cube(100, seed=2), cube(100, seed=3)]))


def test_scan_larger_than_budget_is_subsampled_evenly_and_deterministically():
    xyz = cube(1000)
    intensity = np.arange(1000, dtype=np.float32)  # remembers each point's index
    results = []
    for _ in range(2):
        acc = ScanAccumulator(window_s=1.0, max_scans=5, max_points=300)
        assert acc.add(xyz, None, intensity, 0)
        results.append(acc.cloud())
        assert acc.dropped_budget_points == 700 and acc.num_points == 300
    kept = results[0].intensity.astype(np.int64)
    np.testing.assert_array_equal(results[0].xyz, results[1].xyz)
    np.testing.assert_array_equal(results[0].xyz, xyz[kept])
    assert len(kept) == 300 and np.all(np.diff(kept) > 0)
    # Spread over the whole scan: no gap wider than ceil(1000 / 300) points.
    assert kept[0] == 0 and np.diff(kept).max() <= 4 and kept[-1] >= 1000 - 4


def test_memory_stays_bounded_at_a_high_rate():
    acc = ScanAccumulator(window_s=math.inf, max_scans=10**9, max_points=500)
    for i in range(3000):
        acc.add(cube(10, seed=i % 7), None, None, i * 1_000_000)  # 1 kHz
    assert acc.num_points == 500 and acc.num_scans == 50
    assert acc.dropped_budget_points == 3000 * 10 - 500


def test_out_of_order_scans_are_placed_by_stamp_and_late_ones_refused():
    acc = ScanAccumulator(window_s=10.0, max_scans=10, max_points=10_000)
    assert acc.add(cube(3, seed=1), None, None, 20 * SECOND)
    assert acc.add(cube(3, seed=2), None, None, 15 * SECOND)  # late but inside the window
    np.testing.assert_array_equal(acc.cloud().stamp_ns, [15 * SECOND] * 3 + [20 * SECOND] * 3)
    np.testing.assert_array_equal(acc.cloud().xyz[:3], cube(3, seed=2))
    assert acc.cloud().newest_stamp_ns == 20 * SECOND
    assert not acc.add(cube(5), None, None, 9 * SECOND)  # older than newest - window
    assert acc.dropped_late_scans == 1 and acc.dropped_late_points == 5 and acc.num_scans == 2


def test_out_of_order_scan_can_be_evicted_at_once_by_the_scan_limit():
    acc = ScanAccumulator(window_s=10.0, max_scans=2, max_points=10_000)
    acc.add(cube(3), None, None, 5 * SECOND)
    acc.add(cube(3), None, None, 6 * SECOND)
    assert not acc.add(cube(3), None, None, 4 * SECOND)  # the oldest of three: expires immediately
    assert acc.oldest_stamp_ns == 5 * SECOND and acc.expired_scans == 1


def test_newer_scan_overwrites_occupied_voxels():
    wall = np.array([[0.01, 0.01, 0.01], [0.51, 0.01, 0.01]], dtype=np.float32)
    chair_then = np.array([[2.01, 0.01, 0.01]], dtype=np.float32)
    chair_now = np.array([[3.01, 0.01, 0.01]], dtype=np.float32)
    red = np.array([[255, 0, 0]] * 3, dtype=np.uint8)
    blue = np.array([[0, 0, 255]] * 3, dtype=np.uint8)
    acc = ScanAccumulator(window_s=5.0, max_scans=10, max_points=100, dedupe_voxel=0.1)
    acc.add(np.concatenate([wall, chair_then]), red, None, 1 * SECOND)
    acc.add(np.concatenate([wall + 0.02, chair_now]), blue, None, 2 * SECOND)  # same voxels, moved 2 cm
    cloud = acc.cloud()
    # The wall voxels hold the newest points (blue, stamp 2 s); the chair's old place stays until it expires.
    assert rows(cloud) == sorted(
        [(*map(float, p), 2 * SECOND) for p in np.concatenate([wall + 0.02, chair_now])]
        + [(*map(float, chair_then[0]), 1 * SECOND)]
    )
    colour_of = {tuple(p): tuple(c) for p, c in zip(cloud.xyz.tolist(), cloud.rgb.tolist(), strict=True)}
    assert colour_of[tuple((wall[0] + 0.02).tolist())] == (0, 0, 255)
    assert colour_of[tuple(chair_then[0].tolist())] == (255, 0, 0)


def test_equal_stamps_later_arrival_wins():
    xyz = np.array([[0.01, 0.01, 0.01]], dtype=np.float32)
    acc = ScanAccumulator(window_s=1.0, max_scans=10, max_points=100, dedupe_voxel=0.1)
    acc.add(xyz, np.array([[1, 1, 1]], np.uint8), None, SECOND)
    acc.add(xyz + 0.01, np.array([[2, 2, 2]], np.uint8), None, SECOND)
    np.testing.assert_array_equal(acc.cloud().rgb, [[2, 2, 2]])
    np.testing.assert_array_equal(acc.cloud().xyz, xyz + 0.01)


def test_within_scan_duplicates_keep_the_first_point_and_are_counted():
    xyz = np.array([[0.01, 0.0, 0.0], [0.02, 0.0, 0.0], [0.5, 0.0, 0.0], [0.03, 0.0, 0.0]], dtype=np.float32)
    acc = ScanAccumulator(window_s=1.0, max_scans=10, max_points=100, dedupe_voxel=0.1)
    acc.add(xyz, None, None, 0)
    np.testing.assert_array_equal(acc.cloud().xyz, xyz[[0, 2]])
    assert acc.dropped_duplicate_points == 2 and acc.num_points == 2


def test_dedupe_off_keeps_every_point():
    xyz = np.zeros((5, 3), np.float32)
    acc = ScanAccumulator(window_s=1.0, max_scans=10, max_points=100, dedupe_voxel=0.0)
    acc.add(xyz, None, None, 0)
    acc.add(xyz, None, None, 1)
    assert acc.cloud().num_points == 10 and acc.dropped_duplicate_points == 0


def test_mixed_colour_and_intensity_presence_is_filled_not_dropped():
    acc = ScanAccumulator(window_s=1.0, max_scans=10, max_points=100)
    rgb = np.full((2, 3), 7, np.uint8)
    acc.add(cube(2, seed=0), rgb, None, 0)
    acc.add(cube(3, seed=1), None, np.ones(3, np.float32), 1)
    cloud = acc.cloud()
    np.testing.assert_array_equal(cloud.rgb, np.concatenate([rgb, np.tile(MISSING_RGB, (3, 1))]))
    assert cloud.rgb.dtype == np.uint8
    assert np.all(np.isnan(cloud.intensity[:2])) and np.all(cloud.intensity[2:] == 1.0)
    plain = ScanAccumulator(window_s=1.0, max_scans=10, max_points=100)
    plain.add(cube(2), None, None, 0)
    assert plain.cloud().rgb is None and plain.cloud().intensity is None


def test_clear_empties_the_window_for_a_time_jump():
    acc = ScanAccumulator(window_s=1.0, max_scans=10, max_points=100)
    acc.add(cube(5), None, None, 100 * SECOND)
    assert not acc.add(cube(5), None, None, 1 * SECOND)  # bag looped: refused until cleared
    acc.clear()
    empty = acc.cloud()
    assert empty.num_points == 0 and empty.num_scans == 0
    assert empty.newest_stamp_ns is None and empty.oldest_stamp_ns is None
    assert acc.add(cube(5), None, None, 1 * SECOND)
    assert acc.cloud().newest_stamp_ns == 1 * SECOND
    assert acc.dropped_late_scans == 1  # counters survive clear()


def test_cloud_is_cached_until_the_next_add_and_copies_input():
    acc = ScanAccumulator(window_s=1.0, max_scans=10, max_points=100)
    xyz = cube(4)
    acc.add(xyz, None, None, 0)
    first = acc.cloud()
    assert acc.cloud() is first
    xyz[:] = 99.0  # the caller reuses its buffer
    assert np.all(acc.cloud().xyz < 2.0)
    acc.add(cube(1), None, None, 1)
    assert acc.cloud() is not first and acc.cloud().num_points == 5


def test_limits_changed_at_runtime_apply_at_once():
    acc = ScanAccumulator(window_s=10.0, max_scans=10, max_points=1000, dedupe_voxel=0.0)
    for t in range(6):
        acc.add(cube(50, seed=t), None, None, t * SECOND)
    first = acc.cloud()
    acc.max_points = 200
    assert acc.num_points == 200 and acc.dropped_budget_points == 100
    assert acc.cloud() is not first and acc.cloud().oldest_stamp_ns == 2 * SECOND
    acc.max_scans = 3
    assert acc.num_scans == 3 and acc.oldest_stamp_ns == 3 * SECOND
    acc.window_s = 1.0
    assert acc.num_scans == 2 and acc.oldest_stamp_ns == 4 * SECOND
    acc.window_s = 0.0  # only the newest stamp
    assert acc.num_scans == 1 and acc.oldest_stamp_ns == 5 * SECOND
    acc.add(cube(50, seed=9), None, None, 5 * SECOND)  # same stamp: kept
    assert acc.num_scans == 2
    acc.add(np.full((1, 3), 0.5, np.float32), None, None, 5 * SECOND)
    acc.dedupe_voxel = 10.0  # one voxel holds everything: the newest arrival wins
    np.testing.assert_array_equal(acc.cloud().xyz, [[0.5, 0.5, 0.5]])
    with pytest.raises(ValueError, match="max_points"):
        acc.max_points = 0
    assert acc.max_points == 200


def test_empty_scans_still_count_and_advance_time():
    acc = ScanAccumulator(window_s=1.0, max_scans=10, max_points=100)
    acc.add(cube(3), None, None, 0)
    acc.add(np.zeros((0, 3), np.float32), None, None, 5 * SECOND)
    assert acc.num_scans == 1 and acc.num_points == 0 and acc.newest_stamp_ns == 5 * SECOND


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(window_s=-1.0, max_scans=1, max_points=1), "window_s"),
        (dict(window_s=float("nan"), max_scans=1, max_points=1), "window_s"),
        (dict(window_s=1.0, max_scans=0, max_points=1), "max_scans"),
        (dict(window_s=1.0, max_scans=1.5, max_points=1), "max_scans"),
        (dict(window_s=1.0, max_scans=1, max_points=0), "max_points"),
        (dict(window_s=1.0, max_scans=1, max_points=1, dedupe_voxel=-0.1), "dedupe_voxel"),
    ],
)
def test_bad_configuration_is_rejected(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ScanAccumulator(**kwargs)


def test_bad_scans_are_rejected():
    acc = ScanAccumulator(window_s=1.0, max_scans=10, max_points=100)
    with pytest.raises(ValueError, match=r"\(N, 3\)"):
        acc.add(np.zeros((3, 2), np.float32), None, None, 0)
    with pytest.raises(ValueError, match="NaN/inf"):
        acc.add(np.full((1, 3), np.nan, np.float32), None, None, 0)
    with pytest.raises(ValueError, match="uint8"):
        acc.add(np.zeros((2, 3), np.float32), np.zeros((2, 3), np.float32), None, 0)
    with pytest.raises(ValueError, match=r"rgb must have shape \(2, 3\)"):
        acc.add(np.zeros((2, 3), np.float32), np.zeros((3, 3), np.uint8), None, 0)
    with pytest.raises(ValueError, match=r"intensity must have shape \(2,\)"):
        acc.add(np.zeros((2, 3), np.float32), None, np.zeros(3), 0)
    with pytest.raises(ValueError, match="nanoseconds"):
        acc.add(np.zeros((2, 3), np.float32), None, None, 1.5)
    assert acc.num_scans == 0 and acc.num_points == 0
