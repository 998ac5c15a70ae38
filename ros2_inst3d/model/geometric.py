"""The geometric baseline: remove floor and walls with RANSAC, cluster what is left by connectivity.

It needs no weights, so the whole path (node, bag, files) runs before any network is trained, and
every learned method is measured against it. It knows one class only: ``otherfurniture`` (19).

Pipeline, all vectorised numpy/scipy:

1. RANSAC on the voxel-downsampled cloud finds up to ``max_planes`` large planes. A plane is
   removed only if it looks like structure: vertical (a wall) or horizontal within ``floor_band``
   of the lowest horizontal plane (the floor), holding ``min_plane_fraction`` of the cloud and
   spanning ``min_plane_extent``. Table tops are horizontal too; the band keeps them.
2. The remaining points are voxelized at ``voxel_size``; voxels within ``connectivity`` cells are
   joined, and connected components are the instances (scipy.sparse.csgraph). Two optional cuts
   refine the joins: at concave creases (``concave_angle_deg``) and where the voxels' mean colours
   differ (``max_color_distance``), both in :func:`convex_components`.
3. Clusters smaller than ``min_cluster_points`` or larger than ``max_cluster_extent`` are dropped.
"""

from __future__ import annotations

import time

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from ..classes import OTHERFURNITURE
from ..config import Config, GeometricConfig
from ..voxelize import voxel_mean, voxelize
from .proposals import Proposals

_HORIZONTAL_NZ = 0.9   # |n_z| above this: horizontal plane (within ~25 degrees)
_VERTICAL_NZ = 0.2     # |n_z| below this: vertical plane
_WALL_MAX_BEYOND = 0.15  # a wall has at most this fraction of the cloud behind it
_SCORE_SAMPLE = 20_000  # points used to score RANSAC hypotheses
_PRESCORE_SAMPLE = 2_000  # ... of which the first these many rank all hypotheses first
_PRESCORE_KEEP = 16  # hypotheses with the most pre-score inliers scored on the full sample


def fit_plane(points: np.ndarray) -> tuple[np.ndarray, float]:
    """Least-squares plane through ``points`` (M, 3): unit normal (3,) and offset d, n·p + d = 0.

    The normal is the eigenvector of the smallest eigenvalue of the 3x3 scatter matrix (what the
    SVD of the centred points gives, without LAPACK's threaded SVD of an (M, 3) matrix).
    """
    centre = points.mean(axis=0)
    centred = points - centre
    _, vecs = np.linalg.eigh(np.einsum("mi,mj->ij", centred, centred))
    normal = vecs[:, 0]
    return normal, float(-normal @ centre)


def signed_distance(points: np.ndarray, normal: np.ndarray, d: float) -> np.ndarray:
    """(M,) n·p + d for ``points`` (M, 3), metres. ``einsum`` rather than ``points @ normal``:
    numpy's own single-threaded loop, where OpenBLAS's matrix-vector product starts its thread
    pool, which on a busy 2-core machine (the node's ingest and segmentation threads, training)
    made the geometric baseline 4-10x slower in wall time than its CPU time."""
    return np.einsum("ij,j->i", points, normal) + d


_SCORE_CHUNK = 16  # hypotheses scored per pass: (16, 20k) float32, 1.3 MB, stays in L2


