"""A PNG picture of a segmentation result, for a person to look at (``ros2-inst3d demo``).

Two panels: a top view (x-y, highest points drawn last, optional box footprints and labels) and a
perspective 3D view, both with equal axis scales. matplotlib is imported inside the function and
only its Agg canvas is used, so rendering never touches pyplot's global state or needs a display.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np


# Edges of a box as ``Box3D.corners()`` orders them: the bottom ring, the top ring, the verticals.
_BOX_EDGES = ((0, 1), (1, 2), (2, 3), (3, 0), (4, 5), (5, 6), (6, 7), (7, 4),
              (0, 4), (1, 5), (2, 6), (3, 7))
VIEW_MADS = 4.0          # horizontal view: median +- this many median absolute deviations
VIEW_Z_PERCENTILES = (1.0, 99.0)
VIEW_MARGIN = 0.05       # of the span, each side


def view_bounds(xyz: np.ndarray, boxes: Sequence | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(lo, hi) (3,) metres of the rendered region: where the points are dense.

    x and y: the median +- VIEW_MADS median absolute deviations, within the points' extent (a
    room stays whole; a LiDAR scan, dense near the sensor with returns out to 200 m, is cut to
    its dense centre); z: the VIEW_Z_PERCENTILES of the points inside that, so trees and
    buildings keep their height. Widened by VIEW_MARGIN and to hold every box's corners.
    (-1, 1) cube for no points.
    """
    xyz = np.asarray(xyz, dtype=np.float64).reshape(-1, 3)
    if len(xyz):
        median = np.median(xyz[:, :2], axis=0)
        mad = np.median(np.abs(xyz[:, :2] - median), axis=0)
        lo_xy = np.maximum(xyz[:, :2].min(axis=0), median - VIEW_MADS * mad)
        hi_xy = np.minimum(xyz[:, :2].max(axis=0), median + VIEW_MADS * mad)
        inside = np.all((xyz[:, :2] >= lo_xy) & (xyz[:, :2] <= hi_xy), axis=1)
        lo_z, hi_z = np.percentile(xyz[inside, 2] if inside.any() else xyz[:, 2],
                                   VIEW_Z_PERCENTILES)
        lo, hi = np.append(lo_xy, lo_z), np.append(hi_xy, hi_z)
        margin = np.maximum(hi - lo, 1e-3) * VIEW_MARGIN
        lo, hi = lo - margin, hi + margin
    else:
        lo, hi = -np.ones(3), np.ones(3)
    for box in boxes or ():
        if hasattr(box, "corners"):
            corners = np.asarray(box.corners(), dtype=np.float64).reshape(-1, 3)
            lo, hi = np.minimum(lo, corners.min(axis=0)), np.maximum(hi, corners.max(axis=0))
    return lo, hi


