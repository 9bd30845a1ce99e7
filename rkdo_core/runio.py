"""Atomic file writes and the code version (torch-free).

A file is written to a temporary name in the same folder and renamed into place, so a
reader never sees half of it; a crash leaves at most a stray ``*.tmp``.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any


def _umask() -> int:
    """The process umask (read by setting and restoring it: POSIX offers no getter)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_atomic(path: str | Path, write: Callable[[Any], Any]) -> None:
    """Call ``write(binary_file)`` on a temporary file, fsync it and rename it to ``path``.

    The file gets the mode an ordinary ``open(path, "w")`` would give it (0666 less the
    umask): ``mkstemp`` creates 0600, which would hide results in a shared cluster folder
    from the other users who can read its notebooks and HTML.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json_atomic(path: str | Path, data: Any) -> None:
    payload = (json.dumps(data, indent=2, sort_keys=True) + "\n").encode()
    write_atomic(path, lambda fh: fh.write(payload))


def read_json(path: str | Path) -> Any:
    return json.loads(Path(path).read_text())


def git_state(cwd: str | Path | None = None) -> dict[str, Any]:
    """Commit SHA and dirty flag of the repository holding this package (None outside git)."""
    cwd = Path(cwd or Path(__file__).resolve().parent)
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True,
                             text=True, check=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=cwd, capture_output=True, text=True, check=True,
                               timeout=10).stdout.strip() != ""
        return {"git_sha": sha, "git_dirty": dirty}
    except (OSError, subprocess.SubprocessError):
        return {"git_sha": None, "git_dirty": None}


def installed_packages() -> str:
    """``name==version`` of every distribution this interpreter sees, sorted: what
    ``pip freeze`` lists (read through importlib.metadata, so it needs no pip and no
    subprocess). Compare it with the repository's constraints.txt."""
    from importlib.metadata import distributions

    seen = {}
    for d in distributions():
        name = (d.metadata["Name"] or "").strip()
        if name:
            seen.setdefault(name.lower(), f"{name}=={d.version}")
    return "".join(line + "\n" for _, line in sorted(seen.items()))
