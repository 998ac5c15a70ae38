"""Learning curves of `ros2-inst3d train` runs: validation metrics against CPU-hours.

    python3 benchmarks/learning_curve.py work_dirs/backbone_synthetic work_dirs/softgroup_synthetic \
        --png docs/images/learning_curve.png

Reads each run's ``log.jsonl`` (``ros2_inst3d.train`` documents its records), adds up the
process CPU seconds of its iterations (``cpu_s``: data loading included, validation excluded) and
prints one markdown row per validation: run, iteration, CPU-hours so far, and the metrics logged
(semantic mIoU and offset error for a backbone run; class-aware and class-agnostic AP50 for an
instance stage). A run's ``pretrain`` is not counted in its own hours; add the rows of the run it
started from.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ros2_inst3d.train import read_log

COLUMNS = ("mIoU", "semantic_accuracy", "offset_mae", "offset_within", "AP", "AP50",
           "agnostic_AP50")


def curve(work_dir: Path) -> list[dict]:
    """One row per validation of the run in ``work_dir``.

    A ``resume`` record rewinds the run to its checkpoint's iteration: the iterations and
    validations logged after that checkpoint by the interrupted process were redone, so they
    count neither as rows nor as CPU time of the curve."""
    rows: list[dict] = []
    cpu_by_iteration: dict[int, float] = {}
    for record in read_log(work_dir / "log.jsonl"):
        if record["type"] == "resume":
            resumed_at = int(record["iteration"])
            cpu_by_iteration = {i: c for i, c in cpu_by_iteration.items() if i <= resumed_at}
            rows = [row for row in rows if row["iteration"] <= resumed_at]
        elif record["type"] == "iter":
            cpu_by_iteration[int(record["iteration"])] = float(record.get("cpu_s") or 0.0)
        elif record["type"] == "val":
            rows.append({"run": work_dir.name, "iteration": record["iteration"],
                         "cpu_hours": sum(cpu_by_iteration.values()) / 3600.0,
                         **{k: record[k] for k in COLUMNS if record.get(k) is not None}})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("work_dirs", type=Path, nargs="+")
    parser.add_argument("--png", type=Path, help="also plot the curves")
    args = parser.parse_args()
    rows = [row for work_dir in args.work_dirs for row in curve(work_dir)]
    shown = [c for c in COLUMNS if any(c in row for row in rows)]
    print("| run | iteration | CPU-hours | " + " | ".join(shown) + " |")
    print("|---|---|---|" + "---|" * len(shown))
    for row in rows:
        values = " | ".join(f"{row[c]:.3f}" if c in row else "" for c in shown)
        print(f"| {row['run']} | {row['iteration']} | {row['cpu_hours']:.2f} | {values} |")
    if args.png:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(1, 2, figsize=(10, 4))
        runs = list(dict.fromkeys(row["run"] for row in rows))
        colours = plt.get_cmap("tab10" if len(runs) <= 10 else "tab20")
        for i, run in enumerate(runs):
            mine = [row for row in rows if row["run"] == run]
            hours = [row["cpu_hours"] for row in mine]
            # A stage-2 run's point-wise metrics are its frozen stage 1's: plot its AP only.
            stage2 = all("AP50" in row for row in mine)
            panels = ((axes[1], ("AP50", "agnostic_AP50")),) if stage2 else \
                ((axes[0], ("mIoU", "offset_within")),)
            for ax, keys in panels:
                for key, style in zip(keys, ("-", "--")):
                    if all(key in row for row in mine):
                        ax.plot(hours, [row[key] for row in mine], style, marker="o",
                                color=colours(i % colours.N), label=f"{run}: {key}")
        for ax, title in zip(axes, ("stage 1: point-wise", "stage 2: instances")):
            if not ax.lines:  # e.g. only stage-2 runs: an empty panel says nothing
                ax.set_axis_off()
                continue
            ax.set_xlabel("CPU-hours of the run")
            ax.set_title(title)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
        fig.tight_layout()
        args.png.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(args.png, dpi=90)
        print(f"wrote {args.png}")


if __name__ == "__main__":
    main()
