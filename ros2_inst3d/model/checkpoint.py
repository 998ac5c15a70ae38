"""Loading SoftGroup / ISBNet / PointGroup / HAIS checkpoints, loudly.

The official loaders use ``strict=False`` and silently skip keys whose shapes do not match, so a
checkpoint paired with the wrong config "loads" and then runs with random heads
(docs/official-models.md §0 fact 1, §9). Here every checkpoint goes through one path:

1. ``torch.load(weights_only=True)`` — no arbitrary code from pickles (``trust_pickle=True``
   lifts that for files you trust);
2. the container: ``{'net': state_dict, ...}`` (SoftGroup, ISBNet, HAIS), ``{'state_dict': ...}``,
   ``{'model': ...}`` or a bare state dict (PointGroup);
3. ``module.`` prefixes (DataParallel) stripped;
4. spconv 1 sparse-conv weights ``[kx, ky, kz, in, out]`` permuted to spconv 2's
   ``[out, kx, ky, kz, in]`` (``permute(4, 0, 1, 2, 3)``, as SoftGroup's
   ``tools/convert_checkpoint.py``), detected by shape against the model;
5. HAIS → SoftGroup renames (``intra_ins_unet`` → ``tiny_unet``, ``intra_ins_outputlayer`` →
   ``tiny_unet_outputlayer``, ``score_linear`` → ``iou_score_linear``) when the model has the
   SoftGroup names;
6. ``criterion.*`` (ISBNet's training-only ``empty_weight``) ignored;
7. a :class:`CheckpointReport` listing every missing, unexpected and size-mismatched key.
   ``load_checkpoint(strict=True)`` raises :class:`CheckpointError` with the whole report.
"""

from __future__ import annotations

import pickle
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

HAIS_TO_SOFTGROUP = (("intra_ins_unet.", "tiny_unet."),
                     ("intra_ins_outputlayer.", "tiny_unet_outputlayer."),
                     ("score_linear.", "iou_score_linear."))
"""Prefix renames of SoftGroup's ``tools/convert_checkpoint.py`` (HAIS weights → SoftGroup)."""

IGNORED_PREFIXES = ("criterion.",)
"""Training-only state (ISBNet's ``criterion.empty_weight``) that inference models do not have."""

DATA_PARALLEL_PREFIX = "module."
CONTAINER_KEYS = ("net", "state_dict", "model")


class CheckpointError(RuntimeError):
    """A checkpoint cannot be read, or does not fit the model (the message says why)."""


Shape = tuple[int, ...]


@dataclass
class CheckpointReport:
    """What a checkpoint holds against what a model expects, after the conversions.

    missing: model keys the checkpoint lacks. unexpected: checkpoint keys the model lacks.
    mismatched: ``(key, checkpoint shape, model shape)`` for keys in both with different shapes.
    ignored: training-only keys dropped on purpose (``criterion.*``).
    conversions: human-readable notes of what was changed (prefix strip, layout, renames).
    """

    source: str
    container: str
    num_tensors: int
    num_expected: int
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    mismatched: list[tuple[str, Shape, Shape]] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)
    conversions: list[str] = field(default_factory=list)
    spconv1_layout: bool = False
    non_finite: list[tuple[str, int]] = field(default_factory=list)  # (key, NaN/Inf count)

    @property
    def ok(self) -> bool:
        """True when every model tensor is present with the right shape, finite, and nothing is
        left over."""
        return not (self.missing or self.unexpected or self.mismatched or self.non_finite)

    def format(self) -> str:
        """The report as text: a summary, then every problem key, one per line."""
        lines = [(f"checkpoint {self.source}: {self.container}, {self.num_tensors} tensors; "
                  f"the model expects {self.num_expected}")]
        lines += [f"  converted: {note}" for note in self.conversions]
        if self.ignored:
            lines.append(f"  ignored (training only): {', '.join(self.ignored)}")
        if self.ok:
            lines.append(f"  OK: all {self.num_expected} model tensors present with matching "
                         "shapes")
            return "\n".join(lines)
        lines.append(f"  PROBLEMS: {len(self.missing)} missing, {len(self.unexpected)} unexpected, "
                     f"{len(self.mismatched)} size-mismatched, {len(self.non_finite)} with "
                     "NaN/Inf values")
        if self.non_finite:
            lines.append("  NaN/Inf values (a diverged or corrupt training run; the outputs "
                         "would be NaN):")
            lines += [f"    {key}: {count} non-finite" for key, count in self.non_finite]
        if self.missing:
            lines.append(f"  missing (the model has them, the checkpoint does not) "
                         f"[{_count_by_module(self.missing)}]:")
            lines += [f"    {key}" for key in self.missing]
        if self.unexpected:
            lines.append(f"  unexpected (in the checkpoint, not in the model) "
                         f"[{_count_by_module(self.unexpected)}]:")
            lines += [f"    {key}" for key in self.unexpected]
        if self.mismatched:
            lines.append("  size mismatch (checkpoint shape vs model shape):")
            lines += [f"    {key}: {list(got)} vs {list(want)}"
                      for key, got, want in self.mismatched]
        if not (self.missing or self.unexpected or self.mismatched):
            return "\n".join(lines)
        lines.append("  The model config must be the one the checkpoint was trained with "
                     "(config/models/*.yaml: channels, num_blocks, class counts, semantic_only); "
                     "loading anyway would leave the listed tensors at random values.")
        return "\n".join(lines)


