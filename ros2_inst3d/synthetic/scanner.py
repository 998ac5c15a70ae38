"""Simulated robot scanning for the synthetic generator: a trajectory through the free space of a
furnished room, an RGB-D camera or a spinning LiDAR ray-cast with open3d's ``RaycastingScene``,
sensor noise and surface appearance.

What a scan gets, and why:

* occlusion and coverage gaps come from the ray casting and the trajectory (a robot drives around
  the furniture, it does not see under beds or behind cabinets);
* RGB-D depth noise grows with the square of the depth (Nguyen, Izadi, Lovell, "Modeling Kinect
  sensor noise", 3DIMPVT 2012: sigma_z = 1.2 mm + 1.9 mm * (z - 0.4 m)^2 for near-frontal
  surfaces), LiDAR range noise grows linearly;
* dropout: a base rate plus grazing-angle loss (little light comes back from surfaces seen
  edge-on);
* edge artefacts at depth discontinuities: some pixels vanish and some become "flying pixels"
  between the foreground and the background;
* colour: per-triangle base colour, procedural texture (wood grain, tiles, fabric, canvas), a
  fixed light, per-frame exposure and white balance, per-pixel noise.

Every point keeps the index of the object its ray hit (``geometry_ids`` of ``cast_rays``: one
geometry per object), so labels are exact before noise moves the points.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np

from . import furniture as fm

# An arbitrary, fixed start time (2023-11-14T22:13:20Z) so stamps are deterministic.
BASE_STAMP_NS = 1_700_000_000 * 1_000_000_000


@dataclass(frozen=True)
class CameraModel:
    """Pinhole RGB-D camera. Frame: ROS optical convention (z forward, x right, y down)."""

    width: int = 160
    height: int = 120
    hfov_deg: float = 70.0
    min_range: float = 0.3
    max_range: float = 5.0
    noise_base: float = 0.0012      # metres, Nguyen et al. 2012
    noise_quadratic: float = 0.0019  # metres per m^2
    dropout: float = 0.02
    grazing_dropout: float = 0.7     # extra loss probability for surfaces seen edge-on
    grazing_cos: float = 0.25        # ... rising linearly as |cos(incidence)| falls below this
    edge_drop: float = 0.5
    edge_flying: float = 0.3
    frame_id: str = "camera_optical"

    def directions(self) -> np.ndarray:
        """(H, W, 3) float64 unit ray directions in the camera frame."""
        f = 0.5 * self.width / math.tan(math.radians(self.hfov_deg) / 2)
        u = (np.arange(self.width) + 0.5 - self.width / 2) / f
        v = (np.arange(self.height) + 0.5 - self.height / 2) / f
        d = np.stack(np.broadcast_arrays(u[None, :], v[:, None], 1.0), axis=-1).astype(np.float64)
        return d / np.linalg.norm(d, axis=-1, keepdims=True)

    def sigma(self, depth: np.ndarray) -> np.ndarray:
        """Depth noise standard deviation (metres) at ``depth`` (metres)."""
        return self.noise_base + self.noise_quadratic * np.square(np.maximum(depth - 0.4, 0.0))


@dataclass(frozen=True)
class LidarModel:
    """Spinning multi-beam LiDAR. Frame: x forward, y left, z up (REP 103).

    The beams are ``beams`` evenly spaced over ``vfov_deg``, or the explicit table
    ``elevations_deg`` (degrees, one per beam) when it is given (real sensors space them
    unevenly: ``synthetic.street.hdl64_lidar``)."""

    beams: int = 32
    vfov_deg: tuple[float, float] = (-22.5, 22.5)
    azimuth_steps: int = 1024
    min_range: float = 0.3
    max_range: float = 40.0
    noise_base: float = 0.008
    noise_linear: float = 0.001
    dropout: float = 0.03
    grazing_dropout: float = 0.6
    grazing_cos: float = 0.25
    frame_id: str = "lidar"
    elevations_deg: tuple[float, ...] | None = None

    def directions(self) -> np.ndarray:
        """(beams, azimuth_steps, 3) float64 unit ray directions in the sensor frame."""
        el = np.radians(np.asarray(self.elevations_deg, dtype=np.float64)
                        if self.elevations_deg is not None
                        else np.linspace(self.vfov_deg[0], self.vfov_deg[1], self.beams))
        az = np.linspace(0.0, 2 * math.pi, self.azimuth_steps, endpoint=False)
        ce = np.cos(el)[:, None]
        return np.stack(np.broadcast_arrays(ce * np.cos(az)[None, :], ce * np.sin(az)[None, :],
                                            np.sin(el)[:, None]), axis=-1)

    def sigma(self, rng_m: np.ndarray) -> np.ndarray:
        return self.noise_base + self.noise_linear * rng_m


@dataclass
class World:
    """All surfaces of a room in one ``RaycastingScene``: geometry ``g`` is object ``g``.

    tri_offset: (O + 1,) int64 start of each object's triangles in the concatenated per-triangle
    arrays tri_color (T, 3) float32 and tri_texture (T,) uint8. texture_params: per-object
    procedural texture parameters (see ``surface_colors``).
    """

    scene: object
    tri_offset: np.ndarray
    tri_color: np.ndarray
    tri_texture: np.ndarray
    phase: np.ndarray        # (O, 3) float64 radians
    grain: np.ndarray        # (O, 3) float64 unit vectors
    tile: np.ndarray         # (O, 3) float64: tile size x, y (metres), grout width (metres)
    light: np.ndarray        # (3,) unit vector towards the light
    ambient: float

    @property
    def num_objects(self) -> int:
        return int(len(self.tri_offset) - 1)


def build_world(models_room: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]],
                rng: np.random.Generator) -> World:
    """Put every object into one ray-casting scene.

    models_room: one (vertices (V, 3) float32 room frame, triangles (T, 3) int32, tri_color
    (T, 3) float32, tri_texture (T,) uint8) per object, in object order.
    """
    import open3d as o3d

    scene = o3d.t.geometry.RaycastingScene()
    offsets = [0]
    for k, (vertices, triangles, _, _) in enumerate(models_room):
        gid = scene.add_triangles(o3d.core.Tensor(np.ascontiguousarray(vertices, np.float32)),
                                  o3d.core.Tensor(np.ascontiguousarray(triangles, np.uint32)))
        if gid != k:  # the label lookup relies on geometry ids being the insertion order
            raise RuntimeError(f"open3d returned geometry id {gid} for object {k}")
        offsets.append(offsets[-1] + len(triangles))
    n = len(models_room)
    grain = rng.normal(size=(n, 3))
    grain[:, 2] *= 0.2  # wood grain runs mostly horizontally
    grain /= np.linalg.norm(grain, axis=1, keepdims=True)
    tile = np.column_stack([rng.uniform(0.3, 0.6, n), rng.uniform(0.3, 0.6, n),
                            rng.uniform(0.004, 0.01, n)])
    planks = rng.random(n) < 0.5
    tile[planks, 0] = rng.uniform(0.9, 1.8, int(planks.sum()))
    tile[planks, 1] = rng.uniform(0.1, 0.2, int(planks.sum()))
    tile[planks, 2] = 0.003
    light = np.array([rng.uniform(-0.5, 0.5), rng.uniform(-0.5, 0.5), 1.0])
    return World(
        scene=scene,
        tri_offset=np.asarray(offsets, dtype=np.int64),
        tri_color=np.vstack([m[2] for m in models_room]).astype(np.float32),
        tri_texture=np.concatenate([m[3] for m in models_room]).astype(np.uint8),
        phase=rng.uniform(0, 2 * math.pi, (n, 3)),
        grain=grain,
        tile=tile,
        light=light / np.linalg.norm(light),
        ambient=float(rng.uniform(0.5, 0.7)),
    )


def _hash01(cells: np.ndarray, salt: np.ndarray) -> np.ndarray:
    """Deterministic pseudo-random number in [0, 1) per integer cell (N, k) and salt (N,)."""
    h = salt.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)
    for k in range(cells.shape[1]):
        h ^= cells[:, k].astype(np.int64).astype(np.uint64) * np.uint64(0xBF58476D1CE4E5B9 + 2 * k)
        h = (h ^ (h >> np.uint64(29))) * np.uint64(0x94D049BB133111EB)
    return ((h >> np.uint64(40)).astype(np.float64)) / float(1 << 24)


def surface_colors(world: World, obj: np.ndarray, tri: np.ndarray, xyz: np.ndarray,
                   normal: np.ndarray, view: np.ndarray) -> np.ndarray:
    """Lit, textured colour of surface points. Returns (N, 3) float64 in about [0, 1].

    obj: (N,) object index; tri: (N,) global triangle index; xyz: (N, 3) room frame, metres;
    normal: (N, 3) unit surface normals; view: (N, 3) unit ray directions.
    """
    base = world.tri_color[tri].astype(np.float64)
    texture = world.tri_texture[tri]
    phase = world.phase[obj]
    shade = np.ones(len(obj))
    with np.errstate(over="ignore"):
        wood = texture == fm.WOOD
        if wood.any():
            s = np.einsum("ij,ij->i", xyz[wood], world.grain[obj[wood]])
            wobble = np.sin(7.0 * xyz[wood, 2] + phase[wood, 1]) + np.sin(5.0 * s + phase[wood, 2])
            shade[wood] += 0.07 * np.sin(60.0 * s + 1.5 * wobble + phase[wood, 0])
        for kind, amp, cell in ((fm.FABRIC, 0.07, 0.01), (fm.CARPET, 0.1, 0.008),
                                (fm.PLAIN, 0.02, 0.05), (fm.PAINT, 0.025, 0.2)):
            m = texture == kind
            if m.any():
                cells = np.floor(xyz[m] / cell).astype(np.int64)
                shade[m] += amp * (2.0 * _hash01(cells, obj[m]) - 1.0)
        m = texture == fm.TILE
        if m.any():
            size = world.tile[obj[m]]
            uv = xyz[m, :2] / size[:, :2]
            cells = np.floor(uv).astype(np.int64)
            frac = (uv - cells) * size[:, :2]
            grout = np.any((frac < size[:, 2:3]) | (frac > size[:, :2] - size[:, 2:3]), axis=1)
            shade[m] *= (1.0 + 0.1 * (2.0 * _hash01(cells, obj[m]) - 1.0))
            shade[m] = np.where(grout, 0.55, shade[m])
        m = (texture == fm.WOOD) & (np.abs(normal[:, 2]) > 0.9) & (xyz[:, 2] < 0.01)
        if m.any():  # wooden floors: planks, reusing the tile pattern
            size = world.tile[obj[m]]
            uv = xyz[m, :2] / size[:, :2]
            cells = np.floor(uv).astype(np.int64)
            cells[:, 0] = np.floor(uv[:, 0] + 0.5 * (cells[:, 1] % 2)).astype(np.int64)
            shade[m] *= 1.0 + 0.12 * (2.0 * _hash01(cells, obj[m]) - 1.0)
    canvas = texture == fm.CANVAS
    if canvas.any():
        p = xyz[canvas]
        w = np.sin(p @ np.array([9.0, 11.0, 13.0])[:, None] + phase[canvas])
        base[canvas] = np.clip(base[canvas] * (0.55 + 0.45 * w[:, [0, 1, 2]])
                               + 0.25 * (np.sin(17.0 * p[:, 2:3] + phase[canvas][:, ::-1]) > 0.6),
                               0.0, 1.0)
    lambert = np.abs(normal @ world.light)
    light = world.ambient + (1.0 - world.ambient) * lambert
    shiny = (texture == fm.METAL) | (texture == fm.CERAMIC)
    facing = np.abs(np.einsum("ij,ij->i", normal, view))
    specular = np.where(shiny, 0.25 * facing ** 8, 0.0)
    return base * (shade * light)[:, None] + specular[:, None]


@dataclass
class Trajectory:
    """Sensor poses: (S, 4, 4) float64 sensor -> room transforms and (S,) int64 stamps (ns)."""

    poses: np.ndarray
    stamps_ns: np.ndarray
    path_length: float


def _occupancy(room, obstacles: list[np.ndarray], res: float):
    """Free-space grid of the room: (free (H, W) bool, origin (2,), res)."""
    lo, hi = room.bounds
    nx = int(math.ceil((hi[0] - lo[0]) / res))
    ny = int(math.ceil((hi[1] - lo[1]) / res))
    xs = lo[0] + (np.arange(nx) + 0.5) * res
    ys = lo[1] + (np.arange(ny) + 0.5) * res
    gx, gy = np.meshgrid(xs, ys, indexing="xy")
    centres = np.column_stack([gx.ravel(), gy.ravel()])
    free = room.contains(centres).reshape(ny, nx)
    for poly in obstacles:
        x0, y0 = poly.min(axis=0)
        x1, y1 = poly.max(axis=0)
        i0, i1 = max(0, int((x0 - lo[0]) / res)), min(nx, int(math.ceil((x1 - lo[0]) / res)))
        j0, j1 = max(0, int((y0 - lo[1]) / res)), min(ny, int(math.ceil((y1 - lo[1]) / res)))
        if i1 <= i0 or j1 <= j0:
            continue
        px, py = np.meshgrid(xs[i0:i1], ys[j0:j1], indexing="xy")
        inside = np.ones(px.shape, dtype=bool)
        e0, e1 = poly[1] - poly[0], poly[2] - poly[1]
        orient = np.sign(e0[0] * e1[1] - e0[1] * e1[0])
        for k in range(len(poly)):
            a, b = poly[k], poly[(k + 1) % len(poly)]
            cross = (b[0] - a[0]) * (py - a[1]) - (b[1] - a[1]) * (px - a[0])
            inside &= cross * orient >= 0
        free[j0:j1, i0:i1] &= ~inside
    return free, lo, res


def plan_trajectory(room, obstacles: list[np.ndarray], rng: np.random.Generator, lidar: bool,
                    pose_spacing: float, max_poses: int, robot_radius: float = 0.25
                    ) -> Trajectory:
    """A tour through the free space: waypoints spread over the room (farthest-point sampling of
    well-cleared cells), joined by grid shortest paths that prefer clearance, sampled every
    ``pose_spacing`` metres; the camera pans left and right as it goes and turns a full circle
    at each waypoint (a LiDAR sees all around and just follows the path).

    obstacles: footprints (K, 2) the sensor must keep out of. Returns at most ``max_poses``
    poses.
    """
    from scipy import ndimage
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import dijkstra

    res = 0.1
    free, origin, res = _occupancy(room, obstacles, res)
    # Pad with occupied cells: outside the grid is outside the room.
    clearance = ndimage.distance_transform_edt(np.pad(free, 1))[1:-1, 1:-1] * res
    ok = clearance >= robot_radius
    if not ok.any():
        ok = clearance >= min(robot_radius, 0.5 * float(clearance.max()))
    if not ok.any():  # a room full to the walls: stand at the most open spot
        ok = clearance >= clearance.max()
    labels, n_comp = ndimage.label(ok, structure=np.ones((3, 3)))
    if n_comp > 1:
        sizes = ndimage.sum(np.ones_like(labels), labels, index=np.arange(1, n_comp + 1))
        ok = labels == 1 + int(np.argmax(sizes))
    cells = np.argwhere(ok)  # (C, 2) rows (j, i)
    xy = origin + (cells[:, ::-1] + 0.5) * res
    cl = clearance[ok]

    # Waypoints: well-cleared cells spread over the room.
    good = cl >= min(0.6, 0.7 * float(cl.max()))
    cand = np.flatnonzero(good)
    n_way = int(np.clip(round(room.area / 7.0), 2, 8))
    chosen = [int(cand[int(rng.integers(len(cand)))])]
    dist = np.linalg.norm(xy[cand] - xy[chosen[0]], axis=1)
    for _ in range(n_way - 1):
        nxt = int(cand[int(np.argmax(dist))])
        if dist.max() < 0.8:
            break
        chosen.append(nxt)
        dist = np.minimum(dist, np.linalg.norm(xy[cand] - xy[nxt], axis=1))
    # Visit them greedily, nearest first.
    order = [chosen[0]]
    rest = chosen[1:]
    while rest:
        d = [np.linalg.norm(xy[r] - xy[order[-1]]) for r in rest]
        order.append(rest.pop(int(np.argmin(d))))

    # Grid graph over the free cells, 8-connected, cheaper far from obstacles.
    index = -np.ones(ok.shape, dtype=np.int64)
    index[ok] = np.arange(len(cells))
    rows, cols, weights = [], [], []
    h_cells, w_cells = ok.shape
    for dj, di in ((0, 1), (1, 0), (1, 1), (1, -1)):
        i0, i1 = max(0, -di), w_cells - max(0, di)
        a = index[0:h_cells - dj, i0:i1]
        b = index[dj:h_cells, i0 + di:i1 + di]
        m = (a >= 0) & (b >= 0)
        step = res * math.hypot(dj, di)
        w = step / np.minimum(np.minimum(cl[a[m]], cl[b[m]]), 1.0)
        rows.append(a[m])
        cols.append(b[m])
        weights.append(w)
    r = np.concatenate(rows)
    c = np.concatenate(cols)
    w = np.concatenate(weights)
    graph = coo_matrix((np.concatenate([w, w]), (np.concatenate([r, c]), np.concatenate([c, r]))),
                       shape=(len(cells), len(cells))).tocsr()
    path = [order[0]]
    for a_idx, b_idx in itertools.pairwise(order):
        _, pred = dijkstra(graph, indices=a_idx, return_predecessors=True)
        seg = [b_idx]
        while seg[-1] != a_idx and pred[seg[-1]] >= 0:
            seg.append(int(pred[seg[-1]]))
        path.extend(seg[::-1][1:])
    pts = xy[path]
    if len(pts) > 2:  # smooth the staircase of grid steps
        kernel = np.ones(5) / 5
        padded = np.vstack([np.repeat(pts[:1], 2, 0), pts, np.repeat(pts[-1:], 2, 0)])
        pts = np.column_stack([np.convolve(padded[:, k], kernel, mode="valid") for k in (0, 1)])
    seglen = np.linalg.norm(np.diff(pts, axis=0), axis=1)
    cum = np.concatenate([[0.0], np.cumsum(seglen)])
    length = float(cum[-1])
    waypoint_at = [float(cum[path.index(o)]) if o in path else 0.0 for o in order]

    spin = 0 if lidar else 6
    n_path = max(1, int(length / pose_spacing) + 1)
    budget = max(1, max_poses - spin * len(order))
    n_path = min(n_path, budget)
    s_samples = np.linspace(0.0, length, n_path) if length > 0 else np.zeros(1)
    events = [(s, "path") for s in s_samples]
    if spin:
        for s_w in waypoint_at:
            events.extend((s_w, f"spin{k}") for k in range(spin))
    events.sort(key=lambda e: (e[0], e[1] != "path", e[1]))
    events = events[:max_poses]

    heading_of = np.arctan2(np.gradient(pts[:, 1]), np.gradient(pts[:, 0])) if len(pts) > 1 \
        else np.zeros(1)
    poses, stamps = [], []
    t_ns = 0
    prev_s, prev_yaw = 0.0, None
    pan_amp = math.radians(rng.uniform(40, 75))
    pan_period = rng.uniform(5, 10)
    pitch0 = math.radians(rng.uniform(-30, -12))
    height0 = rng.uniform(0.4, 1.1) if lidar else rng.uniform(1.0, 1.6)
    spin_base = 0.0
    for k, (s, what) in enumerate(events):
        i = int(np.clip(np.searchsorted(cum, s), 0, len(pts) - 1))
        p = pts[i]
        heading = float(heading_of[min(i, len(heading_of) - 1)])
        if what == "path":
            yaw = heading + (0.0 if lidar else pan_amp * math.sin(2 * math.pi * k / pan_period))
            spin_base = yaw
        else:
            yaw = spin_base + 2 * math.pi * (int(what[4:]) + 1) / (spin + 1)
        # Time: 0.4 m/s along the path, 0.8 rad/s turning, at least a frame period.
        dyaw = 0.0 if prev_yaw is None else abs((yaw - prev_yaw + math.pi) % (2 * math.pi) - math.pi)
        dt = max((s - prev_s) / 0.4, dyaw / 0.8, 0.1 if lidar else 1 / 30)
        t_ns += int(round(dt * 1e9)) if k else 0
        prev_s, prev_yaw = s, yaw
        z = height0 + rng.normal(0.0, 0.03)
        if lidar:
            rot = fm.rot_z(yaw) @ fm.rot_y(rng.normal(0.0, 0.01)) @ fm.rot_x(rng.normal(0.0, 0.01))
        else:
            pitch = pitch0 + math.radians(8) * math.sin(2 * math.pi * k / (pan_period * 1.7))
            forward = np.array([math.cos(pitch) * math.cos(yaw), math.cos(pitch) * math.sin(yaw),
                                math.sin(pitch)])
            right = np.array([math.sin(yaw), -math.cos(yaw), 0.0])
            down = np.cross(forward, right)
            roll = fm.rot_z(rng.normal(0.0, math.radians(2)))
            rot = np.column_stack([right, down, forward]) @ roll
        pose = np.eye(4)
        pose[:3, :3] = rot
        pose[:3, 3] = (p[0], p[1], z)
        poses.append(pose)
        stamps.append(BASE_STAMP_NS + t_ns)
    return Trajectory(np.asarray(poses), np.asarray(stamps, dtype=np.int64), length)


@dataclass
class RawScans:
    """The points of every pose, concatenated.

    xyz_sensor: (P, 3) float32 sensor frame; xyz_room: (P, 3) float32 room frame (metres);
    rgb: (P, 3) float32 in [0, 1]; obj: (P,) int32 object index, or ``World.num_objects`` for a
    flying pixel (on no surface); offsets: (S + 1,) int64, pose s owns points
    offsets[s]:offsets[s+1]; num_rays: rays cast.
    """

    xyz_sensor: np.ndarray
    xyz_room: np.ndarray
    rgb: np.ndarray
    obj: np.ndarray
    offsets: np.ndarray
    num_rays: int


def sensor_rays(traj: Trajectory, sensor: CameraModel | LidarModel,
                rng: np.random.Generator) -> np.ndarray:
    """(S, R, 6) float32 rays (origin, unit direction; room frame) of every pose, R rays per pose
    in the order of ``sensor.directions()`` flattened."""
    flat_dirs = sensor.directions().reshape(-1, 3)
    rot = traj.poses[:, :3, :3]                  # (S, 3, 3)
    n_pose = len(traj.poses)
    if isinstance(sensor, LidarModel):  # each revolution starts at a different azimuth
        shift = rng.uniform(0, 2 * math.pi / sensor.azimuth_steps, n_pose)
        rot = rot @ np.stack([fm.rot_z(a) for a in shift])
    rays = np.empty((n_pose, len(flat_dirs), 6), dtype=np.float32)
    rays[:, :, :3] = traj.poses[:, None, :3, 3]
    rays[:, :, 3:] = flat_dirs.astype(np.float32) @ rot.transpose(0, 2, 1).astype(np.float32)
    return rays


def scan(world: World, traj: Trajectory, sensor: CameraModel | LidarModel,
         rng: np.random.Generator, threads: int = 0) -> RawScans:
    """Cast every pose's rays at once and turn the hits into noisy coloured points."""
    import open3d as o3d

    dirs_sensor = sensor.directions()            # (H, W, 3)
    grid_shape = dirs_sensor.shape[:2]
    flat_dirs = dirs_sensor.reshape(-1, 3)
    origin = traj.poses[:, :3, 3]
    n_pose = len(traj.poses)
    rays = sensor_rays(traj, sensor, rng)
    hits = world.scene.cast_rays(o3d.core.Tensor(rays), nthreads=threads)
    t = hits["t_hit"].numpy()                    # (S, H*W) float32, metres (unit directions)
    valid = np.isfinite(t) & (t >= sensor.min_range) & (t <= sensor.max_range)

    if isinstance(sensor, CameraModel):
        dz = flat_dirs[:, 2].astype(np.float32)  # cos of the angle to the optical axis
        depth = np.where(valid, t * dz, np.float32(np.nan)).reshape(n_pose, *grid_shape)
        depth, flying = _edge_artefacts(depth, sensor, rng)
        depth, flying = depth.reshape(n_pose, -1), flying.reshape(n_pose, -1)
        valid &= np.isfinite(depth)
    s_idx, r_idx = np.nonzero(valid)
    r_true = t[s_idx, r_idx].astype(np.float64)
    if isinstance(sensor, CameraModel):
        d = depth[s_idx, r_idx].astype(np.float64)
        noisy = d + sensor.sigma(d) * rng.standard_normal(len(d))
        r_pt = noisy / dz[r_idx]
    else:
        r_pt = r_true + sensor.sigma(r_true) * rng.standard_normal(len(r_true))
    d_room = rays[s_idx, r_idx, 3:].astype(np.float64)
    normal = hits["primitive_normals"].numpy()[s_idx, r_idx].astype(np.float64)
    keep = (rng.random(len(r_pt)) >= drop_probability(sensor, normal, d_room)) & (r_pt > 0)
    s_idx, r_idx, r_true, r_pt = s_idx[keep], r_idx[keep], r_true[keep], r_pt[keep]
    d_room, normal = d_room[keep], normal[keep]

    xyz_sensor = flat_dirs[r_idx] * r_pt[:, None]
    xyz_room = origin[s_idx] + d_room * r_pt[:, None]
    obj = hits["geometry_ids"].numpy()[s_idx, r_idx].astype(np.int64)
    tri = world.tri_offset[obj] + hits["primitive_ids"].numpy()[s_idx, r_idx].astype(np.int64)
    true_xyz = origin[s_idx] + d_room * r_true[:, None]
    color = surface_colors(world, obj, tri, true_xyz, normal, d_room)
    if isinstance(sensor, CameraModel):
        # Flying pixels float between two surfaces and belong to neither.
        obj[flying[s_idx, r_idx]] = world.num_objects
    gain = rng.uniform(0.9, 1.1, (n_pose, 1)) * rng.uniform(0.97, 1.03, (n_pose, 3))
    color = color * gain[s_idx] + rng.normal(0.0, 0.015, color.shape)
    offsets = np.zeros(n_pose + 1, dtype=np.int64)
    np.cumsum(np.bincount(s_idx, minlength=n_pose), out=offsets[1:])
    return RawScans(xyz_sensor.astype(np.float32), xyz_room.astype(np.float32),
                    np.clip(color, 0.0, 1.0).astype(np.float32), obj.astype(np.int32), offsets,
                    int(n_pose * len(flat_dirs)))


