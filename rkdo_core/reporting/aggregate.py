"""The aggregation — one entry point, :func:`aggregate`: a results folder in, every table,
figure, ``comparison.csv`` and the manifest ``aggregate.json`` out.

05_aggregate.ipynb makes this one call and then displays what it returns; the tests call
the same function. Inputs besides the runs' metrics files: the paper's numbers
(``params/reported.yaml``), ``rkdo flops``' JSON and the theory notebook's ``checks.json``
(absent -> the claims resting on them are "not testable").
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure

from ..layout import CHECKPOINTS, GRID_RECORD, MANIFEST, RUN_COMPLETE, run_folders, scratch_dir
from ..runs.integrity import RunCheck, check_run
from . import figures as figs
from .claims import claims_checklist
from .compute import compute_matched_table, fig_compute_matched
from .fmt import write_tables
from .readme import bottom_line
from .reported import Reported, load_reported
from .results import incomplete_runs, load_metrics
from .stats import (
    epoch0_gap_sentences,
    gap_decomposition,
    gated_pairs,
    paired_comparison,
    positive_control,
    positive_control_sentences,
    run_summary,
    yardstick_sentences,
    yardstick_verdicts,
)
from .tables import (
    DEFAULT_TABLE3_PAIRS,
    TABLE_NAMES,
    table0_positive_control,
    table1,
    table2,
    table3,
    table4,
    table_protocols,
    table_yardstick,
    yardstick_2x2,
)


def build_tables(df: pd.DataFrame, comp: pd.DataFrame | None = None,
                 reported: Reported | None = None, *, table4_epoch: int = 2,
                 table3_pairs: Sequence[Sequence[int]] = DEFAULT_TABLE3_PAIRS,
                 flops=None, theory_checks=None, min_important_difference: float | None = None,
                 control: pd.DataFrame | None = None) -> dict[str, pd.DataFrame]:
    """Table 0 (the positive control, first), Tables 1–4, the audit's Tables 5 (common
    yardstick), 6 (protocols) and 7 (compute-matched), and the claims checklist, keyed by
    their file names (:data:`TABLE_NAMES`). ``flops`` / ``theory_checks``: ``rkdo flops``'
    JSON and the theory notebook's ``checks.json`` (paths or loaded; absent -> "not
    testable"). ``min_important_difference``: the params file's margin M for claim (b)."""
    comp = paired_comparison(df) if comp is None else comp
    control = positive_control(df) if control is None else control
    return {TABLE_NAMES["positive_control"]: table0_positive_control(df, control),
            TABLE_NAMES["table1"]: table1(comp, reported, gap_decomposition(df)),
            TABLE_NAMES["table2"]: table2(comp, reported),
            TABLE_NAMES["table3"]: table3(df, reported, table3_pairs),
            TABLE_NAMES["table4"]: table4(comp, reported, table4_epoch),
            TABLE_NAMES["yardstick"]: table_yardstick(df),
            TABLE_NAMES["protocols"]: table_protocols(comp, gated_pairs(df, control)),
            TABLE_NAMES["compute"]: compute_matched_table(df, mismatched=table3_pairs),
            TABLE_NAMES["claims"]: claims_checklist(
                df, flops=flops, theory_checks=theory_checks, reported=reported,
                table3_pairs=table3_pairs, min_important_difference=min_important_difference,
                control=control)}


def _rel(paths: Iterable[Path], root: Path) -> list[str]:
    return [Path(p).resolve().relative_to(root.resolve()).as_posix() for p in paths]


def manifest(out_dir: str | Path, df: pd.DataFrame, *, tables: list[dict],
             figures: list[dict], skipped: Sequence[Path] = (),
             results_dir: str | Path | None = None, sentences: Sequence[str] = (),
             extra: dict | None = None) -> dict:
    """The aggregate.json manifest: tables and figures (``name``, ``title``/``caption``,
    ``files`` relative to ``out_dir``), what was aggregated and what was skipped."""
    out_dir = Path(out_dir)
    summary = run_summary(df)
    rel = (lambda p: Path(p).resolve().relative_to(Path(results_dir).resolve()).as_posix()) \
        if results_dir is not None else str
    return {
        "results_dir": str(results_dir) if results_dir is not None else None,
        "tables": [{**t, "files": _rel(t["files"], out_dir)} for t in tables],
        "figures": [{**f, "files": _rel(f["files"], out_dir)} for f in figures],
        **summary,
        "skipped_incomplete": len(skipped),
        "skipped_runs": [rel(p) for p in skipped],
        "epoch0_sentences": list(sentences),
        **(extra or {}),
    }


