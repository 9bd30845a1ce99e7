"""Checksums of a run's outputs and ``rkdo verify``: is a results folder whole?

The grid writes ``run_complete.json`` last; it lists every file of the run and, since this
module exists, the sha256 and size of each (``checksums``). :func:`verify_results` re-checks
a results folder against those records and lists, per run folder:

- ``missing``: a run the folder's ``grid.json`` expects has no folder, or a file that
  ``run_complete.json`` lists is gone;
- ``partial``: a run without ``run_complete.json`` (interrupted, or failed: then the error
  of ``run_failed.json`` is quoted), or a leftover temporary file (``.partial-*`` notebook,
  ``*.tmp`` of an atomic write) that an interrupted write left behind;
- ``altered``: a listed file whose size or sha256 differs from the recorded one;
- ``unchecked`` (a note, not a problem): a complete run recorded before checksums were
  (``no checksums recorded``).

Nothing here imports torch, so ``rkdo verify`` starts fast.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from ..config import grid_from_dict
from ..layout import GRID_RECORD, PARTIAL_PREFIX, RUN_COMPLETE, RUN_FAILED, run_dir_for

_CHUNK = 1 << 20


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def checksums(run_dir: str | Path, files: Iterable[str]) -> dict[str, dict[str, object]]:
    """``{file: {"sha256": ..., "bytes": ...}}`` for ``files`` relative to ``run_dir``."""
    run_dir = Path(run_dir)
    return {f: {"sha256": sha256_file(run_dir / f), "bytes": (run_dir / f).stat().st_size}
            for f in files}


def size_changes(run_dir: str | Path, record: dict) -> list[str]:
    """Listed files whose size differs from the one recorded in ``record`` (a parsed
    run_complete.json); cheap (no hashing), for the grid's plan."""
    run_dir = Path(run_dir)
    out = []
    for f, rec in (record.get("checksums") or {}).items():
        p = run_dir / f
        if p.is_file() and p.stat().st_size != rec.get("bytes"):
            out.append(f)
    return out


def leftover_temporaries(run_dir: str | Path) -> list[str]:
    """Temporary files an interrupted write leaves (``.partial-*``, ``*.tmp``)."""
    run_dir = Path(run_dir)
    return sorted(str(p.relative_to(run_dir)) for p in run_dir.rglob("*")
                  if p.is_file() and (p.name.startswith(PARTIAL_PREFIX) or p.name.endswith(".tmp")))


@dataclass
class RunCheck:
    run: str  # run folder relative to the results folder
    state: str  # "ok" | "missing" | "partial" | "altered" | "unchecked"
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def check_run(run_dir: str | Path, label: str | None = None,
              hash_only: Callable[[str], bool] | None = None) -> RunCheck:
    """Check one run folder against its ``run_complete.json``.

    ``hash_only``: where given, the sha256 is compared only for the listed files it accepts
    (the aggregation hashes the small files it reads, not the checkpoints it never opens);
    every listed file's presence and size is checked regardless.
    """
    run_dir = Path(run_dir)
    label = label or str(run_dir)
    if not run_dir.is_dir():
        return RunCheck(label, "missing", ["missing: no run folder (the run never started)"])
    problems, notes = [], []
    state = "ok"
    marker = run_dir / RUN_COMPLETE
    record = None
    if marker.is_file():
        try:
            record = json.loads(marker.read_text())
            if not isinstance(record, dict) or not isinstance(record.get("files"), list):
                raise ValueError("no 'files' list")
        except ValueError as e:
            problems.append(f"altered: {RUN_COMPLETE} is unreadable ({e})")
            state = "altered"
            record = None
    else:
        state = "partial"
        why = "interrupted or still running"
        if (run_dir / RUN_FAILED).is_file():
            try:
                why = "failed: " + str(json.loads((run_dir / RUN_FAILED).read_text())["error"])
            except (ValueError, KeyError, TypeError):
                why = f"failed ({RUN_FAILED} unreadable)"
        problems.append(f"partial: no {RUN_COMPLETE} ({why})")
    if record is not None:
        sums = record.get("checksums")
        missing = [f for f in record["files"] if not (run_dir / f).is_file()]
        for f in missing:
            problems.append(f"missing: {f}")
        if missing:
            state = "missing"
        if not sums:
            notes.append("no checksums recorded (run made before checksums were)")
            if state == "ok":
                state = "unchecked"
        else:
            for f in record["files"]:
                p = run_dir / f
                if f in missing:
                    continue
                rec = sums.get(f)
                if rec is None:
                    notes.append(f"no checksum recorded for {f}")
                elif p.stat().st_size != rec.get("bytes"):
                    problems.append(f"altered: {f} has {p.stat().st_size} bytes, "
                                    f"{rec.get('bytes')} recorded")
                elif (hash_only is None or hash_only(f)) and sha256_file(p) != rec.get("sha256"):
                    problems.append(f"altered: {f} (sha256 differs from the recorded one)")
            if any(p.startswith("altered") for p in problems) and state == "ok":
                state = "altered"
    leftovers = leftover_temporaries(run_dir)
    for f in leftovers:
        problems.append(f"partial: leftover temporary file {f} (an interrupted write)")
    if leftovers and state == "ok":
        state = "partial"
    return RunCheck(label, state, problems, notes)


def _expected_runs(results: Path) -> list[str]:
    """Run folders (relative) the folder's grid.json expects; [] without a readable one."""
    rec = results / GRID_RECORD
    if not rec.is_file():
        return []
    try:
        data = json.loads(rec.read_text())
        keys = ("description", "preset", "datasets", "methods", "seeds", "epochs", "config",
                "per_dataset", "aggregate")
        spec = grid_from_dict({k: data[k] for k in keys if k in data}, name=data.get("name",
                                                                                   "grid"))
        return [str(run_dir_for(".", c)) for c in spec.configs(**data.get("override", {}))]
    except Exception:  # an old or hand-edited grid.json: fall back to what is on disk
        return []


def find_run_dirs(results: str | Path) -> list[str]:
    """Run folders (relative) below ``results``: DATASET/PROTOCOL/METHOD/seed_N."""
    results = Path(results)
    return sorted(str(p.relative_to(results)) for p in results.glob("*/*/*/seed_*")
                  if p.is_dir())


def verify_results(results: str | Path) -> list[RunCheck]:
    """Check every run below ``results`` (and every run its grid.json expects)."""
    results = Path(results)
    if not results.is_dir():
        raise FileNotFoundError(f"results folder {str(results)!r} does not exist")
    runs = dict.fromkeys(_expected_runs(results))
    runs.update(dict.fromkeys(find_run_dirs(results)))
    return [check_run(results / r, r) for r in sorted(runs)]


def format_report(checks: list[RunCheck], results: str | Path) -> str:
    lines = []
    bad = [c for c in checks if not c.ok]
    for c in checks:
        if c.problems:
            lines.append(f"{c.state.upper():<9} {c.run}")
            lines += [f"          - {p}" for p in c.problems]
        for n in c.notes:
            lines.append(f"NOTE      {c.run}: {n}")
    counts: dict[str, int] = {}
    for c in checks:
        counts[c.state] = counts.get(c.state, 0) + 1
    summary = ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "no runs"
    lines.append(f"{results}: {len(checks)} run(s): {summary}; "
                 + (f"{len(bad)} with problems" if bad else "no problems"))
    return "\n".join(lines)
