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


def installed_path(value: str | os.PathLike[str], kind: str, folder: str = "",
                   suffix: str = "") -> Path:
    """A file given as a path, or by its name in the installed ``<kind>/<folder>``.

    An existing path always wins; else a bare name (or ``<kind>/...``, as written from the
    repository root) finds the installed file, ``suffix`` appended when the name has none of
    ``suffix``'s spellings (``.yaml`` also accepts ``.yml``). Unresolvable values come back
    unchanged, so the caller's "does not exist" error names what the user typed.
    """
    path = Path(value).expanduser()
    if path.exists():
        return path
    try:
        base = data_dir(kind) / folder if folder else data_dir(kind)
    except FileNotFoundError:
        return path
    spellings = (".yaml", ".yml") if suffix == ".yaml" else (suffix,)
    name = path.name if not suffix or path.suffix in spellings else path.name + suffix
    candidate = base / name
    if candidate.is_file() and (len(path.parts) == 1 or path.parts[0] == kind):
        return candidate
    return path


def config_path(value: str | os.PathLike[str], folder: str = "") -> Path:
    """A config file given as a path, or by its name in the installed ``config/<folder>``
    (``installed_path``): ``softgroup_scannet`` (or ``softgroup_scannet.yaml``, or
    ``config/models/softgroup_scannet.yaml`` from any working directory) finds the package's
    ``config/models/softgroup_scannet.yaml`` when ``folder="models"``."""
    return installed_path(value, "config", folder, suffix=".yaml")
