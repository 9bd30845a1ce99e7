"""``rkdo measure``: time a command, measure the disk a folder holds after it, and record
both with the CPU they ran on in ``figures/timings.json`` — the source of the README's
timing and disk table (``rkdo readme`` renders it; tests/test_readme.py checks it).

    rkdo measure --name "make test" --disk .venv -- make test

Torch-free. The record keeps one entry per ``--name`` (a new measurement replaces it).
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from ..runio import read_json, write_json_atomic
from .args import ShortErrorParser

DEFAULT_OUT = "figures/timings.json"


def cpu_model() -> str:
    """``lscpu``'s model name (``/proc/cpuinfo`` where lscpu is missing), else the platform's
    processor string."""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.SubprocessError):
        pass
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def disk_bytes(path: str | Path) -> int:
    """Bytes the files below ``path`` occupy (apparent sizes; hard links counted once)."""
    path = Path(path)
    if path.is_file():
        return path.stat().st_size
    seen, total = set(), 0
    for root, _dirs, files in os.walk(path):
        for f in files:
            st = os.lstat(os.path.join(root, f))
            if (st.st_dev, st.st_ino) in seen:
                continue
            seen.add((st.st_dev, st.st_ino))
            total += st.st_size
    return total


def record(out: str | Path, entry: dict[str, Any]) -> dict[str, Any]:
    """Put ``entry`` into the timings file ``out``, replacing the one of the same command."""
    out = Path(out)
    data = read_json(out) if out.is_file() else {"measurements": []}
    rows = [m for m in data.get("measurements", []) if m.get("command") != entry["command"]]
    data["measurements"] = [*rows, entry]
    write_json_atomic(out, data)
    return data


def measure(name: str, command: list[str], *, disk: str | None = None,
            note: str | None = None, out: str | Path = DEFAULT_OUT) -> tuple[int, dict]:
    """Run ``command``; record its wall time (and ``disk``'s size after it) under ``name``
    when it succeeds. Returns (exit status, the entry)."""
    start = time.perf_counter()
    rc = subprocess.run(command).returncode
    entry = {"command": name, "seconds": round(time.perf_counter() - start, 1),
             "disk_bytes": disk_bytes(disk) if disk and Path(disk).exists() else None,
             "disk_path": disk, "cpu": cpu_model(), "cores": os.cpu_count(),
             "date": datetime.date.today().isoformat(), "note": note or ""}
    if rc == 0:
        record(out, entry)
    return rc, entry


def build_parser() -> argparse.ArgumentParser:
    p = ShortErrorParser(prog="rkdo measure", description=__doc__.split("\n\n")[0])
    p.add_argument("--name", required=True, help="the command as the README shows it")
    p.add_argument("--disk", help="a folder whose size after the command is recorded")
    p.add_argument("--note", help="a short note shown beside the measurement")
    p.add_argument("--out", default=DEFAULT_OUT, help=f"timings file (default {DEFAULT_OUT})")
    p.add_argument("command", nargs=argparse.REMAINDER, help="-- COMMAND ARGS...")
    return p


def measure_main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        print("rkdo measure: error: give the command after --", file=sys.stderr)
        return 2
    rc, entry = measure(args.name, command, disk=args.disk, note=args.note, out=args.out)
    if rc:
        print(f"rkdo measure: {args.name!r} exited with {rc}; nothing recorded",
              file=sys.stderr)
        return rc
    print(f"{args.name}: {entry['seconds']} s"
          + (f", {entry['disk_bytes']:,} bytes in {args.disk}" if entry["disk_bytes"] else "")
          + f" on {entry['cpu']} -> {args.out}")
    return 0
