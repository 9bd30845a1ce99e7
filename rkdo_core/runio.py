"""Atomic file writes and the code version (torch-free).

A file is written to a temporary name in the same folder and renamed into place, so a
reader never sees half of it; a crash leaves at most a stray ``*.tmp``.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any


def write_atomic(path: str | Path, write: Callable[[Any], Any]) -> None:
    """Call ``write(binary_file)`` on a temporary file, fsync it and rename it to ``path``.

    The temporary file is created as ``open(path, "w")`` would create it, mode 0666 less
    the umask (the kernel applies it; ``mkstemp`` would force 0600, hiding results in a
    shared cluster folder from the users who can read its notebooks and HTML); a random
    name and O_EXCL keep concurrent writers apart as mkstemp does.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{secrets.token_hex(8)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
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
