"""The learning-curve CSV of `rkdo curve` (figures/fashion_learning_curve.csv): its columns,
an appender that flushes every block of rows as soon as it is computed, and a reader that
tolerates what a killed run leaves (a half-written last line) and re-computed rows (the
last one of each key wins). No torch: the figure is drawn from this file alone.

One row per (method, seed, step, metric[, C]). ``metric`` is one of :data:`METRICS`:

- ``linear_cv``: the standardised logistic probe with C chosen by stratified CV on the
  probe-train features (`rkdo_core.metrics.linear_probe_cv`); ``C`` is the chosen C and
  ``cv_score`` its mean validation accuracy;
- ``linear_C``: the same pipeline fitted at one ``C`` of the grid on all probe-train
  features (`rkdo_core.metrics.linear_probe_accuracies`), ``cv_score`` that C's mean
  validation accuracy;
- ``knn20`` / ``knn5``: DINO's weighted cosine k-NN classifier (k = 20 / 5, T = 0.07),
  the probe-train features as memory bank (`rkdo_core.metrics.knn_weighted_accuracy`);
- ``knn5_cosine``: the paper's leave-one-out 5-NN label agreement among the test features
  (`rkdo_core.metrics.neighborhood_accuracy_cosine`).

``value`` is the accuracy on the fixed test subset. The other columns say how the row was
computed (sizes, features, folds, batch, steps per epoch, ``config_id``: a digest of the
training config) and on what (``cpu``, torch ``threads`` per run, ``workers`` at once,
``train_s_per_step``: wall seconds per optimizer step since the previous checkpoint,
``eval_seconds``: the checkpoint's whole evaluation).
"""

from __future__ import annotations

import csv
import io
import math
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .config import ConfigError

COLUMNS = ("method", "seed", "step", "metric", "C", "value", "cv_score", "converged",
           "train_loss", "probe_images", "test_images", "features", "cv_folds", "batch_size",
           "steps_per_epoch", "config_id", "threads", "workers", "cpu", "train_s_per_step",
           "eval_seconds")
METRICS = ("linear_cv", "linear_C", "knn20", "knn5", "knn5_cosine")
#: columns that must agree for rows to belong to the same curve
SETTINGS = ("probe_images", "test_images", "features", "cv_folds", "batch_size",
            "steps_per_epoch", "config_id")

_INT = {"seed", "step", "probe_images", "test_images", "cv_folds", "batch_size",
        "steps_per_epoch", "threads", "workers"}
_FLOAT = {"C", "value", "cv_score", "train_loss", "train_s_per_step", "eval_seconds"}


def _parse(raw: dict[str, str | None]) -> dict[str, Any] | None:
    """A typed row, or None for a line that is not a complete row (a killed write)."""
    if None in raw or any(raw.get(c) is None for c in COLUMNS):
        return None  # too many or too few fields
    row: dict[str, Any] = {}
    try:
        for c in COLUMNS:
            v = raw[c]
            if c in _INT:
                row[c] = int(v) if v != "" else None
            elif c in _FLOAT:
                row[c] = float(v) if v != "" else None
            elif c == "converged":
                row[c] = {"1": True, "0": False, "": None}[v]
            else:
                row[c] = v
    except (ValueError, KeyError):
        return None
    if row["metric"] not in METRICS or row["value"] is None or row["step"] is None \
            or row["seed"] is None or not row["method"]:
        return None
    return row


def row_key(row: dict[str, Any]) -> tuple:
    c = row["C"] if row["metric"] == "linear_C" else None
    return (row["method"], row["seed"], row["step"], row["metric"], c)


def read_rows(path: str | Path) -> list[dict[str, Any]]:
    """The CSV's complete rows, typed, one per key (the last written wins); [] when the file
    does not exist. Lines a killed run left half-written are skipped."""
    p = Path(path)
    if not p.is_file():
        return []
    with open(p, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        if reader.fieldnames is None or tuple(reader.fieldnames) != COLUMNS:
            if reader.fieldnames is None:
                return []
            raise ConfigError("csv", str(p), f"is not a learning-curve CSV (its header is "
                              f"{reader.fieldnames}, expected {list(COLUMNS)}); give "
                              "another --csv")
        rows: dict[tuple, dict[str, Any]] = {}
        for raw in reader:
            row = _parse(raw)
            if row is not None:
                rows[row_key(row)] = row
    return list(rows.values())


def _cell(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "1" if v else "0"
    if isinstance(v, float):
        return "" if math.isnan(v) else repr(v)
    return str(v)


def append_rows(path: str | Path, rows: Iterable[dict[str, Any]]) -> None:
    """Append ``rows`` (dicts with every column) in one write, flushed and fsynced; the
    header first when the file is new or empty. A half-written last line of a killed run
    is ended first, so the new rows start on their own line."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    with open(p, "a+b") as fh:
        fh.seek(0, os.SEEK_END)
        if fh.tell() == 0:
            w.writerow(COLUMNS)
        else:
            fh.seek(-1, os.SEEK_END)
            if fh.read(1) != b"\n":
                buf.write("\n")
        for r in rows:
            missing = [c for c in COLUMNS if c not in r]
            if missing:
                raise ValueError(f"a learning-curve row lacks the columns {missing}")
            w.writerow([_cell(r[c]) for c in COLUMNS])
        fh.seek(0, os.SEEK_END)
        fh.write(buf.getvalue().encode("utf-8"))
        fh.flush()
        os.fsync(fh.fileno())
