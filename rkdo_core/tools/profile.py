"""``rkdo profile``: where the wall time of a results folder went, from the files it holds.

Three views, each from records the suite already writes (nothing is re-timed unless asked):

- **runs** (:func:`run_rows`): per run, the seconds of its whole task (``run_complete.json``),
  of its training (``train_complete.json``: the optimizer loop), of its evaluation measures
  (the ``seconds`` of every ``metrics/epoch_NNN.json``) and the rest (kernel start-up and
  imports, data loading, the loss-curve figure, the t-SNE maps, writing the notebooks).
- **stages** (:func:`stage_rows`): with ``--log``, a ``make reproduce`` log whose lines
  start with a Unix time (``… | while read l; do printf '%(%s)T %s\\n' -1 "$l"; done``):
  each command the Makefile echoed and the seconds until the next one.
- **measures** (``--split RUN --epoch E``, :mod:`rkdo_core.tools.profile_split`): one
  checkpoint evaluated again measure by measure with a clock around each (embedding, probe, k-means,
  k-NN, cross-validated probe, yardsticks, FLOP count, t-SNE), in this process, on this
  machine: what the evaluation's seconds are made of. It writes nothing.

The figures are this machine's: quote them with the CPU (``lscpu`` model name), which the
output names.
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
from pathlib import Path
from typing import Any

from ..layout import METRICS, RUN_COMPLETE, TRAIN_COMPLETE
from ..runio import read_json
from .args import ShortErrorParser
from .measure import cpu_model

#: the evaluation's parts each metrics file times (``seconds_<part>``; older files lack them)
EVAL_PARTS = ("embed", "metrics", "yardstick")
#: a log line: Unix seconds, a space, the text make printed
_LOG_LINE = re.compile(r"^(\d{9,11}) (.*)$")
#: the lines of a make log that start a stage: the commands the Makefile echoes (its rkdo
#: is always $(VENV)/bin/rkdo; a line a command prints, e.g. "rkdo flops — …", is not one)
_COMMAND = re.compile(r"^(\S+/bin/rkdo |test -f |cp |mkdir )")


def run_rows(results: str | Path) -> list[dict[str, Any]]:
    """One row per complete run below ``results``: label, protocol, method, seed, ``total``,
    ``training``, ``evaluation`` and ``other`` seconds (other = total − training −
    evaluation), and ``steps`` (optimizer steps)."""
    rows = []
    for done in sorted(Path(results).rglob(RUN_COMPLETE)):
        run = done.parent
        try:
            rec, train = read_json(done), read_json(run / TRAIN_COMPLETE)
            metrics = [read_json(f) for f in sorted((run / METRICS).glob("epoch_*.json"))]
        except (OSError, ValueError):
            continue  # an unreadable record: `rkdo verify` reports it
        cfg = rec.get("config", {})
        evaluation = sum(float(m.get("seconds", 0.0)) for m in metrics)
        total, training = float(rec.get("seconds", 0.0)), float(train.get("seconds", 0.0))
        parts = {k: sum(float(m.get(f"seconds_{k}", 0.0)) for m in metrics)
                 for k in EVAL_PARTS}
        rows.append({"run": rec.get("run", run.name), "dataset": cfg.get("dataset"),
                     "protocol": cfg.get("protocol"), **parts,
                     "method": cfg.get("method"), "seed": cfg.get("seed"),
                     "steps": max((int(m.get("steps", 0)) for m in metrics), default=0),
                     "total": total, "training": training, "evaluation": evaluation,
                     "other": total - training - evaluation})
    return rows


def summarize_runs(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per dataset and protocol: runs, optimizer steps, the summed seconds of each part (the
    evaluation's embedding / metrics / yardstick parts where the metrics files record them)
    and the training's median seconds per step."""
    out = []
    for dataset, protocol in sorted({(r.get("dataset"), r["protocol"]) for r in rows},
                                    key=str):
        mine = [r for r in rows if r["protocol"] == protocol and r.get("dataset") == dataset]
        steps = sum(r["steps"] for r in mine)
        out.append({"dataset": dataset, "protocol": protocol, "runs": len(mine),
                    "steps": steps,
                    **{k: sum(r.get(k, 0.0) for r in mine)
                       for k in ("total", "training", "evaluation", "other", *EVAL_PARTS)},
                    "s_per_step": statistics.median(r["training"] / r["steps"]
                                                    for r in mine if r["steps"]) if steps else
                    float("nan")})
    return out