def audit_extra(df: pd.DataFrame, tables: dict[str, pd.DataFrame],
                control: pd.DataFrame | None = None) -> dict:
    """The manifest's audit entries: the bottom line (three plain sentences from the claims'
    verdicts, :func:`~rkdo_core.reporting.readme.bottom_line`), the positive control's
    sentences and rows, the yardstick sentences and the claims' verdicts."""
    claims = tables.get(TABLE_NAMES["claims"])
    control = positive_control(df) if control is None else control
    keep = ["dataset", "protocol", "metric", "epoch", "n_seeds", "diff_mean", "ci_low",
            "ci_high", "status", "outcome", "gated", "reason"]
    claims_records = [] if claims is None or claims.empty else \
        claims[["claim", "source", "protocol", "datasets", "verdict"]].to_dict("records")
    return {"bottom_line": bottom_line({**run_summary(df), "claims": claims_records}),
            "positive_control_sentences": positive_control_sentences(control),
            "positive_control": [] if control.empty else
            control[[c for c in keep if c in control]].to_dict("records"),
            "comparison": "comparison.csv",
            "comparison_note": "sign_flip_p: exact permutation p over the 2^n sign vectors "
                               "beside the t-test p; its floor (sign_flip_floor) is 2/2^n — "
                               "1/16 with 5 seeds; g_z: Hedges' bias-corrected paired effect "
                               "size; mde80: the true difference the paired t-test had 80 % "
                               "power to detect at mde_alpha (Holm's worst-case level of the "
                               "family) — power, not an exclusion; epoch 0 (the same "
                               "untrained encoder for both methods) is a difference without a "
                               "test (column inference)",
            "yardstick_sentences": yardstick_sentences(df),
            "claims": claims_records}


def write_manifest(out_dir: str | Path, data: dict) -> Path:
    path = Path(out_dir) / MANIFEST
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, default=str) + "\n", encoding="utf-8")
    return path


def grid_settings(results_dir: str | Path) -> dict:
    """The ``aggregate:`` section of the params file the results folder's last grid ran
    (``RESULTS/grid.json``): ``table4_epoch``, ``table3_pairs``,
    ``min_important_difference``; ``{}`` without a grid record."""
    record = Path(results_dir) / GRID_RECORD
    if not record.is_file():
        return {}
    return dict(json.loads(record.read_text(encoding="utf-8")).get("aggregate") or {})


def aggregation_settings(results_dir: str | Path, *, table4_epoch: int | None = None,
                         table3_pairs: Sequence[Sequence[int]] | None = None,
                         min_important_difference: float | None = None) -> dict:
    """The settings :func:`aggregate` takes, each one given (not None) or else the grid's own
    (:func:`grid_settings`), else the built-in default (``min_important_difference`` None:
    from the data) — so an aggregation opened by hand tests the pairs the grid was run
    for, not a notebook default."""
    grid = grid_settings(results_dir)
    given = {"table4_epoch": table4_epoch, "table3_pairs": table3_pairs,
             "min_important_difference": min_important_difference}
    builtin = {"table4_epoch": 2, "table3_pairs": [list(p) for p in DEFAULT_TABLE3_PAIRS],
               "min_important_difference": None}
    return {k: v if v is not None else grid.get(k, builtin[k]) for k, v in given.items()}


def interactive_out_dir(results_dir: str | Path) -> Path:
    """Where an aggregation opened by hand (05_aggregate without ``out_dir``) writes:
    ``scratch/aggregate/<results folder's name>``, never into the results folder, which
    only ``rkdo aggregate`` (passing ``out_dir``) rewrites."""
    return scratch_dir("aggregate", Path(results_dir).resolve().name)


def default_audit_inputs(results_dir: str | Path) -> tuple[Path, Path]:
    """Where ``make reproduce`` writes ``rkdo flops``' JSON and the theory notebook's
    checks below a results folder."""
    return Path(results_dir) / "flops.json", Path(results_dir) / "theory" / "checks.json"


