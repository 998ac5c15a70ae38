"""Outputs that appear whole or not at all: write to a temporary sibling, then rename.

A run that fails half-way (bad input, Ctrl-C, a full disk) leaves neither a truncated file nor a
partial output directory that a rerun would then refuse as "exists already". The temporary
names start with ``.`` and end in ``.partial`` so that a crash that skips the clean-up leaves
something recognisable.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def _partial_name(path: Path) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}.partial")


@contextmanager
def atomic_file(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path`` (one rename),
    on an exception it is removed and ``path`` is untouched."""
    path = Path(path)
    tmp = _partial_name(path)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextmanager
def atomic_directory(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary directory path beside ``path`` (not yet created: tools like rosbags'
    Writer create it); on success it is renamed to ``path``, which must not exist, on an
    exception it is removed."""
    path = Path(path)
    tmp = _partial_name(path)
    if tmp.exists():
        shutil.rmtree(tmp)
    try:
        yield tmp
        if path.exists():
            raise FileExistsError(f"{path} appeared while this run was writing; the result is "
                                  "left in " + str(tmp))
        os.rename(tmp, path)
    except FileExistsError:
        raise
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