def _count_by_module(keys: list[str]) -> str:
    counts: dict[str, int] = {}
    for key in keys:
        top = key.split(".", 1)[0]
        counts[top] = counts.get(top, 0) + 1
    return ", ".join(f"{name}: {n}" for name, n in counts.items())


def _load_file(path: str | Path, trust_pickle: bool) -> Any:
    """``torch.load`` of ``path`` on CPU, safe by default, with errors that say what to do."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist or is not a file")
    try:
        return torch.load(path, map_location="cpu", weights_only=not trust_pickle)
    except pickle.UnpicklingError as err:
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(
            f"checkpoint {path} holds objects other than tensors, dicts, lists and numbers, so the "
            f"safe loader (torch.load weights_only=True) refused it: {first_line}. If you trust "
            "the file, load it with trust_pickle=True, or re-save only its state dict.") from err
    except Exception as err:  # torch raises RuntimeError/EOFError/zipfile errors for bad files
        raise CheckpointError(
            f"checkpoint {path} could not be read by torch.load ({type(err).__name__}: {err}); "
            "is it a PyTorch checkpoint?") from err


def read_checkpoint(path: str | Path, trust_pickle: bool = False
                    ) -> tuple[dict[str, torch.Tensor], str]:
    """The raw state dict in ``path`` and a description of its container.

    Reads with ``torch.load(weights_only=True)`` on CPU; ``trust_pickle=True`` allows arbitrary
    pickled objects (only for files from a source you trust).
    """
    return _unwrap(_load_file(path, trust_pickle), str(path))


def read_checkpoint_meta(path: str | Path, trust_pickle: bool = False) -> dict[str, Any]:
    """Everything in a checkpoint dict but its state dict (ros2_inst3d's training checkpoints
    carry ``config``, ``class_names``, ``epoch``, ``metrics``, ...); {} for a bare state dict."""
    return _meta(_load_file(path, trust_pickle))


def read_checkpoint_with_meta(path: str | Path, trust_pickle: bool = False
                              ) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """:func:`read_checkpoint`'s state dict and :func:`read_checkpoint_meta`'s rest, from one
    read of the file."""
    obj = _load_file(path, trust_pickle)
    return _unwrap(obj, str(path))[0], _meta(obj)


def _meta(obj: Any) -> dict[str, Any]:
    if _is_state_dict(obj) or not isinstance(obj, Mapping):
        return {}
    return {k: v for k, v in obj.items() if k not in CONTAINER_KEYS}


def _is_state_dict(obj: Any) -> bool:
    return (isinstance(obj, Mapping) and len(obj) > 0
            and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()))


def _unwrap(obj: Any, source: str) -> tuple[dict[str, torch.Tensor], str]:
    if _is_state_dict(obj):
        return dict(obj), "bare state dict"
    if isinstance(obj, Mapping):
        for key in CONTAINER_KEYS:
            if _is_state_dict(obj.get(key)):
                others = [str(k) for k in obj if k != key]
                extra = f" (also: {', '.join(others)})" if others else ""
                return dict(obj[key]), f"{{'{key}': state dict}}{extra}"
        top = ", ".join(repr(k) for k in list(obj)[:12])
        raise CheckpointError(
            f"checkpoint {source} holds no state dict: its top-level keys are [{top}]; expected a "
            "bare state dict (name → tensor) or {'net': state_dict, ...} as SoftGroup/ISBNet "
            "save")
    raise CheckpointError(f"checkpoint {source} holds a {type(obj).__name__}, not a state dict")


def _spconv1_shape(shape: Shape) -> Shape:
    """spconv 1 layout ``[kx, ky, kz, in, out]`` of a spconv 2 shape ``[out, kx, ky, kz, in]``."""
    return (shape[1], shape[2], shape[3], shape[4], shape[0])


def _layout_votes(tensors: Mapping[str, torch.Tensor], expected: Mapping[str, Shape]
                  ) -> dict[str, int]:
    """How many 5-D weights read as spconv 1 / spconv 2 only.

    A cubic kernel shows where the kernel axes are: ``[k, k, k, in, out]`` (1) or
    ``[out, k, k, k, in]`` (2). When both readings are cubic the model's expected shape decides.
    """
    votes = {"spconv1": 0, "spconv2": 0}
    for key, value in tensors.items():
        if value.ndim != 5:
            continue
        shape = tuple(value.shape)
        v1_axes = shape[0] == shape[1] == shape[2]
        v2_axes = shape[1] == shape[2] == shape[3]
        want = expected.get(key)
        if v1_axes != v2_axes:
            votes["spconv1" if v1_axes else "spconv2"] += 1
        elif want is not None and len(want) == 5 and want != _spconv1_shape(want):
            if shape == want:
                votes["spconv2"] += 1
            elif shape == _spconv1_shape(want):
                votes["spconv1"] += 1
    return votes


def match_state_dict(state_dict: Mapping[str, torch.Tensor],
                     expected: Mapping[str, Shape | torch.Tensor],
                     source: str = "<state dict>", container: str = "state dict"
                     ) -> tuple[dict[str, torch.Tensor], CheckpointReport]:
    """Convert ``state_dict`` towards ``expected`` (key → shape, or a model's state dict) and
    report the differences.

    Returns the converted tensors that fit (key in ``expected``, same shape) and the report.
    Conversions: ``module.`` strip, spconv 1 → 2 weight layout, HAIS → SoftGroup renames,
    ``criterion.*`` dropped (see the module docstring).
    """
    expected = {k: tuple(int(d) for d in (s.shape if isinstance(s, torch.Tensor) else s))
                for k, s in expected.items()}
    tensors = dict(state_dict)
    report = CheckpointReport(source=source, container=container, num_tensors=len(tensors),
                              num_expected=len(expected))

    prefixed = [k for k in tensors if k.startswith(DATA_PARALLEL_PREFIX)]
    if prefixed and not any(k.startswith(DATA_PARALLEL_PREFIX) for k in expected):
        tensors = {k.removeprefix(DATA_PARALLEL_PREFIX): v for k, v in tensors.items()}
        report.conversions.append(f"stripped '{DATA_PARALLEL_PREFIX}' from {len(prefixed)} keys")

    for old, new in HAIS_TO_SOFTGROUP:
        has_old = [k for k in tensors if k.startswith(old)]
        if (has_old and not any(k.startswith(new) for k in tensors)
                and any(k.startswith(new) for k in expected)
                and not any(k.startswith(old) for k in expected)):
            tensors = {(new + k[len(old):] if k.startswith(old) else k): v
                       for k, v in tensors.items()}
            report.conversions.append(
                f"renamed HAIS {old}* → SoftGroup {new}* ({len(has_old)} keys)")

    for key in [k for k in tensors if k.startswith(IGNORED_PREFIXES)]:
        if key not in expected:
            report.ignored.append(key)
            del tensors[key]

    votes = _layout_votes(tensors, expected)
    if votes["spconv1"] and votes["spconv2"]:
        report.conversions.append(
            f"none for sparse-conv weights: {votes['spconv1']} look like spconv 1 "
            f"[kx,ky,kz,in,out] and {votes['spconv2']} like spconv 2 [out,kx,ky,kz,in]")
    elif votes["spconv1"]:
        # A spconv 1 file stores every 5-D weight that way, also those whose two readings
        # coincide (e.g. [3,3,3,3,3]); convert_checkpoint.py permutes them all too.
        report.spconv1_layout = True
        permuted = 0
        for key, value in list(tensors.items()):
            if value.ndim == 5:
                tensors[key] = value.permute(4, 0, 1, 2, 3).contiguous()
                permuted += 1
        report.conversions.append(
            f"permuted {permuted} sparse-conv weights from spconv 1 layout [kx,ky,kz,in,out] to "
            "spconv 2 [out,kx,ky,kz,in]")

    fitting: dict[str, torch.Tensor] = {}
    for key, value in tensors.items():
        if key not in expected:
            report.unexpected.append(key)
        elif tuple(value.shape) != expected[key]:
            report.mismatched.append((key, tuple(value.shape), expected[key]))
        else:
            fitting[key] = value
            if value.is_floating_point() and value.device.type != "meta":
                bad = int((~torch.isfinite(value)).sum())
                if bad:
                    report.non_finite.append((key, bad))
    report.missing = [k for k in expected if k not in tensors]
    return fitting, report


def check_checkpoint(path: str | Path, model: nn.Module, *, trust_pickle: bool = False
                     ) -> CheckpointReport:
    """Compare the checkpoint at ``path`` with ``model`` (which may live on the meta device)."""
    state_dict, container = read_checkpoint(path, trust_pickle=trust_pickle)
    return match_state_dict(state_dict, model.state_dict(), str(path), container)[1]


def load_checkpoint(model: nn.Module, path: str | Path, strict: bool = True, *,
                    trust_pickle: bool = False) -> CheckpointReport:
    """Load the checkpoint at ``path`` into ``model`` (after the conversions); return the report.

    strict: raise :class:`CheckpointError` listing every missing / unexpected / mismatched key
    unless the checkpoint fits exactly. With ``strict=False`` the fitting tensors are loaded, the
    others stay as they are, and the report says which.
    """
    state_dict, container = read_checkpoint(path, trust_pickle=trust_pickle)
    fitting, report = match_state_dict(state_dict, model.state_dict(), str(path), container)
    if strict and not report.ok:
        raise CheckpointError(report.format())
    for key, _ in report.non_finite:   # never load NaN/Inf weights, also when not strict
        del fitting[key]
    model.load_state_dict(fitting, strict=report.ok)
    return report



def widen_state_dict(state_dict: Mapping[str, torch.Tensor], target: Mapping[str, Shape],
                     generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
    """Net2Net widening: the state dict of a network with wider channels (``target``: the wide
    model's key → shape) that computes the same function as ``state_dict``'s.

    A dimension that grows from ``old`` to ``new`` maps wide channel ``j`` to old channel
    ``floor(j * old / new)``: each old channel becomes a run of adjacent copies. Adjacent runs
    (rather than appended copies) keep a U-Net's skip concatenation consistent when its parts are
    multiples of the base width (``channels``): the wide concat maps by the same rule as each
    part, so no layer needs to know its place in the graph. Output dimensions (dim 0 of conv and
    linear weights, BatchNorm vectors, biases) copy each channel into its run; input dimensions
    (a weight's last dim: spconv 2's ``[out, kx, ky, kz, in]``, linear ``[out, in]``) split each
    weight over its run with random shares that sum to 1 (drawn from U(0.5, 1.5), normalised): the
    run's inputs are equal, so the sum is unchanged, while unequal shares give the copies
    different gradients (equal shares would keep them identical forever). Dimensions the wide
    model keeps (input features, class logits, offsets, kernels) are copied.
    """
    missing = sorted(set(target) - set(state_dict))
    if missing:
        raise CheckpointError(f"cannot widen: the checkpoint lacks {len(missing)} tensor(s) of the "
                              f"model, e.g. {missing[:3]}")
    wide: dict[str, torch.Tensor] = {}
    for key, shape in target.items():
        tensor = state_dict[key]
        old, new = tuple(tensor.shape), tuple(shape)
        if (len(old) != len(new) or any(n < o for o, n in zip(old, new))
                or (len(old) >= 3 and old[1:-1] != new[1:-1])):
            raise CheckpointError(f"cannot widen {key}: {list(old)} -> {list(new)} is not a "
                                  "widening of its channel dimensions")
        out = tensor
        if old and new[0] != old[0]:
            out = out.index_select(0, _widening_map(old[0], new[0]))
        if len(old) >= 2 and new[-1] != old[-1]:
            runs = _widening_map(old[-1], new[-1])
            out = out.index_select(-1, runs).double()
            draw = torch.empty(out.shape, dtype=torch.float64)
            draw.uniform_(0.5, 1.5, generator=generator)
            run_sum = torch.zeros(out.shape[:-1] + (old[-1],), dtype=torch.float64)
            run_sum.index_add_(-1, runs, draw)
            out = (out * draw / run_sum.index_select(-1, runs)).to(tensor.dtype)
        wide[key] = out.contiguous()
    return wide


def _widening_map(old: int, new: int) -> torch.Tensor:
    """Old channel of each wide channel: ``floor(j * old / new)``, adjacent runs of copies."""
    return torch.div(torch.arange(new) * old, new, rounding_mode="floor")
