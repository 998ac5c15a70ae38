"""Tracking-parameter sweep on generated *validation* sequences.

    python3 benchmarks/tracking_sweep.py --sensor rgbd --sequences 12 \\
        --set tracking.max_age_s=120 --set tracking.max_distance=1.5

Segments each sequence once through the same `StreamPipeline` as `ros2-inst3d bench --tracking`
(tracking off, `ros2_inst3d.tracking_eval.record_sequence`), then re-runs only the tracker on the
recorded results with the default parameters and with each ``--set`` applied alone
(`track_recorded`; a test holds it equal to tracking inside the pipeline), and prints one row per
setting (ID switches per 100 ground-truth instance-frames, fragmentations, MOTA, IDF1).
Validation seeds, so the test sequences of the benchmark stay unseen by the choice.
"""

from __future__ import annotations

import argparse
from typing import Any

from tqdm import tqdm

from ros2_inst3d.bench import bench_point_model
from ros2_inst3d.config import Config, parse_override
from ros2_inst3d.errors import ConfigError
from ros2_inst3d.segmenter import Segmenter
from ros2_inst3d.synthetic.scene import generate_scene, split_seed
from ros2_inst3d.tracking_eval import (MotCounts, mot_counts, record_sequence, sequence_params,
                                       track_recorded)


def parse_setting(text: str) -> tuple[str, Any]:
    """``tracking.<name>=<value>`` (``config.parse_override``)."""
    try:
        return parse_override(text, prefix="tracking.")
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sensor", choices=("rgbd", "lidar"), default="rgbd")
    parser.add_argument("--model", default="softgroup")
    parser.add_argument("--sequences", type=int, default=6)
    parser.add_argument("--set", dest="settings", type=parse_setting, action="append", default=[],
                        help="tracking.<name>=<value>, tried alone against the defaults")
    args = parser.parse_args()
    base = Config().replace(**{"model.name": args.model, "model.device": "cpu"})
    configs = [("defaults", base)]
    for key, value in args.settings:
        try:
            configs.append((f"{key}={value}", base.replace(**{key: value})))
        except ConfigError as exc:     # before any segmentation
            parser.error(str(exc))
    params = sequence_params(args.sensor)
    seeds = [split_seed("val", i) for i in range(args.sequences)]
    segmenter = Segmenter(base, bench_point_model(args.model, "cpu")[0])
    recorded = []
    for seed in tqdm(seeds, desc=f"segment {args.sensor}", unit="sequence"):
        seq = generate_scene(seed, params, keep_sequence=True, threads=1).sequence
        recorded.append(record_sequence(seq, base, segmenter))
    print(f"{args.model} / {args.sensor}, validation seeds {seeds}")
    print("| setting | GT inst-frames | IDSW | IDSW/100 | frag | MOTA | IDF1 |")
    print("|---|---|---|---|---|---|---|")
    for name, cfg in configs:
        total = MotCounts()
        for results in recorded:
            total = total + mot_counts(track_recorded(results, cfg.tracking))
        row = total.to_dict()
        print(f"| {name} | {row['gt']} | {row['id_switches']} | {row['id_switches_per_100']:.2f} | "
              f"{row['fragmentations']} | {row['mota']:.3f} | {row['idf1']:.3f} |", flush=True)


if __name__ == "__main__":
    main()
