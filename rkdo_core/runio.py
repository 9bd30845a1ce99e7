"""Atomic file writes and run-folder provenance.

A file is written to a temporary name in the same folder and renamed into place, so a
reader never sees half of it; a crash leaves at most a stray ``*.tmp``.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch


def _atomic(path: Path, write) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
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
    _atomic(Path(path), lambda fh: fh.write(payload))


def torch_save_atomic(path: str | Path, obj: Any) -> None:
    _atomic(Path(path), lambda fh: torch.save(obj, fh))


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


def provenance(device: torch.device) -> dict[str, Any]:
    """What produced a result: code version, library versions, device."""
    import numpy
    import sklearn
    import torchvision

    info: dict[str, Any] = {
        **git_state(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "numpy": numpy.__version__,
        "sklearn": sklearn.__version__,
        "device": str(device),
        "torch_threads": torch.get_num_threads(),
    }
    if device.type == "cuda":
        info["device_name"] = torch.cuda.get_device_name(device)
    else:
        info["device_name"] = platform.processor() or platform.machine()
    return info
