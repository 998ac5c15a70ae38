"""Furniture for the synthetic scene generator: parametric models built from primitives, and the
13 MIT-0 meshes in ``ros2_inst3d/synthetic/meshes`` (see the README there).

Every model lives in its own frame: metres, z up, standing on z = 0, its footprint bounding box
centred on the origin, its *front* facing +y (the side a person uses: the seat of a chair, the
drawers of a cabinet, the foot of a bed) and its back towards -y, so "back against a wall" is one
rule for every model. Corner pieces (L-shaped sofas, desks, kitchen runs) have backs towards -y and
-x. A model carries one colour and one texture kind per triangle; the scanner turns those into
per-point colours (``scanner.surface_colors``).

Class ids are the contiguous ScanNet-20 indices of :mod:`ros2_inst3d.classes`. Small clutter
(books, cups, monitors, pillows on the floor...) is ScanNet's "otherprop" and gets
``IGNORE_LABEL``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import numpy as np

from ..classes import IGNORE_LABEL

# Texture kinds (per triangle). The scanner maps each to a procedural pattern.
PLAIN, WOOD, FABRIC, METAL, CERAMIC, CANVAS, PAINT, TILE, CARPET = range(9)

CABINET, BED, CHAIR, SOFA, TABLE, DOOR, WINDOW, BOOKSHELF, PICTURE, COUNTER, DESK, CURTAIN = (
    2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13)
REFRIGERATOR, SHOWER_CURTAIN, TOILET, SINK, BATHTUB, OTHERFURNITURE = 14, 15, 16, 17, 18, 19

MESH_DIR = Path(__file__).resolve().parent / "meshes"

# Base colours, linear-ish RGB in [0, 1]. Each instance jitters its picks (``_jitter``).
WOODS = ((0.76, 0.60, 0.42), (0.45, 0.30, 0.20), (0.55, 0.29, 0.17), (0.86, 0.76, 0.60),
         (0.28, 0.20, 0.14), (0.66, 0.49, 0.32))
LAMINATES = ((0.92, 0.92, 0.90), (0.55, 0.55, 0.57), (0.15, 0.15, 0.16), (0.80, 0.78, 0.72),
             (0.35, 0.40, 0.45))
FABRICS = ((0.20, 0.30, 0.55), (0.60, 0.16, 0.15), (0.30, 0.45, 0.30), (0.80, 0.72, 0.60),
           (0.45, 0.45, 0.48), (0.40, 0.25, 0.15), (0.78, 0.60, 0.20), (0.25, 0.25, 0.28),
           (0.55, 0.35, 0.50), (0.15, 0.45, 0.50))
METALS = ((0.72, 0.72, 0.74), (0.18, 0.18, 0.20), (0.55, 0.56, 0.58), (0.80, 0.70, 0.45))
CERAMICS = ((0.95, 0.95, 0.94), (0.90, 0.92, 0.95), (0.93, 0.90, 0.85))
BRIGHTS = ((0.85, 0.20, 0.20), (0.20, 0.55, 0.85), (0.95, 0.80, 0.20), (0.30, 0.70, 0.35),
           (0.90, 0.50, 0.15), (0.60, 0.30, 0.70), (0.95, 0.95, 0.95), (0.10, 0.10, 0.10))


def _pick(rng: np.random.Generator, palette) -> tuple[float, float, float]:
    return palette[int(rng.integers(len(palette)))]


def _jitter(rng: np.random.Generator, color, amount: float = 0.06) -> np.ndarray:
    """One instance's version of a base colour: overall brightness and a little hue shift."""
    c = np.asarray(color, dtype=np.float64) * rng.uniform(0.85, 1.12)
    c = c + rng.uniform(-amount, amount, 3)
    return np.clip(c, 0.02, 0.98)


@dataclass
class Surface:
    """A horizontal rectangle (object frame) where small things may stand.

    z: height of the surface, metres. lo/hi: (2,) xy corners, metres. clearance: free height above
    it (a shelf below another shelf), metres.
    """

    z: float
    lo: np.ndarray
    hi: np.ndarray
    clearance: float = 0.6


@dataclass
class Model:
    """One object in its own frame (see the module docstring for the frame).

    class_id: ScanNet-20 index, or IGNORE_LABEL for clutter. kind: "class/variant", for the meta.
    vertices: (V, 3) float32 metres; triangles: (T, 3) int32; tri_color: (T, 3) float32 in [0, 1];
    tri_texture: (T,) uint8 texture kind; surfaces: where clutter may go; corner: an L-shaped piece
    whose backs go into a room corner.
    """

    class_id: int
    kind: str
    vertices: np.ndarray
    triangles: np.ndarray
    tri_color: np.ndarray
    tri_texture: np.ndarray
    surfaces: list[Surface] = field(default_factory=list)
    corner: bool = False

    @property
    def size(self) -> np.ndarray:
        """(3,) float64 bounding-box extents (x width, y depth, z height), metres."""
        return (self.vertices.max(axis=0) - self.vertices.min(axis=0)).astype(np.float64)

    @property
    def num_triangles(self) -> int:
        return int(self.triangles.shape[0])


_BOX_CORNERS = np.array(
    [[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0], [0, 0, 1], [1, 0, 1], [1, 1, 1], [0, 1, 1]],
    dtype=np.float64)
_BOX_TRIANGLES = np.array(
    [[0, 2, 1], [0, 3, 2], [4, 5, 6], [4, 6, 7], [0, 1, 5], [0, 5, 4],
     [1, 2, 6], [1, 6, 5], [2, 3, 7], [2, 7, 6], [3, 0, 4], [3, 4, 7]], dtype=np.int64)


def rot_x(angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])


