"""Input validation shared by the ops: every message says what was expected and how to fix it."""

from __future__ import annotations

from collections.abc import Sequence

import torch

_INTEGER_DTYPES = (torch.int8, torch.int16, torch.int32, torch.int64, torch.uint8)


def check_tensor(value: object, name: str) -> torch.Tensor:
    if not isinstance(value, torch.Tensor):
        hint = " (wrap numpy arrays with torch.from_numpy)" if type(value).__module__ == "numpy" else ""
        raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}{hint}")
    return value


def check_points(xyz: object, name: str = "xyz") -> torch.Tensor:
    """(N, 3) float32 finite coordinates."""
    xyz = check_tensor(xyz, name)
    if xyz.dim() != 2 or xyz.shape[1] != 3:
        raise ValueError(f"{name} must have shape (N, 3), got {tuple(xyz.shape)}")
    if xyz.dtype != torch.float32:
        raise TypeError(
            f"{name} must be float32 (the CPU and CUDA paths round distances identically in float32), "
            f"got {xyz.dtype}; pass {name}.float()")
    if xyz.numel() and not bool(torch.isfinite(xyz).all()):
        bad = int((~torch.isfinite(xyz).all(dim=1)).sum())
        raise ValueError(f"{name} has {bad} point(s) with NaN/inf coordinates; drop them first")
    return xyz


def check_index(value: object, name: str, dim: int = 1) -> torch.Tensor:
    value = check_tensor(value, name)
    if value.dtype not in _INTEGER_DTYPES:
        raise TypeError(f"{name} must be an integer tensor, got {value.dtype}")
    if value.dim() != dim:
        raise ValueError(f"{name} must be {dim}-D, got shape {tuple(value.shape)}")
    return value


def check_radius(radius: float) -> float:
    r = float(radius)
    if not (r > 0.0 and r < float("inf")):
        raise ValueError(f"radius must be a finite positive distance in metres, got {radius!r}")
    return r


def check_positive_int(value: object, name: str) -> int:
    if isinstance(value, bool) or int(value) != value or int(value) < 1:  # type: ignore[call-overload]
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)  # type: ignore[call-overload]


def batch_offsets_tensor(offsets: torch.Tensor | Sequence[int] | None, num_points: int,
                         device: torch.device, name: str = "batch_offsets") -> torch.Tensor:
    """Validated (B + 1,) int64 offsets on ``device``: ``offsets[0] == 0``, non-decreasing,
    ``offsets[-1] == num_points``; batch item b holds rows ``offsets[b]:offsets[b + 1]``.
    None means one batch item holding all rows."""
    if offsets is None:
        return torch.tensor([0, num_points], dtype=torch.int64, device=device)
    if not isinstance(offsets, torch.Tensor):
        offsets = torch.as_tensor(list(offsets), dtype=torch.int64)
    offsets = check_index(offsets, name)
    offsets = offsets.to(device=device, dtype=torch.int64)
    if offsets.numel() < 2:
        raise ValueError(f"{name} must hold B + 1 >= 2 entries (0, ..., N), got {offsets.tolist()}")
    host = offsets.cpu()
    if int(host[0]) != 0 or int(host[-1]) != num_points or bool((host[1:] < host[:-1]).any()):
        shown = host.tolist() if host.numel() <= 10 else host[:5].tolist() + ["..."] + host[-2:].tolist()
        raise ValueError(
            f"{name} must start at 0, never decrease and end at the number of rows ({num_points}); "
            f"got {shown}. Rows must be grouped by batch item (batch-contiguous)")
    return offsets


def batch_ids(offsets: torch.Tensor) -> torch.Tensor:
    """(N,) int64 batch item of each row, from (B + 1,) offsets."""
    counts = offsets[1:] - offsets[:-1]
    return torch.repeat_interleave(torch.arange(counts.numel(), device=offsets.device), counts)


def expand_counts(counts: torch.Tensor, first: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Each row r = first + i repeated ``counts[i]`` times, with its position 0..counts[i]-1:
    ``(owner, within)``, both (sum(counts),) int64, owners in order (a ragged range per row)."""
    owner = torch.repeat_interleave(
        torch.arange(first, first + counts.numel(), device=counts.device), counts)
    within = torch.arange(owner.numel(), device=counts.device) - torch.repeat_interleave(
        torch.cumsum(counts, 0) - counts, counts)
    return owner, within


def same_device(*named: tuple[str, torch.Tensor]) -> torch.device:
    device = named[0][1].device
    for name, tensor in named[1:]:
        if tensor.device != device:
            raise ValueError(f"{name} is on {tensor.device} but {named[0][0]} is on {device}; "
                             "move them to one device")
    return device