def stage_rows(log: str | Path) -> list[dict[str, Any]]:
    """The stages of a timestamped make log: ``{"command", "start", "seconds"}``, each
    command until the next (the last until the log's last line)."""
    stamped = []
    for line in Path(log).read_text(errors="replace").splitlines():
        m = _LOG_LINE.match(line)
        if m:
            stamped.append((int(m.group(1)), m.group(2)))
    if not stamped:
        raise ValueError(f"{log}: no line starts with a Unix time; make the log with "
                         "`make reproduce 2>&1 | while IFS= read -r l; do printf "
                         "'%(%s)T %s\\n' -1 \"$l\"; done > LOG`")
    starts = [(t, text) for t, text in stamped if _COMMAND.match(text)]
    end = stamped[-1][0]
    return [{"command": text, "start": t,
             "seconds": (starts[i + 1][0] if i + 1 < len(starts) else end) - t}
            for i, (t, text) in enumerate(starts)]


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |",
             "|" + "|".join("---" if i == 0 else "---:" for i in range(len(header))) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def render(results: str | Path | None, log: str | Path | None,
           split: dict[str, float] | None) -> str:
    """The profile as Markdown tables, the CPU named first."""
    parts = [f"CPU: {cpu_model()}"]
    if log is not None:
        stages = stage_rows(log)
        total = sum(s["seconds"] for s in stages)
        parts.append(_table(["stage (command)", "wall s", "share"],
                            [[f"`{s['command']}`", f"{s['seconds']:.0f}",
                              f"{100 * s['seconds'] / total:.0f} %" if total else "–"]
                             for s in stages] + [["**all**", f"{total:.0f}", "100 %"]]))
    if results is not None:
        summary = summarize_runs(run_rows(results))
        if not summary:
            raise ValueError(f"{results}: no complete run (no {RUN_COMPLETE}) below it")
        parts.append(_table(
            ["dataset", "protocol", "runs", "steps", "run-seconds", "training", "evaluation",
             "of it: embedding / metrics / yardsticks",
             "other (kernels, imports, t-SNE, figures)", "s / step"],
            [[str(s["dataset"]), str(s["protocol"]), str(s["runs"]), str(s["steps"]),
              f"{s['total']:.0f}",
              f"{s['training']:.0f} ({100 * s['training'] / s['total']:.0f} %)",
              f"{s['evaluation']:.0f} ({100 * s['evaluation'] / s['total']:.0f} %)",
              " / ".join(f"{s[k]:.0f}" for k in EVAL_PARTS)
              if any(s[k] for k in EVAL_PARTS) else "not recorded",
              f"{s['other']:.0f} ({100 * s['other'] / s['total']:.0f} %)",
              f"{s['s_per_step']:.2f}"] for s in summary]))
    if split is not None:
        total = sum(split.values())
        parts.append(_table(["measure (one checkpoint)", "s", "share"],
                            [[k, f"{v:.2f}", f"{100 * v / total:.0f} %"]
                             for k, v in split.items()] + [["**all**", f"{total:.2f}", ""]]))
    return "\n\n".join(parts) + "\n"


def profile_parser() -> argparse.ArgumentParser:
    p = ShortErrorParser(
        prog="rkdo profile",
        description="Where the wall time of a results folder went: per protocol the runs' "
                    "training, evaluation and the rest (from run_complete.json, "
                    "train_complete.json and the metrics files), the stages of a timestamped "
                    "make log, and one checkpoint's evaluation measure by measure.")
    p.add_argument("results", nargs="?", help="a results folder (runs below it)")
    p.add_argument("--log", help="a make log whose lines start with a Unix time")
    p.add_argument("--split", metavar="RUN", help="a trained run folder: time its evaluation "
                   "measure by measure (recomputed here; nothing is written)")
    p.add_argument("--epoch", type=int, default=0, help="the checkpoint --split evaluates "
                   "(default 0)")
    return p


def _bad(message: str) -> int:
    print(f"rkdo profile: error: {message}\nsee rkdo profile --help", file=sys.stderr)
    return 2


def profile_main(argv: list[str]) -> int:
    p = profile_parser()
    args = p.parse_args(argv)
    if args.results is None and args.log is None and args.split is None:
        return _bad("give a results folder, --log LOG or --split RUN")
    for name, value in (("results", args.results), ("--log", args.log),
                        ("--split", args.split)):
        if value is not None and not Path(value).exists():
            return _bad(f"{name} {value!r} does not exist")
    try:
        split = None
        if args.split:
            from .profile_split import measure_split  # deferred: imports torch

            split = measure_split(args.split, args.epoch)
        sys.stdout.write(render(args.results, args.log, split))
    except (ValueError, FileNotFoundError) as e:
        print(f"rkdo profile: {e}", file=sys.stderr)
        return 2
    return 0