def count_inliers(sample: np.ndarray, normals: np.ndarray, offsets: np.ndarray,
                  distance: float) -> np.ndarray:
    """(H,) int64: how many of ``sample`` (S, 3) lie within ``distance`` of each plane
    (``normals`` (H, 3) unit, ``offsets`` (H,)).

    Float32 column arithmetic in chunks of :data:`_SCORE_CHUNK` hypotheses, so every pass reads
    and writes cached memory and no BLAS thread pool is involved (the (S, H) float64 matrix
    product this replaces wrote 48 MB per plane, four times over, and ran OpenBLAS threads).
    Float32 moves a point's distance by at most ~1e-6 m here: only points within that of the
    threshold can count differently, which does not change which hypothesis wins on real scenes
    (the winner is refined in float64 anyway).
    """
    columns = np.ascontiguousarray(sample.T, dtype=np.float32)  # (3, S)
    normals32 = normals.astype(np.float32)
    offsets32 = offsets.astype(np.float32)[:, None]
    h = len(normals)
    counts = np.empty(h, np.int64)
    # Small samples (the pre-scoring) take more hypotheses a pass: same bytes, fewer calls.
    chunk = max(_SCORE_CHUNK, _SCORE_CHUNK * _SCORE_SAMPLE // max(1, columns.shape[1]))
    acc = np.empty((min(h, chunk), columns.shape[1]), np.float32)
    term = np.empty_like(acc)
    for lo in range(0, h, chunk):
        hi = min(h, lo + chunk)
        a, t = acc[:hi - lo], term[:hi - lo]
        np.multiply(normals32[lo:hi, 0:1], columns[0], out=a)
        for axis in (1, 2):
            np.multiply(normals32[lo:hi, axis:axis + 1], columns[axis], out=t)
            a += t
        a += offsets32[lo:hi]
        np.abs(a, out=a)
        counts[lo:hi] = np.count_nonzero(a < distance, axis=1)
    return counts


def _best_hypothesis(sample: np.ndarray, normals: np.ndarray, offsets: np.ndarray,
                     distance: float) -> int:
    """Index of the hypothesis with the most inliers in ``sample`` (S, 3); ties: the first.

    Preemptive scoring (Nister, "Preemptive RANSAC", ICCV 2003): every hypothesis is first
    counted on every (S // :data:`_PRESCORE_SAMPLE`)-th sample point, and only the
    :data:`_PRESCORE_KEEP` best of those on all of it: ~1/6 of the point-plane distances of
    scoring every hypothesis on every sample point. A hypothesis that wins on 20k points has
    about the most inliers on 2k spread over them too (binomial spread ~sqrt(2000 w)), so it is
    nearly always among the kept ones, and the winner is then the same as before.
    """
    h = len(normals)
    if len(sample) <= 2 * _PRESCORE_SAMPLE or h <= _PRESCORE_KEEP:
        return int(np.argmax(count_inliers(sample, normals, offsets, distance)))
    # Strided, not a prefix: a sample of at most _SCORE_SAMPLE points is the cloud in voxel
    # order (no random subset drawn), whose prefix is one corner of the room.
    pre = count_inliers(sample[::len(sample) // _PRESCORE_SAMPLE], normals, offsets, distance)
    # Stable order by count, then the kept ones back in hypothesis order so ties go to the first.
    kept = np.sort(np.argsort(-pre, kind="stable")[:_PRESCORE_KEEP])
    counts = count_inliers(sample, normals[kept], offsets[kept], distance)
    return int(kept[np.argmax(counts)])


def ransac_plane(points: np.ndarray, distance: float, iterations: int,
                 rng: np.random.Generator) -> tuple[np.ndarray, float, np.ndarray] | None:
    """Best plane of ``points`` (M, 3) float64 by inlier count; refined by least squares.

    Returns (normal, d, inlier mask) or None when fewer than 3 points or every sample is degenerate.
    All hypotheses are scored against one fixed random subset (:func:`_best_hypothesis`), which
    is what keeps this fast enough for every segmentation.
    """
    m = len(points)
    if m < 3:
        return None
    tri = points[rng.integers(0, m, size=(iterations, 3))]
    normals = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    norms = np.linalg.norm(normals, axis=1)
    ok = norms > 1e-9
    if not ok.any():
        return None
    normals = normals[ok] / norms[ok, None]
    offsets = -np.einsum("ij,ij->i", normals, tri[ok, 0])
    sample = points if m <= _SCORE_SAMPLE else points[rng.choice(m, _SCORE_SAMPLE, replace=False)]
    best = _best_hypothesis(sample, normals, offsets, distance)
    inliers = np.abs(signed_distance(points, normals[best], offsets[best])) < distance
    if inliers.sum() < 3:
        return None
    normal, d = fit_plane(points[inliers])
    inliers = np.abs(signed_distance(points, normal, d)) < distance
    return normal, d, inliers


def _extent(points: np.ndarray) -> float:
    return float((points.max(axis=0) - points.min(axis=0)).max()) if len(points) else 0.0


def structure_mask(xyz: np.ndarray, cfg: GeometricConfig) -> np.ndarray:
    """(N,) bool: points on floor or wall planes (see module doc for what counts as structure)."""
    n = len(xyz)
    structure = np.zeros(n, dtype=bool)
    if n < 3 or cfg.max_planes == 0:
        return structure
    # Plane search on voxel centroids: density-independent and fast.
    xyz64 = xyz.astype(np.float64)
    reps = voxel_mean(voxelize(xyz, cfg.voxel_size), xyz64)
    rng = np.random.default_rng(cfg.seed)
    candidate = np.ones(len(reps), dtype=bool)
    floor_z: float | None = None
    for _ in range(cfg.max_planes):
        idx = np.flatnonzero(candidate)
        found = ransac_plane(reps[idx], cfg.plane_distance, cfg.ransac_iterations, rng)
        if found is None:
            break
        normal, d, inl = found
        plane_reps = idx[inl]
        candidate[plane_reps] = False  # never propose the same plane twice
        if len(plane_reps) < cfg.min_plane_fraction * len(reps):
            break  # planes come out largest first: the rest are smaller still
        if _extent(reps[plane_reps]) < cfg.min_plane_extent:
            continue
        nz = abs(normal[2])
        if nz >= _HORIZONTAL_NZ:
            height = float(np.median(reps[plane_reps, 2]))
            if floor_z is None:
                floor_z = float(np.quantile(reps[:, 2], 0.02))
            if height > floor_z + cfg.floor_band:
                continue  # a table top or a shelf, not the floor
        elif nz > _VERTICAL_NZ:
            continue  # tilted: a ramp, a sofa back; not structure we remove
        else:
            side = signed_distance(reps, normal, d)
            beyond = min((side > cfg.plane_distance).mean(), (side < -cfg.plane_distance).mean())
            if beyond > _WALL_MAX_BEYOND:
                continue  # the room lies on one side of a wall; a sofa back has points on both
        structure |= np.abs(signed_distance(xyz64, normal, d)) < max(cfg.plane_distance,
                                                                      cfg.clearance)
    return structure


def tabletop_mask(xyz: np.ndarray, cfg: GeometricConfig) -> np.ndarray:
    """(N,) bool: everything but what stands on the support plane (the table top).

    Among the horizontal planes RANSAC finds (up to ``max_planes``, on the voxel centroids), the
    support is the one with the most points standing on it: above it by more than ``clearance``
    and at most ``tabletop_height``, horizontally inside its outline (the convex hull of its
    inliers: PCL's polygonal prism). Those points are kept (False); the plane, the floor and
    whatever is beside, below or high above the table are removed (True). Without a horizontal
    plane: the structure mask of the normal mode.
    """
    n = len(xyz)
    if n < 3:
        return np.zeros(n, dtype=bool)
    xyz64 = xyz.astype(np.float64)
    reps = voxel_mean(voxelize(xyz, cfg.voxel_size), xyz64)
    rng = np.random.default_rng(cfg.seed)
    candidate = np.ones(len(reps), dtype=bool)
    best_kept: np.ndarray | None = None
    for _ in range(max(1, cfg.max_planes)):
        idx = np.flatnonzero(candidate)
        found = ransac_plane(reps[idx], cfg.plane_distance, cfg.ransac_iterations, rng)
        if found is None:
            break
        normal, d, inl = found
        candidate[idx[inl]] = False
        if inl.sum() < 3 or abs(normal[2]) < _HORIZONTAL_NZ:
            continue
        if normal[2] < 0:
            normal, d = -normal, -d
        kept = _standing_on(xyz64, reps[idx[inl]], normal, d, cfg)
        if best_kept is None or kept.sum() > best_kept.sum():
            best_kept = kept
    if best_kept is None:
        return structure_mask(xyz, cfg)
    return ~best_kept


def _standing_on(xyz: np.ndarray, plane_points: np.ndarray, normal: np.ndarray, d: float,
                 cfg: GeometricConfig) -> np.ndarray:
    """(N,) bool: points above the plane (clearance, tabletop_height] inside its xy outline."""
    from scipy.spatial import ConvexHull, Delaunay, QhullError

    height = signed_distance(xyz, normal, d)
    above = (height > max(cfg.plane_distance, cfg.clearance)) & (height <= cfg.tabletop_height)
    if not above.any():
        return above
    try:
        outline = plane_points[:, :2]
        hull = Delaunay(outline[ConvexHull(outline).vertices])  # few vertices: fast lookups
        above[above] = hull.find_simplex(xyz[above, :2]) >= 0
    except QhullError:  # a degenerate (collinear) outline: keep the height test only
        pass
    return above


_NORMAL_NEIGHBOURS = 12  # voxel centroids per normal estimate


def convex_components(centres: np.ndarray, radius: float, concave_angle_deg: float,
                      viewpoint, colors: np.ndarray | None = None,
                      max_color_distance: float = 0.0) -> np.ndarray:
    """Connected components of voxel centroids joined across convex or flat edges only.

    centres: (M, 3) float64; two centroids closer than ``radius`` are neighbours. The edge is
    kept when the surface bends outwards there (LCCP's convexity test, Stein et al. CVPR 2014:
    (n_i - n_j) . (p_i - p_j) > 0 with normals facing the ``viewpoint``) or when the normals
    differ by less than ``concave_angle_deg``; the concave creases where two objects touch, or
    where an object stands on another, are cut. ``concave_angle_deg`` <= 0 keeps every edge.
    colors: (M, 3) mean voxel colours in [0, 1]; with ``max_color_distance`` > 0, edges between
    colours farther apart (Euclidean) are cut too. Returns (M,) int64 component ids.
    """
    from scipy.spatial import cKDTree

    m = len(centres)
    if m == 0:
        return np.zeros(0, dtype=np.int64)
    tree = cKDTree(centres)
    pairs = tree.query_pairs(radius, output_type="ndarray")
    i, j = pairs[:, 0], pairs[:, 1]
    keep = np.ones(len(i), dtype=bool)
    if concave_angle_deg > 0:
        k = min(_NORMAL_NEIGHBOURS, m)
        _, nbr = tree.query(centres, k=k)
        nbr = nbr.reshape(m, k)
        local = centres[nbr] - centres[nbr].mean(axis=1, keepdims=True)
        _, vecs = np.linalg.eigh(np.einsum("mki,mkj->mij", local, local))
        normals = vecs[:, :, 0]
        flip = np.einsum("ij,ij->i", normals, np.asarray(viewpoint, np.float64) - centres) < 0
        normals[flip] *= -1
        convex = np.einsum("ij,ij->i", normals[i] - normals[j], centres[i] - centres[j]) > 0
        flat = (np.einsum("ij,ij->i", normals[i], normals[j])
                > np.cos(np.radians(concave_angle_deg)))
        keep = convex | flat
    if colors is not None and max_color_distance > 0:
        keep &= np.linalg.norm(colors[i] - colors[j], axis=1) <= max_color_distance
    return graph_components(i[keep], j[keep], m)


def graph_components(rows: np.ndarray, cols: np.ndarray, num_nodes: int) -> np.ndarray:
    """Connected components of the undirected graph with edges ``rows[e]``-``cols[e]`` over
    ``num_nodes`` nodes: (num_nodes,) int64 component ids, numbered by their first node (scipy's
    labelling), so results are deterministic. Nodes without an edge are their own component."""
    if num_nodes == 0:
        return np.zeros(0, dtype=np.int64)
    graph = coo_matrix((np.ones(len(rows), dtype=np.int8), (rows, cols)),
                       shape=(num_nodes, num_nodes))
    _, labels = connected_components(graph, directed=False)
    return labels.astype(np.int64)


def _neighbour_offsets(reach: int) -> np.ndarray:
    """Half of the (2r+1)^3 - 1 cell offsets: each undirected voxel edge is generated once."""
    r = np.arange(-reach, reach + 1)
    off = np.stack(np.meshgrid(r, r, r, indexing="ij"), axis=-1).reshape(-1, 3)
    lexi = (off[:, 0] > 0) | ((off[:, 0] == 0) & ((off[:, 1] > 0) | ((off[:, 1] == 0) & (off[:, 2] > 0))))
    return off[lexi]


def voxel_components(coords: np.ndarray, reach: int) -> np.ndarray:
    """Connected components of occupied voxels: (M,) int64 component id per voxel.

    coords: (M, 3) integer voxel coordinates, unique. Two voxels are adjacent when their
    Chebyshev distance is at most ``reach`` cells. Component ids are numbered by their first voxel
    (scipy's labelling), so results are deterministic.
    """
    m = len(coords)
    if m == 0:
        return np.zeros(0, dtype=np.int64)
    c = coords.astype(np.int64) - coords.min(axis=0) + reach
    dims = c.max(axis=0) + reach + 1
    keys = (c[:, 0] * dims[1] + c[:, 1]) * dims[2] + c[:, 2]
    order = np.argsort(keys)
    sorted_keys = keys[order]
    rows, cols = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)]
    for off in _neighbour_offsets(reach):
        # The neighbours of the sorted keys are sorted too: searchsorted with sorted needles
        # walks the table in order (several times faster than random needles).
        nkeys = sorted_keys + (off[0] * dims[1] + off[1]) * dims[2] + off[2]
        pos = np.minimum(np.searchsorted(sorted_keys, nkeys), m - 1)
        hit = np.flatnonzero(sorted_keys[pos] == nkeys)
        rows.append(order[hit])
        cols.append(order[pos[hit]])
    return graph_components(np.concatenate(rows), np.concatenate(cols), m)


class GeometricModel:
    """RANSAC structure removal + Euclidean voxel clustering (the ``geometric`` method, a
    ``PointModel`` without weights); see the module docstring."""

    name = "geometric"

    def __init__(self, cfg: GeometricConfig | None = None) -> None:
        self.cfg = cfg or GeometricConfig()

    @classmethod
    def from_config(cls, cfg: Config) -> GeometricModel:
        """The method's factory (``registry.METHODS``): the ``geometric`` section of ``cfg``."""
        return cls(cfg.geometric)

    def predict_points(self, xyz: np.ndarray, rgb: np.ndarray | None = None) -> Proposals:
        """Instances of ``xyz`` (N, 3) float32, metres, z up; ``rgb`` (N, 3) uint8 or None feeds
        the colour cut (``max_color_distance``) only."""
        cfg = self.cfg
        timing: dict[str, float] = {}
        t0 = time.perf_counter()
        structure = tabletop_mask(xyz, cfg) if cfg.tabletop else structure_mask(xyz, cfg)
        t1 = time.perf_counter()
        timing["planes"] = (t1 - t0) * 1e3
        rest = np.flatnonzero(~structure)
        indices: list[np.ndarray] = []
        if len(rest):
            grid = voxelize(xyz[rest], cfg.voxel_size)
            by_color = rgb is not None and cfg.max_color_distance > 0
            if cfg.concave_angle_deg > 0 or by_color:
                centres = voxel_mean(grid, xyz[rest].astype(np.float64))
                colors = voxel_mean(grid, rgb[rest] / 255.0) if by_color else None
                comp = convex_components(centres, cfg.voxel_size * (cfg.connectivity + 0.75),
                                         cfg.concave_angle_deg, cfg.viewpoint, colors,
                                         cfg.max_color_distance)
            else:
                comp = voxel_components(grid.coords, cfg.connectivity)
            comp = comp[grid.point_to_voxel]
            # Only clusters big enough to keep are split out: most components are a few stray
            # voxels, and a Python step per component cost more than the clustering.
            big = np.bincount(comp) >= cfg.min_cluster_points
            kept = np.flatnonzero(big[comp])
            order = kept[np.argsort(comp[kept], kind="stable")]
            bounds = np.flatnonzero(np.diff(comp[order])) + 1
            for members in np.split(rest[order], bounds) if len(order) else []:
                if cfg.max_cluster_extent > 0 and _extent(xyz[members]) > cfg.max_cluster_extent:
                    continue
                indices.append(np.sort(members))
        indices.sort(key=lambda ix: int(ix[0]))
        timing["grouping"] = (time.perf_counter() - t1) * 1e3
        sizes = np.array([len(i) for i in indices], dtype=np.float32)
        # No learned confidence: larger clusters are likelier whole objects, so rank by size.
        scores = sizes / (sizes + 4.0 * cfg.min_cluster_points)
        point_class = np.full(len(xyz), -100, dtype=np.int32)
        for ix in indices:
            point_class[ix] = OTHERFURNITURE
        return Proposals(indices, np.full(len(indices), OTHERFURNITURE, np.int32), scores,
                         point_class, timing)
