"""Association-parameter sweep of the tracker on generated *validation* sequences.

    python3 benchmarks/tracking_sweep.py --sensor rgbd --sequences 6 \\
        --set tracking.max_distance=1.5 --set tracking.class_mismatch_cost=0.1

Replays each sequence through the same `StreamPipeline` as `ros2-inst3d bench --tracking`
(`ros2_inst3d.tracking_eval.replay_sequences`) with the default parameters and then with each
``--set`` applied alone, and prints one row per setting (ID switches per 100 ground-truth
instance-frames, MOTA, IDF1). Validation seeds, so the test sequences of the benchmark stay
unseen by the choice.
"""

from __future__ import annotations

import argparse

from ros2_inst3d.bench import bench_point_model
from ros2_inst3d.config import Config
from ros2_inst3d.segmenter import Segmenter
from ros2_inst3d.synthetic.scene import generate_scene, split_seed
from ros2_inst3d.tracking_eval import replay_sequences, sequence_params


def parse_setting(text: str) -> tuple[str, float]:
    key, sep, value = text.partition("=")
    if not sep or not key.startswith("tracking."):
        raise argparse.ArgumentTypeError(f"expected tracking.<name>=<number>, got {text!r}")
    return key, float(value)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sensor", choices=("rgbd", "lidar"), default="rgbd")
    parser.add_argument("--model", default="softgroup")
    parser.add_argument("--sequences", type=int, default=6)
    parser.add_argument("--set", dest="settings", type=parse_setting, action="append", default=[],
                        help="tracking.<name>=<number>, tried alone against the defaults")
    args = parser.parse_args()
    params = sequence_params(args.sensor)
    seeds = [split_seed("val", i) for i in range(args.sequences)]
    scenes = [generate_scene(seed, params, keep_sequence=True, threads=1).sequence
              for seed in seeds]
    point_model, _ = bench_point_model(args.model, "cpu")
    print(f"{args.model} / {args.sensor}, validation seeds {seeds}")
    print("| setting | GT inst-frames | IDSW | IDSW/100 | frag | MOTA | IDF1 |")
    print("|---|---|---|---|---|---|---|")
    for key, value in [(None, None)] + args.settings:
        overrides = {"model.name": args.model, "model.device": "cpu"}
        if key is not None:
            overrides[key] = value
        cfg = Config().replace(**overrides)
        row = replay_sequences(scenes, cfg, Segmenter(cfg, point_model))[0].to_dict()
        name = "defaults" if key is None else f"{key}={value:g}"
        print(f"| {name} | {row['gt']} | {row['id_switches']} | {row['id_switches_per_100']:.2f} | "
              f"{row['fragmentations']} | {row['mota']:.3f} | {row['idf1']:.3f} |", flush=True)


if __name__ == "__main__":
    main()
