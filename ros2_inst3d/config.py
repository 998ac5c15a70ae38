"""The configuration schema: one tree of dataclasses shared by the node, the bag tool and the CLI.

Every leaf carries its documentation, range and whether it may change at runtime (``param``
metadata). The node declares one ROS parameter per leaf under its dotted name
(``accumulate.window_s``), the README's parameter table is generated from the same metadata
(``ros2-inst3d params --markdown``), and YAML files use the nested form::

    accumulate:
      window_s: 2.0

A node parameter file wraps the same tree in ``/**: ros__parameters:`` (``load_config`` accepts both).
Model-intrinsic settings (classes, voxel size, network shape) ship beside the weights in
``config/models/*.yaml`` and inside checkpoints; this schema holds runtime settings only.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from .data.inputs import VIEW_COUNTS
from .errors import ConfigError
from .model.registry import METHOD_NAMES, methods_doc
from .schema import build_section, load_yaml_mapping, named_errors, param

# Every method model.name can pick: the registry is the one list of methods.
MODEL_NAMES = METHOD_NAMES


@dataclass
class InputConfig:
    topics: list[str] = param(
        ["points"], "PointCloud2 topics to subscribe to (relative names follow the node's namespace; "
        "remap `points` or list several).")
    fixed_frame: str = param(
        "map", "Frame the scans are accumulated and results are published in (e.g. map, odom).")
    empty_frame_id: str = param(
        "", "Frame a scan with an empty header.frame_id is in; empty: such scans are skipped "
        "(counted as no_frame_id), since the fixed frame would be a guess.")
    reliability: str = param(
        "best_effort", "QoS reliability of the input subscriptions.",
        choices=("best_effort", "reliable"))
    queue_depth: int = param(1, "QoS history depth of the input subscriptions.", low=1, high=100)
    tf_timeout_s: float = param(
        0.05, "How long the worker waits for a transform at a scan's stamp.", low=0.0, high=5.0,
        unit="s")
    max_points_per_scan: int = param(
        2_000_000, "Scans with more points are rejected (counted in diagnostics) rather than "
        "risking memory.", low=1)


@dataclass
class AccumulateConfig:
    window_s: float = param(
        2.0, "Scans older than the newest by more than this are dropped.", low=0.0, high=600.0,
        unit="s", runtime=True)
    max_scans: int = param(10, "At most this many scans are accumulated.", low=1, high=10_000,
                           runtime=True)
    max_points: int = param(
        400_000, "Point budget of the accumulated cloud; oldest scans go first.", low=1,
        high=50_000_000, runtime=True)
    dedupe_voxel: float = param(
        0.02, "Voxel size of the fixed-frame dedupe (newest point per voxel wins); 0 disables it.",
        low=0.0, high=1.0, unit="m", runtime=True)


@dataclass
class SegmentConfig:
    rate_hz: float = param(
        1.0, "Segmentation rate on the newest accumulated cloud; 0 disables the timer trigger.",
        low=0.0, high=100.0, unit="Hz", runtime=True)
    every_n_scans: int = param(
        0, "Also segment after every N received scans; 0 disables the scan trigger.", low=0,
        runtime=True)
    roi_min: list[float] = param(
        [-50.0, -50.0, -5.0], "Lower corner of the region of interest in the fixed frame.",
        unit="m", runtime=True)
    roi_max: list[float] = param(
        [50.0, 50.0, 5.0], "Upper corner of the region of interest in the fixed frame.", unit="m",
        runtime=True)
    max_points: int = param(
        400_000, "Clouds larger than this are subsampled (deterministically) before the model.",
        low=1, runtime=True)
    score_threshold: float = param(
        0.2, "Instances scoring below this are dropped.", low=0.0, high=1.0, runtime=True)
    min_points: int = param(50, "Instances with fewer points are dropped.", low=1, runtime=True)
    class_filter: list[str] = param(
        [""], "Publish only these class names; [''] (empty) publishes every class.", runtime=True)


@dataclass
class GeometricConfig:
    voxel_size: float = param(0.025, "Grid of the Euclidean clustering.", low=0.005, high=1.0,
                              unit="m")
    plane_distance: float = param(
        0.03, "RANSAC inlier distance of floor/wall planes.", low=0.001, high=0.5, unit="m")
    clearance: float = param(
        0.04, "Points this close to a removed floor/wall plane are removed too: floor-level "
        "debris and noise otherwise bridge separate objects.", low=0.0, high=0.5, unit="m")
    max_planes: int = param(6, "At most this many dominant planes are removed.", low=0, high=20)
    min_plane_fraction: float = param(
        0.04, "A plane must hold at least this fraction of the cloud to count as dominant.",
        low=0.0, high=1.0)
    min_plane_extent: float = param(
        1.5, "A plane must span at least this far (largest side) to count as floor or wall.",
        low=0.0, unit="m")
    floor_band: float = param(
        0.25, "Horizontal planes are removed only within this height of the lowest one "
        "(so table tops survive).", low=0.0, unit="m")
    ransac_iterations: int = param(300, "RANSAC hypotheses per plane.", low=1, high=100_000)
    connectivity: int = param(
        1, "Voxels within this many cells (Chebyshev distance) are connected.", low=1, high=3)
    min_cluster_points: int = param(80, "Smaller clusters are discarded.", low=1)
    max_cluster_extent: float = param(
        4.0, "Clusters larger than this (largest side) are discarded as structure.", low=0.0,
        unit="m")
    seed: int = param(0, "Seed of the RANSAC sampler (results are deterministic).", low=0)
    concave_angle_deg: float = param(
        0.0, "Cut clusters at concave creases sharper than this (LCCP-style convexity test on "
        "voxel normals): splits objects that touch or stand on each other; 0 disables it "
        "(plain connectivity).", low=0.0, high=90.0, unit="deg")
    max_color_distance: float = param(
        0.0, "Neighbouring voxels whose mean colours (RGB, each in [0, 1]) differ by more than "
        "this are not joined: touching objects of different colour come apart where geometry "
        "alone sees one surface (coplanar boxes, an object leaning on another). 0 disables it; "
        "clouds without rgb are clustered by geometry alone.", low=0.0, high=2.0)
    viewpoint: list[float] = param(
        [0.0, 0.0, 0.0], "Sensor position the voxel normals are turned towards (the "
        "convexity test needs outward normals).", unit="m")
    tabletop: bool = param(
        False, "Table-top mode: remove the largest horizontal plane (the supporting surface) and "
        "keep only what stands on it, inside its outline and up to `tabletop_height` above it.")
    tabletop_height: float = param(
        0.6, "Table-top mode: points higher than this above the support plane are dropped.",
        low=0.0, unit="m")


@dataclass
class LidarConfig:
    ground: str = param(
        "grid", "Ground segmentation of model.name lidar: grid (polar-grid local plane fit, "
        "built in), patchworkpp (Patchwork++, needs the `pypatchworkpp` wheel: the `lidar` "
        "extra), none. On SemanticKITTI both separate ground about equally; grid is faster and "
        "leaves fewer ground fragments (README: LiDAR, RGB-D cameras and real data).",
        choices=("grid", "patchworkpp", "none"))
    origin: list[float] = param(
        [0.0, 0.0, 0.0], "Sensor position in the fixed frame: ranges, the polar ground grid and "
        "Patchwork++'s sensor height are taken relative to it.", unit="m")
    ground_distance: float = param(
        0.2, "Points this far above the local ground plane still count as ground (grid; "
        "Patchwork++'s th_dist).", low=0.01, high=2.0, unit="m")
    ground_max_slope_deg: float = param(
        20.0, "A ground cell's plane may tilt at most this much (grid; Patchwork++'s "
        "uprightness).", low=1.0, high=60.0, unit="deg")
    ground_max_step: float = param(
        0.3, "grid: a cell's ground plane may rise at most this much above the ground carried "
        "from the cell before it (towards the sensor; compared at their shared edge) and above "
        "the median ground of its ring neighbours; higher cells hold only objects (kerbs are "
        "~0.15 m).", low=0.01, high=5.0, unit="m")
    ground_cell: float = param(
        0.5, "grid: radial size of the innermost polar ground cells; cells grow with range "
        "(10 % of it) and span `ground_sectors` of the circle.", low=0.05, high=10.0, unit="m")
    ground_sectors: int = param(96, "grid: azimuth sectors of the polar ground grid.",
                                low=8, high=1024)
    voxel_size: float = param(
        0.1, "Grid of the range-adaptive Euclidean clustering.", low=0.01, high=2.0, unit="m")
    cluster_tolerance: float = param(
        0.3, "Points closer than this are in one cluster, at short range.", low=0.01,
        high=5.0, unit="m")
    tolerance_growth_deg: float = param(
        0.0, "Beyond short range the tolerance is range x tan(this angle) x 2 (about two beam "
        "spacings, so a vertical object's rings join). 0: from the `ring`/`channel` field when "
        "the cloud has one, else 0.5 deg.", low=0.0, high=10.0, unit="deg")
    max_reach: int = param(
        4, "Cap of the tolerance in voxels (it bounds the cost of the neighbour search).",
        low=1, high=8)
    min_cluster_points: int = param(
        15, "Smaller clusters are discarded.", low=1)
    min_height: float = param(
        0.2, "Clusters lower than this (z extent) are discarded (kerbs, ground left-overs).",
        low=0.0, unit="m")
    max_height: float = param(
        4.0, "Clusters taller than this are discarded as buildings and trees.", low=0.0, unit="m")
    max_length: float = param(
        8.0, "Clusters longer than this (largest horizontal side of the oriented box) are "
        "discarded as walls, fences and hedges.", low=0.0, unit="m")
    max_scatter: float = param(
        1.0, "Clusters whose smallest / largest covariance eigenvalue exceeds this are "
        "discarded as volumetric clutter (foliage); surfaces, poles and vehicles score low. "
        "1 disables the test.", low=0.0, high=1.0)
    max_ground_gap: float = param(
        1.0, "Clusters whose lowest point is this far above the local ground are discarded "
        "(canopies, overhangs); 0 disables the test.", low=0.0, unit="m")
    max_surface_variation: float = param(
        1.0, "Clusters whose median surface variation exceeds this are discarded as foliage "
        "(per point: smallest / sum of the covariance eigenvalues of its 10 nearest points in "
        "the cluster; near 0 on car bodies, people, poles and walls, up to 1/3 in leaves). "
        "Values >= 1/3 disable the test (the default; lidar_outdoor.yaml sets it).",
        low=0.0, high=1.0)
    classifier: str = param(
        "", "Learned junk test: a cluster classifier file (a path, or the name of one in the "
        "installed models/ folder; `ros2-inst3d train-clusters` makes them). It gives each "
        "cluster that passed the filters above an object probability from its shape "
        "(model/cluster_classifier.py), and that is the instance's score, so "
        "`segment.score_threshold` drops the likely junk (ground left-overs, building and fence "
        "pieces, vegetation). Empty: no learned test; the score is size / (size + 4 x "
        "min_cluster_points). models/lidar_street_clusters.json is trained on generated streets "
        "(use it with segment.score_threshold 0.42; README: The learned junk test).")
    semantic_model: str = param(
        "", "Semantic junk test: weights of a per-point street network (a path, or the name of "
        "a file in the installed models/ folder; config/train/softgroup_street.yaml trains "
        "one) whose class table has ground, building, fence and vegetation. It labels every "
        "point of the cloud, and a cluster that passed the filters above is dropped when more "
        "than max_junk_share of its points get one of those four classes. Runs on "
        "model.device with model.cpu_threads. Empty: off (README: The semantic junk test).")
    max_junk_share: float = param(
        0.5, "Semantic junk test: the largest share of a cluster's points that the street "
        "network may call ground, building, fence or vegetation before the cluster is dropped.",
        low=0.0, high=1.0)


@dataclass
class ModelConfig:
    name: str = param(
        "softgroup", f"Segmentation method: {methods_doc()}", choices=MODEL_NAMES)
    config: str = param(
        "", "Model YAML (config/models/*.yaml). Empty: the one embedded in the checkpoint, or the "
        "method's default.")
    checkpoint: str = param(
        "", "Weights file; empty: the shipped demo weights of the method, if any, and for clouds "
        "without rgb its shipped xyz-only weights (models/<name>_lidar_synthetic.pth) where they "
        "exist.")
    device: str = param("auto", "Torch device: auto (CUDA when available), cpu, cuda, cuda:N.")
    cpu_threads: int = param(
        1, "Torch CPU threads; 0 keeps torch's default (one per core). 1 because a robot's CPU "
        "is shared: with other processes busy, torch's threads wait for each other on every "
        "small grouping op (SoftGroup 13.5 s instead of 0.77 s per 108k-point scan on a loaded "
        "2-core machine, `bench --pipeline --cpu-threads 1 2`). Sparse convolution on CPU "
        "always runs single-threaded (spconv's CPU kernels are racy).", low=0, high=256)
    # Off by default: each view is one more U-Net pass, and the node has a sensor rate to keep.
    # On the 50 validation rooms (threshold 0.2) 4 views gave SoftGroup AP 0.390 -> 0.411 and
    # PointGroup 0.293 -> 0.328 (README: Accuracy on generated scenes, session 13).
    augmented_views: int = param(
        1, "Test-time augmentation of softgroup and pointgroup: the network sees the cloud in "
        "this many poses of its training augmentation (1: as is; 2: also mirrored in x; 4: "
        "turned by 0, 90, 180 and 270 degrees about z; 8: the four turns, each also mirrored) "
        "and averages each point's semantic probabilities and centroid offsets over them; "
        "grouping and refinement run once. Each view costs one more U-Net pass.",
        choices=VIEW_COUNTS)


@dataclass
class OutputConfig:
    publish_cloud: bool = param(True, "Publish the labelled cloud (instances/cloud).")
    publish_markers: bool = param(True, "Publish RViz markers (instances/markers).", runtime=True)
    publish_detections: bool = param(True, "Publish vision_msgs detections (instances/detections).")
    box_type: str = param("obb_z", "Box published for each instance.",
                          choices=("aabb", "obb_z"), runtime=True)
    marker_lifetime_s: float = param(0.0, "Marker lifetime; 0 keeps them until the next result.",
                                     low=0.0, unit="s", runtime=True)


@dataclass
class TrackingConfig:
    enabled: bool = param(
        True, "Track instances over results: Instance.id becomes a track id that an object keeps "
        "and that is never reused; off: ids are per result (0..K-1).")
    min_hits: int = param(
        2, "A track is published once it was matched in this many results (all tracks are "
        "published during the first min_hits results after start or a time jump).", low=1,
        high=100, runtime=True)
    # 120 s, not 30: generated robot runs (65-80 s) come back to objects seen in their first
    # seconds; forgotten after 30 s they return with a new id. On 12 validation sequences
    # (benchmarks/tracking_sweep.py, SoftGroup) 30 / 60 / 120 / 300 s gave 25 / 17 / 15 / 15 ID
    # switches on RGB-D, 15 / 14 / 14 / 14 on LiDAR, MOTA and IDF1 a little higher.
    max_age_s: float = param(
        120.0, "A confirmed track not observed for this long is forgotten; until then it is "
        "remembered (published with observed = false).", low=0.0, high=86_400.0, unit="s",
        runtime=True)
    publish_remembered: bool = param(
        True, "Publish remembered tracks (objects out of the accumulation window) in instances "
        "and instances/markers.", runtime=True)
    # 0.2 m, not 0.1: with session 11's SoftGroup, 12 generated validation sequences (RGB-D) gave
    # 13 ID switches instead of 17 (benchmarks/tracking_sweep.py), LiDAR the same or fewer.
    voxel_size: float = param(
        0.2, "Grid of the point-overlap term of the association (fixed frame).", low=0.01,
        high=1.0, unit="m", runtime=True)
    # 1.5 m, not 1.0: on 12 generated validation sequences (RGB-D) the default SoftGroup made
    # 24 ID switches instead of 29 (benchmarks/tracking_sweep.py; 2.0 m gave the same 24).
    # An object whose instance merges with a neighbour's for one result moves its centroid by
    # up to about an object width.
    max_distance: float = param(
        1.5, "Instances whose centroids are farther apart than this from a track never match it.",
        low=0.01, high=100.0, unit="m", runtime=True)
    max_cost: float = param(
        0.8, "Largest association cost accepted (1 - weighted overlap, box IoU and closeness, "
        "plus the class penalty; see tracking.py).", low=0.0, high=2.0, runtime=True)
    class_mismatch_cost: float = param(
        0.2, "Added to the association cost when the instance's class differs from the track's "
        "voted class.", low=0.0, high=2.0, runtime=True)
    score_smoothing: float = param(
        0.5, "Weight of the newest score in the track's moving-average score (1: no smoothing).",
        low=0.05, high=1.0, runtime=True)


@dataclass
class Config:
    input: InputConfig = field(default_factory=InputConfig)
    accumulate: AccumulateConfig = field(default_factory=AccumulateConfig)
    segment: SegmentConfig = field(default_factory=SegmentConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    geometric: GeometricConfig = field(default_factory=GeometricConfig)
    lidar: LidarConfig = field(default_factory=LidarConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)

    def to_flat(self) -> dict[str, Any]:
        """``{"accumulate.window_s": 2.0, ...}``: the node's parameter names and values."""
        return {name: getattr(getattr(self, sec), key) for name, sec, key, _ in _leaves()}

    def to_dict(self) -> dict[str, dict[str, Any]]:
        return dataclasses.asdict(self)

    @classmethod
    def from_flat(cls, flat: Mapping[str, Any]) -> "Config":
        """Inverse of :meth:`to_flat`; unknown names and bad values raise :class:`ConfigError`."""
        nested: dict[str, dict[str, Any]] = {}
        for name, value in flat.items():
            sec, _, key = name.partition(".")
            nested.setdefault(sec, {})[key] = value
        return from_dict(nested)

    def replace(self, **dotted: Any) -> "Config":
        """A copy with some leaves changed, by dotted name (validated)."""
        flat = self.to_flat()
        for name, value in dotted.items():
            flat[name.replace("__", ".")] = value
        return Config.from_flat(flat)

    @property
    def class_filter(self) -> tuple[str, ...]:
        return tuple(c for c in self.segment.class_filter if c)


