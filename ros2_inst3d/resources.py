"""Where the package's data folders (config/, msg/, launch/, rviz/, models/) are at run time.

Three layouts exist: a source checkout or editable pip install (folders beside the Python
package), a wheel/non-editable pip install (copied into ``ros2_inst3d/share/`` by setup.py), and a
CMake/colcon install (``<prefix>/share/ros2_inst3d/`` beside ``<prefix>/lib/pythonX.Y/
site-packages/ros2_inst3d``), found relative to the package, or else through ``AMENT_PREFIX_PATH``.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent


@lru_cache(maxsize=None)
def data_dir(kind: str) -> Path:
    """The folder ``kind`` (e.g. ``"config"``) of this installation; raises if none has it."""
    candidates = [PACKAGE_DIR.parent / kind, PACKAGE_DIR / "share" / kind]
    if len(PACKAGE_DIR.parents) > 3:  # <prefix>/lib/pythonX.Y/site-packages/ros2_inst3d
        candidates.append(PACKAGE_DIR.parents[3] / "share" / "ros2_inst3d" / kind)
    for prefix in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep):
        if prefix:
            candidates.append(Path(prefix) / "share" / "ros2_inst3d" / kind)
    for path in candidates:
        if path.is_dir():
            return path
    raise FileNotFoundError(
        f"ros2_inst3d's '{kind}' folder was not found (looked in: "
        f"{', '.join(str(c) for c in candidates)}); reinstall the package")


def data_file(kind: str, name: str) -> Path:
    """``data_dir(kind) / name``, with a clear error when it is missing."""
    path = data_dir(kind) / name
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist (installed {kind} files: "
                                f"{', '.join(sorted(p.name for p in data_dir(kind).iterdir()))})")
    return path


def config_path(value: str | os.PathLike[str], folder: str = "") -> Path:
    """A config file given as a path, or by its name in the installed ``config/<folder>``.

    ``softgroup_scannet`` (or ``softgroup_scannet.yaml``, or ``config/models/softgroup_scannet.yaml``
    from any working directory) finds the package's ``config/models/softgroup_scannet.yaml``
    when ``folder="models"``; an existing path always wins. Unresolvable values come back
    unchanged, so the caller's "does not exist" error names what the user typed.
    """
    path = Path(value).expanduser()
    if path.exists():
        return path
    try:
        base = data_dir("config") / folder if folder else data_dir("config")
    except FileNotFoundError:
        return path
    name = path.name if path.suffix in (".yaml", ".yml") else path.name + ".yaml"
    candidate = base / name
    if candidate.is_file() and (len(path.parts) == 1 or path.parts[0] == "config"):
        return candidate
    return path
