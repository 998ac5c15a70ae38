"""Outdoor street scans: a ray-cast HDL-64 in a procedural street, labelled like SemanticKITTI.

The ``lidar`` method's filters decide what on a street is an object (cars, people, bicycles,
poles, signs, trunks) and what is junk to a robot (hedges, tree crowns, façade pieces, ground
left-overs). Their thresholds need labelled outdoor scans that are not the one SemanticKITTI frame
we report on, and this module makes them: ``ros2-inst3d gen-data DIR --street`` writes KITTI
``.bin`` / ``.label`` pairs that ``benchmarks/lidar_street.py`` scores with the same rule as the
real frame (``evaluation.kitti_scores``).

What a scan has, and why:

* a road with a kerb, sidewalks, front yards of rough terrain, and buildings whose façades have
  balconies, pillars and recessed doors, with gaps and cross streets between them: ground
  segmentation meets kerbs and slopes, and occlusion cuts façades into pieces;
* vegetation as what a LiDAR sees of it: many small leaves at random orientations in a crown,
  hedge or bush, so beams pass some way into it and its surface is rough;
* parked and moving cars and vans (two extruded profiles and wheels), people, cyclists, parked
  bicycles, poles, street lights, signs, bins, fences and garden walls;
* the HDL-64E's 64 beams (+2 to -24.3 degrees, denser in the upper block), 2048 azimuth steps,
  1.73 m above the road (KITTI's mounting), range noise and dropout that grows at grazing angles.

Labels use SemanticKITTI's ids (``SEMANTIC``) and encoding (semantic = low 16 bits, instance =
high 16 bits); things (cars, bicycles, people, cyclists) have instance ids >= 1, stuff has 0.
The geometry is simple on purpose: the scans are for tuning the ``lidar`` method's size and shape
rules, and every rule and threshold chosen on them is checked on the real frame
(README: LiDAR, RGB-D cameras and real data).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from .furniture import MeshBuilder, rot_x, rot_z
from .scanner import LidarModel, drop_probability

# SemanticKITTI semantic ids (semantic-kitti.yaml).
SEMANTIC = {"unlabeled": 0, "car": 10, "bicycle": 11, "truck": 18, "person": 30,
            "bicyclist": 31, "road": 40, "parking": 44, "sidewalk": 48, "building": 50,
            "fence": 51, "vegetation": 70, "trunk": 71, "terrain": 72, "pole": 80,
            "traffic-sign": 81, "other-object": 99}
THING_CLASSES = ("car", "bicycle", "person", "bicyclist")

SENSOR_HEIGHT = 1.73  # metres above the road (KITTI's HDL-64E mounting)
EXTENT = 90.0         # the street runs +-EXTENT metres along x
BACK_ROW_START = 24.0  # the back row of lots, metres beyond the sidewalk ...
BACK_ROW_END = 50.0    # ... to here


def hdl64_elevations_deg() -> np.ndarray:
    """The HDL-64E's 64 beam elevations: upper block +2 .. -8.33 deg in 1/3 deg steps, lower
    block -8.83 .. -24.33 deg in 1/2 deg steps (the data sheet's nominal pattern)."""
    upper = 2.0 - np.arange(32) / 3.0
    lower = -8.83 - 0.5 * np.arange(32)
    return np.concatenate([upper, lower])


def hdl64_lidar() -> LidarModel:
    """The streets' sensor: the HDL-64E pattern (``hdl64_elevations_deg``, 2048 azimuth steps),
    returns from 2 to 80 m, KITTI-like range noise, and dropout that rises on surfaces seen at
    grazing angles."""
    return LidarModel(beams=64, elevations_deg=tuple(float(e) for e in hdl64_elevations_deg()),
                      azimuth_steps=2048, min_range=2.0, max_range=80.0, noise_base=0.012,
                      noise_linear=0.0002, dropout=0.03, grazing_dropout=0.5, grazing_cos=0.2,
                      frame_id="velodyne")


def perturbed_hdl64_lidar() -> LidarModel:
    """A second street sensor: ``hdl64_lidar`` pitched up 0.6 degrees, with 1600 azimuth steps,
    2.5 x the range noise and 4 x the dropout. Thresholds tuned on ``hdl64_lidar`` scans are
    checked on scans of this one (``gen-data --street --street-sensor hdl64-perturbed``): a
    rule that holds only for one sensor's exact sampling will not hold on a real one."""
    base = hdl64_lidar()
    return replace(base, elevations_deg=tuple(e + 0.6 for e in base.elevations_deg),
                   azimuth_steps=1600, noise_base=0.03, noise_linear=0.0005, dropout=0.12,
                   grazing_dropout=0.7)


STREET_SENSORS = {"hdl64": hdl64_lidar, "hdl64-perturbed": perturbed_hdl64_lidar}

# The ground beyond the sidewalks. ``flat``: level lots (a linear embankment on one side in 30 %
# of the streets). ``terraced``: the same streets, and on each side with probability 0.9 the
# lots step up 0.8-2.5 m over 2-25 m, starting 0-10 m beyond the sidewalk. Real streets are
# often like that (SemanticKITTI 000000: walls 26-47 m out stand about 1 m above the road), so
# the top beam cuts far walls at car height above their own ground; a street network trained on
# flat lots only calls such wall bands vehicles (README: The semantic junk test).
STREET_TERRAINS = ("flat", "terraced")


@dataclass
class StreetScan:
    """One scan: xyz (N, 3) float32 in the sensor frame (z up, sensor at the origin, road about
    1.73 m below); label (N,) uint32 SemanticKITTI encoding."""

    xyz: np.ndarray
    label: np.ndarray
    seed: int

    def save(self, stem: str | Path) -> tuple[Path, Path]:
        """Write ``<stem>.bin`` (x y z remission float32; remission is 0: not simulated) and
        ``<stem>.label``, SemanticKITTI's files; returns their paths."""
        stem = Path(stem)
        cloud = np.zeros((len(self.xyz), 4), dtype="<f4")
        cloud[:, :3] = self.xyz
        bin_path, label_path = stem.with_suffix(".bin"), stem.with_suffix(".label")
        cloud.tofile(bin_path)
        self.label.astype("<u4").tofile(label_path)
        return bin_path, label_path


class _Street:
    """Every surface of a street, one geometry per labelled part, and its ground height."""

    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng
        self.parts: list[tuple[np.ndarray, np.ndarray, int, int]] = []
        self.num_things = 0
        self.grade = rng.uniform(-0.03, 0.03)
        self.crossfall = rng.uniform(0.01, 0.025)
        self.half_road = rng.uniform(3.5, 7.0)
        self.kerb = rng.uniform(0.1, 0.18)
        self.sidewalk = rng.uniform(1.5, 4.0)
        self.embankment_side = 1      # the lots of this side rise ...
        self.embankment_rise = 0.0    # ... by this much (m) from the sidewalk to BACK_ROW_END
        # terraced terrain (``STREET_TERRAINS``): per side (index 0: y < 0, 1: y > 0), a step of
        # terrace_rise metres, terrace_start beyond the sidewalk, terrace_width wide
        self.terrace_rise = np.zeros(2)
        self.terrace_start = np.zeros(2)
        self.terrace_width = np.ones(2)

    def ground_z(self, x, y):
        """Height of the street's walkable surface (road, kerb-raised sidewalk and beyond)."""
        x, y = np.asarray(x, float), np.asarray(y, float)
        on_road = np.abs(y) < self.half_road
        z = self.grade * x - self.crossfall * np.abs(y)
        beyond = np.clip((np.abs(y) - self.half_road - self.sidewalk) / BACK_ROW_END, 0.0, 1.0)
        rise = np.where(np.sign(y) == self.embankment_side, self.embankment_rise * beyond, 0.0)
        side = (y > 0).astype(int)
        step = np.clip((np.abs(y) - self.half_road - self.sidewalk - self.terrace_start[side])
                       / self.terrace_width[side], 0.0, 1.0)
        rise = rise + self.terrace_rise[side] * step * step * (3.0 - 2.0 * step)  # smoothstep
        return np.where(on_road, z,
                        self.grade * x - self.crossfall * self.half_road + self.kerb + rise)

    def add(self, builder: MeshBuilder, semantic: str, thing: bool = False,
            pose: tuple[float, float, float] | None = None) -> None:
        """One labelled part; a thing gets the next instance id. ``pose`` (x, y, yaw): the
        model was built around the origin, so turn it and set it on the ground there."""
        model = builder.build(0, semantic, recentre=False)
        vertices = model.vertices
        if pose is not None:
            x, y, yaw = pose
            ground = float(self.ground_z(x, y))
            vertices = vertices.astype(np.float64) @ rot_z(yaw).T + (x, y, ground)
        instance = 0
        if thing:
            self.num_things += 1
            instance = self.num_things
        self.parts.append((vertices, model.triangles, SEMANTIC[semantic], instance))


# ---------------------------------------------------------------------------------------------
# Models, built around the origin on z = 0, facing +x.


def _extrude(b: MeshBuilder, profile_xz: np.ndarray, y0: float, y1: float) -> None:
    """A convex (x, z) profile swept from y0 to y1 (the side view of a car body)."""
    n = len(profile_xz)
    left = np.column_stack([profile_xz[:, 0], np.full(n, y0), profile_xz[:, 1]])
    right = np.column_stack([profile_xz[:, 0], np.full(n, y1), profile_xz[:, 1]])
    i = np.arange(n)
    j = (i + 1) % n
    fan = np.stack([np.zeros(n - 2, int), np.arange(1, n - 1), np.arange(2, n)], 1)
    tris = np.vstack([fan, fan[:, ::-1] + n, np.stack([i, j, j + n], 1),
                      np.stack([i, j + n, i + n], 1)])
    b.add(np.vstack([left, right]), tris, (0, 0, 0), 0)


def _wheel(b: MeshBuilder, x: float, y: float, radius: float, width: float,
           segments: int = 12) -> None:
    """A wheel standing on z = 0 at (x, y), its axle along y."""
    b.frustum(x, y - width / 2, radius, radius + width, radius, None, (0, 0, 0),
              segments=segments, rot=rot_x(-math.pi / 2), pivot=(x, y - width / 2, radius))


def car(rng: np.random.Generator) -> MeshBuilder:
    """A car or (one in five) a van: body and cabin profiles swept across the width, wheels."""
    van = rng.random() < 0.2
    length = rng.uniform(4.6, 5.4) if van else rng.uniform(3.6, 4.9)
    width = rng.uniform(1.8, 2.05) if van else rng.uniform(1.6, 1.9)
    height = rng.uniform(1.9, 2.3) if van else rng.uniform(1.35, 1.65)
    belt = rng.uniform(0.8, 0.95)
    half = length / 2
    b = MeshBuilder()
    body = np.array([[-half, 0.3], [half, 0.3], [half, belt - 0.1], [half - 0.15, belt],
                     [-half + 0.1, belt], [-half, belt - 0.1]])
    _extrude(b, body, -width / 2, width / 2)
    if van:
        cabin = np.array([[-half + 0.05, belt], [half - 0.6, belt], [half - 1.1, height],
                          [-half + 0.1, height]])
    else:
        hood, trunk = rng.uniform(0.9, 1.4), rng.uniform(0.5, 1.0)
        cabin = np.array([[-half + trunk, belt], [half - hood, belt],
                          [half - hood - 0.6, height], [-half + trunk + 0.4, height]])
    _extrude(b, cabin, -width / 2 + 0.08, width / 2 - 0.08)
    for sx in (-1, 1):
        for sy in (-1, 1):
            _wheel(b, sx * (half - 0.8), sy * (width / 2 - 0.12), 0.32, 0.2)
    return b


def person(rng: np.random.Generator, b: MeshBuilder | None = None, base=(0.0, 0.0, 0.0),
           seated: bool = False) -> MeshBuilder:
    """A pedestrian (one in ten a child) standing at ``base``, or a rider's body and arms when
    ``seated`` (its hips at ``base``)."""
    s = rng.uniform(0.9, 1.1) if rng.random() > 0.1 else rng.uniform(0.65, 0.8)
    b = b or MeshBuilder()
    x, y, z = base
    if not seated:
        stride = rng.uniform(0.0, 0.25) * s
        for side, dx in ((-1, stride), (1, -stride)):
            b.frustum(x + dx, y + side * 0.1 * s, z, z + 0.85 * s, 0.06 * s, 0.08 * s, (0, 0, 0),
                      segments=8)
        z += 0.85 * s
    b.frustum(x, y, z, z + 0.6 * s, 0.17 * s, 0.2 * s, (0, 0, 0), segments=10,
              scale_xy=(0.65, 1.0))
    for side in (-1, 1):
        b.frustum(x + 0.05 * rng.normal(), y + side * 0.25 * s, z + 0.05 * s, z + 0.58 * s,
                  0.045 * s, 0.05 * s, (0, 0, 0), segments=6)
    b.frustum(x, y, z + 0.62 * s, z + 0.85 * s, 0.09 * s, 0.1 * s, (0, 0, 0), segments=8)
    return b


def bicycle(rng: np.random.Generator, rider: bool) -> MeshBuilder:
    """A bicycle along x, with a seated rider when ``rider``."""
    b = MeshBuilder()
    r = rng.uniform(0.3, 0.36)
    for cx in (-0.55, 0.55):
        _wheel(b, cx, 0.0, r, 0.04, segments=14)
    b.box((-0.55, -0.02, r), (0.45, 0.02, r + 0.45), (0, 0, 0))
    b.box((0.4, -0.25, r + 0.55), (0.45, 0.25, r + 0.6), (0, 0, 0))
    if rider:
        seat = r + 0.5
        person(rng, b, (-0.2, 0.0, seat), seated=True)
        for side in (-1, 1):  # legs down to the pedals
            b.frustum(-0.1, side * 0.12, r, seat, 0.06, 0.08, (0, 0, 0), segments=8)
    return b


def pole(rng: np.random.Generator, kind: str) -> MeshBuilder:
    b = MeshBuilder()
    if kind == "sign" and rng.random() < 0.25:  # a board on two posts (direction, notices)
        w, tall = rng.uniform(1.0, 2.5), rng.uniform(0.6, 1.5)
        bottom = rng.uniform(0.8, 2.0)
        for post in (-0.4 * w, 0.4 * w):
            b.frustum(0, post, 0, bottom + tall, 0.04, None, (0, 0, 0), segments=8)
        b.box((-0.03, -w / 2, bottom), (0.03, w / 2, bottom + tall), (0, 0, 0))
    elif kind == "sign":
        h = rng.uniform(2.0, 3.2)
        b.frustum(0, 0, 0, h, 0.035, None, (0, 0, 0), segments=8)
        w = rng.uniform(0.4, 0.9)
        b.box((-0.02, -w / 2, h - w), (0.02, w / 2, h), (0, 0, 0))
    else:
        h = rng.uniform(4.0, 9.0)
        b.frustum(0, 0, 0, h, rng.uniform(0.08, 0.16), rng.uniform(0.05, 0.08), (0, 0, 0),
                  segments=10)
        if kind == "light":
            arm = rng.uniform(1.0, 2.5)
            b.box((0, -0.05, h - 0.15), (arm, 0.05, h), (0, 0, 0))
    if rng.random() < 0.3:  # a box on the pole (signal cabinet, meter, bin, plate)
        size, z = rng.uniform(0.2, 0.6, 3), rng.uniform(0.6, 2.0)
        b.box((0.04, -size[1] / 2, z), (0.04 + size[0], size[1] / 2, z + size[2]), (0, 0, 0))
    return b


def leaves(rng: np.random.Generator, centre, radii, density: float, shell: float = 0.5,
           box: bool = False) -> MeshBuilder:
    """Small triangles at random orientations filling an ellipsoid (or a box) of half-sizes
    ``radii``: ``density`` leaves per cubic metre, only in the outer part, since the inside of
    a crown is mostly branches and shadow: the outer ``shell`` of the radius (ellipsoid), or
    ``shell`` x the smallest half-size + 0.3 m from the faces (box)."""
    radii = np.asarray(radii, float)
    volume = (8.0 if box else 4.0 / 3.0 * math.pi) * float(np.prod(radii))
    n = int(min(volume * density * (1.0 - (1.0 - shell) ** 3), 60000))
    if box:
        u = rng.uniform(-1.0, 1.0, (n, 3))
        depth = np.minimum.reduce([(1 - np.abs(u[:, k])) * radii[k] for k in range(3)])
        u = u[depth < shell * radii.min() + 0.3]
    else:
        d = rng.normal(size=(n, 3))
        d /= np.linalg.norm(d, axis=1, keepdims=True)
        inner = (1.0 - shell) ** 3  # volume-uniform between the inner and the outer shell
        u = d * ((inner + (1.0 - inner) * rng.random(n)) ** (1 / 3))[:, None]
    c = np.asarray(centre, float) + u * radii
    n = len(c)
    a = rng.normal(size=(n, 3))
    a /= np.linalg.norm(a, axis=1, keepdims=True)
    t = np.cross(a, rng.normal(size=(n, 3)))
    t /= np.linalg.norm(t, axis=1, keepdims=True)
    w = np.cross(a, t)
    size = rng.uniform(0.05, 0.12, n)[:, None]
    ang = rng.uniform(0, 2 * math.pi, n)[:, None] + np.array([0, 2.09, 4.19])[None]
    v = c[:, None] + size[:, :, None] * (np.cos(ang)[:, :, None] * t[:, None]
                                         + np.sin(ang)[:, :, None] * w[:, None])
    b = MeshBuilder()
    b.add(v.reshape(-1, 3), np.arange(3 * n).reshape(n, 3), (0, 0, 0), 0)
    return b


# ---------------------------------------------------------------------------------------------
# The street


def _plant(street: _Street, centre, radii, density: float, shell: float = 0.5,
           box: bool = False) -> None:
    """One vegetation part of ``leaves``; half the plants are dense (2-4 x the leaves in a
    thinner outer layer: trimmed hedges, conifers, thick shrubs), which a beam hardly enters, so
    that roughness alone does not tell foliage (real dense foliage seen from afar is a smooth
    line of returns)."""
    rng = street.rng
    if rng.random() < 0.5:
        density *= rng.uniform(2.0, 4.0)
        shell *= rng.uniform(0.3, 0.6)
    street.add(leaves(rng, centre, radii, density, shell=shell, box=box), "vegetation")


def _tree(street: _Street, x: float, y: float) -> None:
    """A trunk (its own part) and a crown of leaves above it."""
    rng = street.rng
    z0 = float(street.ground_z(x, y))
    trunk_h = rng.uniform(1.5, 3.5)
    b = MeshBuilder()
    b.frustum(x, y, z0 - 0.1, z0 + trunk_h + 0.5, rng.uniform(0.12, 0.3), 0.1, (0, 0, 0),
              segments=10)
    for _ in range(rng.integers(0, 5)):  # low branches below the crown
        zb = z0 + rng.uniform(0.5, 1.0) * trunk_h
        tilt = rot_z(rng.uniform(0, 2 * math.pi)) @ rot_x(rng.uniform(0.6, 1.2))
        b.frustum(x, y, zb, zb + rng.uniform(0.5, 1.5), rng.uniform(0.04, 0.08), 0.03,
                  (0, 0, 0), segments=6, rot=tilt, pivot=(x, y, zb))
    street.add(b, "trunk")
    rx = rng.uniform(1.2, 3.5)
    rz = rng.uniform(1.0, 3.0)
    _plant(street, (x, y, z0 + trunk_h + rz), (rx, rx * rng.uniform(0.8, 1.2), rz),
           rng.uniform(150, 400))


def _hedge(street: _Street, x0: float, x1: float, y: float) -> None:
    rng = street.rng
    h = rng.uniform(0.6, 2.2)
    w = rng.uniform(0.25, 0.7)
    z0 = float(street.ground_z(0.5 * (x0 + x1), y))
    _plant(street, (0.5 * (x0 + x1), y, z0 + h / 2), ((x1 - x0) / 2, w, h / 2),
           rng.uniform(250, 600), box=True)


def _bush(street: _Street, x: float, y: float, small: bool = False) -> None:
    rng = street.rng
    r = rng.uniform(0.25, 0.6) if small else rng.uniform(0.4, 1.5)
    z0 = float(street.ground_z(x, y))
    _plant(street, (x, y, z0 + 0.8 * r), (r, r * rng.uniform(0.7, 1.3), 0.8 * r),
           rng.uniform(200, 500), shell=1.0)


def _shrubbery(street: _Street, side: int) -> None:
    """Vegetation scattered over the lots of ``side``: single shrubs, low beds and bushes, small
    trees, from a few to many per street (real streets' far vegetation is mostly this: small
    separate patches that a spinning LiDAR cuts into small clusters)."""
    rng = street.rng
    y0 = street.half_road + street.sidewalk
    for _ in range(rng.poisson(rng.uniform(6.0, 40.0))):
        x, y = rng.uniform(-EXTENT, EXTENT), side * (y0 + rng.uniform(1.0, BACK_ROW_END))
        kind = rng.choice(["shrub", "bed", "bush", "tree"], p=[0.35, 0.2, 0.3, 0.15])
        if kind == "bed":
            size = (rng.uniform(0.5, 3.0), rng.uniform(0.4, 1.5), rng.uniform(0.15, 0.5))
            z0 = float(street.ground_z(x, y))
            _plant(street, (x, y, z0 + size[2]), size, rng.uniform(250, 600), box=True)
        elif kind == "tree":
            _tree(street, x, y)
        else:
            _bush(street, x, y, small=kind == "shrub")


def _fence(street: _Street, x0: float, x1: float, y: float) -> None:
    rng = street.rng
    h = rng.uniform(0.8, 2.0)
    z0 = float(street.ground_z(0.5 * (x0 + x1), y))
    b = MeshBuilder()
    if rng.random() < 0.4:  # a garden wall, often turning a corner into the lot
        semantic = "building"
        top = z0 + h * rng.uniform(0.4, 0.8)
        b.box((x0, y - 0.12, z0 - 0.1), (x1, y + 0.12, top), (0, 0, 0))
        if rng.random() < 0.6:
            xc = x0 if rng.random() < 0.5 else x1 - 0.24
            inward = math.copysign(rng.uniform(1.0, 6.0), y)
            lo, hi = sorted((y, y + inward))
            b.box((xc, lo, z0 - 0.1), (xc + 0.24, hi, top), (0, 0, 0))
    else:
        semantic = "fence"
        if rng.random() < 0.5:  # slats
            gap = rng.uniform(0.05, 0.15)
            for xs in np.arange(x0, x1, 0.08 + gap):
                b.box((xs, y - 0.02, z0 - 0.1), (xs + 0.08, y + 0.02, z0 + h), (0, 0, 0))
            b.box((x0, y - 0.03, z0 + h - 0.1), (x1, y + 0.03, z0 + h), (0, 0, 0))
        else:
            b.box((x0, y - 0.02, z0 - 0.1), (x1, y + 0.02, z0 + h), (0, 0, 0))
    street.add(b, semantic)


def _building(street: _Street, x0: float, x1: float, y: float, side: int) -> None:
    """A building whose façade runs from x0 to x1 at |y| = y on ``side`` (+1 left, -1 right)."""
    rng = street.rng
    h = rng.uniform(3.5, 20.0)
    depth = rng.uniform(8.0, 15.0)
    z0 = float(street.ground_z(0.5 * (x0 + x1), side * y)) - 0.2
    b = MeshBuilder()
    lo_y, hi_y = (y, y + depth) if side > 0 else (-y - depth, -y)
    b.box((x0, lo_y, z0), (x1, hi_y, z0 + h), (0, 0, 0))
    face = side * y  # the façade plane
    out = -side        # towards the street
    floors = max(1, int(h // 3))
    if rng.random() < 0.5:  # balconies
        for f in range(1, floors):
            for xb in np.arange(x0 + 1.0, x1 - 2.0, rng.uniform(3.0, 6.0)):
                yy = sorted((face, face + out * rng.uniform(0.8, 1.5)))
                b.box((xb, yy[0], z0 + 3 * f),
                      (xb + rng.uniform(1.5, 3.0), yy[1], z0 + 3 * f + 1.0), (0, 0, 0))
    if rng.random() < 0.5:  # pillars / bay windows
        for xb in np.arange(x0 + 0.5, x1 - 0.5, rng.uniform(2.5, 6.0)):
            yy = sorted((face, face + out * rng.uniform(0.2, 0.6)))
            b.box((xb, yy[0], z0), (xb + rng.uniform(0.3, 1.2), yy[1], z0 + rng.uniform(2.5, h)),
                  (0, 0, 0))
    if rng.random() < 0.6:  # steps at the door
        xd = rng.uniform(x0, max(x0, x1 - 2.0))
        yy = sorted((face, face + out * rng.uniform(0.5, 1.5)))
        b.box((xd, yy[0], z0), (xd + rng.uniform(1.2, 2.5), yy[1], z0 + rng.uniform(0.3, 0.7)),
              (0, 0, 0))
    street.add(b, "building")


def _ground(street: _Street) -> None:
    """Road, kerbs and sidewalks as flat parts; the yards and lots beyond as rough terrain
    (rising on one side when the street has an embankment: ``_Street.ground_z``)."""
    rng = street.rng
    hr, sw = street.half_road, street.sidewalk
    xs = np.arange(-EXTENT, EXTENT + 1e-6, 2.0)

    def strip(y0: float, y1: float, semantic: str, rough: float = 0.0) -> None:
        ys = np.linspace(y0, y1, max(2, int(abs(y1 - y0) / 1.0) + 1))
        gx, gy = np.meshgrid(xs, ys, indexing="ij")
        gz = street.ground_z(gx, gy + np.sign(gy) * 1e-3)
        if rough:
            gz = gz + rough * rng.standard_normal(gz.shape)
        b = MeshBuilder()
        b.sheet(np.stack([gx, gy, gz], -1), (0, 0, 0))
        street.add(b, semantic)

    strip(-hr, hr, "road")
    for side in (-1, 1):
        kerb = MeshBuilder()
        zr = street.ground_z(xs, side * (hr - 1e-3))
        grid = np.stack([np.stack([xs, np.full_like(xs, side * hr), zr], -1),
                         np.stack([xs, np.full_like(xs, side * hr), zr + street.kerb], -1)], 1)
        kerb.sheet(grid, (0, 0, 0))
        street.add(kerb, "sidewalk")
        strip(side * hr, side * (hr + sw), "sidewalk")
        strip(side * (hr + sw), side * (hr + sw + BACK_ROW_END), "terrain", rough=0.04)


def _street_furniture(street: _Street, side: int) -> None:
    """Trees, street lights, poles, signs and bins along the kerb of ``side``; pedestrians and
    parked bicycles on its sidewalk."""
    rng = street.rng
    hr, sw = street.half_road, street.sidewalk
    y_edge = side * (hr + 0.5)
    x = -EXTENT + rng.uniform(0, 10)
    trees = rng.random() < 0.6
    while x < EXTENT:
        kind = rng.choice(["tree", "light", "sign", "pole", "bin", "none"],
                          p=[0.35 if trees else 0.0, 0.2, 0.12, 0.08, 0.05,
                             0.2 + (0.0 if trees else 0.35)])
        if kind == "tree":
            _tree(street, x, y_edge + side * rng.uniform(0.0, 0.5))
        elif kind in ("light", "sign", "pole"):
            street.add(pole(rng, kind), "traffic-sign" if kind == "sign" else "pole",
                       pose=(x, y_edge, rng.uniform(0, 2 * math.pi)))
        elif kind == "bin":
            b = MeshBuilder()
            b.box((-0.3, -0.3, 0.0), (0.3, 0.3, rng.uniform(0.8, 1.2)), (0, 0, 0))
            street.add(b, "other-object", pose=(x, side * (hr + sw - 0.5), rng.uniform(0, math.pi)))
        x += rng.uniform(5.0, 15.0)
    # people on the sidewalk, parked bicycles
    for _ in range(rng.poisson(2.0)):
        px = rng.uniform(-40, 40)
        py = side * rng.uniform(hr + 0.6, hr + sw - 0.3)
        pose = (px, py, rng.uniform(0, 2 * math.pi))
        if rng.random() < 0.2:
            street.add(bicycle(rng, rider=False), "bicycle", thing=True, pose=pose)
        else:
            street.add(person(rng), "person", thing=True, pose=pose)


def _vehicles(street: _Street, sensor_y: float) -> None:
    """Cars parked along both kerbs (one to 3 m apart), cars and cyclists in the lanes, and
    pedestrians crossing; none where the sensor's own car is."""
    rng = street.rng
    hr = street.half_road
    for side in (-1, 1):
        if rng.random() < 0.75:
            x = -EXTENT + rng.uniform(0, 8)
            while x < EXTENT:
                model = car(rng)
                length = float(model.build(0, "car", recentre=False).size[0])
                if rng.random() < 0.7:
                    yaw = rng.normal(0, 0.05) + (0 if rng.random() < 0.5 else math.pi)
                    street.add(model, "car", thing=True,
                               pose=(x + length / 2, side * (hr - 1.1), yaw))
                x += length + rng.uniform(1.0, 3.0)
    for _ in range(rng.poisson(3.0)):
        y = rng.uniform(-hr + 2.4, hr - 2.4)
        x = rng.uniform(-60, 60)
        if abs(x) < 4.0 and abs(y - sensor_y) < 2.2:
            continue
        pose = (x, y, rng.normal(0, 0.05) + (0 if y < 0 else math.pi))
        if rng.random() < 0.15:
            street.add(bicycle(rng, rider=True), "bicyclist", thing=True, pose=pose)
        else:
            street.add(car(rng), "car", thing=True, pose=pose)
    for _ in range(rng.poisson(0.7)):
        x = rng.uniform(-40, 40)
        if abs(x) < 3:
            continue
        street.add(person(rng), "person", thing=True,
                   pose=(x, rng.uniform(-hr + 0.5, hr - 0.5), rng.uniform(0, 2 * math.pi)))


def _lots(street: _Street, side: int) -> None:
    """What lines the street beyond the sidewalk: buildings, yards, cross streets."""
    rng = street.rng
    y0 = street.half_road + street.sidewalk
    x = -EXTENT
    while x < EXTENT:
        kind = rng.choice(["building", "yard", "gap"], p=[0.5, 0.35, 0.15])
        length = rng.uniform(6.0, 30.0) if kind != "gap" else rng.uniform(6.0, 14.0)
        x1 = min(x + length, EXTENT)
        if kind == "building":
            setback = 0.0 if rng.random() < 0.5 else rng.uniform(1.0, 8.0)
            _building(street, x, x1, y0 + setback, side)
            if setback > 2.0 and rng.random() < 0.6:
                _hedge(street, x, x1, side * (y0 + rng.uniform(0.3, 1.0)))
            elif setback > 0 and rng.random() < 0.5:
                _fence(street, x, x1, side * (y0 + 0.2))
        elif kind == "yard":
            if rng.random() < 0.5:
                _hedge(street, x, x1, side * (y0 + rng.uniform(0.3, 1.0)))
            elif rng.random() < 0.5:
                _fence(street, x, x1, side * (y0 + 0.2))
            for _ in range(rng.poisson(1.5)):
                _bush(street, rng.uniform(x, x1), side * (y0 + rng.uniform(1.5, 10.0)))
            for _ in range(rng.poisson(1.0)):
                _tree(street, rng.uniform(x, x1), side * (y0 + rng.uniform(2.0, 12.0)))
            if rng.random() < 0.4:
                _shed(street, rng.uniform(x, x1), side * (y0 + rng.uniform(4.0, 14.0)))
            if rng.random() < 0.35:  # a car in the driveway, often behind the hedge or fence
                yaw = math.pi / 2 if rng.random() < 0.6 else 0.0
                _parked_car(street, rng.uniform(x + 2.5, max(x + 2.5, x1 - 2.5)),
                            side * (y0 + rng.uniform(3.0, 9.0)), yaw)
            if rng.random() < 0.5:
                _building(street, x, x1, y0 + rng.uniform(10.0, 20.0), side)
        elif rng.random() < 0.6:
            _cross_street(street, x, x1, side)
        x = x1 + (rng.uniform(0.0, 4.0) if rng.random() < 0.5 else 0.0)
    _back_row(street, side)


def _shed(street: _Street, x: float, y: float) -> None:
    """A small building (shed, garage, kiosk, porch) standing free in a lot: a box of 2-5 m with
    a flat roof, half of them overhanging. Seen from the street its clusters are as wide and tall as a van's, and
    they are building, not objects."""
    rng = street.rng
    w, d, h = rng.uniform(2.0, 5.0), rng.uniform(2.0, 4.5), rng.uniform(2.0, 3.0)
    yaw = rng.uniform(0, math.pi)
    b = MeshBuilder()
    b.box((-w / 2, -d / 2, -0.1), (w / 2, d / 2, h), (0, 0, 0))
    if rng.random() < 0.5:  # a roof overhang
        b.box((-w / 2 - 0.3, -d / 2 - 0.3, h), (w / 2 + 0.3, d / 2 + 0.3, h + 0.15), (0, 0, 0))
    street.add(b, "building", pose=(x, y, yaw))


def _parked_car(street: _Street, x: float, y: float, yaw: float) -> None:
    street.add(car(street.rng), "car", thing=True, pose=(x, y, yaw + street.rng.normal(0, 0.08)))


def _cross_street(street: _Street, x0: float, x1: float, side: int) -> None:
    """A side street in the gap from x0 to x1, running away from the main one on ``side`` to
    the back row: asphalt, and cars parked in line along both edges."""
    rng = street.rng
    y0 = street.half_road + street.sidewalk
    gx, gy = np.meshgrid([x0, x1], side * np.linspace(y0, y0 + BACK_ROW_START, 25),
                         indexing="ij")
    b = MeshBuilder()  # 2 cm above the lots' rough terrain, following its rise
    b.sheet(np.stack([gx, gy, street.ground_z(gx, gy) + 0.02], -1), (0, 0, 0))
    street.add(b, "road")
    for edge in (x0 + 1.2, x1 - 1.2):
        y = y0 + rng.uniform(3.0, 8.0)
        while y < y0 + BACK_ROW_START - 3.0 and x1 - x0 > 6.5:
            if rng.random() < 0.6:
                _parked_car(street, edge, side * (y + 2.4), math.pi / 2)
            y += rng.uniform(5.0, 7.5)


def _back_row(street: _Street, side: int) -> None:
    """What lies 24-50 m beyond the sidewalk, seen through gaps, over walls and across yards
    (far clusters in a real scan are of every kind): buildings, a back lane with parked cars,
    trees and bushes, people."""
    rng = street.rng
    y0 = street.half_road + street.sidewalk + BACK_ROW_START
    x = -EXTENT
    while x < EXTENT:
        length = rng.uniform(8.0, 30.0)
        x1 = min(x + length, EXTENT)
        kind = rng.choice(["building", "lot", "trees"], p=[0.5, 0.3, 0.2])
        if kind == "building":
            _building(street, x, x1, y0 + rng.uniform(0.0, 10.0), side)
        elif kind == "lot":
            xc = x + rng.uniform(1.0, 4.0)
            while xc < x1 - 4.0:
                if rng.random() < 0.7:
                    yaw = math.pi / 2 if rng.random() < 0.5 else 0.0
                    _parked_car(street, xc + 2.5, side * (y0 + rng.uniform(2.0, 8.0)), yaw)
                xc += rng.uniform(3.0, 6.0)
            if rng.random() < 0.4:
                _shed(street, rng.uniform(x, x1), side * (y0 + rng.uniform(6.0, 12.0)))
            if rng.random() < 0.4:
                street.add(person(rng), "person", thing=True,
                           pose=(rng.uniform(x, x1), side * (y0 + rng.uniform(0.0, 10.0)),
                                 rng.uniform(0, 2 * math.pi)))
        else:
            for _ in range(1 + rng.poisson(1.5)):
                _tree(street, rng.uniform(x, x1), side * (y0 + rng.uniform(0.0, 12.0)))
        for _ in range(rng.poisson(0.8)):
            _bush(street, rng.uniform(x, x1), side * (y0 + rng.uniform(-4.0, 8.0)))
        x = x1 + rng.uniform(0.0, 6.0)


def build_street(seed: int, terrain: str = "flat") -> tuple[_Street, float]:
    """The street of ``seed`` on ``terrain`` (``STREET_TERRAINS``); returns it and the sensor's
    y (in a lane, at x = 0). The terrain has its own random stream, so a seed gives the same
    layout on every terrain."""
    if terrain not in STREET_TERRAINS:
        raise ValueError(f"unknown street terrain {terrain!r}; "
                         f"one of {', '.join(STREET_TERRAINS)}")
    rng = np.random.default_rng([seed, 0x57EE7])
    street = _Street(rng)
    street.embankment_side = int(rng.choice([-1, 1]))
    street.embankment_rise = rng.uniform(0.5, 3.0) if rng.random() < 0.3 else 0.0
    if terrain == "terraced":
        steps = np.random.default_rng([seed, 0x7E22A])
        street.terrace_rise = np.where(steps.random(2) < 0.9, steps.uniform(0.8, 2.5, 2), 0.0)
        street.terrace_start = steps.uniform(0.0, 10.0, 2)
        street.terrace_width = steps.uniform(2.0, 25.0, 2)
    _ground(street)
    # in a lane, at least 1.4 m from the cars parked along the kerbs (their inner side is at
    # most half_road - 2.1 m out); a road narrower than 7 m puts it on the centre line
    lane = max(0.0, street.half_road - 3.5)
    sensor_y = rng.uniform(-lane, lane)
    for side in (-1, 1):
        _lots(street, side)
        _shrubbery(street, side)
        _street_furniture(street, side)
    _vehicles(street, sensor_y)
    return street, sensor_y


def scan_street(seed: int, lidar: LidarModel | None = None, terrain: str = "flat") -> StreetScan:
    """Build the street of ``seed`` on ``terrain`` and ray-cast one revolution of the LiDAR
    (default :func:`hdl64_lidar`) at x = 0."""
    import open3d as o3d

    lidar = lidar or hdl64_lidar()
    street, sensor_y = build_street(seed, terrain)
    rng = np.random.default_rng([seed, 0x5CA7])
    scene = o3d.t.geometry.RaycastingScene()
    semantic = np.empty(len(street.parts), np.uint32)
    instance = np.empty(len(street.parts), np.uint32)
    for k, (v, t, sem, inst) in enumerate(street.parts):
        gid = scene.add_triangles(o3d.core.Tensor(np.ascontiguousarray(v, np.float32)),
                                  o3d.core.Tensor(np.ascontiguousarray(t, np.uint32)))
        if gid != k:
            raise RuntimeError(f"open3d returned geometry id {gid} for part {k}")
        semantic[k], instance[k] = sem, inst
    origin = np.array([0.0, sensor_y, float(street.ground_z(0.0, sensor_y)) + SENSOR_HEIGHT])
    yaw = rng.uniform(-0.15, 0.15)
    sensor_dirs = lidar.directions().reshape(-1, 3)
    dirs = sensor_dirs @ rot_z(yaw).T
    rays = np.empty((len(dirs), 6), np.float32)
    rays[:, :3], rays[:, 3:] = origin, dirs
    hits = scene.cast_rays(o3d.core.Tensor(rays), nthreads=1)
    t = hits["t_hit"].numpy().astype(np.float64)
    ok = np.isfinite(t) & (t >= lidar.min_range) & (t <= lidar.max_range)
    normal = hits["primitive_normals"].numpy().astype(np.float64)
    ok &= rng.random(len(t)) >= drop_probability(lidar, normal, dirs)
    idx = np.flatnonzero(ok)
    r = t[idx] + lidar.sigma(t[idx]) * rng.standard_normal(len(idx))
    # the sensor frame: yaw undone, so x is the sensor's forward axis
    xyz = (sensor_dirs[idx] * r[:, None]).astype(np.float32)
    gid = hits["geometry_ids"].numpy()[idx].astype(np.int64)
    label = semantic[gid] | (instance[gid] << 16)
    return StreetScan(xyz, label.astype(np.uint32), seed)


def generate_streets(outdir: str | Path, num_scans: int, seed: int = 0,
                     progress: bool = True, sensor: str = "hdl64",
                     terrain: str = "flat") -> list[Path]:
    """Write ``street_<seed>.bin`` / ``.label`` for seeds ``seed .. seed + num_scans - 1``,
    streets on ``terrain`` (``STREET_TERRAINS``) scanned by ``STREET_SENSORS[sensor]``."""
    lidar = STREET_SENSORS[sensor]()
    from tqdm import tqdm

    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    paths = []
    for s in tqdm(range(seed, seed + num_scans), disable=not progress, unit="scan"):
        paths.append(scan_street(s, lidar, terrain).save(outdir / f"street_{s:06d}")[0])
    return paths