def drop_probability(sensor: CameraModel | LidarModel, normal: np.ndarray,
                     direction: np.ndarray) -> np.ndarray:
    """(N,) chance that a return is lost: the sensor's base ``dropout`` plus, on surfaces seen
    edge-on (|cos| of the angle between the surface ``normal`` and the ray ``direction``, both
    (N, 3), below ``grazing_cos``), up to ``grazing_dropout`` more: little light comes back."""
    cos_inc = np.abs(np.einsum("ij,ij->i", normal, direction))
    edge_on = np.clip((sensor.grazing_cos - cos_inc) / sensor.grazing_cos, 0.0, 1.0)
    return sensor.dropout + sensor.grazing_dropout * edge_on


def _edge_artefacts(depth: np.ndarray, cam: CameraModel, rng: np.random.Generator
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Depth images (S, H, W) with NaN for no return: drop some pixels at depth discontinuities
    and turn others into flying pixels between the two surfaces. Returns (depth, flying mask)."""
    # Edge padding: the image border is not a depth discontinuity.
    padded = np.pad(depth, ((0, 0), (1, 1), (1, 1)), mode="edge")
    centre = padded[:, 1:-1, 1:-1]
    neighbours = np.stack([padded[:, :-2, 1:-1], padded[:, 2:, 1:-1], padded[:, 1:-1, :-2],
                           padded[:, 1:-1, 2:]])
    with np.errstate(invalid="ignore"):
        jump = np.abs(neighbours - centre)
    far = np.max(np.where(np.isfinite(jump), jump, 0.0), axis=0)
    threshold = 0.05 + 0.02 * np.nan_to_num(centre)
    # A pixel is at an edge when a neighbour is much farther or nearer, or has no return.
    edge = np.isfinite(centre) & ((far > threshold) | np.any(np.isnan(neighbours), axis=0))
    u = rng.random(depth.shape)
    out = depth.copy()
    out[edge & (u < cam.edge_drop)] = np.nan
    flying = edge & (u >= cam.edge_drop) & (u < cam.edge_drop + cam.edge_flying) & (far > threshold)
    if flying.any():
        # Mix towards the neighbour with the largest jump.
        which = np.argmax(np.where(np.isfinite(jump), jump, -1.0), axis=0)
        target = np.take_along_axis(neighbours, which[None], axis=0)[0]
        mix = rng.random(depth.shape)
        out[flying] = centre[flying] + mix[flying] * (target[flying] - centre[flying])
    return out, flying