@dataclass(frozen=True)
class Leaf:
    name: str
    type: type
    default: Any
    doc: str
    low: float | None
    high: float | None
    choices: tuple | None
    runtime: bool
    unit: str


def _section_types() -> dict[str, type]:
    return {f.name: f.default_factory for f in dataclasses.fields(Config)}  # type: ignore[misc]


def _leaves():
    for sec, sec_cls in _section_types().items():
        for f in dataclasses.fields(sec_cls):
            yield f"{sec}.{f.name}", sec, f.name, f


_TYPES = {"str": str, "int": int, "float": float, "bool": bool, "list[str]": list,
          "list[float]": list}


def schema() -> list[Leaf]:
    """Every parameter with its type, default and documentation, in declaration order."""
    out = []
    for name, sec, key, f in _leaves():
        default = getattr(_section_types()[sec](), key)
        out.append(Leaf(name, _TYPES[str(f.type)], default, f.metadata["doc"], f.metadata["low"],
                        f.metadata["high"], f.metadata["choices"], f.metadata["runtime"],
                        f.metadata["unit"]))
    return out


def from_dict(data: Mapping[str, Any] | None) -> Config:
    """Build and validate a :class:`Config` from the nested YAML form; missing leaves keep defaults."""
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"a config is a mapping of sections, got {type(data).__name__}")
    data = dict(data)
    if "/**" in data or any(isinstance(v, Mapping) and "ros__parameters" in v for v in data.values()):
        # A ROS 2 parameter file: take the first node section's parameters.
        for node, v in data.items():
            if isinstance(v, Mapping) and "ros__parameters" in v:
                params = v["ros__parameters"]
                if params is None:
                    params = {}
                if not isinstance(params, Mapping):
                    raise ConfigError(f"'{node}: ros__parameters' must be a mapping of "
                                      f"parameters, got {type(params).__name__}")
                data = dict(params)
                break
    # Dotted keys at the top level (as ROS would flatten them) are accepted too.
    for key in [k for k in data if isinstance(k, str) and "." in k]:
        sec, _, leaf = key.partition(".")
        section = data.setdefault(sec, {})
        if section is None:
            section = {}
        if not isinstance(section, Mapping):
            raise ConfigError(f"dotted key '{key}' adds to section '{sec}', but '{sec}' is "
                              f"{type(section).__name__}, not a mapping")
        data[sec] = {**section, leaf: data.pop(key)}
    non_string = [k for k in data if not isinstance(k, str)]
    if non_string:
        raise ConfigError(f"config section names must be strings, got {non_string[0]!r}")
    sections = _section_types()
    unknown = [k for k in data if k not in sections]
    if unknown:
        raise ConfigError(f"unknown config section(s) {', '.join(map(repr, unknown))}; "
                          f"known: {', '.join(sections)}")
    cfg = Config(**{sec: build_section(sec_cls, sec, data.get(sec) or None, noun="parameter")
                    for sec, sec_cls in sections.items()})
    _check_consistency(cfg)
    return cfg


