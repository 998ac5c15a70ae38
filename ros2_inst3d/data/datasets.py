"""Scene readers and one Dataset over every format (batches: :mod:`~ros2_inst3d.data.batching`).

Formats (``read_scene`` picks by extension):

* **internal scene** ``.npz`` (DESIGN §5): ``xyz`` float32 [N,3] metres, ``rgb`` uint8 [N,3],
  ``semantic`` int16 [N] (-100 ignore), ``instance`` int32 [N] (-100 none), ``meta`` JSON whose
  ``class_names`` (or ``classes``) names the label table (default: the ScanNet-20 table);
* **SoftGroup/ISBNet preprocessed ScanNet v2** ``*_inst_nostuff.pth``: ``torch.save`` of the tuple
  ``(xyz float64 [N,3] mean-centred, rgb float [N,3] in [-1, 1], semantic [N], instance [N])``;
  semantic in the contiguous 0..19 table of ``classes.SCANNET20_CLASSES`` (wall and floor keep
  labels 0/1 but no instance), -100 ignore; instance 0..n-1, -100 none. Test-split files hold
  only ``(xyz, rgb)`` (research/official-models.md §6);
* **SoftGroup preprocessed S3DIS** ``*_inst_nostuff.pth``: ``(xyz float32 [N,3] room frame, not
  centred, rgb float in [-1, 1], semantic int64 0..12, instance int64 1..n or -100, room_label,
  scene_name)`` (``dataset/s3dis/prepare_data_inst.py``) in the 13-class table ``S3DIS_CLASSES``.
  Mapping note: every S3DIS class has instances (ceiling, floor and wall too: SoftGroup's S3DIS
  config evaluates 13 instance classes, with ``sem2ins_classes`` [0, 1]); the S3DIS table is not
  the ScanNet one, a model trained on one does not label the other; points outside every
  annotated object keep semantic 0 ("ceiling") with instance -100 in these files;
* **SemanticKITTI scans** ``NAME.bin`` beside ``NAME.label`` (the street generator's output,
  ``gen-data --street``, and the SemanticKITTI dataset's layout): labels mapped to the outdoor
  ``classes.STREET_CLASSES`` table by ``classes.street_labels``; no colour;
* **unlabelled clouds** ``.ply``/``.pcd``/``.npz``/``.npy``/``.bin`` for inference, read by
  ``io.read_cloud``.

A 6-tuple ``.pth`` is read as S3DIS, a 2- or 4-tuple as ScanNet; pass ``class_names`` to override.

Batching (``Sample``, ``collate``) lives in :mod:`~ros2_inst3d.data.batching`.
"""

from __future__ import annotations

import logging
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..classes import (
    IGNORE_LABEL,
    S3DIS_CLASSES,
    SCANNET20_CLASSES,
    STREET_CLASSES,
    street_labels,
)
from ..io import PREDICTION_SUFFIX  # `<stem>.labels.npz`, written by `segment`
from .augment import Augmentation, augment
from .batching import Sample, centred_sample
from .inputs import DEFAULT_VOXEL_SIZE

log = logging.getLogger(__name__)

PTH_SUFFIX = ".pth"
KITTI_LABEL_SUFFIX = ".label"


@dataclass
class Scene:
    """One scan as read from disk.

    name: scene name (file stem). path: the file.
    xyz: (N, 3) float32, metres, the file's frame.
    rgb: (N, 3) uint8 or None.
    semantic: (N,) int32 class index into ``class_names``, -100 ignore; None when unlabelled.
    instance: (N,) int32 instance id, -100 none; None when unlabelled.
    class_names: the label table.
    """

    name: str
    path: str
    xyz: np.ndarray
    rgb: np.ndarray | None
    semantic: np.ndarray | None
    instance: np.ndarray | None
    class_names: tuple[str, ...] = SCANNET20_CLASSES

    @property
    def num_points(self) -> int:
        return int(self.xyz.shape[0])

    @property
    def has_labels(self) -> bool:
        return self.semantic is not None and self.instance is not None


def scene_stem(path: str | Path) -> str:
    """Scene name of a file: its name without the extension (``scene0000_00_inst_nostuff.pth``
    -> ``scene0000_00_inst_nostuff``); predictions of it are ``<stem>.labels.npz``."""
    name = Path(path).name
    if name.endswith(PREDICTION_SUFFIX):
        return name[:-len(PREDICTION_SUFFIX)]
    return name[:-len(Path(name).suffix)] if Path(name).suffix else name


