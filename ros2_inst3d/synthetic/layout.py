"""Rooms and furniture layouts for the synthetic scene generator.

A room is rectangular or L-shaped (the bounding rectangle minus one corner notch), 3-10 m a side,
in its own frame: metres, z up, floor at z = 0, walls axis-aligned, no ceiling (the sensors never
need one: rays that leave through the top are lost like rays through a window). Doors and
windows are openings in the walls with frames.

The layouts are built to make grouping hard on purpose, the way real rooms are: chairs pushed
under and around tables (a set of identical chairs), cabinets and bookshelves side by side
touching, desks in touching rows, counters on top of cabinet runs, nightstands against beds,
pictures and curtains flat on the walls, and small clutter (ignore label) on every surface.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ..classes import IGNORE_LABEL
from . import furniture as fm
from .furniture import Model

# Footprints may touch or overlap by this much (metres): contact is wanted, interpenetration not.
CONTACT_TOLERANCE = 0.006

ROOM_KINDS = ("living", "bedroom", "office", "dining", "kitchen", "conference", "classroom",
              "bathroom", "storage")


@dataclass
class Opening:
    """A hole in wall ``wall`` (index of the polygon edge): ``s0..s1`` metres along the edge from
    its first vertex, ``z0..z1`` metres above the floor; kind "door" or "window"."""

    wall: int
    s0: float
    s1: float
    z0: float
    z1: float
    kind: str


@dataclass
class Room:
    """Room geometry. polygon: (P, 2) float64 counter-clockwise floor outline, metres; rects: the
    floor as 1-2 axis-aligned rectangles (x0, y0, x1, y1); notch: the rectangle cut from the
    bounding box of an L-shaped room (None for a rectangle); height: wall height, metres."""

    kind: str
    polygon: np.ndarray
    rects: list[tuple[float, float, float, float]]
    notch: tuple[float, float, float, float] | None
    height: float
    openings: list[Opening] = field(default_factory=list)

    @property
    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """(lo (2,), hi (2,)) of the floor, metres."""
        return self.polygon.min(axis=0), self.polygon.max(axis=0)

    @property
    def area(self) -> float:
        return float(sum((x1 - x0) * (y1 - y0) for x0, y0, x1, y1 in self.rects))

    def wall(self, i: int) -> tuple[np.ndarray, np.ndarray, float, np.ndarray]:
        """Edge ``i``: (start (2,), unit direction (2,), length, inward unit normal (2,))."""
        p0 = self.polygon[i]
        p1 = self.polygon[(i + 1) % len(self.polygon)]
        d = p1 - p0
        length = float(np.hypot(*d))
        t = d / length
        return p0, t, length, np.array([-t[1], t[0]])

    @property
    def num_walls(self) -> int:
        return int(len(self.polygon))

    def contains(self, xy: np.ndarray, margin: float = 0.0) -> np.ndarray:
        """(N,) bool: points (N, 2) inside the floor, at least ``margin`` metres from the walls."""
        xy = np.atleast_2d(xy)
        lo, hi = self.bounds
        inside = np.all((xy >= lo + margin) & (xy <= hi - margin), axis=1)
        if self.notch is not None:
            nx0, ny0, nx1, ny1 = self.notch
            inside &= ~((xy[:, 0] > nx0 - margin) & (xy[:, 0] < nx1 + margin)
                        & (xy[:, 1] > ny0 - margin) & (xy[:, 1] < ny1 + margin))
        return inside

    def convex_corners(self) -> list[int]:
        """Polygon vertex indices with a 90° interior angle (where corner pieces go)."""
        out = []
        n = len(self.polygon)
        for i in range(n):
            a, b, c = self.polygon[i - 1], self.polygon[i], self.polygon[(i + 1) % n]
            t_in, t_out = b - a, c - b
            if t_in[0] * t_out[1] - t_in[1] * t_out[0] > 0:
                out.append(i)
        return out


def make_room(rng: np.random.Generator, size_range=(3.0, 10.0), l_shape_prob: float = 0.35,
              height_range=(2.4, 3.0), kind: str | None = None) -> Room:
    """A random rectangular or L-shaped room with 1-2 doors and 0-3 windows.

    size_range: (min, max) side length of the bounding rectangle, metres. kind: one of
    ROOM_KINDS, or None to choose from the size.
    """
    lo_size, hi_size = size_range
    if not (0 < lo_size <= hi_size):
        raise ValueError(f"room size_range must be 0 < min <= max metres, got {size_range}")
    w, l = rng.uniform(lo_size, hi_size, 2)
    height = float(rng.uniform(*height_range))
    notch = None
    min_arm = 1.6
    if rng.random() < l_shape_prob and min(w, l) >= 2 * min_arm:
        nw = rng.uniform(min_arm * 0.6, w - min_arm)
        nl = rng.uniform(min_arm * 0.6, l - min_arm)
        corner = int(rng.integers(4))
        nx0, nx1 = (w - nw, w) if corner in (1, 2) else (0.0, nw)
        ny0, ny1 = (l - nl, l) if corner in (2, 3) else (0.0, nl)
        notch = (float(nx0), float(ny0), float(nx1), float(ny1))
    if notch is None:
        polygon = np.array([[0, 0], [w, 0], [w, l], [0, l]], dtype=np.float64)
        rects = [(0.0, 0.0, float(w), float(l))]
    else:
        polygon, rects = _l_shape(w, l, notch)
    area = sum((x1 - x0) * (y1 - y0) for x0, y0, x1, y1 in rects)
    if kind is None:
        # living, bedroom, office, dining, kitchen, conference, classroom, bathroom, storage
        weights = np.array([1.0, 1.0, 1.0, 0.8, 0.8, 0.6, 0.5, 0.0, 0.4])
        if area < 16:
            weights[5] = weights[6] = 0.1
        if area < 20:
            weights[7] = 3.0 if area < 10 else 0.8
        kind = ROOM_KINDS[int(rng.choice(len(ROOM_KINDS), p=weights / weights.sum()))]
    elif kind not in ROOM_KINDS:
        raise ValueError(f"unknown room kind {kind!r}; choose one of {ROOM_KINDS}")
    room = Room(kind, polygon, rects, notch, height)
    _add_openings(room, rng)
    return room


def _l_shape(w: float, l: float, notch) -> tuple[np.ndarray, list]:
    nx0, ny0, nx1, ny1 = notch
    box = [(0.0, 0.0), (w, 0.0), (w, l), (0.0, l)]
    # Replace the bounding-box corner inside the notch with the notch's three other corners.
    corners = {(0.0, 0.0): [(0.0, ny1), (nx1, ny1), (nx1, 0.0)],
               (w, 0.0): [(nx0, 0.0), (nx0, ny1), (w, ny1)],
               (w, l): [(w, ny0), (nx0, ny0), (nx0, l)],
               (0.0, l): [(nx1, l), (nx1, ny0), (0.0, ny0)]}
    points: list[tuple[float, float]] = []
    for c in box:
        inside = nx0 <= c[0] <= nx1 and ny0 <= c[1] <= ny1
        points.extend(corners[c] if inside else [c])
    polygon = np.array(points, dtype=np.float64)
    # Two rectangles covering the L: the full-width band away from the notch, and the rest.
    if ny0 == 0.0:
        rects = [(0.0, ny1, w, l), (nx1, 0.0, w, ny1) if nx0 == 0.0 else (0.0, 0.0, nx0, ny1)]
    else:
        rects = [(0.0, 0.0, w, ny0), (nx1, ny0, w, l) if nx0 == 0.0 else (0.0, ny0, nx0, l)]
    return polygon, [tuple(float(v) for v in r) for r in rects]


def _add_openings(room: Room, rng: np.random.Generator) -> None:
    def free(wall: int, s0: float, s1: float) -> bool:
        return all(o.wall != wall or s1 + 0.25 < o.s0 or s0 > o.s1 + 0.25 for o in room.openings)

    lengths = np.array([room.wall(i)[2] for i in range(room.num_walls)])
    n_doors = 1 if rng.random() < 0.75 else 2
    n_windows = int(rng.integers(0, 4)) if room.kind != "bathroom" else int(rng.integers(0, 2))
    for kind, count in (("door", n_doors), ("window", n_windows)):
        for _ in range(count):
            for _attempt in range(20):
                wall = int(rng.choice(len(lengths), p=lengths / lengths.sum()))
                if kind == "door":
                    width, z0 = rng.uniform(0.8, 1.0), 0.0
                    z1 = min(rng.uniform(2.0, 2.1), room.height - 0.15)
                else:
                    width = rng.uniform(0.6, 1.8)
                    z0 = rng.uniform(0.7, 1.0)
                    z1 = min(z0 + rng.uniform(0.8, 1.4), room.height - 0.2)
                length = lengths[wall]
                if length < width + 0.5:
                    continue
                s0 = rng.uniform(0.25, length - width - 0.25)
                if free(wall, s0, s0 + width):
                    room.openings.append(Opening(wall, float(s0), float(s0 + width), float(z0),
                                                 float(z1), kind))
                    break


# ---------------------------------------------------------------------------------------------
# Placed objects


@dataclass
class Placed:
    """A model placed in the room: ``vertices_room = R(yaw) @ v + position``.

    semantic: ScanNet-20 class or IGNORE_LABEL. role: why it is there ("table_group", ...), for
    the meta. footprint: (4, 2) ground rectangle in the room frame; z: (z_min, z_max) metres.
    obstacle: whether the sensor trajectory must keep out of its footprint.
    """

    model: Model
    yaw: float
    position: np.ndarray
    role: str
    footprint: np.ndarray
    z: tuple[float, float]
    obstacle: bool = True

    def __post_init__(self) -> None:
        self.aabb = (*self.footprint.min(axis=0), *self.footprint.max(axis=0))

    @property
    def semantic(self) -> int:
        return self.model.class_id

    def rotation(self) -> np.ndarray:
        return fm.rot_z(self.yaw)

    def vertices(self) -> np.ndarray:
        """(V, 3) float32 vertices in the room frame, metres."""
        return (self.model.vertices.astype(np.float64) @ self.rotation().T
                + self.position).astype(np.float32)

    def box(self) -> tuple[np.ndarray, np.ndarray, float]:
        """Oriented bounding box of the model: (centre (3,), size (3,), yaw), room frame."""
        v = self.model.vertices
        lo, hi = v.min(axis=0).astype(np.float64), v.max(axis=0).astype(np.float64)
        centre = self.rotation() @ (0.5 * (lo + hi)) + self.position
        return centre, hi - lo, float(self.yaw)


def footprint_of(model: Model, yaw: float, position) -> tuple[np.ndarray, tuple[float, float]]:
    v = model.vertices
    lo, hi = v.min(axis=0).astype(np.float64), v.max(axis=0).astype(np.float64)
    corners = np.array([[lo[0], lo[1]], [hi[0], lo[1]], [hi[0], hi[1]], [lo[0], hi[1]]])
    c, s = math.cos(yaw), math.sin(yaw)
    rot = np.array([[c, -s], [s, c]])
    position = np.asarray(position, dtype=np.float64)
    return corners @ rot.T + position[:2], (float(lo[2] + position[2]), float(hi[2] + position[2]))


def polygons_overlap(a: np.ndarray, b: np.ndarray, tolerance: float = CONTACT_TOLERANCE) -> bool:
    """Separating-axis test for two convex polygons (K, 2) (counter-clockwise or not): True when
    they overlap by more than ``tolerance`` metres along every axis."""
    for poly in (a, b):
        edges = np.roll(poly, -1, axis=0) - poly
        normals = np.stack([-edges[:, 1], edges[:, 0]], axis=1)
        norms = np.linalg.norm(normals, axis=1)
        normals = normals[norms > 1e-12] / norms[norms > 1e-12, None]
        pa, pb = a @ normals.T, b @ normals.T
        overlap = np.minimum(pa.max(0), pb.max(0)) - np.maximum(pa.min(0), pb.min(0))
        if np.any(overlap <= tolerance):
            return False
    return True


def _rect(x0: float, y0: float, x1: float, y1: float) -> np.ndarray:
    return np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], dtype=np.float64)


def _yaw_of(direction: np.ndarray) -> float:
    return math.atan2(direction[1], direction[0])


class Layout:
    """Places models in a room without collisions (touching allowed)."""

    def __init__(self, room: Room, rng: np.random.Generator, mesh_prob: float) -> None:
        self.room = room
        self.rng = rng
        self.mesh_prob = mesh_prob
        self.objects: list[Placed] = []
        # Regions kept free (door swings): (footprint, z range).
        self.keep_out: list[tuple[np.ndarray, tuple[float, float]]] = []
        self._wall_lengths = np.array([room.wall(i)[2] for i in range(room.num_walls)])
        self._add_openings()

    # -- checks -------------------------------------------------------------------------------
    def inside_room(self, footprint: np.ndarray) -> bool:
        lo, hi = self.room.bounds
        t = CONTACT_TOLERANCE
        if np.any(footprint < lo - t) or np.any(footprint > hi + t):
            return False
        return self.room.notch is None or not polygons_overlap(footprint,
                                                               _rect(*self.room.notch))

    def collides(self, footprint: np.ndarray, z: tuple[float, float],
                 ignore: tuple[Placed, ...] = ()) -> bool:
        x0, y0 = footprint.min(axis=0) + CONTACT_TOLERANCE
        x1, y1 = footprint.max(axis=0) - CONTACT_TOLERANCE
        for other in self.objects:
            ox0, oy0, ox1, oy1 = other.aabb
            if x0 >= ox1 or ox0 >= x1 or y0 >= oy1 or oy0 >= y1:
                continue
            if min(z[1], other.z[1]) - max(z[0], other.z[0]) <= CONTACT_TOLERANCE:
                continue
            if any(other is i for i in ignore):
                continue
            if polygons_overlap(footprint, other.footprint):
                return True
        for region, zr in self.keep_out:
            if min(z[1], zr[1]) - max(z[0], zr[0]) > 0 and polygons_overlap(footprint, region):
                return True
        return False

    def try_add(self, model: Model, yaw: float, position, role: str,
                ignore: tuple[Placed, ...] = (), check_room: bool = True,
                obstacle: bool = True) -> Placed | None:
        position = np.asarray(position, dtype=np.float64)
        footprint, z = footprint_of(model, yaw, position)
        if check_room and not self.inside_room(footprint):
            return None
        if z[1] > self.room.height - 0.02 or self.collides(footprint, z, ignore):
            return None
        placed = Placed(model, float(yaw), position, role, footprint, z, obstacle)
        self.objects.append(placed)
        return placed

    def remove(self, placed: Placed) -> None:
        self.objects = [o for o in self.objects if o is not placed]

    # -- poses --------------------------------------------------------------------------------
    def wall_pose(self, wall: int, s: float, depth: float, gap: float = 0.0,
                  z: float = 0.0) -> tuple[float, np.ndarray]:
        """Yaw and position of a model whose back (-y) is ``gap`` metres from wall ``wall``,
        centred ``s`` metres along it."""
        p0, t, _, n = self.room.wall(wall)
        xy = p0 + t * s + n * (depth / 2 + gap)
        return _yaw_of(t), np.array([xy[0], xy[1], z])

    def random_wall(self, min_length: float) -> int | None:
        ok = self._wall_lengths >= min_length
        if not ok.any():
            return None
        p = np.where(ok, self._wall_lengths, 0.0)
        return int(self.rng.choice(len(p), p=p / p.sum()))

    def random_free_xy(self, margin: float) -> np.ndarray | None:
        lo, hi = self.room.bounds
        for _ in range(20):
            xy = self.rng.uniform(lo + margin, hi - margin) if np.all(hi - lo > 2 * margin) \
                else 0.5 * (lo + hi)
            if self.room.contains(xy[None], margin)[0]:
                return xy
        return None

    # -- openings -----------------------------------------------------------------------------
    def _add_openings(self) -> None:
        for o in self.room.openings:
            p0, t, _, n = self.room.wall(o.wall)
            width, height = o.s1 - o.s0, o.z1 - o.z0
            yaw = _yaw_of(t)
            centre = p0 + t * 0.5 * (o.s0 + o.s1)
            if o.kind == "door":
                model, swing = fm.door(self.rng, width, height)
                role = "door"
                # Keep the swing of the leaf and a passage in front of the door free.
                a = centre - t * (width / 2 + 0.1)
                b = centre + t * (width / 2 + 0.1)
                reach = n * max(swing, 0.8)
                self.keep_out.append((np.array([a, b, b + reach, a + reach]), (0.0, 2.2)))
                position = np.array([centre[0], centre[1], 0.0])
            else:
                model = fm.window(self.rng, width, height)
                role = "window"
                position = np.array([centre[0], centre[1], o.z0])
            footprint, z = footprint_of(model, yaw, position)
            self.objects.append(Placed(model, yaw, position, role, footprint, z, obstacle=False))

    # -- groups -------------------------------------------------------------------------------
    def against_wall(self, model: Model, role: str, gap_range=(0.0, 0.03), tries: int = 25,
                     wall: int | None = None) -> Placed | None:
        size = model.size
        for _ in range(tries):
            w = self.random_wall(size[0] + 0.1) if wall is None else wall
            if w is None:
                return None
            length = self._wall_lengths[w]
            if length < size[0] + 0.02:
                return None
            s = self.rng.uniform(size[0] / 2 + 0.01, length - size[0] / 2 - 0.01)
            yaw, pos = self.wall_pose(w, s, size[1], self.rng.uniform(*gap_range))
            placed = self.try_add(model, yaw, pos, role)
            if placed is not None:
                return placed
        return None

    def row_against_wall(self, models: list[Model], role: str, gap_range=(0.0, 0.01),
                         tries: int = 25) -> list[Placed]:
        """Models side by side along one wall, touching or nearly (gap_range metres)."""
        gaps = self.rng.uniform(*gap_range, size=len(models))
        total = sum(float(m.size[0]) for m in models) + float(gaps[1:].sum())
        for _ in range(tries):
            w = self.random_wall(total + 0.05)
            if w is None:
                return []
            length = self._wall_lengths[w]
            s = self.rng.uniform(0.01, length - total - 0.01)
            wall_gap = self.rng.uniform(0.0, 0.02)
            placed: list[Placed] = []
            for k, m in enumerate(models):
                if k:
                    s += gaps[k]
                yaw, pos = self.wall_pose(w, s + m.size[0] / 2, m.size[1], wall_gap)
                p = self.try_add(m, yaw, pos, role)
                if p is None:
                    break
                placed.append(p)
                s += m.size[0]
            if len(placed) == len(models):
                return placed
            for p in placed:
                self.remove(p)
        return []

    def in_corner(self, model: Model, role: str, tries: int = 8) -> Placed | None:
        corners = self.room.convex_corners()
        size = model.size
        n = len(self.room.polygon)
        for _ in range(tries):
            i = corners[int(self.rng.integers(len(corners)))]
            v = self.room.polygon[i]
            t_out = self.room.polygon[(i + 1) % n] - v
            t_out = t_out / np.linalg.norm(t_out)
            n_out = np.array([-t_out[1], t_out[0]])
            gap = self.rng.uniform(0.0, 0.02, 2)
            xy = v + t_out * (size[0] / 2 + gap[0]) + n_out * (size[1] / 2 + gap[1])
            placed = self.try_add(model, _yaw_of(t_out), (xy[0], xy[1], 0.0), role)
            if placed is not None:
                return placed
        return None

    def free_standing(self, model: Model, role: str, tries: int = 25,
                      yaw: float | None = None) -> Placed | None:
        r = 0.5 * float(np.hypot(*model.size[:2]))
        for _ in range(tries):
            xy = self.random_free_xy(min(r, 0.3))
            if xy is None:
                return None
            angle = self.rng.uniform(-math.pi, math.pi) if yaw is None else yaw
            placed = self.try_add(model, angle, (xy[0], xy[1], 0.0), role)
            if placed is not None:
                return placed
        return None

    def on_top(self, model: Model, support: Placed, role: str, local_xy=(0.0, 0.0),
               local_yaw: float = 0.0, z: float | None = None) -> Placed | None:
        """Stand ``model`` on ``support``'s top (or at height z), offset in the support frame."""
        top = support.z[1] if z is None else z
        xy = support.rotation()[:2, :2] @ np.asarray(local_xy, float) + support.position[:2]
        return self.try_add(model, support.yaw + local_yaw, (xy[0], xy[1], top), role,
                            ignore=(support,))

    def chairs_around(self, table: Placed, chair: Model, role: str) -> list[Placed]:
        """Identical chairs on the table's sides, facing it: some pushed under, some pulled out,
        neighbours close to touching."""
        rng = self.rng
        size = table.model.size
        chair_w, chair_d = float(chair.size[0]), float(chair.size[1])
        placed: list[Placed] = []
        round_table = table.model.kind.endswith("round") or "balcony" in table.model.kind
        sides = []
        if round_table:
            n = max(2, min(6, int(math.pi * size[0] / (chair_w + 0.15))))
            phase = rng.uniform(0, 2 * math.pi)
            for k in range(n):
                a = phase + 2 * math.pi * k / n
                sides.append((np.array([math.cos(a), math.sin(a)]), 0.5 * size[0], 0.0))
        else:
            for axis, sign in ((0, 1), (0, -1), (1, 1), (1, -1)):
                half_along = 0.5 * size[1 - axis]
                normal = np.zeros(2)
                normal[axis] = sign
                n_fit = int((2 * half_along - 0.1) // (chair_w + rng.uniform(0.02, 0.2)))
                if n_fit <= 0:
                    continue
                if n_fit == 1:
                    offsets = [rng.uniform(-0.05, 0.05)]
                else:
                    span = 2 * half_along - chair_w - 0.12
                    offsets = list(np.linspace(-span / 2, span / 2, n_fit))
                for off in offsets:
                    if rng.random() < 0.75:
                        sides.append((normal, 0.5 * size[axis], off))
        rot = table.rotation()[:2, :2]
        for normal, half, off in sides:
            tangent = np.array([-normal[1], normal[0]])
            pushed = rng.random() < 0.55
            if pushed:  # seat under the top, back near the edge
                dist = half + chair_d / 2 - rng.uniform(0.25, 0.6) * chair_d
            else:
                dist = half + chair_d / 2 + rng.uniform(-0.05, 0.35)
            local = normal * dist + tangent * off
            facing_local = -normal  # chair front (+y) points at the table
            yaw_local = _yaw_of(np.array([facing_local[1], -facing_local[0]]))
            yaw_local += rng.normal(0.0, 0.08 if pushed else 0.3)
            xy = rot @ local + table.position[:2]
            p = self.try_add(chair, table.yaw + yaw_local, (xy[0], xy[1], 0.0), role,
                             ignore=(table,))
            if p is None and pushed:  # the table's legs or apron are in the way: pull it out
                local = normal * (half + chair_d / 2 + 0.05) + tangent * off
                xy = rot @ local + table.position[:2]
                p = self.try_add(chair, table.yaw + yaw_local, (xy[0], xy[1], 0.0), role,
                                 ignore=(table,))
            if p is not None:
                placed.append(p)
        return placed

    def chair_at(self, desk: Placed, chair: Model, role: str) -> Placed | None:
        """A chair at the front (+y) of a desk, pushed in part way."""
        depth = float(desk.model.size[1])
        chair_d = float(chair.size[1])
        push = self.rng.uniform(0.1, 0.55) * chair_d
        local = np.array([self.rng.uniform(-0.1, 0.1), depth / 2 + chair_d / 2 - push])
        # Facing the desk: the chair's front (+y) points at -y of the desk.
        yaw = desk.yaw + math.pi + self.rng.normal(0.0, 0.15)
        xy = desk.rotation()[:2, :2] @ local + desk.position[:2]
        p = self.try_add(chair, yaw, (xy[0], xy[1], 0.0), role, ignore=(desk,))
        if p is None:
            local[1] = depth / 2 + chair_d / 2 + 0.05
            xy = desk.rotation()[:2, :2] @ local + desk.position[:2]
            p = self.try_add(chair, yaw, (xy[0], xy[1], 0.0), role, ignore=(desk,))
        return p

    def model(self, class_id: int) -> Model:
        return fm.make_model(self.rng, class_id, self.mesh_prob)

    def _chair_model(self) -> Model:
        return fm.make_model(self.rng, fm.CHAIR, self.mesh_prob)


# ---------------------------------------------------------------------------------------------
# Room recipes. Each places the furniture typical of a room kind; ``furnish`` fills the rest.


def _table_group(lay: Layout, long_table: bool = False) -> list[Placed]:
    rng = lay.rng
    if long_table:
        t = fm.table(rng)
        for _ in range(10):
            if t.kind != "table/round":
                break
            t = fm.table(rng)
    else:
        t = lay.model(fm.TABLE)
        if t.kind in ("table/coffee", "table/mesh_coffee"):
            t = fm.table(rng)
    if rng.random() < 0.25:
        table = lay.against_wall(t, "table_group")
    else:
        yaw = rng.uniform(-math.pi, math.pi) if rng.random() < 0.4 else \
            float(rng.integers(4)) * math.pi / 2 + rng.normal(0, 0.03)
        table = lay.free_standing(t, "table_group", yaw=yaw)
    if table is None:
        return []
    chair = lay._chair_model()
    if chair.kind in ("chair/armchair", "chair/mesh_armchair"):
        chair = fm.chair(rng)
    return [table] + lay.chairs_around(table, chair, "table_group")


def _desk_group(lay: Layout, n: int = 1) -> list[Placed]:
    rng = lay.rng
    model = lay.model(fm.DESK)
    if n > 1:
        models = [model] * n if rng.random() < 0.7 else [lay.model(fm.DESK) for _ in range(n)]
        desks = lay.row_against_wall(models, "desk_row", gap_range=(0.0, 0.01))
    else:
        d = lay.against_wall(model, "desk")
        desks = [d] if d is not None else []
    out = list(desks)
    chair = fm.office_chair(rng) if rng.random() < 0.6 else lay._chair_model()
    for d in desks:
        if rng.random() < 0.85:
            c = lay.chair_at(d, chair, "desk_chair")
            if c is not None:
                out.append(c)
    return out


def _bed_group(lay: Layout) -> list[Placed]:
    rng = lay.rng
    bed = lay.against_wall(lay.model(fm.BED), "bed_group", gap_range=(0.0, 0.02))
    if bed is None:
        return []
    out = [bed]
    ns = fm.make_model(rng, fm.CABINET, lay.mesh_prob) if rng.random() < 0.3 else \
        fm.cabinet(rng, height=rng.uniform(0.45, 0.65), width=rng.uniform(0.4, 0.55),
                   depth=rng.uniform(0.35, 0.45))
    if ns.size[2] < 0.9:
        bw = float(bed.model.size[0])
        back = -bed.model.size[1] / 2  # the head end, against the wall
        for sx in (-1, 1):
            if rng.random() < 0.8:
                gap = rng.uniform(0.0, 0.03)
                local = (sx * (bw / 2 + gap + ns.size[0] / 2), back + ns.size[1] / 2)
                xy = bed.rotation()[:2, :2] @ np.asarray(local) + bed.position[:2]
                p = lay.try_add(ns, bed.yaw, (xy[0], xy[1], 0.0), "bed_group")
                if p is not None:
                    out.append(p)
    if rng.random() < 0.3:
        bench = fm.bench(rng) if rng.random() < 0.6 else fm.ottoman(rng)
        local = (0.0, bed.model.size[1] / 2 + bench.size[1] / 2 + rng.uniform(0.0, 0.1))
        xy = bed.rotation()[:2, :2] @ np.asarray(local) + bed.position[:2]
        p = lay.try_add(bench, bed.yaw, (xy[0], xy[1], 0.0), "bed_group")
        if p is not None:
            out.append(p)
    return out


def _sofa_group(lay: Layout) -> list[Placed]:
    rng = lay.rng
    if rng.random() < 0.25:
        sofa = lay.in_corner(fm.corner_model(rng, fm.SOFA, lay.mesh_prob), "sofa_group")
    else:
        sofa = lay.against_wall(lay.model(fm.SOFA), "sofa_group") if rng.random() < 0.75 else \
            lay.free_standing(lay.model(fm.SOFA), "sofa_group")
    if sofa is None:
        return []
    out = [sofa]
    ct = fm.coffee_table(rng) if rng.random() < 0.8 else fm.mesh_model(rng, fm.MESHES[5])
    dist = sofa.model.size[1] / 2 + ct.size[1] / 2 + rng.uniform(0.3, 0.5)
    local = np.array([rng.uniform(-0.1, 0.1), dist])
    if sofa.model.corner:  # in the crook of the L, clear of both seat bands
        seat = min(0.95, 0.45 * float(sofa.model.size[:2].min()))
        local = (-0.5 * sofa.model.size[:2] + seat + rng.uniform(0.3, 0.45)
                 + 0.5 * ct.size[:2])
    xy = sofa.rotation()[:2, :2] @ local + sofa.position[:2]
    table = lay.try_add(ct, sofa.yaw + rng.normal(0, 0.05), (xy[0], xy[1], 0.0), "sofa_group")
    if table is not None:
        out.append(table)
        arm = fm.armchair(rng) if rng.random() < 0.6 else fm.mesh_model(rng, fm.MESHES[2])
        for sx in (-1, 1):
            if rng.random() < 0.4:
                local = np.array([sx * (ct.size[0] / 2 + arm.size[1] / 2 + rng.uniform(0.1, 0.4)),
                                  dist])
                xy = sofa.rotation()[:2, :2] @ local + sofa.position[:2]
                yaw = sofa.yaw + sx * math.pi / 2 + rng.normal(0, 0.2)
                p = lay.try_add(arm, yaw, (xy[0], xy[1], 0.0), "sofa_group")
                if p is not None:
                    out.append(p)
    if not sofa.model.corner and rng.random() < 0.4:  # side table touching an arm
        side = fm.coffee_table(rng)
        sx = float(rng.choice([-1, 1]))
        local = np.array([sx * (sofa.model.size[0] / 2 + side.size[0] / 2 + rng.uniform(0, 0.02)),
                          -sofa.model.size[1] / 2 + side.size[1] / 2])
        xy = sofa.rotation()[:2, :2] @ local + sofa.position[:2]
        p = lay.try_add(side, sofa.yaw, (xy[0], xy[1], 0.0), "sofa_group")
        if p is not None:
            out.append(p)
    return out


def _storage_row(lay: Layout, class_id: int | None = None) -> list[Placed]:
    rng = lay.rng
    n = int(rng.integers(2, 5))
    if class_id is None:
        class_id = fm.BOOKSHELF if rng.random() < 0.4 else fm.CABINET
    if class_id == fm.BOOKSHELF:
        if rng.random() < 0.6:
            models = [fm.bookshelf(rng)] * n
        else:
            models = [fm.bookshelf(rng) for _ in range(n)]
    else:
        h = rng.uniform(0.7, 2.0)
        d = rng.uniform(0.4, 0.6)
        if rng.random() < 0.5:  # identical units: the hardest case
            models = [fm.cabinet(rng, height=h, depth=d)] * n
        else:
            models = [fm.cabinet(rng, height=h * rng.uniform(0.9, 1.0), depth=d,
                                 width=rng.uniform(0.4, 1.0)) for _ in range(n)]
    placed = lay.row_against_wall(models, "storage_row", gap_range=(0.0, 0.008))
    while not placed and n > 1:
        n -= 1
        placed = lay.row_against_wall(models[:n], "storage_row", gap_range=(0.0, 0.008))
    return placed


def _kitchen_run(lay: Layout) -> list[Placed]:
    """Base cabinets touching, a counter slab on top (with a sink), wall cabinets above, a
    refrigerator at one end."""
    rng = lay.rng
    if rng.random() < 0.25:
        corner = lay.in_corner(fm.corner_model(rng, fm.CABINET, 1.0), "kitchen")
        return [corner] if corner is not None else []
    n = int(rng.integers(2, 6))
    depth = rng.uniform(0.55, 0.62)
    counter_top = rng.uniform(0.86, 0.92)
    ct = rng.uniform(0.03, 0.045)
    widths = rng.choice([0.4, 0.45, 0.5, 0.6, 0.8], size=n)
    sink_at = int(rng.integers(n)) if rng.random() < 0.7 else -1
    sink_model = None
    models = []
    for k in range(n):
        if k == sink_at:
            sink_size = (min(0.8, float(widths[k])) - 0.1, depth * 0.75)
            sink_model = fm.kitchen_sink(rng, *sink_size)
            bowl = -float(sink_model.vertices[:, 2].min())
            models.append(fm.cabinet(rng, height=counter_top - ct, width=float(widths[k]),
                                     depth=depth, style="doors",
                                     hollow_above=counter_top - ct - bowl - 0.02, top_slab=False))
        else:
            models.append(fm.cabinet(rng, height=counter_top - ct, width=float(widths[k]),
                                     depth=depth, top_slab=False))
    with_fridge = rng.random() < 0.6
    fridge = fm.refrigerator(rng) if with_fridge else None
    if fridge is not None and fridge.kind.startswith("refrigerator/mini"):
        fridge = None
    row_models = models + ([fridge] if fridge is not None else [])
    if fridge is not None and rng.random() < 0.5:
        row_models = [fridge] + models
    row = lay.row_against_wall(row_models, "kitchen", gap_range=(0.0, 0.006))
    if not row:
        return []
    cabinets = [p for p in row if p.model.class_id == fm.CABINET]
    out = list(row)
    # The counter spans the cabinets, overhanging at the front.
    first, last = cabinets[0], cabinets[-1]
    p0, t, _, n_in = lay.room.wall(_wall_of(lay, first))
    a = float(np.dot(first.position[:2] - p0, t)) - first.model.size[0] / 2
    b = float(np.dot(last.position[:2] - p0, t)) + last.model.size[0] / 2
    length = b - a
    counter_depth = depth + rng.uniform(0.01, 0.04)
    sink_pl = None
    sink_s = None
    if sink_at >= 0 and sink_model is not None:
        sc = cabinets[sink_at]
        sink_s = float(np.dot(sc.position[:2] - p0, t)) - a
    hole = None if sink_model is None else (sink_size[0] - 0.06, sink_size[1] - 0.06)
    counter = _counter_slab(rng, length, counter_depth, ct, sink_s, hole)
    wall = _wall_of(lay, first)
    yaw, pos = lay.wall_pose(wall, a + length / 2, counter_depth,
                             float(np.dot(first.position[:2] - p0, n_in)) - depth / 2,
                             z=counter_top - ct)
    c = lay.try_add(counter, yaw, pos, "kitchen", ignore=tuple(out))
    if c is not None:
        out.append(c)
        if sink_model is not None and sink_s is not None:
            # The sink's origin is the centre of the hole at counter-top height.
            xy = c.rotation()[:2, :2] @ np.array([-length / 2 + sink_s, 0.0]) + c.position[:2]
            sink_pl = lay.try_add(sink_model, c.yaw, (xy[0], xy[1], counter_top), "kitchen",
                                  ignore=tuple(out))
            if sink_pl is not None:
                out.append(sink_pl)
    if rng.random() < 0.6:  # wall cabinets
        z0 = counter_top + rng.uniform(0.5, 0.65)
        hh = min(rng.uniform(0.6, 0.8), lay.room.height - z0 - 0.05)
        wd = rng.uniform(0.3, 0.36)
        if hh > 0.3:
            for cab in cabinets:
                if rng.random() < 0.85:
                    m = fm.wall_cabinet(rng, float(cab.model.size[0]), wd, hh)
                    s = float(np.dot(cab.position[:2] - p0, t))
                    yaw, pos = lay.wall_pose(_wall_of(lay, first), s, wd, 0.0, z=z0)
                    p = lay.try_add(m, yaw, pos, "kitchen", obstacle=False)
                    if p is not None:
                        out.append(p)
    return out


def _counter_slab(rng: np.random.Generator, length: float, depth: float, thickness: float,
                  hole_s: float | None, hole_size) -> Model:
    b = fm.MeshBuilder()
    col = fm._jitter(rng, fm._pick(rng, fm.LAMINATES + fm.WOODS + ((0.3, 0.3, 0.32),)), 0.04)
    tex = fm.WOOD if rng.random() < 0.4 else fm.PLAIN
    x0, x1 = -length / 2, length / 2
    y0, y1 = -depth / 2, depth / 2
    if hole_s is None:
        b.box((x0, y0, 0.0), (x1, y1, thickness), col, tex)
    else:
        hx0 = x0 + hole_s - hole_size[0] / 2
        hx1 = x0 + hole_s + hole_size[0] / 2
        hy0, hy1 = -hole_size[1] / 2, hole_size[1] / 2
        b.box((x0, y0, 0.0), (hx0, y1, thickness), col, tex)
        b.box((hx1, y0, 0.0), (x1, y1, thickness), col, tex)
        b.box((hx0, y0, 0.0), (hx1, hy0, thickness), col, tex)
        b.box((hx0, hy1, 0.0), (hx1, y1, thickness), col, tex)
    if rng.random() < 0.5:  # backsplash
        b.box((x0, y0, thickness), (x1, y0 + 0.015, thickness + rng.uniform(0.05, 0.12)), col,
              tex)
    b.surface(thickness, (x0, y0 + 0.03), (x1, y1))
    if hole_s is not None:
        b.surfaces[-1] = fm.Surface(thickness, np.array([x0, y0 + 0.03]),
                                    np.array([x0 + hole_s - hole_size[0] / 2 - 0.05, y1]))
    return b.build(fm.COUNTER, "counter/kitchen", recentre=False)


def _wall_of(lay: Layout, placed: Placed) -> int:
    """The wall a wall-aligned object stands against (the closest with a matching direction)."""
    best, best_d = 0, math.inf
    for i in range(lay.room.num_walls):
        p0, t, length, n = lay.room.wall(i)
        if abs((_yaw_of(t) - placed.yaw + math.pi) % (2 * math.pi) - math.pi) > 1e-6:
            continue
        d = float(np.dot(placed.position[:2] - p0, n))
        s = float(np.dot(placed.position[:2] - p0, t))
        if -0.01 <= s <= length + 0.01 and d < best_d:
            best, best_d = i, d
    return best


def _bathroom(lay: Layout) -> list[Placed]:
    rng = lay.rng
    out: list[Placed] = []
    tub = lay.in_corner(fm.bathtub(rng), "bathroom") if rng.random() < 0.7 else None
    if tub is not None:
        out.append(tub)
        if rng.random() < 0.7:  # shower curtain along the open side
            length, w = float(tub.model.size[0]), float(tub.model.size[1])
            covered = length * rng.uniform(0.4, 1.0)
            top = min(lay.room.height - 0.05, rng.uniform(1.9, 2.1))
            sc = fm.curtain(rng, covered, top, tub.z[1] - rng.uniform(0.1, 0.3),
                            class_id=fm.SHOWER_CURTAIN)
            local = np.array([-length / 2 + covered / 2, w / 2 - 0.15])
            xy = tub.rotation()[:2, :2] @ local + tub.position[:2]
            p = lay.try_add(sc, tub.yaw, (xy[0], xy[1], 0.0), "bathroom", ignore=(tub,),
                            obstacle=False)
            if p is not None:
                out.append(p)
    t = lay.against_wall(fm.toilet(rng), "bathroom")
    if t is not None:
        out.append(t)
    if rng.random() < 0.5:
        s = lay.against_wall(fm.sink(rng), "bathroom")
        if s is not None:
            out.append(s)
    else:  # vanity: a cabinet with a bowl on it, touching
        cab = lay.against_wall(fm.cabinet(rng, height=rng.uniform(0.75, 0.85),
                                          width=rng.uniform(0.5, 1.0), depth=rng.uniform(0.42, 0.55),
                                          style="doors"), "bathroom")
        if cab is not None:
            out.append(cab)
            s = lay.on_top(fm.vessel_sink(rng), cab, "bathroom",
                           local_xy=(rng.uniform(-0.1, 0.1), 0.03))
            if s is not None:
                out.append(s)
    for class_id in (fm.OTHERFURNITURE, fm.CABINET):
        if rng.random() < 0.5:
            m = fm.trash_bin(rng) if class_id == fm.OTHERFURNITURE else \
                fm.cabinet(rng, height=rng.uniform(0.6, 1.8), width=rng.uniform(0.3, 0.6),
                           depth=rng.uniform(0.25, 0.4))
            p = lay.against_wall(m, "bathroom")
            if p is not None:
                out.append(p)
    if rng.random() < 0.3:
        p = lay.against_wall(fm.washing_machine(rng), "bathroom")
        if p is not None:
            out.append(p)
    return out


def _classroom(lay: Layout) -> list[Placed]:
    """Rows of identical desks (or tables) with identical chairs, all facing one way."""
    rng = lay.rng
    desk = fm.desk(rng) if rng.random() < 0.5 else fm.coffee_table(rng)
    if desk.kind.startswith("table/"):
        desk = fm.table(rng)
        for _ in range(10):
            if desk.kind == "table/four_leg" and desk.size[0] < 1.6:
                break
            desk = fm.table(rng)
    chair = fm.chair(rng)
    lo, hi = lay.room.bounds
    yaw = float(rng.integers(4)) * math.pi / 2
    step_x = desk.size[0] + rng.uniform(0.0, 0.4)
    step_y = desk.size[1] + chair.size[1] + rng.uniform(0.25, 0.6)
    out: list[Placed] = []
    c, s = math.cos(yaw), math.sin(yaw)
    rot = np.array([[c, -s], [s, c]])
    centre = 0.5 * (lo + hi)
    extent = np.abs(rot.T @ (hi - lo))
    nx = max(1, int((extent[0] - 1.0) // step_x))
    ny = max(1, int((extent[1] - 1.5) // step_y))
    for i in range(nx):
        for j in range(ny):
            local = np.array([(i - (nx - 1) / 2) * step_x, (j - (ny - 1) / 2) * step_y])
            xy = rot @ local + centre
            d = lay.try_add(desk, yaw + math.pi, (xy[0], xy[1], 0.0), "classroom")
            if d is None:
                continue
            out.append(d)
            if rng.random() < 0.9:
                ch = lay.chair_at(d, chair, "classroom")
                if ch is not None:
                    out.append(ch)
    return out


def _decor(lay: Layout) -> list[Placed]:
    """Pictures on the walls and curtains beside the windows."""
    rng = lay.rng
    out: list[Placed] = []
    windows = tuple(o for o in lay.objects if o.role == "window")
    for o in list(lay.room.openings):
        if o.kind != "window" or rng.random() < 0.45:
            continue
        length = lay.room.wall(o.wall)[2]
        top = min(lay.room.height - 0.05, o.z1 + rng.uniform(0.1, 0.3))
        bottom = 0.02 if rng.random() < 0.5 else o.z0 - rng.uniform(0.0, 0.1)
        for side in (-1, 1):
            width = rng.uniform(0.3, 0.7)
            s = (o.s0 if side < 0 else o.s1) + side * rng.uniform(-0.15, 0.1) - side * width / 2
            s = float(np.clip(s, width / 2 + 0.01, length - width / 2 - 0.01))
            m = fm.curtain(rng, width, top, bottom)
            yaw, pos = lay.wall_pose(o.wall, s, 0.0, 0.0)
            p = lay.try_add(m, yaw, pos, "curtain", ignore=windows, obstacle=False)
            if p is not None:
                out.append(p)
    for _ in range(int(rng.integers(0, 5))):
        m = fm.picture(rng)
        for _attempt in range(10):
            wall = lay.random_wall(m.size[0] + 0.3)
            if wall is None:
                break
            length = lay._wall_lengths[wall]
            s = rng.uniform(m.size[0] / 2 + 0.1, length - m.size[0] / 2 - 0.1)
            if any(o.wall == wall and o.s0 - m.size[0] / 2 - 0.1 < s < o.s1 + m.size[0] / 2 + 0.1
                   for o in lay.room.openings):
                continue
            zc = rng.uniform(1.2, min(1.8, lay.room.height - m.size[2] / 2 - 0.1))
            yaw, pos = lay.wall_pose(wall, s, 0.0, 0.0, z=zc)
            p = lay.try_add(m, yaw, pos, "picture", obstacle=False)
            if p is not None:
                out.append(p)
                break
    return out


def _fill(lay: Layout, classes: tuple[int, ...], count: int) -> list[Placed]:
    """Single pieces against the walls or free-standing, until ``count`` are placed."""
    rng = lay.rng
    out = []
    for _ in range(count * 3):
        if len(out) >= count:
            break
        class_id = classes[int(rng.integers(len(classes)))]
        m = lay.model(class_id)
        if class_id in (fm.OTHERFURNITURE, fm.CHAIR) and rng.random() < 0.5:
            p = lay.free_standing(m, "single", tries=10)
        else:
            p = lay.against_wall(m, "single", tries=10)
        if p is not None:
            out.append(p)
    return out


def _clutter(lay: Layout, density: float) -> list[Placed]:
    """Small things (ignore label) on the support surfaces and on the floor by the walls."""
    rng = lay.rng
    out: list[Placed] = []
    supports = [o for o in lay.objects if o.model.surfaces and o.semantic != IGNORE_LABEL]
    for support in supports:
        for surf in support.model.surfaces:
            area = float(np.prod(np.maximum(surf.hi - surf.lo, 0.0)))
            n = rng.poisson(density * area * 4.0)
            mine: list[np.ndarray] = []
            for _ in range(min(int(n), 12)):
                m = fm.clutter(rng, max_height=surf.clearance)
                yaw_local = rng.uniform(-math.pi, math.pi) if rng.random() < 0.5 else \
                    float(rng.integers(4)) * math.pi / 2
                half = 0.5 * m.size[:2]
                span = surf.hi - surf.lo
                if np.any(span < 2 * half.max()):
                    continue
                centre_local = rng.uniform(surf.lo + half.max(), surf.hi - half.max())
                fp_local, _ = footprint_of(m, yaw_local, (centre_local[0], centre_local[1], 0.0))
                if any(polygons_overlap(fp_local, other, 0.0) for other in mine):
                    continue
                xy = support.rotation()[:2, :2] @ centre_local + support.position[:2]
                z = support.position[2] + surf.z
                p = lay.try_add(m, support.yaw + yaw_local, (xy[0], xy[1], z), "clutter",
                                ignore=(support,), obstacle=False)
                if p is not None:
                    mine.append(fp_local)
                    out.append(p)
    for _ in range(rng.poisson(density * 2.0)):
        p = lay.against_wall(fm.floor_clutter(rng), "floor_clutter", tries=5)
        if p is not None:
            out.append(p)
    return out


def _floor_share(lay: Layout) -> float:
    """Fraction of the floor under furniture footprints (overlaps counted twice)."""
    total = 0.0
    for o in lay.objects:
        if o.obstacle and o.semantic != IGNORE_LABEL and o.z[0] < 0.05:
            x, y = o.footprint[:, 0], o.footprint[:, 1]
            total += 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))
    return total / lay.room.area


def furnish(room: Room, rng: np.random.Generator, mesh_prob: float = 0.25,
            clutter_density: float = 1.0, fill: float = 1.0) -> Layout:
    """Place the furniture of ``room.kind`` plus fillers, decor and clutter.

    mesh_prob: chance of an MIT-0 mesh instead of a parametric model where a class has one.
    clutter_density: relative amount of small clutter (0 = none). fill: relative number of
    extra single pieces.
    """
    lay = Layout(room, rng, mesh_prob)
    kind = room.kind
    area = room.area
    if kind == "living":
        _sofa_group(lay)
        if rng.random() < 0.3:
            _sofa_group(lay)
        tv = fm.mesh_model(rng, fm.MESHES[11]) if rng.random() < 0.3 else \
            fm.cabinet(rng, height=rng.uniform(0.4, 0.6), width=rng.uniform(1.0, 1.8))
        lay.against_wall(tv, "tv_stand")
        if rng.random() < 0.5:
            _storage_row(lay, fm.BOOKSHELF)
        extras = (fm.CHAIR, fm.OTHERFURNITURE, fm.BOOKSHELF, fm.TABLE, fm.CABINET)
    elif kind == "bedroom":
        _bed_group(lay)
        if area > 14 and rng.random() < 0.3:
            _bed_group(lay)
        lay.against_wall(fm.cabinet(rng, height=rng.uniform(1.7, 2.1)) if rng.random() < 0.7
                         else fm.mesh_model(rng, fm.MESHES[10]), "wardrobe")
        if rng.random() < 0.5:
            _desk_group(lay)
        if rng.random() < 0.5:
            lay.against_wall(fm.cabinet(rng, height=rng.uniform(0.7, 1.0), style="drawers"),
                             "dresser")
        extras = (fm.CHAIR, fm.OTHERFURNITURE, fm.BOOKSHELF, fm.CABINET)
    elif kind == "office":
        for _ in range(int(rng.integers(1, 3))):
            _desk_group(lay, n=int(rng.integers(1, 4)))
        _storage_row(lay)
        if rng.random() < 0.4:
            _table_group(lay)
        extras = (fm.CABINET, fm.BOOKSHELF, fm.OTHERFURNITURE, fm.CHAIR, fm.DESK)
    elif kind == "dining":
        _table_group(lay)
        if area > 20 and rng.random() < 0.5:
            _table_group(lay)
        lay.against_wall(fm.cabinet(rng, height=rng.uniform(0.75, 1.0)), "sideboard")
        extras = (fm.CABINET, fm.CHAIR, fm.OTHERFURNITURE, fm.BOOKSHELF)
    elif kind == "kitchen":
        _kitchen_run(lay)
        if rng.random() < 0.3:
            _kitchen_run(lay)
        if not any(o.semantic == fm.REFRIGERATOR for o in lay.objects):
            lay.against_wall(fm.refrigerator(rng), "fridge")
        if area > 10:
            _table_group(lay)
        extras = (fm.CABINET, fm.CHAIR, fm.OTHERFURNITURE, fm.TABLE)
    elif kind == "conference":
        _table_group(lay, long_table=True)
        if rng.random() < 0.5:
            chair = fm.chair(rng)
            lay.row_against_wall([chair] * int(rng.integers(3, 7)), "chair_row",
                                 gap_range=(0.0, 0.05))
        extras = (fm.CABINET, fm.OTHERFURNITURE, fm.BOOKSHELF, fm.TABLE)
    elif kind == "classroom":
        _classroom(lay)
        extras = (fm.CABINET, fm.BOOKSHELF, fm.DESK, fm.OTHERFURNITURE)
    elif kind == "bathroom":
        _bathroom(lay)
        extras = (fm.CABINET, fm.OTHERFURNITURE)
    else:  # storage
        for _ in range(int(rng.integers(2, 4))):
            _storage_row(lay)
        extras = (fm.CABINET, fm.BOOKSHELF, fm.OTHERFURNITURE, fm.REFRIGERATOR, fm.TABLE)
    # Big rooms get more of their kind's groups until the furniture covers a realistic share of
    # the floor (real rooms are crowded; an empty hall is easy to segment).
    groups = {"living": (_sofa_group, _storage_row, _table_group),
              "bedroom": (_bed_group, _desk_group, _storage_row),
              "office": (_desk_group, _storage_row, _table_group),
              "dining": (_table_group, _storage_row), "kitchen": (_table_group, _kitchen_run),
              "conference": (_table_group, _storage_row), "classroom": (_storage_row,),
              "bathroom": (_storage_row,), "storage": (_storage_row,)}[kind]
    target = fill * rng.uniform(0.18, 0.32)
    for _ in range(12):
        if _floor_share(lay) >= target:
            break
        groups[int(rng.integers(len(groups)))](lay)
    n_extra = int(rng.poisson(fill * max(1.0, area / 6.0)))
    _fill(lay, extras, n_extra)
    _decor(lay)
    if clutter_density > 0:
        _clutter(lay, clutter_density)
    return lay


# ---------------------------------------------------------------------------------------------
# Room surfaces


def room_models(room: Room, rng: np.random.Generator) -> tuple[Model, Model]:
    """The floor (class floor) and the walls with their openings and skirting (class wall) as
    two models in the room frame. Floors are planks, tiles or carpet; walls are painted."""
    from ..classes import SCANNET20_CLASSES

    floor_kind = int(rng.choice([fm.WOOD, fm.TILE, fm.CARPET], p=[0.45, 0.35, 0.2]))
    if floor_kind == fm.WOOD:
        floor_col = fm._jitter(rng, fm._pick(rng, fm.WOODS), 0.04)
    elif floor_kind == fm.TILE:
        floor_col = fm._jitter(rng, fm._pick(rng, fm.CERAMICS + fm.LAMINATES[1:2] +
                                            ((0.75, 0.62, 0.5),)), 0.04)
    else:
        floor_col = fm._jitter(rng, fm._pick(rng, fm.FABRICS + ((0.6, 0.6, 0.58),)), 0.04)
    fb = fm.MeshBuilder()
    for x0, y0, x1, y1 in room.rects:
        fb.add(np.array([[x0, y0, 0.0], [x1, y0, 0.0], [x1, y1, 0.0], [x0, y1, 0.0]]),
               np.array([[0, 1, 2], [0, 2, 3]]), floor_col, floor_kind)
    floor = fb.build(SCANNET20_CLASSES.index("floor"), f"floor/{floor_kind}", recentre=False)

    paints = ((0.93, 0.92, 0.88), (0.88, 0.86, 0.80), (0.80, 0.85, 0.88), (0.90, 0.85, 0.75),
              (0.75, 0.80, 0.72), (0.95, 0.95, 0.95), (0.70, 0.70, 0.72))
    wall_col = fm._jitter(rng, fm._pick(rng, paints), 0.03)
    accent = int(rng.integers(room.num_walls)) if rng.random() < 0.25 else -1
    accent_col = fm._jitter(rng, fm._pick(rng, fm.FABRICS), 0.04)
    skirting = rng.random() < 0.6
    skirt_h, skirt_t = rng.uniform(0.06, 0.12), rng.uniform(0.008, 0.015)
    skirt_col = fm._jitter(rng, fm._pick(rng, fm.CERAMICS + fm.WOODS[:2]), 0.03)
    wb = fm.MeshBuilder()
    h = room.height
    for i in range(room.num_walls):
        p0, t, length, n = room.wall(i)
        col = accent_col if i == accent else wall_col
        cuts = sorted((o for o in room.openings if o.wall == i), key=lambda o: o.s0)
        pieces = []  # (s0, s1, z0, z1) rectangles of wall around the openings
        s = 0.0
        for o in cuts:
            pieces.append((s, o.s0, 0.0, h))
            if o.z0 > 0:
                pieces.append((o.s0, o.s1, 0.0, o.z0))
            pieces.append((o.s0, o.s1, o.z1, h))
            s = o.s1
        pieces.append((s, length, 0.0, h))
        for s0, s1, z0, z1 in pieces:
            if s1 - s0 <= 1e-6 or z1 - z0 <= 1e-6:
                continue
            a, b = p0 + t * s0, p0 + t * s1
            wb.add(np.array([[a[0], a[1], z0], [b[0], b[1], z0], [b[0], b[1], z1],
                             [a[0], a[1], z1]]), np.array([[0, 1, 2], [0, 2, 3]]), col, fm.PAINT)
            if skirting and z0 == 0.0 and z1 > skirt_h:
                q = np.array([a, b, b + n * skirt_t, a + n * skirt_t])
                lo = np.column_stack([q, np.zeros(4)])
                hi = np.column_stack([q, np.full(4, skirt_h)])
                wb.add(np.vstack([lo, hi]), fm._BOX_TRIANGLES, skirt_col, fm.PLAIN)
    walls = wb.build(SCANNET20_CLASSES.index("wall"), "wall/painted", recentre=False)
    return floor, walls
