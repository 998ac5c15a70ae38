"""Inference cost of SSAIFF fusion: per-stage time of two checkpoints of one method, alternating.

    python3 benchmarks/fusion_time.py --model pointgroup \\
        --off work_dirs/fusion_off_s8/latest.pth --on work_dirs/fusion_on_s8/latest.pth

Segments the bundled demo room (or ``--scene``) with each checkpoint in turn through the
``Segmenter`` (the node's path), drops the first round as a warm-up and prints the median of the
per-stage times (ms) of the remaining ``--repeats`` rounds, then the ratio on/off of each stage.
Alternating keeps both arms under the same load; read the ratios, not the milliseconds.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from ros2_inst3d.config import load_config
from ros2_inst3d.data.datasets import read_scene
from ros2_inst3d.resources import data_file
from ros2_inst3d.segmenter import Segmenter


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="pointgroup", choices=("pointgroup", "softgroup"))
    parser.add_argument("--off", required=True, help="checkpoint trained with model.fusion false")
    parser.add_argument("--on", required=True, help="checkpoint trained with model.fusion true")
    parser.add_argument("--scene", help="labelled scene .npz (default: the bundled demo room)")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)
    scene = read_scene(args.scene or data_file("samples", "demo_room.npz"))
    arms = {arm: Segmenter(load_config(None, {"model.name": args.model,
                                              "model.checkpoint": path}))
            for arm, path in (("off", args.off), ("on", args.on))}
    times: dict[str, list[dict[str, float]]] = {arm: [] for arm in arms}
    for round_ in range(args.repeats + 1):
        for arm, segmenter in arms.items():
            timing = segmenter.segment(scene.xyz, scene.rgb).timing_ms
            if round_:
                times[arm].append(timing)
    medians = {arm: {k: float(np.median([t[k] for t in rows])) for k in rows[0]}
               for arm, rows in times.items()}
    print(f"{args.model} on {scene.name} ({scene.num_points} points), median of {args.repeats}")
    print("| stage | fusion off ms | fusion on ms | on / off |")
    print("|---|---|---|---|")
    for stage, off in medians["off"].items():
        on = medians["on"].get(stage, float("nan"))
        print(f"| {stage} | {off:.1f} | {on:.1f} | {on / off if off else float('nan'):.2f} |")


if __name__ == "__main__":
    main()