def find_scene_files(root: str | Path) -> list[Path]:
    """Scene files directly in ``root``, sorted: ``.npz`` and ``.pth``, but not predictions
    (``*.labels.npz``) nor the generator's per-pose scans (``*.sequence.npz``); and KITTI
    ``.bin`` scans that have a ``.label`` beside them."""
    root = Path(root)
    not_scenes = (PREDICTION_SUFFIX, ".sequence.npz")
    files = [p for p in root.iterdir() if p.is_file() and (
        (p.suffix == ".npz" and not p.name.endswith(not_scenes)) or p.suffix == PTH_SUFFIX
        or (p.suffix == ".bin" and p.with_suffix(KITTI_LABEL_SUFFIX).is_file()))]
    return sorted(files)


def scene_files(source: str | Path | Sequence[str | Path]) -> list[Path]:
    """The scene files of ``source``: a directory (``find_scene_files``), one file, or a list
    of both, pooled in order. FileNotFoundError names a missing entry or a directory without
    scenes (a typo must not silently shrink a training set)."""
    entries = [source] if isinstance(source, (str, Path)) else list(source)
    if not entries:
        raise FileNotFoundError("no scene folders or files given")
    files: list[Path] = []
    for entry in map(Path, entries):
        if entry.is_dir():
            found = find_scene_files(entry)
            if not found:
                raise FileNotFoundError(f"no scene files in {entry}")
            files += found
        elif entry.is_file():
            files.append(entry)
        else:
            raise FileNotFoundError(f"{entry} does not exist")
    return files


# --------------------------------------------------------------------------------------------
# Readers
# --------------------------------------------------------------------------------------------

