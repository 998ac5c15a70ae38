"""SoftGroup's hypothesis stage (``get_instances`` + mask NMS) before and after a change, in one run.

    python3 benchmarks/bench_softgroup_instances.py --baseline-tree /path/to/checkout/before

Runs the shipped SoftGroup once on the pipeline benchmark's room (seed ``BENCH_SCENE_SEED``) and
``--scenes`` more generated rooms (seeds 200101..) to capture each room's proposals and refinement
output, then times ``SoftGroup.get_instances`` of the baseline checkout (its ``softgroup.py`` with
its ``ops/masks.py``) and of this tree interleaved (process CPU time, medians over ``--repeats``)
on the same inputs, at the shipped ``cls_score_thr`` and at ``--cls-score-thr``, and checks that
both return identical hypotheses (masks, classes, scores). One row per room and threshold.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ros2_inst3d import ops  # noqa: E402
from ros2_inst3d.bench import BENCH_SCENE_SEED, bench_point_model, load_baseline_module  # noqa: E402
from ros2_inst3d.config import Config  # noqa: E402
from ros2_inst3d.model import softgroup  # noqa: E402
from ros2_inst3d.segmenter import Segmenter  # noqa: E402
from ros2_inst3d.synthetic.scene import generate_scene  # noqa: E402


def capture_inputs(seeds: list[int]) -> tuple[object, list[tuple[int, int, object, object]]]:
    """The shipped SoftGroup and, per room, (seed, points, proposals, refinement output)."""
    model, _ = bench_point_model("softgroup")
    captured = []
    original = softgroup.SoftGroup.get_instances

    def record(self, masks, refined):
        captured.append((masks, refined))
        return original(self, masks, refined)

    softgroup.SoftGroup.get_instances = record
    rows = []
    try:
        for seed in seeds:
            scene = generate_scene(seed, threads=1)
            Segmenter(Config(), model).segment(scene.xyz, scene.rgb)
            rows.append((seed, len(scene.xyz), *captured[-1]))
    finally:
        softgroup.SoftGroup.get_instances = original
    return model.network, rows


def same_hypotheses(a, b) -> bool:
    return (a[0].num_masks == b[0].num_masks and torch.equal(a[0].mask_idx, b[0].mask_idx)
            and torch.equal(a[0].point_idx, b[0].point_idx) and torch.equal(a[1], b[1])
            and torch.equal(a[2], b[2]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline-tree", type=Path, required=True)
    parser.add_argument("--scenes", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cls-score-thr", type=float, default=0.05,
                        help="a second, stricter class-score threshold to time (default 0.05)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    try:
        before_sg = load_baseline_module(args.baseline_tree, "ros2_inst3d/model/softgroup.py")
        before_masks = load_baseline_module(args.baseline_tree, "ros2_inst3d/ops/masks.py")
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    network, inputs = capture_inputs([BENCH_SCENE_SEED, *range(200101, 200101 + args.scenes)])
    shipped_thr = float(network.test_cfg["cls_score_thr"])

    def run_before(masks, refined):
        current, ops.mask_nms = ops.mask_nms, before_masks.mask_nms
        try:
            return before_sg.SoftGroup.get_instances(network, masks, refined)
        finally:
            ops.mask_nms = current

    def run_after(masks, refined):
        return softgroup.SoftGroup.get_instances(network, masks, refined)

    print("| room | points | proposals | cls_score_thr | hypotheses kept | identical | CPU ms "
          "before / after | speed-up |\n|---|---|---|---|---|---|---|---|")
    ratios, identical = [], []
    for threshold in (shipped_thr, args.cls_score_thr):
        network.test_cfg["cls_score_thr"] = threshold
        for seed, points, masks, refined in inputs:
            cpu: dict[str, list[float]] = {"before": [], "after": []}
            out = {}
            for turn in range(args.repeats + 1):  # the first turn warms up
                for name, run in (("before", run_before), ("after", run_after)):
                    start = time.process_time()
                    out[name] = run(masks, refined)
                    if turn:
                        cpu[name].append(time.process_time() - start)
            before_ms = statistics.median(cpu["before"]) * 1e3
            after_ms = statistics.median(cpu["after"]) * 1e3
            same = same_hypotheses(out["before"], out["after"])
            ratios.append(before_ms / after_ms)
            identical.append(same)
            print(f"| {seed} | {points} | {masks.num_masks} | {threshold:g} | "
                  f"{out['after'][0].num_masks} | {same} | {before_ms:.0f} / {after_ms:.0f} | "
                  f"{before_ms / after_ms:.2f}x |", flush=True)
    network.test_cfg["cls_score_thr"] = shipped_thr
    print(f"median speed-up {statistics.median(ratios):.2f}x; identical on {sum(identical)}/"
          f"{len(identical)}; load average {os.getloadavg()[0]:.1f}")
    return 0 if all(identical) else 1


if __name__ == "__main__":
    sys.exit(main())
