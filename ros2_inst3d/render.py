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
    without an instance). boxes: objects with ``footprint() -> (4, 2)`` (``instances.Box3D``),
    outlined in the top view in ``box_colors`` ((B, 3) uint8; black when None), with optional
    text ``box_labels``. Clouds larger than
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
        lo, hi = xyz.min(axis=0), xyz.max(axis=0)
        span = np.maximum(hi - lo, 1e-3)
        persp.set_xlim(lo[0], lo[0] + span[0])
        persp.set_ylim(lo[1], lo[1] + span[1])
        persp.set_zlim(lo[2], lo[2] + span[2])
        persp.set_box_aspect(tuple(span))
    else:
        top.text(0.5, 0.5, "no points", ha="center", va="center", transform=top.transAxes)

    for b, box in enumerate(boxes or ()):
        corners = np.asarray(box.footprint(), dtype=np.float64).reshape(-1, 2)
        ring = np.vstack([corners, corners[:1]])
        color = (0.0, 0.0, 0.0) if box_colors is None else tuple(
            np.asarray(box_colors[b], dtype=np.float64) / 255.0)
        top.plot(ring[:, 0], ring[:, 1], color=color, linewidth=0.8)
        if box_labels is not None:
            top.text(corners[:, 0].mean(), corners[:, 1].mean(), box_labels[b], fontsize=7,
                     ha="center", va="center", color="black",
                     bbox={"boxstyle": "round,pad=0.15", "facecolor": "white", "alpha": 0.7,
                           "linewidth": 0})

    top.set_aspect("equal", adjustable="datalim")
    top.set_title("top view")
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