def _check_consistency(cfg: Config) -> None:
    lo, hi = cfg.segment.roi_min, cfg.segment.roi_max
    if any(a >= b for a, b in zip(lo, hi)):
        raise ConfigError(f"'segment.roi_min' {lo} must be below 'segment.roi_max' {hi} on every axis")
    if not any(t for t in cfg.input.topics):
        raise ConfigError("'input.topics' must name at least one PointCloud2 topic")


def parse_override(text: str, prefix: str = "") -> tuple[str, Any]:
    """``<section>.<name>=<value>`` from a command line: the value is read as YAML (3, 120.0,
    false, [1, 2]), as in a parameter file; ``load_config`` / ``Config.replace`` check it against
    the schema. ``prefix``: the key must start with it (a tool that tunes one section)."""
    import yaml

    key, sep, value = text.partition("=")
    if not sep or not key.startswith(prefix) or "." not in key:
        raise ValueError(f"expected {prefix or '<section>.'}<name>=<value>, got {text!r}")
    return key.strip(), yaml.safe_load(value)


def load_config(path: str | Path | None = None, overrides: Mapping[str, Any] | None = None) -> Config:
    """Load a YAML config (nested or ROS parameter-file form), apply dotted overrides, validate.

    ``path=None`` gives the defaults. Errors name the file and the offending key.
    """
    data: dict[str, Any] = {}
    if path is not None:
        from .resources import config_path

        path = config_path(path)
        data = load_yaml_mapping(path, "config file")

    def build() -> Config:
        cfg = from_dict(data)
        return cfg.replace(**overrides) if overrides else cfg

    return named_errors(path, build)