@dataclass
class Aggregation:
    """What :func:`aggregate` computed and wrote; 05_aggregate.ipynb displays it."""

    results_dir: Path
    out_dir: Path
    df: pd.DataFrame  #: one row per metrics file of a complete run
    comp: pd.DataFrame  #: the paired comparison (``comparison.csv``)
    skipped: list[Path]  #: incomplete runs left out
    reported: Reported
    flops_file: Path
    theory_file: Path
    tables: dict[str, pd.DataFrame]  #: keyed by file name (:data:`TABLE_NAMES`)
    table_entries: list[dict]
    figure_entries: list[dict]
    epoch0_sentences: list[str]
    yardstick_sentences: list[str]
    #: the positive control per (dataset, protocol), computed and shown first
    positive_control: pd.DataFrame
    positive_control_sentences: list[str]
    #: the literal "trained with × scored with" 2 × 2 per (dataset, protocol) at the last
    #: budget where the yardstick was measured: (heading, table)
    yardstick_2x2: list[tuple[str, pd.DataFrame]]
    manifest: dict
    manifest_path: Path
    summary: dict = field(default_factory=dict)
    #: complete runs whose files differ from their checksums: left out, or (with
    #: ``include_altered``) used and marked
    integrity: list[RunCheck] = field(default_factory=list)
    include_altered: bool = False

    def describe(self) -> str:
        """What was aggregated, from which inputs (the notebook's first output)."""
        s = self.summary
        lines = [f"{s['n_runs']} complete runs below {self.results_dir}: datasets "
                 f"{s['datasets']}, methods {s['methods']}, {len(s['seeds'])} seeds "
                 f"{s['seeds']}, budgets (epochs) {s['epochs']}, protocols {s['protocols']}, "
                 f"devices {s['devices']}",
                 f"skipped {len(self.skipped)} incomplete run(s) (no run_complete.json)"
                 + "".join(f"\n  {p}" for p in self.skipped),
                 f"reported numbers: {self.reported.source}"]
        verb = "INCLUDED despite" if self.include_altered else "left out for"
        lines += [f"{verb} altered files: {c.run} — {'; '.join(c.problems)}"
                  for c in self.integrity]
        for name, f in (("FLOP measurement", self.flops_file),
                        ("theory checks", self.theory_file)):
            lines.append(f"{name}: {f}" + ("" if f.exists() else
                                           " (absent: its claims are 'not testable')"))
        return "\n".join(lines)


def _read_by_aggregation(name: str) -> bool:
    """Files whose sha256 the aggregation checks: all a run lists but its checkpoints (the
    metrics, config, logs and notebooks it reads or links; checkpoints are never opened
    here, so only their size is checked — `rkdo verify` hashes them too)."""
    return not name.startswith(CHECKPOINTS + "/")


def integrity_problems(results_dir: str | Path) -> list[RunCheck]:
    """Runs below ``results_dir`` the grid recorded as complete (a run_complete.json) whose
    files differ from that record (altered, missing, leftover temporaries) — the checks of
    `rkdo verify`."""
    root = Path(results_dir)
    checks = [check_run(d, d.relative_to(root).as_posix(), hash_only=_read_by_aggregation)
              for d in run_folders(root) if (d / RUN_COMPLETE).is_file()]
    return [c for c in checks if not c.ok]


