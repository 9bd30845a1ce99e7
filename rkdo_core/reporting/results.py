"""Reading a results folder: the metrics files of its complete runs as one DataFrame.

Run discovery and the completion rule are :mod:`rkdo_core.layout`'s; this module only
turns the files into rows.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping
from pathlib import Path

import pandas as pd

from ..layout import RUN_COMPLETE, incomplete_runs, is_complete, metrics_files

__all__ = ["load_metrics", "incomplete_runs"]


def load_metrics(results_dir: str | Path, *, complete_only: bool = True,
                 exclude: Collection[str] = (),
                 marked: Mapping[str, str] | None = None) -> pd.DataFrame:
    """Every ``RUN/metrics/epoch_*.json`` below ``results_dir`` as one row each.

    With ``complete_only`` only runs the grid finished count (:func:`is_complete`; a run
    still training or evaluating would otherwise enter the statistics with some budgets and
    seeds missing). A ``run_dir`` column gives each row's run folder relative to
    ``results_dir``. ``exclude``: run folders (relative, as in ``run_dir``) to leave out
    (the aggregation's altered runs); ``marked``: run folder -> a note kept in an
    ``integrity`` column ("" for the others), for runs included despite a problem.
    """
    root = Path(results_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"results folder {root} does not exist")
    files = metrics_files(root)
    complete = {d: is_complete(d) for d in {f.parent.parent for f in files}}
    excluded = set(exclude)
    kept = [f for f in files if (not complete_only or complete[f.parent.parent])
            and f.parent.parent.relative_to(root).as_posix() not in excluded]
    if not kept:
        if files:
            n_runs = len({f.parent.parent for f in files})
            raise FileNotFoundError(
                f"no complete run below {root}: {n_runs} run folder(s) have metrics files "
                f"but none holds {RUN_COMPLETE} (the grid writes it last); pass "
                "complete_only=False to read unfinished runs anyway")
        raise FileNotFoundError(f"no metrics files (metrics/epoch_*.json) below {root}")
    rows = []
    for f in kept:
        try:
            row = json.loads(f.read_text())
            if not isinstance(row, dict):
                raise ValueError(f"a JSON {type(row).__name__}, not an object")
        except (ValueError, UnicodeDecodeError) as e:
            raise ValueError(f"{f}: not a readable metrics file ({e}); `rkdo verify {root}` "
                             "checks every run against its recorded checksums") from None
        row["run_dir"] = f.parent.parent.relative_to(root).as_posix()
        if marked is not None:
            row["integrity"] = marked.get(row["run_dir"], "")
        rows.append(row)
    return pd.DataFrame(rows)