def markdown_table() -> str:
    """The parameter reference (README) generated from the schema."""
    rows = ["| parameter | type | default | runtime | description |", "|---|---|---|---|---|"]
    for leaf in schema():
        rng = []
        if leaf.choices:
            rng.append("one of " + ", ".join(f"`{c}`" for c in leaf.choices))
        if leaf.low is not None or leaf.high is not None:
            rng.append(f"range [{leaf.low if leaf.low is not None else '-inf'}, "
                       f"{leaf.high if leaf.high is not None else 'inf'}]")
        unit = f" ({leaf.unit})" if leaf.unit else ""
        extra = f" {'; '.join(rng)}." if rng else ""
        rows.append(f"| `{leaf.name}` | {leaf.type.__name__} | `{leaf.default!r}` | "
                    f"{'yes' if leaf.runtime else 'no'} | {leaf.doc}{unit}{extra} |")
    return "\n".join(rows)


def ros_parameter_yaml(cfg: Config | None = None) -> str:
    """A ROS 2 parameter file (``/**: ros__parameters:``) holding ``cfg`` (defaults if None),
    each leaf preceded by its documentation."""
    import yaml

    cfg = cfg or Config()
    lines = ["# ros2_inst3d node parameters (generated by `ros2-inst3d params --yaml`).",
             "# Every key is documented in README.md > Parameters.",
             "/**:", "  ros__parameters:"]
    values = cfg.to_dict()
    current = None
    for leaf in schema():
        sec, _, key = leaf.name.partition(".")
        if sec != current:
            lines.append(f"    {sec}:")
            current = sec
        lines.append(f"      # {leaf.doc}{f' ({leaf.unit})' if leaf.unit else ''}")
        dumped = yaml.safe_dump(values[sec][key], default_flow_style=True, width=1000).strip()
        dumped = dumped.removesuffix("\n...").removesuffix("...").strip()
        lines.append(f"      {key}: {dumped}")
    return "\n".join(lines) + "\n"