def render_instances_png(
    path: str | os.PathLike[str],
    xyz: np.ndarray,
    point_colors: np.ndarray,
    title: str = "",
    boxes: Sequence | None = None,
    box_colors: np.ndarray | Sequence | None = None,
    box_labels: Sequence[str] | None = None,
    max_points: int = 200_000,
    size_px: tuple[int, int] = (1600, 800),
    dpi: int = 100,
) -> Path:
    """Render points coloured per instance to a PNG at ``path``; returns the path.

    xyz: (N, 3) float, metres (z up). point_colors: (N, 3) uint8, e.g.
    ``outputs.instance_colors(inst.point_instance)`` (the colours RViz shows, grey for points
    without an instance). boxes: objects with ``footprint() -> (4, 2)`` and ``corners() ->
    (8, 3)`` (``instances.Box3D``), outlined in both views in ``box_colors`` ((B, 3) uint8; black
    when None), with optional text ``box_labels`` in the top view. Both views show where the
    points are dense (``view_bounds``; widened to hold every box), so a few far LiDAR returns do not shrink the scene to a dot; the points
    outside are counted in the top view's title. Clouds larger than
    ``max_points`` are drawn from a fixed-seed random subset (same picture every run). Grey points
    (r = g = b, as unassigned points are coloured) are drawn first, so no instance hides behind
    them. The image is ``size_px`` (width, height) pixels.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator
    from mpl_toolkits.mplot3d import Axes3D  # noqa: F401  (registers the "3d" projection)

    xyz = np.asarray(xyz, dtype=np.float64).reshape(-1, 3)
    colors = np.asarray(point_colors, dtype=np.uint8).reshape(-1, 3)
    if colors.shape[0] != xyz.shape[0]:
        raise ValueError(f"point_colors has {colors.shape[0]} rows for {xyz.shape[0]} points")
    if xyz.shape[0] > max_points:
        keep = np.sort(np.random.default_rng(0).choice(xyz.shape[0], max_points, replace=False))
        xyz, colors = xyz[keep], colors[keep]
    n = xyz.shape[0]
    rgba = colors.astype(np.float64) / 255.0
    # Marker area in points^2: large enough that sparse clouds stay visible, small for dense ones.
    marker = float(np.clip(4.0e4 / max(n, 1), 0.5, 12.0))

    fig = Figure(figsize=(size_px[0] / dpi, size_px[1] / dpi), dpi=dpi, facecolor="white")
    FigureCanvasAgg(fig)
    if title:
        fig.suptitle(title)
    top = fig.add_subplot(1, 2, 1)
    # computed_zorder=False: draw in call order, so the instance points go over the grey ones.
    persp = fig.add_subplot(1, 2, 2, projection="3d", computed_zorder=False)
    persp.set_proj_type("persp")

    lo, hi = view_bounds(xyz, boxes)
    inside = np.all((xyz >= lo) & (xyz <= hi), axis=1)
    outside = int(n - np.count_nonzero(inside))
    xyz, colors, rgba = xyz[inside], colors[inside], rgba[inside]
    if n:
        # Grey points (unassigned) go first so they never hide an instance; within each group
        # the top view draws the highest points last, as seen from above.
        grey = (colors[:, 0] == colors[:, 1]) & (colors[:, 1] == colors[:, 2])
        for group in (grey, ~grey):
            idx = np.flatnonzero(group)
            idx = idx[np.argsort(xyz[idx, 2], kind="stable")]
            if len(idx):
                top.scatter(xyz[idx, 0], xyz[idx, 1], c=rgba[idx], s=marker, marker="o",
                            linewidths=0, rasterized=True)
                persp.scatter(xyz[idx, 0], xyz[idx, 1], xyz[idx, 2], c=rgba[idx], s=marker,
                              marker="o", linewidths=0, depthshade=False, rasterized=True)
    else:
        top.text(0.5, 0.5, "no points", ha="center", va="center", transform=top.transAxes)

    for b, box in enumerate(boxes or ()):
        corners = np.asarray(box.footprint(), dtype=np.float64).reshape(-1, 2)
        ring = np.vstack([corners, corners[:1]])
        color = (0.0, 0.0, 0.0) if box_colors is None else tuple(
            np.asarray(box_colors[b], dtype=np.float64) / 255.0)
        top.plot(ring[:, 0], ring[:, 1], color=color, linewidth=0.8)
        if hasattr(box, "corners"):
            c = np.asarray(box.corners(), dtype=np.float64).reshape(8, 3)
            for i, j in _BOX_EDGES:
                persp.plot(c[[i, j], 0], c[[i, j], 1], c[[i, j], 2], color=color, linewidth=0.8)
        if box_labels is not None:
            top.text(corners[:, 0].mean(), corners[:, 1].mean(), box_labels[b], fontsize=7,
                     ha="center", va="center", color="black",
                     bbox={"boxstyle": "round,pad=0.15", "facecolor": "white", "alpha": 0.7,
                           "linewidth": 0})

    span = np.maximum(hi - lo, 1e-3)
    top.set_xlim(lo[0], hi[0])
    top.set_ylim(lo[1], hi[1])
    persp.set_xlim(lo[0], lo[0] + span[0])
    persp.set_ylim(lo[1], lo[1] + span[1])
    persp.set_zlim(lo[2], lo[2] + span[2])
    persp.set_box_aspect(tuple(span))
    top.set_aspect("equal", adjustable="datalim")
    top.set_title("top view" + (f" ({outside} far point{'' if outside == 1 else 's'} not shown)"
                                if outside else ""))
    top.set_xlabel("x (m)")
    top.set_ylabel("y (m)")
    persp.set_title("perspective")
    persp.set_xlabel("x (m)")
    persp.set_ylabel("y (m)")
    persp.set_zlabel("z (m)")
    persp.view_init(elev=35.0, azim=-60.0)
    for axis, bins in ((persp.xaxis, 4), (persp.yaxis, 4), (persp.zaxis, 3)):
        axis.set_major_locator(MaxNLocator(nbins=bins))

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, facecolor="white", format="png")
    return path