def rot_y(angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def rot_z(angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


class MeshBuilder:
    """Collects primitives (boxes, frusta, sheets) with a colour and texture per primitive."""

    def __init__(self) -> None:
        self._vertices: list[np.ndarray] = []
        self._triangles: list[np.ndarray] = []
        self._colors: list[np.ndarray] = []
        self._textures: list[np.ndarray] = []
        self._count = 0
        self.surfaces: list[Surface] = []

    def add(self, vertices: np.ndarray, triangles: np.ndarray, color, texture: int) -> None:
        vertices = np.asarray(vertices, dtype=np.float64).reshape(-1, 3)
        triangles = np.asarray(triangles, dtype=np.int64).reshape(-1, 3)
        self._vertices.append(vertices)
        self._triangles.append(triangles + self._count)
        self._colors.append(np.broadcast_to(np.asarray(color, np.float32), (len(triangles), 3)))
        self._textures.append(np.full(len(triangles), texture, dtype=np.uint8))
        self._count += len(vertices)

    def box(self, lo, hi, color, texture: int = PLAIN, rot: np.ndarray | None = None,
            pivot=None) -> None:
        """Box from corner ``lo`` to ``hi`` (metres), optionally rotated by ``rot`` about
        ``pivot`` (default: the box centre)."""
        lo = np.asarray(lo, dtype=np.float64)
        hi = np.asarray(hi, dtype=np.float64)
        vertices = lo + _BOX_CORNERS * (hi - lo)
        if rot is not None:
            p = 0.5 * (lo + hi) if pivot is None else np.asarray(pivot, dtype=np.float64)
            vertices = (vertices - p) @ np.asarray(rot).T + p
        self.add(vertices, _BOX_TRIANGLES, color, texture)

    def frustum(self, x: float, y: float, z0: float, z1: float, r0: float, r1: float | None,
                color, texture: int = PLAIN, segments: int = 12, scale_xy=(1.0, 1.0),
                bottom: bool = True, top: bool = True, rot: np.ndarray | None = None,
                pivot=None) -> None:
        """Vertical (elliptical) frustum from z0 (radius r0) to z1 (radius r1) around (x, y)."""
        r1 = r0 if r1 is None else r1
        a = np.linspace(0.0, 2.0 * math.pi, segments, endpoint=False)
        ring = np.stack([np.cos(a) * scale_xy[0], np.sin(a) * scale_xy[1]], axis=1)
        low = np.column_stack([ring * r0 + (x, y), np.full(segments, z0)])
        high = np.column_stack([ring * r1 + (x, y), np.full(segments, z1)])
        centres = np.array([[x, y, z0], [x, y, z1]])
        vertices = np.vstack([low, high, centres])
        i = np.arange(segments)
        j = (i + 1) % segments
        tris = [np.stack([i, j, j + segments], 1), np.stack([i, j + segments, i + segments], 1)]
        if bottom:
            tris.append(np.stack([np.full(segments, 2 * segments), j, i], 1))
        if top:
            tris.append(np.stack([np.full(segments, 2 * segments + 1), i + segments,
                                  j + segments], 1))
        if rot is not None:
            p = np.array([x, y, z0]) if pivot is None else np.asarray(pivot, dtype=np.float64)
            vertices = (vertices - p) @ np.asarray(rot).T + p
        self.add(vertices, np.vstack(tris), color, texture)

    def sheet(self, grid: np.ndarray, color, texture: int = PLAIN) -> None:
        """A surface through a (H, W, 3) grid of points (curtains, draped cloth)."""
        h, w, _ = grid.shape
        idx = np.arange(h * w).reshape(h, w)
        a, b = idx[:-1, :-1].ravel(), idx[:-1, 1:].ravel()
        c, d = idx[1:, 1:].ravel(), idx[1:, :-1].ravel()
        self.add(grid.reshape(-1, 3), np.vstack([np.stack([a, b, c], 1), np.stack([a, c, d], 1)]),
                 color, texture)

    def surface(self, z: float, lo, hi, clearance: float = 0.6) -> None:
        self.surfaces.append(Surface(float(z), np.asarray(lo, float), np.asarray(hi, float),
                                     float(clearance)))

    def build(self, class_id: int, kind: str, corner: bool = False,
              recentre: bool = True) -> Model:
        vertices = np.vstack(self._vertices)
        shift = np.zeros(3)
        if recentre:
            lo, hi = vertices.min(axis=0), vertices.max(axis=0)
            shift = np.array([-(lo[0] + hi[0]) / 2, -(lo[1] + hi[1]) / 2, -lo[2]])
            vertices = vertices + shift
        surfaces = [Surface(s.z + shift[2], s.lo + shift[:2], s.hi + shift[:2], s.clearance)
                    for s in self.surfaces]
        return Model(class_id, kind, vertices.astype(np.float32),
                     np.vstack(self._triangles).astype(np.int32),
                     np.vstack(self._colors).astype(np.float32),
                     np.concatenate(self._textures), surfaces, corner)


# ---------------------------------------------------------------------------------------------
# Chairs


def chair(rng: np.random.Generator) -> Model:
    """Dining/classroom chair: four legs, seat, solid or framed back, optional arms/stretchers."""
    b = MeshBuilder()
    w, d = rng.uniform(0.40, 0.52), rng.uniform(0.40, 0.50)
    hs, ts = rng.uniform(0.42, 0.48), rng.uniform(0.02, 0.07)
    leg = rng.uniform(0.025, 0.045)
    material = rng.random()
    if material < 0.5:
        frame = _jitter(rng, _pick(rng, WOODS))
        frame_tex = WOOD
    else:
        frame = _jitter(rng, _pick(rng, METALS))
        frame_tex = METAL
    upholstered = rng.random() < 0.5
    seat_col = _jitter(rng, _pick(rng, FABRICS)) if upholstered else frame
    seat_tex = FABRIC if upholstered else frame_tex
    round_legs = rng.random() < 0.4
    inset = rng.uniform(0.0, 0.03)
    for sx in (-1, 1):
        for sy in (-1, 1):
            cx = sx * (w / 2 - leg / 2 - inset)
            cy = sy * (d / 2 - leg / 2 - inset)
            if round_legs:
                b.frustum(cx, cy, 0.0, hs - ts, leg / 2, leg / 2, frame, frame_tex, segments=8)
            else:
                b.box((cx - leg / 2, cy - leg / 2, 0.0), (cx + leg / 2, cy + leg / 2, hs - ts),
                      frame, frame_tex)
    b.box((-w / 2, -d / 2, hs - ts), (w / 2, d / 2, hs), seat_col, seat_tex)
    hb = rng.uniform(0.30, 0.50)
    tilt = rot_x(rng.uniform(0.0, 0.2))
    pivot = (0.0, -d / 2, hs)
    tb = rng.uniform(0.02, 0.04)
    if rng.random() < 0.5:  # solid back panel
        b.box((-w / 2, -d / 2, hs + rng.uniform(0.0, 0.08)), (w / 2, -d / 2 + tb, hs + hb),
              seat_col if upholstered else frame, seat_tex, rot=tilt, pivot=pivot)
    else:  # posts, a top rail and slats
        for sx in (-1, 1):
            x0 = sx * (w / 2 - leg / 2 - inset)
            b.box((x0 - leg / 2, -d / 2 + inset, hs), (x0 + leg / 2, -d / 2 + inset + leg, hs + hb),
                  frame, frame_tex, rot=tilt, pivot=pivot)
        rail = rng.uniform(0.05, 0.12)
        b.box((-w / 2 + inset, -d / 2 + inset, hs + hb - rail),
              (w / 2 - inset, -d / 2 + inset + tb, hs + hb), frame, frame_tex, rot=tilt, pivot=pivot)
        n_slats = int(rng.integers(0, 4))
        for k in range(n_slats):
            x0 = (k + 1) / (n_slats + 1) * (w - 2 * inset) - w / 2 + inset
            b.box((x0 - 0.015, -d / 2 + inset, hs), (x0 + 0.015, -d / 2 + inset + tb * 0.8,
                                                      hs + hb - rail), frame, frame_tex,
                  rot=tilt, pivot=pivot)
    if rng.random() < 0.25:  # arm rests
        ha = rng.uniform(0.18, 0.25)
        for sx in (-1, 1):
            x0 = sx * (w / 2 - 0.02)
            b.box((x0 - 0.02, d / 2 - 0.08, hs), (x0 + 0.02, d / 2 - 0.04, hs + ha), frame,
                  frame_tex)
            b.box((x0 - 0.03, -d / 2, hs + ha), (x0 + 0.03, d / 2 - 0.02, hs + ha + 0.03), frame,
                  frame_tex)
    if rng.random() < 0.3:  # stretchers between the legs
        z = rng.uniform(0.10, 0.20)
        for sx in (-1, 1):
            x0 = sx * (w / 2 - leg / 2 - inset)
            b.box((x0 - 0.01, -d / 2 + inset, z), (x0 + 0.01, d / 2 - inset, z + 0.02), frame,
                  frame_tex)
    return b.build(CHAIR, "chair/four_leg")


def office_chair(rng: np.random.Generator) -> Model:
    """Swivel chair: five-spoke base with casters, gas column, seat, tilted back, optional arms."""
    b = MeshBuilder()
    plastic = _jitter(rng, _pick(rng, METALS[:3]))
    fabric = _jitter(rng, _pick(rng, FABRICS))
    radius = rng.uniform(0.26, 0.33)
    phase = rng.uniform(0, 2 * math.pi)
    for k in range(5):
        a = phase + k * 2 * math.pi / 5
        b.box((0.0, -0.025, 0.06), (radius, 0.025, 0.10), plastic, METAL, rot=rot_z(a),
              pivot=(0.0, 0.0, 0.08))
        b.frustum(radius * 0.93 * math.cos(a), radius * 0.93 * math.sin(a), 0.0, 0.06, 0.025,
                  0.025, plastic, PLAIN, segments=8)
    hs = rng.uniform(0.43, 0.52)
    ts = rng.uniform(0.06, 0.09)
    b.frustum(0.0, 0.0, 0.08, hs - ts - 0.04, rng.uniform(0.022, 0.035), None, plastic, METAL,
              segments=8)
    b.box((-0.12, -0.12, hs - ts - 0.05), (0.12, 0.12, hs - ts), plastic, PLAIN)
    w, d = rng.uniform(0.44, 0.52), rng.uniform(0.42, 0.50)
    b.box((-w / 2, -d / 2, hs - ts), (w / 2, d / 2, hs), fabric, FABRIC)
    hb = rng.uniform(0.40, 0.65)
    tb = rng.uniform(0.04, 0.07)
    gap = rng.uniform(0.05, 0.12)
    tilt = rot_x(rng.uniform(0.05, 0.25))
    pivot = (0.0, -d / 2, hs)
    b.box((-0.03, -d / 2 - 0.02, hs - ts - 0.02), (0.03, -d / 2 + 0.02, hs + gap + 0.05), plastic,
          PLAIN, rot=tilt, pivot=pivot)
    bw = w * rng.uniform(0.8, 1.0)
    b.box((-bw / 2, -d / 2 - tb, hs + gap), (bw / 2, -d / 2, hs + gap + hb), fabric, FABRIC,
          rot=tilt, pivot=pivot)
    if rng.random() < 0.6:
        ha = rng.uniform(0.18, 0.26)
        for sx in (-1, 1):
            x0 = sx * (w / 2 + 0.02)
            b.box((x0 - 0.015, -0.05, hs - ts), (x0 + 0.015, 0.0, hs + ha), plastic, PLAIN)
            b.box((x0 - 0.035, -0.17, hs + ha), (x0 + 0.035, 0.10, hs + ha + 0.03), plastic,
                  PLAIN)
    return b.build(CHAIR, "chair/office")


def armchair(rng: np.random.Generator) -> Model:
    """Upholstered one-seat armchair. ScanNet labels armchairs (and "sofa chairs") as chair."""
    return _sofa(rng, seats=1, class_id=CHAIR, kind="chair/armchair")


def stool(rng: np.random.Generator) -> Model:
    """Bar or low stool: round or square seat on splayed legs (ScanNet: otherfurniture)."""
    b = MeshBuilder()
    wood = rng.random() < 0.5
    col = _jitter(rng, _pick(rng, WOODS if wood else METALS))
    tex = WOOD if wood else METAL
    h = rng.uniform(0.42, 0.48) if rng.random() < 0.5 else rng.uniform(0.60, 0.78)
    r = rng.uniform(0.15, 0.21)
    n_legs = int(rng.integers(3, 5))
    splay = rng.uniform(0.03, 0.12)
    for k in range(n_legs):
        a = k * 2 * math.pi / n_legs + math.pi / 4
        x, y = 0.75 * r * math.cos(a), 0.75 * r * math.sin(a)
        leg_rot = rot_z(a) @ rot_y(-splay)
        b.box((x - 0.015, y - 0.015, 0.0), (x + 0.015, y + 0.015, h - 0.03), col, tex,
              rot=leg_rot, pivot=(x, y, h - 0.03))
    seat_col = _jitter(rng, _pick(rng, FABRICS)) if rng.random() < 0.4 else col
    if rng.random() < 0.7:
        b.frustum(0.0, 0.0, h - 0.04, h, r, r, seat_col, tex, segments=14)
    else:
        b.box((-r, -r, h - 0.04), (r, r, h), seat_col, tex)
    if h > 0.55:
        z = rng.uniform(0.22, 0.32)
        b.frustum(0.0, 0.0, z, z + 0.02, 0.75 * r + splay * (h - z), None, col, tex, segments=12)
    return b.build(OTHERFURNITURE, "otherfurniture/stool")


# ---------------------------------------------------------------------------------------------
# Tables and desks


def _legs(b: MeshBuilder, w: float, d: float, h: float, leg: float, inset: float, col, tex,
          round_legs: bool = False) -> None:
    for sx in (-1, 1):
        for sy in (-1, 1):
            cx, cy = sx * (w / 2 - leg / 2 - inset), sy * (d / 2 - leg / 2 - inset)
            if round_legs:
                b.frustum(cx, cy, 0.0, h, leg / 2, leg / 2, col, tex, segments=8)
            else:
                b.box((cx - leg / 2, cy - leg / 2, 0.0), (cx + leg / 2, cy + leg / 2, h), col, tex)


def table(rng: np.random.Generator) -> Model:
    """Dining/work table: rectangular four-leg, round pedestal or trestle."""
    b = MeshBuilder()
    top_col = _jitter(rng, _pick(rng, WOODS + LAMINATES[:2]))
    frame_col = _jitter(rng, _pick(rng, WOODS + METALS[:2])) if rng.random() < 0.5 else top_col
    h = rng.uniform(0.70, 0.78)
    t = rng.uniform(0.02, 0.05)
    style = rng.random()
    if style < 0.6:
        w = rng.uniform(0.8, 2.2)
        d = min(rng.uniform(0.6, 1.1), w)
        leg, inset = rng.uniform(0.04, 0.08), rng.uniform(0.02, 0.10)
        _legs(b, w, d, h - t, leg, inset, frame_col, WOOD, round_legs=rng.random() < 0.3)
        if rng.random() < 0.6:  # apron
            a = rng.uniform(0.06, 0.12)
            i = inset + leg * 0.3
            b.box((-w / 2 + i, -d / 2 + i, h - t - a), (w / 2 - i, -d / 2 + i + 0.02, h - t),
                  frame_col, WOOD)
            b.box((-w / 2 + i, d / 2 - i - 0.02, h - t - a), (w / 2 - i, d / 2 - i, h - t),
                  frame_col, WOOD)
            b.box((-w / 2 + i, -d / 2 + i, h - t - a), (-w / 2 + i + 0.02, d / 2 - i, h - t),
                  frame_col, WOOD)
            b.box((w / 2 - i - 0.02, -d / 2 + i, h - t - a), (w / 2 - i, d / 2 - i, h - t),
                  frame_col, WOOD)
        b.box((-w / 2, -d / 2, h - t), (w / 2, d / 2, h), top_col, WOOD)
        b.surface(h, (-w / 2, -d / 2), (w / 2, d / 2))
        kind = "table/four_leg"
    elif style < 0.8:
        r = rng.uniform(0.35, 0.60)
        b.frustum(0.0, 0.0, h - t, h, r, r, top_col, WOOD, segments=24)
        b.frustum(0.0, 0.0, 0.03, h - t, rng.uniform(0.03, 0.07), None, frame_col, METAL,
                  segments=10)
        if rng.random() < 0.5:
            b.frustum(0.0, 0.0, 0.0, 0.03, rng.uniform(0.2, 0.3), None, frame_col, METAL,
                      segments=16)
        else:
            foot = rng.uniform(0.25, 0.35)
            b.box((-foot, -0.03, 0.0), (foot, 0.03, 0.04), frame_col, METAL)
            b.box((-0.03, -foot, 0.0), (0.03, foot, 0.04), frame_col, METAL)
        s = r / math.sqrt(2)
        b.surface(h, (-s, -s), (s, s))
        kind = "table/round"
    else:
        w = rng.uniform(1.2, 2.2)
        d = rng.uniform(0.7, 1.0)
        pt = rng.uniform(0.04, 0.07)
        for sx in (-1, 1):
            x0 = sx * (w / 2 - rng.uniform(0.15, 0.25))
            b.box((x0 - pt / 2, -d * 0.35, 0.0), (x0 + pt / 2, d * 0.35, h - t), frame_col, WOOD)
            b.box((x0 - 0.04, -d * 0.42, 0.0), (x0 + 0.04, d * 0.42, 0.05), frame_col, WOOD)
        b.box((-w / 2 + 0.2, -0.03, 0.25), (w / 2 - 0.2, 0.03, 0.33), frame_col, WOOD)
        b.box((-w / 2, -d / 2, h - t), (w / 2, d / 2, h), top_col, WOOD)
        b.surface(h, (-w / 2, -d / 2), (w / 2, d / 2))
        kind = "table/trestle"
    return b.build(TABLE, kind)


def coffee_table(rng: np.random.Generator) -> Model:
    """Low coffee table or small side table, optionally with a lower shelf."""
    b = MeshBuilder()
    col = _jitter(rng, _pick(rng, WOODS + LAMINATES))
    if rng.random() < 0.6:
        w, d, h = rng.uniform(0.8, 1.4), rng.uniform(0.45, 0.8), rng.uniform(0.35, 0.48)
        kind = "table/coffee"
    else:
        w = d = rng.uniform(0.4, 0.6)
        h = rng.uniform(0.45, 0.65)
        kind = "table/side"
    t = rng.uniform(0.02, 0.06)
    if rng.random() < 0.2:  # solid block
        b.box((-w / 2, -d / 2, 0.0), (w / 2, d / 2, h), col, WOOD)
    else:
        _legs(b, w, d, h - t, rng.uniform(0.03, 0.06), rng.uniform(0.0, 0.05), col, WOOD)
        b.box((-w / 2, -d / 2, h - t), (w / 2, d / 2, h), col, WOOD)
        if rng.random() < 0.5:
            z = rng.uniform(0.08, 0.15)
            b.box((-w / 2 + 0.03, -d / 2 + 0.03, z), (w / 2 - 0.03, d / 2 - 0.03, z + 0.02), col,
                  WOOD)
            b.surface(z + 0.02, (-w / 2 + 0.05, -d / 2 + 0.05), (w / 2 - 0.05, d / 2 - 0.05),
                      clearance=h - t - z - 0.05)
    b.surface(h, (-w / 2, -d / 2), (w / 2, d / 2))
    return b.build(TABLE, kind)


def _drawer_fronts(b: MeshBuilder, x0: float, x1: float, y: float, z0: float, z1: float,
                   n: int, col, handle_col, tex: int = WOOD) -> None:
    """``n`` stacked drawer fronts on the plane y (protruding +y) with a handle each."""
    gap = 0.004
    step = (z1 - z0) / n
    for k in range(n):
        za, zb = z0 + k * step + gap, z0 + (k + 1) * step - gap
        b.box((x0 + gap, y, za), (x1 - gap, y + 0.015, zb), col, tex)
        zc = 0.5 * (za + zb) if step < 0.4 else zb - 0.08
        hw = min(0.12, 0.3 * (x1 - x0))
        xc = 0.5 * (x0 + x1)
        b.box((xc - hw / 2, y + 0.015, zc - 0.01), (xc + hw / 2, y + 0.035, zc + 0.01),
              handle_col, METAL)


def desk(rng: np.random.Generator) -> Model:
    """Office desk: side panels, drawer pedestals or legs, modesty panel."""
    b = MeshBuilder()
    top_col = _jitter(rng, _pick(rng, WOODS + LAMINATES))
    body_col = top_col if rng.random() < 0.6 else _jitter(rng, _pick(rng, LAMINATES + METALS[:2]))
    handle = _jitter(rng, _pick(rng, METALS))
    w, d, h = rng.uniform(1.0, 1.8), rng.uniform(0.55, 0.8), rng.uniform(0.72, 0.76)
    t = rng.uniform(0.025, 0.04)
    style = rng.random()
    pt = rng.uniform(0.02, 0.04)
    if style < 0.35:  # two side panels and a modesty panel
        for sx in (-1, 1):
            x0 = sx * (w / 2 - pt / 2)
            b.box((x0 - pt / 2, -d / 2, 0.0), (x0 + pt / 2, d / 2, h - t), body_col, WOOD)
        kind = "desk/panel"
    elif style < 0.75:  # drawer pedestal(s), panel or legs on the other side
        pw = rng.uniform(0.38, 0.46)
        sides = (-1, 1) if rng.random() < 0.3 else (int(rng.choice([-1, 1])),)
        for sx in sides:
            xa, xb = sorted((sx * w / 2, sx * (w / 2 - pw)))
            b.box((xa, -d / 2, 0.0), (xb, d / 2 - 0.02, h - t), body_col, WOOD)
            _drawer_fronts(b, xa, xb, d / 2 - 0.02, 0.05, h - t - 0.01, int(rng.integers(2, 5)),
                           body_col, handle)
        if len(sides) == 1:
            x0 = -sides[0] * (w / 2 - pt / 2)
            b.box((x0 - pt / 2, -d / 2, 0.0), (x0 + pt / 2, d / 2, h - t), body_col, WOOD)
        kind = "desk/pedestal"
    else:  # legs and a shallow drawer under the top
        leg = rng.uniform(0.03, 0.06)
        _legs(b, w, d, h - t, leg, 0.02, body_col, METAL, round_legs=rng.random() < 0.4)
        b.box((-0.25, -d / 2 + 0.1, h - t - 0.1), (0.25, d / 2 - 0.05, h - t), body_col, WOOD)
        kind = "desk/legs"
    if rng.random() < 0.7:
        mh = rng.uniform(0.25, 0.5)
        b.box((-w / 2 + pt, -d / 2 + 0.02, h - t - mh), (w / 2 - pt, -d / 2 + 0.04, h - t),
              body_col, WOOD)
    b.box((-w / 2, -d / 2, h - t), (w / 2, d / 2, h), top_col, WOOD)
    b.surface(h, (-w / 2, -d / 2), (w / 2, d / 2))
    if rng.random() < 0.25:  # a hutch shelf at the back
        sh = rng.uniform(0.3, 0.45)
        b.box((-w / 2, -d / 2, h), (-w / 2 + 0.02, -d / 2 + 0.3, h + sh), body_col, WOOD)
        b.box((w / 2 - 0.02, -d / 2, h), (w / 2, -d / 2 + 0.3, h + sh), body_col, WOOD)
        b.box((-w / 2, -d / 2, h + sh), (w / 2, -d / 2 + 0.3, h + sh + 0.02), body_col, WOOD)
        b.surface(h + sh + 0.02, (-w / 2, -d / 2), (w / 2, -d / 2 + 0.3))
        kind += "+hutch"
    return b.build(DESK, kind)


def corner_desk(rng: np.random.Generator) -> Model:
    """L-shaped desk for a room corner (backs towards -y and -x)."""
    b = MeshBuilder()
    top_col = _jitter(rng, _pick(rng, WOODS + LAMINATES))
    body_col = top_col if rng.random() < 0.6 else _jitter(rng, _pick(rng, LAMINATES))
    w, l = rng.uniform(1.3, 1.8), rng.uniform(1.1, 1.6)
    d1, d2 = rng.uniform(0.6, 0.75), rng.uniform(0.5, 0.65)
    h, t, pt = rng.uniform(0.72, 0.76), rng.uniform(0.025, 0.04), 0.025
    b.box((0.0, 0.0, h - t), (w, d1, h), top_col, WOOD)
    b.box((0.0, d1, h - t), (d2, l, h), top_col, WOOD)
    b.box((w - pt, 0.0, 0.0), (w, d1, h - t), body_col, WOOD)
    b.box((0.0, l - pt, 0.0), (d2, l, h - t), body_col, WOOD)
    b.box((d2 - 0.05, d1 - 0.05, 0.0), (d2, d1, h - t), body_col, WOOD)
    b.box((0.02, 0.0, h - t - 0.4), (w - pt, 0.02, h - t), body_col, WOOD)
    b.surface(h, (0.0, 0.0), (w, d1))
    b.surface(h, (0.0, d1), (d2, l))
    return b.build(DESK, "desk/corner", corner=True)


# ---------------------------------------------------------------------------------------------
# Storage


def cabinet(rng: np.random.Generator, height: float | None = None, width: float | None = None,
            depth: float | None = None, style: str | None = None,
            hollow_above: float | None = None, top_slab: bool | None = None) -> Model:
    """Cabinet: drawers or doors, plinth or legs; low sideboard, tall wardrobe or nightstand.

    height/width/depth (metres) and style ("drawers" | "doors" | None for random) let a layout
    build matching rows (kitchen runs, filing cabinets side by side). ``hollow_above`` (metres)
    keeps the box open above that height behind full-height doors, so a sink basin can hang in
    it; ``top_slab`` forces (or forbids) an overhanging top.
    """
    b = MeshBuilder()
    body = _jitter(rng, _pick(rng, WOODS + LAMINATES))
    front = body if rng.random() < 0.6 else _jitter(rng, _pick(rng, WOODS + LAMINATES))
    handle = _jitter(rng, _pick(rng, METALS))
    size_kind = rng.random()
    if size_kind < 0.2:
        w, d, h, kind = rng.uniform(0.4, 0.6), rng.uniform(0.35, 0.45), rng.uniform(0.45, 0.65), \
            "nightstand"
    elif size_kind < 0.7:
        w, d, h, kind = rng.uniform(0.4, 1.2), rng.uniform(0.4, 0.6), rng.uniform(0.7, 0.95), "low"
    else:
        w, d, h, kind = rng.uniform(0.5, 1.2), rng.uniform(0.4, 0.62), rng.uniform(1.5, 2.1), "tall"
    w = width if width is not None else w
    d = depth if depth is not None else d
    h = height if height is not None else h
    if rng.random() < 0.6:
        base = rng.uniform(0.05, 0.1)
        b.box((-w / 2 + 0.02, -d / 2 + 0.02, 0.0), (w / 2 - 0.02, d / 2 - 0.05, base), body, PLAIN)
    else:
        base = rng.uniform(0.06, 0.15)
        _legs(b, w, d, base, 0.04, 0.02, _jitter(rng, _pick(rng, METALS + WOODS)), METAL)
    if hollow_above is None:
        b.box((-w / 2, -d / 2, base), (w / 2, d / 2 - 0.015, h), body, WOOD)
    else:
        b.box((-w / 2, -d / 2, base), (w / 2, d / 2 - 0.015, hollow_above), body, WOOD)
        for xa, xb in ((-w / 2, -w / 2 + 0.018), (w / 2 - 0.018, w / 2)):
            b.box((xa, -d / 2, hollow_above), (xb, d / 2 - 0.015, h), body, WOOD)
        b.box((-w / 2, -d / 2, hollow_above), (w / 2, -d / 2 + 0.018, h), body, WOOD)
    style = style or ("drawers" if rng.random() < 0.45 else "doors")
    if style == "drawers":
        n = max(1, int(round((h - base) / rng.uniform(0.15, 0.3))))
        _drawer_fronts(b, -w / 2, w / 2, d / 2 - 0.015, base, h, min(n, 8), front, handle)
    else:
        n_doors = 1 if w < 0.55 else 2
        step = w / n_doors
        for k in range(n_doors):
            xa, xb = -w / 2 + k * step + 0.003, -w / 2 + (k + 1) * step - 0.003
            b.box((xa, d / 2 - 0.015, base + 0.003), (xb, d / 2, h - 0.003), front, WOOD)
            hx = xb - 0.05 if k == 0 and n_doors == 2 else xa + 0.05 if n_doors == 2 else xb - 0.05
            zc = min(base + 0.5 * (h - base), 1.1)
            hl = min(0.25, 0.3 * (h - base))
            b.box((hx - 0.01, d / 2, zc - hl / 2), (hx + 0.01, d / 2 + 0.025, zc + hl / 2), handle,
                  METAL)
    if top_slab if top_slab is not None else rng.random() < 0.3:  # overhanging top
        o = rng.uniform(0.005, 0.03)
        b.box((-w / 2 - o, -d / 2, h), (w / 2 + o, d / 2 + o, h + 0.025),
              _jitter(rng, _pick(rng, WOODS)), WOOD)
        h += 0.025
    if h < 1.3:
        b.surface(h, (-w / 2, -d / 2), (w / 2, d / 2))
    if height is not None or width is not None:
        kind = "nightstand" if h < 0.7 and w < 0.65 else "low" if h < 1.3 else "tall"
    return b.build(CABINET, f"cabinet/{kind}-{style}")


def wall_cabinet(rng: np.random.Generator, width: float, depth: float, height: float) -> Model:
    """Kitchen wall cabinet (hung above a counter): body and doors, no plinth."""
    b = MeshBuilder()
    body = _jitter(rng, _pick(rng, WOODS + LAMINATES))
    handle = _jitter(rng, _pick(rng, METALS))
    w, d, h = width, depth, height
    b.box((-w / 2, -d / 2, 0.0), (w / 2, d / 2 - 0.015, h), body, WOOD)
    n_doors = 1 if w < 0.55 else 2
    step = w / n_doors
    for k in range(n_doors):
        xa, xb = -w / 2 + k * step + 0.003, -w / 2 + (k + 1) * step - 0.003
        b.box((xa, d / 2 - 0.015, 0.003), (xb, d / 2, h - 0.003), body, WOOD)
        hx = xa + 0.04 if k == 1 else xb - 0.04
        b.box((hx - 0.01, d / 2, 0.04), (hx + 0.01, d / 2 + 0.025, 0.16), handle, METAL)
    return b.build(CABINET, "cabinet/wall")


def bookshelf(rng: np.random.Generator) -> Model:
    """Open shelf: sides, top, bottom, optional back panel, 2-6 shelves."""
    b = MeshBuilder()
    col = _jitter(rng, _pick(rng, WOODS + LAMINATES))
    w, d, h = rng.uniform(0.6, 1.2), rng.uniform(0.25, 0.40), rng.uniform(0.8, 2.1)
    t = rng.uniform(0.015, 0.03)
    b.box((-w / 2, -d / 2, 0.0), (-w / 2 + t, d / 2, h), col, WOOD)
    b.box((w / 2 - t, -d / 2, 0.0), (w / 2, d / 2, h), col, WOOD)
    b.box((-w / 2, -d / 2, h - t), (w / 2, d / 2, h), col, WOOD)
    kick = rng.uniform(0.0, 0.08)
    if kick > 0.02:
        b.box((-w / 2 + t, d / 2 - 0.03, 0.0), (w / 2 - t, d / 2 - 0.01, kick), col, WOOD)
    if rng.random() < 0.75:
        b.box((-w / 2 + t, -d / 2, 0.0), (w / 2 - t, -d / 2 + 0.008, h - t),
              col if rng.random() < 0.7 else _jitter(rng, _pick(rng, LAMINATES)), PLAIN)
    n = max(2, int(round((h - kick) / rng.uniform(0.28, 0.40))))
    zs = np.linspace(kick, h - t, n + 1)[:-1]
    spacing = (h - t - kick) / n
    for z in zs:
        b.box((-w / 2 + t, -d / 2, z), (w / 2 - t, d / 2, z + t), col, WOOD)
        b.surface(z + t, (-w / 2 + t, -d / 2 + 0.01), (w / 2 - t, d / 2),
                  clearance=spacing - t - 0.02)
    b.surface(h, (-w / 2, -d / 2), (w / 2, d / 2))
    return b.build(BOOKSHELF, "bookshelf/open")


def refrigerator(rng: np.random.Generator) -> Model:
    """Fridge: top/bottom freezer, side-by-side, or a mini fridge."""
    b = MeshBuilder()
    col = _jitter(rng, _pick(rng, ((0.94, 0.94, 0.93), (0.75, 0.76, 0.78), (0.12, 0.12, 0.13),
                                   (0.85, 0.86, 0.88))), 0.03)
    handle = _jitter(rng, _pick(rng, METALS))
    if rng.random() < 0.15:
        w, d, h, kind = rng.uniform(0.45, 0.55), rng.uniform(0.45, 0.6), rng.uniform(0.5, 0.9), "mini"
    else:
        w, d, h, kind = rng.uniform(0.55, 0.92), rng.uniform(0.6, 0.78), rng.uniform(1.5, 1.95), "tall"
    door = rng.uniform(0.03, 0.06)
    b.box((-w / 2, -d / 2, 0.0), (w / 2, d / 2 - door, h), col, METAL)
    y0 = d / 2 - door
    if kind == "tall" and w > 0.8 and rng.random() < 0.5:
        xs = (-w / 2, -w / 2 + 0.45 * w, w / 2)
        for k in range(2):
            b.box((xs[k] + 0.004, y0, 0.02), (xs[k + 1] - 0.004, d / 2, h - 0.01), col, METAL)
            hx = xs[1] - 0.04 if k == 0 else xs[1] + 0.04
            b.box((hx - 0.012, d / 2 + 0.02, 0.6), (hx + 0.012, d / 2 + 0.05, 1.3), handle, METAL)
            b.box((hx - 0.012, d / 2, 0.6), (hx + 0.012, d / 2 + 0.02, 0.64), handle, METAL)
        kind = "side_by_side"
    else:
        split = h * (rng.uniform(0.62, 0.72) if rng.random() < 0.5 else rng.uniform(0.3, 0.4))
        if kind == "mini":
            split = h
        for za, zb in ((0.02, split - 0.004), (split + 0.004, h - 0.01)):
            if zb - za < 0.05:
                continue
            b.box((-w / 2 + 0.004, y0, za), (w / 2 - 0.004, d / 2, zb), col, METAL)
            hz0, hz1 = za + 0.1 * (zb - za), za + 0.9 * (zb - za)
            hx = w / 2 - 0.06
            b.box((hx - 0.012, d / 2 + 0.02, hz0), (hx + 0.012, d / 2 + 0.045, hz1), handle, METAL)
            b.box((hx - 0.012, d / 2, hz0), (hx + 0.012, d / 2 + 0.02, hz0 + 0.03), handle, METAL)
    if h < 1.0:
        b.surface(h, (-w / 2, -d / 2), (w / 2, d / 2 - door))
    return b.build(REFRIGERATOR, f"refrigerator/{kind}")


# ---------------------------------------------------------------------------------------------
# Seating and beds


def _sofa(rng: np.random.Generator, seats: int, class_id: int, kind: str) -> Model:
    b = MeshBuilder()
    fabric = _jitter(rng, _pick(rng, FABRICS))
    cushion = fabric if rng.random() < 0.7 else _jitter(rng, _pick(rng, FABRICS))
    seat_w = rng.uniform(0.55, 0.7)
    arm_count = int(rng.choice([0, 1, 2, 2, 2, 2])) if seats > 1 else 2
    arm_w = rng.uniform(0.08, 0.25)
    w = seats * seat_w + arm_count * arm_w
    d = rng.uniform(0.8, 1.0) if seats > 1 else rng.uniform(0.7, 0.9)
    feet = rng.uniform(0.03, 0.12) if rng.random() < 0.6 else 0.0
    if feet > 0:
        _legs(b, w, d, feet, 0.04, 0.03, _jitter(rng, _pick(rng, WOODS + METALS[:2])), WOOD)
    base_top = feet + rng.uniform(0.15, 0.25)
    b.box((-w / 2, -d / 2, feet), (w / 2, d / 2, base_top), fabric, FABRIC)
    back_t = rng.uniform(0.15, 0.25)
    back_h = rng.uniform(0.72, 0.95)
    arm_h = rng.uniform(0.52, 0.68)
    b.box((-w / 2, -d / 2, base_top), (w / 2, -d / 2 + back_t, back_h), fabric, FABRIC)
    arms_x = []
    if arm_count >= 1:
        arms_x.append(-1)
    if arm_count == 2:
        arms_x.append(1)
    for sx in arms_x:
        xa, xb = sorted((sx * w / 2, sx * (w / 2 - arm_w)))
        b.box((xa, -d / 2, feet), (xb, d / 2, arm_h), fabric, FABRIC)
    x_lo = -w / 2 + (arm_w if -1 in arms_x else 0.0)
    ct = rng.uniform(0.1, 0.18)
    for k in range(seats):
        xa = x_lo + k * seat_w + 0.005
        b.box((xa, -d / 2 + back_t, base_top), (xa + seat_w - 0.01, d / 2, base_top + ct), cushion,
              FABRIC)
        if rng.random() < 0.6:  # back cushion, leaning
            b.box((xa, -d / 2 + back_t, base_top + ct), (xa + seat_w - 0.01, -d / 2 + back_t + 0.14,
                                                          back_h - 0.05), cushion, FABRIC,
                  rot=rot_x(0.15), pivot=(0.0, -d / 2 + back_t, base_top + ct))
    return b.build(class_id, kind)


def sofa(rng: np.random.Generator) -> Model:
    """Two- or three-seat sofa with 0-2 arm rests, feet or plinth, seat and back cushions."""
    seats = int(rng.choice([2, 3, 3]))
    return _sofa(rng, seats=seats, class_id=SOFA, kind=f"sofa/{seats}_seat")


def corner_sofa(rng: np.random.Generator) -> Model:
    """L-shaped sectional for a room corner (backs towards -y and -x)."""
    b = MeshBuilder()
    fabric = _jitter(rng, _pick(rng, FABRICS))
    d = rng.uniform(0.8, 0.95)
    w, l = rng.uniform(1.8, 2.8), rng.uniform(1.6, 2.5)
    base_top = rng.uniform(0.2, 0.3)
    back_t, back_h = rng.uniform(0.15, 0.25), rng.uniform(0.72, 0.9)
    arm_w, arm_h = rng.uniform(0.1, 0.22), rng.uniform(0.52, 0.65)
    ct = rng.uniform(0.1, 0.16)
    b.box((0.0, 0.0, 0.0), (w, d, base_top), fabric, FABRIC)
    b.box((0.0, d, 0.0), (d, l, base_top), fabric, FABRIC)
    b.box((0.0, 0.0, base_top), (w, back_t, back_h), fabric, FABRIC)
    b.box((0.0, back_t, base_top), (back_t, l, back_h), fabric, FABRIC)
    b.box((w - arm_w, 0.0, 0.0), (w, d, arm_h), fabric, FABRIC)
    b.box((0.0, l - arm_w, 0.0), (d, l, arm_h), fabric, FABRIC)
    b.box((back_t, back_t, base_top), (w - arm_w, d, base_top + ct), fabric, FABRIC)
    b.box((back_t, d, base_top), (d, l - arm_w, base_top + ct), fabric, FABRIC)
    return b.build(SOFA, "sofa/corner", corner=True)


def bed(rng: np.random.Generator) -> Model:
    """Single or double bed: frame, mattress, blanket, pillows, headboard, optional footboard.

    The head is at -y (against a wall), the foot at +y.
    """
    b = MeshBuilder()
    frame = _jitter(rng, _pick(rng, WOODS + LAMINATES[:3]))
    sheet = _jitter(rng, _pick(rng, CERAMICS + FABRICS), 0.03)
    blanket = _jitter(rng, _pick(rng, FABRICS + CERAMICS))
    w = rng.uniform(0.9, 1.2) if rng.random() < 0.4 else rng.uniform(1.4, 1.9)
    length = rng.uniform(1.95, 2.2)
    legs = rng.uniform(0.05, 0.15) if rng.random() < 0.5 else 0.0
    if legs:
        _legs(b, w, length, legs, 0.05, 0.02, frame, WOOD)
    ft = legs + rng.uniform(0.15, 0.3)
    b.box((-w / 2, -length / 2, legs), (w / 2, length / 2, ft), frame, WOOD)
    mt = rng.uniform(0.15, 0.28)
    b.box((-w / 2 + 0.02, -length / 2 + 0.05, ft), (w / 2 - 0.02, length / 2 - 0.02, ft + mt),
          sheet, FABRIC)
    cover = rng.uniform(0.55, 0.8) * length
    over = rng.uniform(0.03, 0.2)
    b.box((-w / 2 - 0.01, length / 2 - cover, ft + mt), (w / 2 + 0.01, length / 2, ft + mt + 0.03),
          blanket, FABRIC)
    for sx in (-1, 1):  # blanket hanging over the sides
        x0 = sx * (w / 2 + 0.01)
        b.box((min(x0, x0 + sx * 0.02), length / 2 - cover, ft + mt - over),
              (max(x0, x0 + sx * 0.02), length / 2, ft + mt + 0.03), blanket, FABRIC)
    n_pillows = 1 if w < 1.3 else 2
    pw = min(0.7, (w - 0.1) / n_pillows - 0.03)
    for k in range(n_pillows):
        xc = -w / 2 + (k + 0.5) * w / n_pillows
        b.box((xc - pw / 2, -length / 2 + 0.08, ft + mt), (xc + pw / 2, -length / 2 + 0.45,
                                                            ft + mt + rng.uniform(0.08, 0.15)),
              sheet, FABRIC)
    hh = rng.uniform(0.8, 1.3)
    ht = rng.uniform(0.04, 0.1)
    b.box((-w / 2 - 0.02, -length / 2 - ht, 0.0), (w / 2 + 0.02, -length / 2, hh), frame, WOOD)
    if rng.random() < 0.3:
        fh = rng.uniform(0.4, 0.65)
        b.box((-w / 2 - 0.02, length / 2, 0.0), (w / 2 + 0.02, length / 2 + 0.04, fh), frame, WOOD)
    return b.build(BED, "bed/single" if w < 1.3 else "bed/double")


# ---------------------------------------------------------------------------------------------
# Bathroom


def toilet(rng: np.random.Generator) -> Model:
    """Toilet: pedestal, elliptical bowl, seat and lid, cistern at the back (-y)."""
    b = MeshBuilder()
    col = _jitter(rng, _pick(rng, CERAMICS), 0.02)
    seat = col if rng.random() < 0.7 else _jitter(rng, _pick(rng, ((0.1, 0.1, 0.1),) + WOODS))
    tw, td = rng.uniform(0.36, 0.5), rng.uniform(0.15, 0.22)
    th = rng.uniform(0.72, 0.85)
    b.box((-tw / 2, 0.0, 0.38), (tw / 2, td, th), col, CERAMIC)
    rx, ry = rng.uniform(0.17, 0.2), rng.uniform(0.22, 0.26)
    cy = td + ry - 0.05
    hb = rng.uniform(0.38, 0.42)
    b.frustum(0.0, cy - 0.03, 0.0, 0.26, 0.11, 0.13, col, CERAMIC, segments=14,
              scale_xy=(1.0, 1.5), bottom=True, top=False)
    b.frustum(0.0, cy, 0.24, hb, 0.8, 1.0, col, CERAMIC, segments=18, scale_xy=(rx, ry),
              bottom=True, top=False)
    b.frustum(0.0, cy, hb, hb + 0.02, 1.0, 1.0, seat, PLAIN, segments=18, scale_xy=(rx, ry))
    if rng.random() < 0.6:
        b.frustum(0.0, cy, hb + 0.02, hb + 0.035, 0.97, 0.97, seat, PLAIN, segments=18,
                  scale_xy=(rx, ry))
    else:  # lid up, leaning on the cistern
        b.box((-rx * 0.95, td, hb + 0.02), (rx * 0.95, td + 0.02, hb + 0.02 + 2 * ry * 0.9), seat,
              PLAIN, rot=rot_x(-0.15), pivot=(0.0, td, hb + 0.02))
    return b.build(TOILET, "toilet/floor")


def _basin(b: MeshBuilder, w: float, d: float, z0: float, z1: float, col, wall: float = 0.025,
           y0: float = 0.0) -> None:
    """Open-topped box: bottom and four rim walls, from z0 to z1, centred on (0, y0 + d/2)."""
    ya, yb = y0, y0 + d
    b.box((-w / 2, ya, z0), (w / 2, yb, z0 + wall), col, CERAMIC)
    b.box((-w / 2, ya, z0), (w / 2, ya + wall, z1), col, CERAMIC)
    b.box((-w / 2, yb - wall, z0), (w / 2, yb, z1), col, CERAMIC)
    b.box((-w / 2, ya, z0), (-w / 2 + wall, yb, z1), col, CERAMIC)
    b.box((w / 2 - wall, ya, z0), (w / 2, yb, z1), col, CERAMIC)


def _faucet(b: MeshBuilder, x: float, y: float, z: float, reach: float, rng) -> None:
    col = _jitter(rng, _pick(rng, METALS[:1] + METALS[2:3]), 0.02)
    b.frustum(x, y, z, z + 0.16, 0.015, None, col, METAL, segments=8)
    b.box((x - 0.012, y, z + 0.13), (x + 0.012, y + reach, z + 0.16), col, METAL)


def sink(rng: np.random.Generator) -> Model:
    """Bathroom sink: pedestal or wall-hung basin with a faucet."""
    b = MeshBuilder()
    col = _jitter(rng, _pick(rng, CERAMICS), 0.02)
    w, d = rng.uniform(0.45, 0.65), rng.uniform(0.35, 0.5)
    top = rng.uniform(0.8, 0.9)
    depth = rng.uniform(0.12, 0.2)
    _basin(b, w, d, top - depth, top, col, y0=-d / 2)
    if rng.random() < 0.6:
        b.frustum(0.0, -0.05, 0.0, top - depth, rng.uniform(0.08, 0.12), rng.uniform(0.06, 0.09),
                  col, CERAMIC, segments=12)
        kind = "sink/pedestal"
    else:
        for sx in (-1, 1):
            b.frustum(sx * (w / 2 - 0.05), 0.0, 0.0, top - depth, 0.015, None,
                      _jitter(rng, _pick(rng, METALS)), METAL, segments=8)
        kind = "sink/legs"
    _faucet(b, 0.0, -d / 2 + 0.01, top, 0.1, rng)
    return b.build(SINK, kind)


def vessel_sink(rng: np.random.Generator) -> Model:
    """A bowl standing on a counter or cabinet, with its faucet (the sink of a vanity)."""
    b = MeshBuilder()
    col = _jitter(rng, _pick(rng, CERAMICS), 0.02)
    r = rng.uniform(0.16, 0.24)
    h = rng.uniform(0.1, 0.16)
    b.frustum(0.0, 0.0, 0.0, h, r * 0.6, r, col, CERAMIC, segments=20, top=False)
    _faucet(b, 0.0, -r - 0.04, 0.0, r * 0.7, rng)
    return b.build(SINK, "sink/vessel")


def kitchen_sink(rng: np.random.Generator, width: float, depth: float) -> Model:
    """A steel basin that drops into a counter hole of (width - 0.06) x (depth - 0.06) metres:
    a rim on the counter top, the bowl below it. Not recentred: the origin is the centre of the
    hole at counter-top height, so the bowl has negative z."""
    b = MeshBuilder()
    steel = _jitter(rng, METALS[0], 0.03)
    bowl_depth = rng.uniform(0.16, 0.22)
    _basin(b, width - 0.06, depth - 0.06, -bowl_depth, 0.0, steel, wall=0.01,
           y0=-(depth - 0.06) / 2)
    for ya, yb in ((-depth / 2, -depth / 2 + 0.03), (depth / 2 - 0.03, depth / 2)):
        b.box((-width / 2, ya, 0.0), (width / 2, yb, 0.008), steel, METAL)
    for xa, xb in ((-width / 2, -width / 2 + 0.03), (width / 2 - 0.03, width / 2)):
        b.box((xa, -depth / 2, 0.0), (xb, depth / 2, 0.008), steel, METAL)
    _faucet(b, 0.0, -depth / 2 - 0.02, 0.0, 0.15, rng)
    return b.build(SINK, "sink/kitchen", recentre=False)


def bathtub(rng: np.random.Generator) -> Model:
    """Bathtub along its long side: outer walls, bottom, optional skirt panel, faucet."""
    b = MeshBuilder()
    col = _jitter(rng, _pick(rng, CERAMICS), 0.02)
    length, w, h = rng.uniform(1.5, 1.8), rng.uniform(0.7, 0.85), rng.uniform(0.45, 0.6)
    wall = rng.uniform(0.05, 0.1)
    feet = rng.uniform(0.06, 0.12) if rng.random() < 0.25 else 0.0
    if feet:
        _legs(b, length, w, feet, 0.06, 0.1, _jitter(rng, _pick(rng, METALS)), METAL)
    bottom = feet + rng.uniform(0.08, 0.15)
    b.box((-length / 2, -w / 2, feet), (length / 2, w / 2, bottom), col, CERAMIC)
    b.box((-length / 2, -w / 2, feet), (length / 2, -w / 2 + wall, feet + h), col, CERAMIC)
    b.box((-length / 2, w / 2 - wall, feet), (length / 2, w / 2, feet + h), col, CERAMIC)
    b.box((-length / 2, -w / 2, feet), (-length / 2 + wall, w / 2, feet + h), col, CERAMIC)
    b.box((length / 2 - wall, -w / 2, feet), (length / 2, w / 2, feet + h), col, CERAMIC)
    _faucet(b, length / 2 - wall - 0.06, -w / 2 + wall / 2, feet + h, 0.12, rng)
    return b.build(BATHTUB, "bathtub/footed" if feet else "bathtub/built_in")


# ---------------------------------------------------------------------------------------------
# Other furniture


def ottoman(rng: np.random.Generator) -> Model:
    b = MeshBuilder()
    col = _jitter(rng, _pick(rng, FABRICS))
    h = rng.uniform(0.35, 0.46)
    if rng.random() < 0.5:
        r = rng.uniform(0.2, 0.35)
        b.frustum(0.0, 0.0, 0.0, h, r, r, col, FABRIC, segments=18)
    else:
        w, d = rng.uniform(0.4, 0.9), rng.uniform(0.4, 0.6)
        b.box((-w / 2, -d / 2, 0.0), (w / 2, d / 2, h), col, FABRIC)
    return b.build(OTHERFURNITURE, "otherfurniture/ottoman")


def trash_bin(rng: np.random.Generator) -> Model:
    b = MeshBuilder()
    col = _jitter(rng, _pick(rng, METALS + BRIGHTS[:4]))
    r, h = rng.uniform(0.12, 0.2), rng.uniform(0.3, 0.7)
    b.frustum(0.0, 0.0, 0.0, h, r * rng.uniform(0.8, 1.0), r, col, PLAIN, segments=16, top=False)
    return b.build(OTHERFURNITURE, "otherfurniture/bin")


def coat_rack(rng: np.random.Generator) -> Model:
    b = MeshBuilder()
    col = _jitter(rng, _pick(rng, WOODS + METALS[:2]))
    h = rng.uniform(1.6, 1.9)
    b.frustum(0.0, 0.0, 0.0, 0.03, rng.uniform(0.18, 0.25), None, col, WOOD, segments=16)
    b.frustum(0.0, 0.0, 0.03, h, 0.018, None, col, WOOD, segments=8)
    for k in range(int(rng.integers(3, 7))):
        a = k * 2 * math.pi / 6
        b.box((0.0, -0.01, h - 0.15), (0.12, 0.01, h - 0.12), col, WOOD, rot=rot_z(a) @ rot_y(-0.4),
              pivot=(0.0, 0.0, h - 0.15))
    if rng.random() < 0.5:  # a coat hanging on it
        coat = _jitter(rng, _pick(rng, FABRICS))
        b.box((0.02, -0.2, h - 1.0), (0.14, 0.2, h - 0.15), coat, FABRIC)
    return b.build(OTHERFURNITURE, "otherfurniture/coat_rack")


def bench(rng: np.random.Generator) -> Model:
    b = MeshBuilder()
    col = _jitter(rng, _pick(rng, WOODS))
    w, d, h = rng.uniform(0.9, 1.6), rng.uniform(0.3, 0.45), rng.uniform(0.42, 0.48)
    b.box((-w / 2, -d / 2, h - 0.04), (w / 2, d / 2, h), col, WOOD)
    for sx in (-1, 1):
        x0 = sx * (w / 2 - 0.08)
        b.box((x0 - 0.025, -d / 2 + 0.02, 0.0), (x0 + 0.025, d / 2 - 0.02, h - 0.04), col, WOOD)
    return b.build(OTHERFURNITURE, "otherfurniture/bench")


def piano(rng: np.random.Generator) -> Model:
    b = MeshBuilder()
    col = _jitter(rng, _pick(rng, ((0.05, 0.05, 0.06),) + WOODS[1:3]), 0.02)
    w, d, h = rng.uniform(1.4, 1.55), rng.uniform(0.5, 0.62), rng.uniform(1.05, 1.3)
    b.box((-w / 2, -d / 2, 0.0), (w / 2, d / 2 - 0.25, h), col, WOOD)
    b.box((-w / 2, d / 2 - 0.25, 0.62), (w / 2, d / 2, 0.74), col, WOOD)
    b.box((-w / 2 + 0.08, d / 2 - 0.25, 0.74), (w / 2 - 0.08, d / 2 - 0.08, 0.76),
          (0.93, 0.93, 0.9), PLAIN)
    for sx in (-1, 1):
        b.box((sx * (w / 2 - 0.03) - 0.03, d / 2 - 0.1, 0.0), (sx * (w / 2 - 0.03) + 0.03, d / 2,
                                                              0.62), col, WOOD)
    b.surface(h, (-w / 2, -d / 2), (w / 2, d / 2 - 0.25))
    return b.build(OTHERFURNITURE, "otherfurniture/piano")


def washing_machine(rng: np.random.Generator) -> Model:
    b = MeshBuilder()
    col = _jitter(rng, CERAMICS[0], 0.03)
    w, d, h = rng.uniform(0.58, 0.62), rng.uniform(0.55, 0.65), rng.uniform(0.82, 0.88)
    b.box((-w / 2, -d / 2, 0.0), (w / 2, d / 2, h), col, PLAIN)
    ring = _jitter(rng, METALS[2], 0.03)
    # The porthole: a short disc whose axis is turned from z to +y.
    b.frustum(0.0, d / 2 - 0.005, 0.43, 0.45, 0.2, 0.19, ring, METAL, segments=20,
              rot=rot_x(-math.pi / 2), pivot=(0.0, d / 2 - 0.005, 0.43))
    b.box((-w / 2 + 0.03, d / 2, h - 0.12), (w / 2 - 0.03, d / 2 + 0.01, h - 0.03), ring, PLAIN)
    b.surface(h, (-w / 2, -d / 2), (w / 2, d / 2))
    return b.build(OTHERFURNITURE, "otherfurniture/washing_machine")


# ---------------------------------------------------------------------------------------------
# Wall-mounted things. Frame: the wall plane is y = 0, the room is +y, z = 0 is the floor, x runs
# along the wall. These are placed by the layout without recentring.


def door(rng: np.random.Generator, width: float, height: float) -> tuple[Model, float]:
    """Door frame around a wall opening plus a leaf swung into the room.

    Returns the model and the swing radius (metres) the layout keeps clear in front of it.
    """
    b = MeshBuilder()
    frame_col = _jitter(rng, _pick(rng, WOODS + CERAMICS), 0.03)
    leaf_col = frame_col if rng.random() < 0.5 else _jitter(rng, _pick(rng, WOODS + LAMINATES))
    fw, fd = rng.uniform(0.05, 0.09), rng.uniform(0.015, 0.03)
    b.box((-width / 2 - fw, -0.1, 0.0), (-width / 2, fd, height + fw), frame_col, WOOD)
    b.box((width / 2, -0.1, 0.0), (width / 2 + fw, fd, height + fw), frame_col, WOOD)
    b.box((-width / 2, -0.1, height), (width / 2, fd, height + fw), frame_col, WOOD)
    lt = rng.uniform(0.035, 0.05)
    angle = 0.0 if rng.random() < 0.25 else rng.uniform(0.3, 1.75)
    hinge = int(rng.choice([-1, 1]))
    hx = hinge * width / 2
    lo = (min(hx, hx - hinge * width), -lt, 0.01)
    hi = (max(hx, hx - hinge * width), 0.0, height - 0.01)
    rot = rot_z(-hinge * angle)
    b.box(lo, hi, leaf_col, WOOD, rot=rot, pivot=(hx, 0.0, 0.0))
    knob = _jitter(rng, _pick(rng, METALS))
    kx = hx - hinge * (width - 0.07)
    handle_pos = rot @ (np.array([kx, 0.0, 1.0]) - (hx, 0.0, 0.0)) + (hx, 0.0, 0.0)
    normal = rot @ np.array([0.0, 1.0, 0.0])
    c = handle_pos + normal * 0.03
    b.box(c - (0.012, 0.03, 0.012), c + (0.012, 0.03, 0.012), knob, METAL, rot=rot)
    return b.build(DOOR, "door/open" if angle else "door/closed", recentre=False), width


def window(rng: np.random.Generator, width: float, height: float) -> Model:
    """Window frame in a wall opening: jambs, head, sill board, mullions. Origin: opening's bottom
    centre (the sill height is added by the layout). The glass is not modelled (rays pass)."""
    b = MeshBuilder()
    col = _jitter(rng, _pick(rng, CERAMICS + WOODS[:2] + METALS[1:2]), 0.03)
    fw, depth = rng.uniform(0.04, 0.08), rng.uniform(0.06, 0.15)
    b.box((-width / 2 - fw, -depth, -fw), (-width / 2, 0.01, height + fw), col, PLAIN)
    b.box((width / 2, -depth, -fw), (width / 2 + fw, 0.01, height + fw), col, PLAIN)
    b.box((-width / 2, -depth, height), (width / 2, 0.01, height + fw), col, PLAIN)
    b.box((-width / 2 - fw, -depth, -fw), (width / 2 + fw, rng.uniform(0.04, 0.15), 0.0), col,
          PLAIN)
    n_v = int(width / rng.uniform(0.5, 0.9))
    for k in range(1, n_v + 1):
        x = -width / 2 + k * width / (n_v + 1)
        b.box((x - 0.025, -depth * 0.6, 0.0), (x + 0.025, -depth * 0.6 + 0.05, height), col, PLAIN)
    if rng.random() < 0.4:
        z = height * rng.uniform(0.6, 0.75)
        b.box((-width / 2, -depth * 0.6, z - 0.025), (width / 2, -depth * 0.6 + 0.05, z + 0.025),
              col, PLAIN)
    return b.build(WINDOW, "window/frame", recentre=False)


def picture(rng: np.random.Generator) -> Model:
    """Framed picture hanging on a wall (a thin box; its back on y = 0, centred on x = z = 0)."""
    b = MeshBuilder()
    w, h = rng.uniform(0.3, 1.2), rng.uniform(0.3, 0.9)
    t = rng.uniform(0.015, 0.04)
    frame = _jitter(rng, _pick(rng, WOODS + ((0.1, 0.1, 0.1), (0.8, 0.68, 0.35))), 0.03)
    canvas = _jitter(rng, _pick(rng, BRIGHTS + FABRICS), 0.1)
    fw = rng.uniform(0.02, 0.06)
    b.box((-w / 2, 0.0, -h / 2), (-w / 2 + fw, t, h / 2), frame, WOOD)
    b.box((w / 2 - fw, 0.0, -h / 2), (w / 2, t, h / 2), frame, WOOD)
    b.box((-w / 2 + fw, 0.0, -h / 2), (w / 2 - fw, t, -h / 2 + fw), frame, WOOD)
    b.box((-w / 2 + fw, 0.0, h / 2 - fw), (w / 2 - fw, t, h / 2), frame, WOOD)
    b.box((-w / 2 + fw, 0.0, -h / 2 + fw), (w / 2 - fw, t * 0.6, h / 2 - fw), canvas, CANVAS)
    return b.build(PICTURE, "picture/frame", recentre=False)


def curtain(rng: np.random.Generator, width: float, top: float, bottom: float,
            class_id: int = CURTAIN) -> Model:
    """Pleated curtain hanging from a rod: a sheet with sinusoidal folds, wall plane y = 0.

    width: metres along x (centred on 0); top/bottom: z of the rod and the hem, metres.
    """
    b = MeshBuilder()
    col = _jitter(rng, _pick(rng, FABRICS + CERAMICS))
    amp, wavelength = rng.uniform(0.02, 0.06), rng.uniform(0.1, 0.2)
    gap = rng.uniform(0.06, 0.14)
    nx = max(8, int(width / wavelength * 8))
    x = np.linspace(-width / 2, width / 2, nx)
    phase = rng.uniform(0, 2 * math.pi)
    y = gap + amp * (1.0 + np.sin(2 * math.pi * x / wavelength + phase))
    z = np.array([bottom, 0.5 * (top + bottom), top - 0.03])
    grid = np.stack(np.broadcast_arrays(x[None, :], y[None, :] + 0.3 * amp *
                                        np.array([1.0, 0.5, 0.0])[:, None], z[:, None]), axis=-1)
    b.sheet(grid, col, FABRIC)
    rod = _jitter(rng, _pick(rng, METALS + WOODS[:2]))
    b.box((-width / 2 - 0.05, gap + amp - 0.01, top - 0.03), (width / 2 + 0.05, gap + amp + 0.01,
                                                               top - 0.01), rod, METAL)
    name = "curtain/pleated" if class_id == CURTAIN else "shower_curtain/pleated"
    return b.build(class_id, name, recentre=False)


# ---------------------------------------------------------------------------------------------
# Clutter: ScanNet "otherprop", labelled IGNORE_LABEL


def clutter(rng: np.random.Generator, max_height: float = 0.5) -> Model:
    """One small object that stands on a surface: books, boxes, cups, bottles, monitors, laptops,
    lamps, plants, bowls. ``max_height`` (metres) bounds its height (shelf clearance)."""
    b = MeshBuilder()
    col = _jitter(rng, _pick(rng, BRIGHTS + FABRICS + LAMINATES), 0.08)
    choice = rng.random()
    if max_height < 0.14:
        choice = 0.0
    if choice < 0.25:  # books, standing in a row or lying in a stack
        n = int(rng.integers(1, 8))
        x = 0.0
        upright = rng.random() < 0.6 and max_height > 0.2
        for _ in range(n):
            bw, bd = rng.uniform(0.015, 0.06), rng.uniform(0.12, 0.22)
            bh = min(rng.uniform(0.15, 0.3), max_height - 0.01)
            c = _jitter(rng, _pick(rng, BRIGHTS + FABRICS), 0.1)
            if upright:
                b.box((x, 0.0, 0.0), (x + bw, bd, bh), c, PLAIN)
                x += bw + 0.002
            else:
                b.box((0.0, 0.0, x), (bh, bd, x + bw), c, PLAIN)
                x += bw
                if x > max_height - 0.06:
                    break
        kind = "books"
    elif choice < 0.4:
        s = rng.uniform(0.1, 0.45, 3)
        s[2] = min(s[2], max_height - 0.01)
        b.box((0.0, 0.0, 0.0), s, _jitter(rng, (0.65, 0.5, 0.32), 0.05), PLAIN)
        kind = "box"
    elif choice < 0.52:
        r, h = rng.uniform(0.03, 0.05), rng.uniform(0.08, 0.12)
        b.frustum(0.0, 0.0, 0.0, h, r, r, col, CERAMIC, segments=10, top=False)
        kind = "cup"
    elif choice < 0.62:
        r, h = rng.uniform(0.03, 0.045), min(rng.uniform(0.2, 0.32), max_height - 0.01)
        b.frustum(0.0, 0.0, 0.0, 0.7 * h, r, r, col, PLAIN, segments=10)
        b.frustum(0.0, 0.0, 0.7 * h, h, r, 0.012, col, PLAIN, segments=10)
        kind = "bottle"
    elif choice < 0.74 and max_height > 0.45:
        sw, sh = rng.uniform(0.45, 0.7), rng.uniform(0.28, 0.42)
        dark = _jitter(rng, (0.08, 0.08, 0.09), 0.02)
        b.box((-0.1, -0.09, 0.0), (0.1, 0.09, 0.015), dark, PLAIN)
        b.box((-0.02, -0.03, 0.0), (0.02, -0.01, 0.12), dark, PLAIN)
        b.box((-sw / 2, -0.03, 0.1), (sw / 2, 0.0, 0.1 + sh), dark, PLAIN)
        kind = "monitor"
    elif choice < 0.82:
        dark = _jitter(rng, _pick(rng, METALS), 0.03)
        b.box((-0.16, -0.11, 0.0), (0.16, 0.11, 0.02), dark, METAL)
        if max_height > 0.25:
            b.box((-0.16, -0.11, 0.02), (0.16, -0.1, 0.23), dark, METAL, rot=rot_x(0.3),
                  pivot=(0.0, -0.11, 0.02))
        kind = "laptop"
    elif choice < 0.9 and max_height > 0.4:
        h = min(rng.uniform(0.35, 0.6), max_height - 0.01)
        b.frustum(0.0, 0.0, 0.0, 0.03, 0.08, None, col, PLAIN, segments=12)
        b.frustum(0.0, 0.0, 0.03, h - 0.15, 0.01, None, col, METAL, segments=6)
        b.frustum(0.0, 0.0, h - 0.18, h, rng.uniform(0.12, 0.16), rng.uniform(0.07, 0.1),
                  _jitter(rng, CERAMICS[2], 0.05), FABRIC, segments=16, bottom=False, top=False)
        kind = "lamp"
    elif choice < 0.96:
        pot = _jitter(rng, (0.6, 0.35, 0.25), 0.05)
        r = rng.uniform(0.06, 0.12)
        ph = r * 1.2
        b.frustum(0.0, 0.0, 0.0, ph, r * 0.75, r, pot, CERAMIC, segments=12)
        leaf = _jitter(rng, (0.2, 0.45, 0.18), 0.06)
        top = min(max_height - 0.01, ph + rng.uniform(0.1, 0.5))
        for _ in range(int(rng.integers(3, 7))):
            lx, ly = rng.uniform(-r, r, 2)
            b.frustum(lx, ly, ph, top * rng.uniform(0.7, 1.0), 0.02, rng.uniform(0.04, 0.09), leaf,
                      FABRIC, segments=6)
        kind = "plant"
    else:
        r = rng.uniform(0.08, 0.15)
        b.frustum(0.0, 0.0, 0.0, min(r * 0.5, max_height - 0.01), r * 0.5, r, col, CERAMIC,
                  segments=14, top=False)
        kind = "bowl"
    return b.build(IGNORE_LABEL, f"clutter/{kind}")


def floor_clutter(rng: np.random.Generator) -> Model:
    """Something standing on the floor: a box, a bag, a pile of boxes (ignore label)."""
    b = MeshBuilder()
    z = 0.0
    for _ in range(int(rng.integers(1, 4))):
        s = rng.uniform(0.2, 0.6, 3)
        s[2] *= 0.7
        b.box((-s[0] / 2, -s[1] / 2, z), (s[0] / 2, s[1] / 2, z + s[2]),
              _jitter(rng, _pick(rng, ((0.65, 0.5, 0.32),) + FABRICS), 0.05), PLAIN)
        z += s[2]
        if z > 1.0:
            break
    return b.build(IGNORE_LABEL, "clutter/floor")


# ---------------------------------------------------------------------------------------------
# The MIT-0 meshes


@dataclass(frozen=True)
class MeshSpec:
    """How to use one mesh file: class, rotation that turns its back towards -y (rad), whether
    it is a corner piece, whether its top takes clutter, and the scale range of its width (x after
    the turn); depth and height scale within ±8%."""

    file: str
    class_id: int
    kind: str
    yaw: float
    corner: bool = False
    top_surface: bool = False
    scale_x: tuple[float, float] = (0.9, 1.1)


# The yaw values come from looking at each mesh: e.g. ChairA's back is on +x, so it turns by -90°.
MESHES: tuple[MeshSpec, ...] = (
    MeshSpec("chaira_01.ply", CHAIR, "chair/mesh_a", -math.pi / 2),
    MeshSpec("chaird_01.ply", CHAIR, "chair/mesh_d", math.pi / 2),
    MeshSpec("sofab_01.ply", CHAIR, "chair/mesh_armchair", math.pi / 2),
    MeshSpec("sofac_01.ply", SOFA, "sofa/mesh_corner", math.pi / 2, corner=True),
    MeshSpec("kitchentable_01.ply", TABLE, "table/mesh_kitchen", 0.0, top_surface=True),
    MeshSpec("coffeetable_01.ply", TABLE, "table/mesh_coffee", 0.0, top_surface=True),
    MeshSpec("balconytable_01.ply", TABLE, "table/mesh_balcony", 0.0, top_surface=True),
    MeshSpec("readingdesk_01.ply", DESK, "desk/mesh_reading", math.pi / 2, top_surface=True),
    MeshSpec("bed_01.ply", BED, "bed/mesh", math.pi, scale_x=(0.7, 1.0)),
    MeshSpec("nightstand_01.ply", CABINET, "cabinet/mesh_nightstand", math.pi, top_surface=True),
    MeshSpec("wardrobe_01.ply", CABINET, "cabinet/mesh_wardrobe", math.pi),
    MeshSpec("tvcabinet_01.ply", CABINET, "cabinet/mesh_tv", math.pi / 2, top_surface=True),
    MeshSpec("kitchencabinet_01.ply", CABINET, "cabinet/mesh_kitchen", math.pi / 2, corner=True),
)


@cache
def load_mesh(file: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Read one mesh of ``MESH_DIR``: ``(vertices (V,3) float64, triangles (T,3) int64,
    part (T,) int64)``, ``part`` being the connected component of each triangle."""
    import open3d as o3d

    path = MESH_DIR / file
    if not path.is_file():
        raise FileNotFoundError(f"furniture mesh {path} is missing; reinstall ros2_inst3d "
                                "(the meshes ship in ros2_inst3d/synthetic/meshes)")
    mesh = o3d.io.read_triangle_mesh(str(path))
    vertices = np.asarray(mesh.vertices, dtype=np.float64)
    triangles = np.asarray(mesh.triangles, dtype=np.int64)
    if len(triangles) == 0:
        raise ValueError(f"furniture mesh {path} has no triangles")
    part = np.asarray(mesh.cluster_connected_triangles()[0], dtype=np.int64)
    return vertices, triangles, part


def mesh_model(rng: np.random.Generator, spec: MeshSpec) -> Model:
    """An instance of a mesh: turned to the module's frame, scaled per axis (width within
    ``spec.scale_x``), each connected part coloured with one of 3 instance colours."""
    vertices, triangles, part = load_mesh(spec.file)
    scale = np.array([rng.uniform(*spec.scale_x), rng.uniform(0.92, 1.08), rng.uniform(0.92, 1.08)])
    v = (vertices @ rot_z(spec.yaw).T) * scale
    if spec.class_id in (CHAIR, SOFA, BED):
        palette, texture = (FABRICS, WOODS), (FABRIC, WOOD)
    else:
        palette, texture = (WOODS + LAMINATES, METALS + WOODS), (WOOD, METAL)
    colors = np.array([_jitter(rng, _pick(rng, palette[0])), _jitter(rng, _pick(rng, palette[1])),
                       _jitter(rng, _pick(rng, palette[0]))], dtype=np.float32)
    n_parts = int(part.max()) + 1
    # Most parts take the main colour; the largest part always does.
    part_material = np.where(rng.random(n_parts) < 0.7, 0, rng.integers(1, 3, n_parts))
    part_material[np.bincount(part, minlength=n_parts).argmax()] = 0
    material = part_material[part]
    b = MeshBuilder()
    b.add(v, triangles, (0.0, 0.0, 0.0), PLAIN)
    model = b.build(spec.class_id, spec.kind, corner=spec.corner)
    model.tri_color = colors[material]
    model.tri_texture = np.asarray(texture, dtype=np.uint8)[np.minimum(material, 1)]
    if spec.top_surface:
        size = model.size
        model.surfaces = [Surface(float(size[2]), -0.4 * size[:2], 0.4 * size[:2])]
    return model


# ---------------------------------------------------------------------------------------------
# Choosing a model for a class

Factory = Callable[[np.random.Generator], Model]

PARAMETRIC: dict[int, tuple[tuple[float, Factory], ...]] = {
    CHAIR: ((0.55, chair), (0.3, office_chair), (0.15, armchair)),
    TABLE: ((0.7, table), (0.3, coffee_table)),
    DESK: ((1.0, desk),),
    CABINET: ((1.0, cabinet),),
    BOOKSHELF: ((1.0, bookshelf),),
    SOFA: ((1.0, sofa),),
    BED: ((1.0, bed),),
    REFRIGERATOR: ((1.0, refrigerator),),
    TOILET: ((1.0, toilet),),
    SINK: ((1.0, sink),),
    BATHTUB: ((1.0, bathtub),),
    OTHERFURNITURE: ((0.25, stool), (0.2, ottoman), (0.2, trash_bin), (0.12, coat_rack),
                     (0.1, bench), (0.05, piano), (0.08, washing_machine)),
}


def make_model(rng: np.random.Generator, class_id: int, mesh_prob: float = 0.25,
               allow_corner: bool = False) -> Model:
    """A random model of ``class_id``: one of the MIT-0 meshes with probability ``mesh_prob``
    (when the class has one), otherwise a parametric one. Corner pieces only when
    ``allow_corner``."""
    meshes = [m for m in MESHES if m.class_id == class_id and (allow_corner or not m.corner)]
    if meshes and rng.random() < mesh_prob:
        return mesh_model(rng, meshes[int(rng.integers(len(meshes)))])
    options = PARAMETRIC.get(class_id)
    if not options:
        raise ValueError(f"no furniture model for class id {class_id}; the generator builds "
                         f"{sorted(PARAMETRIC)}")
    weights = np.array([w for w, _ in options])
    factory = options[int(rng.choice(len(options), p=weights / weights.sum()))][1]
    return factory(rng)


def corner_model(rng: np.random.Generator, class_id: int, mesh_prob: float = 0.25) -> Model:
    """An L-shaped corner piece of ``class_id`` (SOFA, DESK or CABINET)."""
    meshes = [m for m in MESHES if m.class_id == class_id and m.corner]
    if meshes and rng.random() < mesh_prob * 2:
        return mesh_model(rng, meshes[int(rng.integers(len(meshes)))])
    if class_id == SOFA:
        return corner_sofa(rng)
    if class_id == DESK:
        return corner_desk(rng)
    if meshes:
        return mesh_model(rng, meshes[0])
    raise ValueError(f"no corner model for class id {class_id}")
