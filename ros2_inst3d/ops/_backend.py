"""Which back end the ops run on, and the lazily built CUDA extension.

The CUDA kernels in ``csrc/`` are compiled with :func:`torch.utils.cpp_extension.load` the first
time a CUDA tensor reaches an op that has a kernel (never at import), into a per-user cache
directory keyed by the Python, torch and CUDA versions, so later processes reuse the build.
When there is no GPU, no CUDA toolkit, or the build fails, the ops compute on the CPU path (which
gives the same answer) and ONE :class:`OpsBackendWarning` per process says why.

Environment:
    ``ROS2_INST3D_OPS_CPU=1``: never build or use the CUDA kernels (CUDA tensors are computed on
        the CPU path and the results moved back to their device).
    ``ROS2_INST3D_CACHE_DIR``: root of the build cache (default ``$XDG_CACHE_HOME/ros2_inst3d`` or
        ``~/.cache/ros2_inst3d``); the extension lives in ``<root>/ops/<versions>/``.
"""

from __future__ import annotations

import os
import sys
import threading
import warnings
from pathlib import Path
from types import ModuleType

import torch

__all__ = ["OpsBackendWarning", "backend", "cuda_extension", "extension_build_dir"]

_EXTENSION_NAME = "ros2_inst3d_ops_cuda"
_SOURCES = ("ops.cpp", "ball_query.cu", "connected_components.cu", "farthest_point_sample.cu",
            "instance_aware_fps.cu", "mean_shift.cu")
_CSRC = Path(__file__).resolve().parent / "csrc"
_FORCE_CPU_ENV = "ROS2_INST3D_OPS_CPU"


class OpsBackendWarning(RuntimeWarning):
    """The CUDA kernels are unavailable; the ops use their CPU path (same results, slower)."""


_lock = threading.Lock()
_extension: ModuleType | None = None
_unavailable_reason: str | None = None  # set once the CUDA back end is known to be unusable
_resolved = False
_warned = False


def extension_build_dir() -> Path:
    """Cache directory of the compiled extension for this Python/torch/CUDA combination."""
    root = os.environ.get("ROS2_INST3D_CACHE_DIR")
    if root:
        base = Path(root).expanduser()
    else:
        xdg = os.environ.get("XDG_CACHE_HOME")
        base = (Path(xdg) if xdg else Path.home() / ".cache") / "ros2_inst3d"
    tag = "py{}{}-torch{}-cuda{}".format(
        sys.version_info.major, sys.version_info.minor,
        torch.__version__.replace("+", "_"), torch.version.cuda or "none")
    return base / "ops" / tag


def _why_cuda_is_unusable() -> str | None:
    """A sentence saying why the CUDA kernels cannot be used, or None if they might be."""
    if os.environ.get(_FORCE_CPU_ENV, "") not in ("", "0"):
        return f"the environment sets {_FORCE_CPU_ENV}={os.environ[_FORCE_CPU_ENV]}"
    if torch.version.cuda is None:
        return f"this torch ({torch.__version__}) was built without CUDA"
    if not torch.cuda.is_available():
        return "torch sees no CUDA device (check the driver and CUDA_VISIBLE_DEVICES)"
    from torch.utils.cpp_extension import CUDA_HOME

    if CUDA_HOME is None:
        return ("no CUDA toolkit (nvcc) was found to build the kernels; install the toolkit "
                f"matching torch.version.cuda={torch.version.cuda} or set CUDA_HOME")
    return None


def _build() -> ModuleType:
    from torch.utils.cpp_extension import load

    build_dir = extension_build_dir()
    build_dir.mkdir(parents=True, exist_ok=True)
    return load(
        name=_EXTENSION_NAME,
        sources=[str(_CSRC / name) for name in _SOURCES],
        build_directory=str(build_dir),
        extra_cflags=["-O3"],
        # No --use_fast_math: distances must round exactly like the CPU path (see csrc/common.cuh).
        extra_cuda_cflags=["-O3"],
        verbose=False,
    )


def _resolve() -> None:
    global _extension, _unavailable_reason, _resolved
    with _lock:
        if _resolved:
            return
        reason = _why_cuda_is_unusable()
        if reason is None:
            try:
                _extension = _build()
            except Exception as error:  # noqa: BLE001 - any build failure means: use the CPU path
                detail = " ".join(str(error).split())
                if len(detail) > 600:
                    detail = detail[:300] + " ... " + detail[-300:]
                reason = (f"building the CUDA kernels in {extension_build_dir()} failed "
                          f"({type(error).__name__}: {detail}; the compiler output is printed above)")
        _unavailable_reason = reason
        _resolved = True


def _warn_once() -> None:
    global _warned
    if _warned:
        return
    _warned = True
    warnings.warn(
        f"ros2_inst3d.ops: using the CPU path because {_unavailable_reason}. "
        "Results are identical, only slower.",
        OpsBackendWarning,
        stacklevel=3,
    )


def cuda_extension() -> ModuleType | None:
    """The compiled CUDA extension, building it on first call; None (after one warning) if unusable."""
    _resolve()
    if _extension is None:
        _warn_once()
    return _extension


def backend(device: str | torch.device | None = None) -> str:
    """The back end ops use for tensors on ``device``: ``'cuda'`` (kernels) or ``'cpu'``.

    device: ``None`` asks for the best available (CUDA if torch sees a GPU). A CPU device always
    gives ``'cpu'`` without a warning; a CUDA device (or ``None``) whose kernels cannot be used
    gives ``'cpu'`` and one :class:`OpsBackendWarning` per process saying why.

    >>> backend("cpu")
    'cpu'
    """
    if device is not None and torch.device(device).type != "cuda":
        return "cpu"
    return "cuda" if cuda_extension() is not None else "cpu"


def _reset_for_tests() -> None:
    """Forget the resolved back end and the warning (tests only)."""
    global _extension, _unavailable_reason, _resolved, _warned
    with _lock:
        _extension = None
        _unavailable_reason = None
        _resolved = False
        _warned = False