def _check_labels(path: Path, semantic: np.ndarray, instance: np.ndarray, n: int,
                  class_names: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    for name, arr in (("semantic", semantic), ("instance", instance)):
        if arr.shape != (n,):
            raise ValueError(f"{path}: {name} has shape {arr.shape}; expected ({n},), one label "
                             "per point")
        if arr.size and not np.issubdtype(arr.dtype, np.integer) and np.any(np.mod(arr, 1) != 0):
            raise ValueError(f"{path}: {name} labels must be whole numbers, got fractional "
                             f"{arr.dtype} values")
    sem = semantic.astype(np.int32)
    inst = instance.astype(np.int32)
    bad = (sem != IGNORE_LABEL) & ((sem < 0) | (sem >= len(class_names)))
    if bad.any():
        raise ValueError(f"{path}: semantic label {int(sem[bad][0])} is outside the "
                         f"{len(class_names)}-class table ({class_names[0]}..{class_names[-1]}) "
                         f"and is not the ignore label {IGNORE_LABEL}; pass the right class_names")
    bad = (inst < 0) & (inst != IGNORE_LABEL)
    if bad.any():
        raise ValueError(f"{path}: instance id {int(inst[bad][0])} is negative but not "
                         f"{IGNORE_LABEL} (no instance)")
    return sem, inst


def _class_names_from_meta(meta: dict[str, Any] | None) -> tuple[str, ...]:
    if not meta:
        return SCANNET20_CLASSES
    names = meta.get("class_names", meta.get("classes"))
    if names is None:
        return SCANNET20_CLASSES
    if not isinstance(names, (list, tuple)) or not all(isinstance(n, str) for n in names):
        raise ValueError(f"meta class_names must be a list of strings, got {names!r}")
    return tuple(names)


def _torch_load_arrays(path: Path) -> Any:
    """``torch.load`` restricted to tensors and plain numpy arrays (no arbitrary pickles)."""
    import torch

    reconstruct = np.ndarray.__reduce__(np.zeros(1))[0]
    scalar = np.float64(0).__reduce__()[0]
    allowed: list[Any] = [np.ndarray, np.dtype, reconstruct, scalar,
                          (reconstruct, "numpy.core.multiarray._reconstruct"),
                          (reconstruct, "numpy._core.multiarray._reconstruct"),
                          (scalar, "numpy.core.multiarray.scalar"),
                          (scalar, "numpy._core.multiarray.scalar")]
    allowed += list({type(np.dtype(c)) for c in "?bBhHiIlLqQefdgFD"} - {np.dtype})
    try:
        with torch.serialization.safe_globals(allowed):
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises UnpicklingError, RuntimeError, ...
        raise ValueError(f"{path}: cannot read as a preprocessed scene (a torch.save'd tuple of "
                         f"arrays): {str(exc).splitlines()[0]}") from None


def _as_numpy(value: Any) -> np.ndarray:
    return value.numpy() if hasattr(value, "numpy") else np.asarray(value)


def read_preprocessed_pth(path: str | Path, class_names: Sequence[str] | None = None) -> Scene:
    """Read a SoftGroup/ISBNet ``*_inst_nostuff.pth`` (ScanNet v2 or S3DIS; see the module doc)."""
    path = Path(path)
    data = _torch_load_arrays(path)
    if not isinstance(data, (tuple, list)) or len(data) not in (2, 4, 6):
        kind = type(data).__name__ + (f" of {len(data)}" if isinstance(data, (tuple, list)) else "")
        raise ValueError(f"{path}: expected a tuple (xyz, rgb[, semantic, instance[, room, name]])"
                         f" as SoftGroup's prepare_data_inst.py writes, got a {kind}")
    if class_names is None:
        class_names = S3DIS_CLASSES if len(data) == 6 else SCANNET20_CLASSES
    class_names = tuple(class_names)
    xyz = _as_numpy(data[0])
    if xyz.ndim != 2 or xyz.shape[1] != 3:
        raise ValueError(f"{path}: xyz has shape {xyz.shape}; expected (N, 3)")
    n = xyz.shape[0]
    colors = _as_numpy(data[1]).astype(np.float64)
    if colors.shape != (n, 3):
        raise ValueError(f"{path}: rgb has shape {colors.shape}; expected ({n}, 3)")
    if colors.size and (colors.min() < -1.001 or colors.max() > 1.001):
        raise ValueError(f"{path}: rgb spans [{colors.min():.3g}, {colors.max():.3g}]; the "
                         "preprocessed format stores rgb/127.5-1 in [-1, 1]")
    # Exact inverse of rgb/127.5 - 1 for integer colours.
    rgb = np.clip(np.rint((colors + 1.0) * 127.5), 0, 255).astype(np.uint8)
    semantic = instance = None
    if len(data) >= 4:
        semantic, instance = _check_labels(path, _as_numpy(data[2]), _as_numpy(data[3]), n,
                                           class_names)
    if not np.all(np.isfinite(xyz)):
        raise ValueError(f"{path}: xyz has non-finite coordinates")
    return Scene(name=scene_stem(path), path=str(path), xyz=xyz.astype(np.float32), rgb=rgb,
                 semantic=semantic, instance=instance, class_names=class_names)


def read_kitti_labels(path: str | Path, num_points: int) -> tuple[np.ndarray, np.ndarray]:
    """(semantic, instance) in the street table from a SemanticKITTI ``.label`` file (one
    little-endian uint32 per point of its ``.bin``)."""
    path = Path(path)
    data = path.read_bytes()
    if len(data) != 4 * num_points:
        raise ValueError(f"{path}: {len(data)} bytes; its scan has {num_points} points, so a "
                         f"SemanticKITTI .label needs {4 * num_points} (one uint32 per point)")
    return street_labels(np.frombuffer(data, dtype="<u4"))


def read_scene(path: str | Path, class_names: Sequence[str] | None = None) -> Scene:
    """Read any supported scene file; labels are None when the file has none.

    ``.pth``: ``read_preprocessed_pth``. Everything else: ``io.read_cloud`` (the reader ``segment``
    uses, so points and their order match the predictions written for them); a ``.bin`` with a
    ``.label`` beside it takes its labels from there (``read_kitti_labels``).
    """
    path = Path(path)
    if path.suffix == PTH_SUFFIX:
        return read_preprocessed_pth(path, class_names)
    from ..io import read_cloud

    cloud = read_cloud(path)
    label_path = path.with_suffix(KITTI_LABEL_SUFFIX)
    if path.suffix == ".bin" and label_path.is_file():
        names = tuple(class_names) if class_names is not None else STREET_CLASSES
        if names != STREET_CLASSES:
            raise ValueError(f"{path}: SemanticKITTI labels map to the {len(STREET_CLASSES)}-class "
                             f"street table ({STREET_CLASSES[0]}..{STREET_CLASSES[-1]}), not "
                             f"the {len(names)}-class table asked for")
        semantic, instance = read_kitti_labels(label_path, cloud.num_points)
        return Scene(name=scene_stem(path), path=str(path), xyz=cloud.xyz, rgb=None,
                     semantic=semantic, instance=instance, class_names=names)
    names = tuple(class_names) if class_names is not None else _class_names_from_meta(cloud.meta)
    semantic = instance = None
    if cloud.semantic is not None and cloud.instance is not None:
        semantic, instance = _check_labels(path, cloud.semantic, cloud.instance, cloud.num_points,
                                           names)
    elif (cloud.semantic is None) != (cloud.instance is None):
        raise ValueError(f"{path}: has {'semantic' if cloud.semantic is not None else 'instance'}"
                         " labels but not the other; a labelled scene needs both")
    return Scene(name=scene_stem(path), path=str(path), xyz=cloud.xyz, rgb=cloud.rgb,
                 semantic=semantic, instance=instance, class_names=names)


# --------------------------------------------------------------------------------------------
# Dataset
# --------------------------------------------------------------------------------------------

def _looks_readable(path: Path) -> bool:
    """Whether ``path`` can be a scene at all: ``.npz`` and ``.pth`` files are zip archives
    (torch's format since 1.6), which a truncated or empty file is not. Reads only the archive's
    end record, ~1 ms a file; a ``.pth`` in torch's legacy pickle format passes unchecked."""
    try:
        if path.stat().st_size == 0:
            return False
        return path.suffix != ".npz" or zipfile.is_zipfile(path)
    except OSError:
        return False


class SceneDataset:
    """Map-style dataset over scene files of any supported format (usable by torch's DataLoader
    with ``collate_fn=functools.partial(collate, voxel_size=...)``).

    source: a directory (its scene files, see ``find_scene_files``), one file, or a list of
        directories and files (their scenes pooled in order; see ``scene_files``).
    augment: training augmentation, or None for evaluation / inference (centring only, plus
        ``yaw``). seed: None draws fresh randomness per item; an int makes item i of epoch e
        reproducible (``set_epoch``) and differs between items, epochs and DataLoader workers.
    require_labels: raise for files without labels (training, evaluation).
    """

    def __init__(self, source: str | Path | Sequence[str | Path], *, voxel_size: float =
                 DEFAULT_VOXEL_SIZE, augmentation: Augmentation | None = None,
                 class_names: Sequence[str] | None = None, require_labels: bool = False,
                 yaw: float = 0.0, seed: int | None = None):
        files = scene_files(source)
        unreadable = [f for f in files if not _looks_readable(f)]
        if unreadable:
            if len(unreadable) == len(files):
                raise ValueError(f"no readable scene file in {source}: {len(files)} file(s) are "
                                 f"empty or not archives, e.g. {unreadable[0]}")
            # A file truncated by an interrupted gen-data should cost the run one scene, not
            # crash it hours later when the sampler first draws that file.
            log.warning("skipping %d unreadable scene file(s) of %d (empty or truncated "
                        "archives): %s%s", len(unreadable), len(files),
                        ", ".join(str(f) for f in unreadable[:5]),
                        " ..." if len(unreadable) > 5 else "")
            skipped = set(unreadable)
            files = [f for f in files if f not in skipped]
        self.files = files
        self.skipped_files = unreadable
        self.voxel_size = float(voxel_size)
        self.augmentation = augmentation
        self.class_names = tuple(class_names) if class_names is not None else None
        self.require_labels = require_labels
        self.yaw = float(yaw)
        self.seed = seed
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.files)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def scene(self, index: int) -> Scene:
        scene = read_scene(self.files[index], self.class_names)
        if self.require_labels and not scene.has_labels:
            raise ValueError(f"{scene.path} has no semantic/instance labels, but this dataset "
                             "needs them (training / evaluation)")
        return scene

    def _rng(self, index: int) -> np.random.Generator:
        if self.seed is None:
            return np.random.default_rng()
        return np.random.default_rng([self.seed, self.epoch, index])

    def __getitem__(self, index: int) -> Sample | None:
        scene = self.scene(index)
        n = scene.num_points
        if self.augmentation is None:
            return centred_sample(scene.name, scene.xyz, scene.rgb, scene.semantic,
                                  scene.instance, yaw=self.yaw)
        xyz = scene.xyz.astype(np.float64)
        xyz = xyz - xyz.mean(axis=0)  # prepare_data_inst.py centres every scene before augmenting
        semantic = (scene.semantic.astype(np.int64) if scene.semantic is not None
                    else np.full(n, IGNORE_LABEL, np.int64))
        instance = (scene.instance.astype(np.int64) if scene.instance is not None
                    else np.full(n, IGNORE_LABEL, np.int64))
        out = augment(xyz, scene.rgb, self.voxel_size, self.augmentation, self._rng(index))
        if out is None:
            log.info("%s: fewer than %d points left after cropping; sample dropped", scene.name,
                     self.augmentation.min_points)
            return None
        return Sample(scene.name, out.xyz, out.grid_xyz, out.rgb, semantic[out.keep],
                      instance[out.keep], out.keep, scene.has_labels)