def aggregate(results_dir: str | Path, out_dir: str | Path | None = None,
              reported_path: str | Path | None = None, table4_epoch: int = 2,
              table3_pairs: Sequence[Sequence[int]] = DEFAULT_TABLE3_PAIRS,
              flops_path: str | Path | None = None,
              theory_checks_path: str | Path | None = None,
              min_important_difference: float | None = None,
              include_altered: bool = False) -> Aggregation:
    """The whole aggregation of a results folder: read the complete runs, write the paired
    comparison into ``out_dir/comparison.csv``, the tables into ``out_dir/tables``, the
    figures into ``out_dir/figures`` and the manifest ``out_dir/aggregate.json``
    (``out_dir`` defaults to ``results_dir``). ``flops_path`` / ``theory_checks_path``
    default to ``results_dir/flops.json`` and ``results_dir/theory/checks.json``.
    ``min_important_difference``: the params file's ``aggregate:`` margin M of claim (b)
    and Table 3 (None: half the lower bound of I-Con's gain).

    Every complete run is first checked against its recorded checksums (as `rkdo verify`
    does); a run with an altered, missing or half-written file is left out, one line each
    in :meth:`Aggregation.describe` and the manifest's ``excluded_runs``. With
    ``include_altered`` such runs are used, and their rows carry the problem in an
    ``integrity`` column (manifest: ``included_altered_runs``)."""
    results_dir = Path(results_dir)
    out_dir = Path(out_dir) if out_dir is not None else results_dir
    bad = integrity_problems(results_dir)
    notes = {c.run: "; ".join(c.problems) for c in bad}
    if include_altered:
        df = load_metrics(results_dir, marked=notes)
    else:
        try:
            df = load_metrics(results_dir, exclude=notes)
        except FileNotFoundError as e:
            if not bad:
                raise
            raise FileNotFoundError(
                f"{e}; {len(bad)} complete run(s) were left out because their files differ "
                f"from their recorded checksums (`rkdo verify {results_dir}` lists them; "
                "include_altered=True uses them anyway)") from None
    # runs never completed (no run_complete.json, or a file it lists is gone: the grid
    # re-runs them); those already named by the integrity check are listed there only
    skipped = [d for d in incomplete_runs(results_dir)
               if d.relative_to(results_dir).as_posix() not in notes]
    reported = load_reported(reported_path)
    flops_default, theory_default = default_audit_inputs(results_dir)
    flops_file = Path(flops_path) if flops_path else flops_default
    theory_file = Path(theory_checks_path) if theory_checks_path else theory_default
    control = positive_control(df)  # first: it gates the downstream verdicts
    comp = paired_comparison(df)
    out_dir.mkdir(parents=True, exist_ok=True)
    comp.to_csv(out_dir / "comparison.csv", index=False)
    built = build_tables(df, comp, reported, table4_epoch=table4_epoch,
                         table3_pairs=table3_pairs, flops=flops_file,
                         theory_checks=theory_file,
                         min_important_difference=min_important_difference, control=control)
    table_entries = write_tables(built, out_dir / "tables")
    figure_entries = figs.write_figures(build_figures(df, comp, reported, table3_pairs),
                                        out_dir / "figures")
    sentences = epoch0_gap_sentences(df)
    integrity = [{"run": c.run, "state": c.state, "problems": list(c.problems)} for c in bad]
    data = manifest(out_dir, df, tables=table_entries, figures=figure_entries, skipped=skipped,
                    results_dir=results_dir, sentences=sentences,
                    extra={**audit_extra(df, built, control),
                           ("included_altered_runs" if include_altered else "excluded_runs"):
                               integrity})
    path = write_manifest(out_dir, data)
    two_by_two = [(f"{v.dataset}, {v.protocol} protocol, epoch {int(v.epoch)}",
                   yardstick_2x2(df, v.dataset, v.protocol, int(v.epoch)))
                  for v in yardstick_verdicts(df).itertuples() if v.outcome != "not measured"]
    return Aggregation(results_dir=results_dir, out_dir=out_dir, df=df, comp=comp,
                       skipped=skipped, reported=reported, flops_file=flops_file,
                       theory_file=theory_file, tables=built, table_entries=table_entries,
                       figure_entries=figure_entries, epoch0_sentences=sentences,
                       yardstick_sentences=data["yardstick_sentences"],
                       positive_control=control,
                       positive_control_sentences=data["positive_control_sentences"],
                       yardstick_2x2=two_by_two, manifest=data, manifest_path=path,
                       summary=run_summary(df), integrity=bad,
                       include_altered=include_altered)


def build_figures(df: pd.DataFrame, comp: pd.DataFrame | None = None,
                  reported: Reported | None = None,
                  table3_pairs: Sequence[Sequence[int]] = DEFAULT_TABLE3_PAIRS
                  ) -> list[tuple[str, Figure, str]]:
    """Figures 1–5 (and 6, the common yardstick, where measured) for every protocol in the
    results: ``(name, fig, caption)``; names carry a ``_<protocol>`` suffix when there are
    several protocols. Figure 3 is drawn once per pair of the grid's ``table3_pairs``
    (RKDO@early vs I-Con@late, named by its budgets), so its title never promises a budget
    the grid does not test; pairs starting at 0 (Table 3's untrained baselines) are bars of
    every Figure 3 already."""
    comp = paired_comparison(df) if comp is None else comp
    protocols = sorted(df.protocol.unique())
    pairs = list(dict.fromkeys((int(r), int(i)) for r, i in table3_pairs if int(r) > 0))
    out = []
    for p in protocols:
        suffix = f"_{p}" if len(protocols) > 1 else ""
        drawn = [("fig1", figs.fig1_loss_improvement(df, comp, reported, p)),
                 ("fig2", figs.fig2_loss_improvement_by_budget(df, comp, reported, p))]
        drawn += [(figs.fig3_name(r, i), figs.fig3_rkdo_vs_icon(df, reported, p, r, i))
                  for r, i in pairs]
        drawn += [("fig4", figs.fig4_early_learning(df, reported, p)),
                  ("fig5", figs.fig5_loss_curves(df, reported, p))]
        yard = figs.fig6_common_yardstick(df, p)
        if yard is not None:  # results made before the yardstick existed have none
            drawn.append(("fig6", yard))
        drawn.append(("fig7", fig_compute_matched(df, p)))
        out += [(figs.FIGURE_NAMES.get(k, k) + suffix, fig, cap) for k, (fig, cap) in drawn]
    return out
