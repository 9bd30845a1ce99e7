"""Formatting and writing of the aggregation's tables: numbers as strings, the Markdown /
CSV / LaTeX files, and the convention every table follows.

Every table builder returns one DataFrame holding both machine-readable columns (snake_case,
numbers) and display columns (human headers, formatted strings); ``df.attrs`` records which
is which (``csv``/``display``), a ``title``, a generated ``note`` and the rows ``omitted``
with their reason (:func:`finish_table`). :func:`write_table` writes the numbers to CSV and
the display columns to Markdown and LaTeX.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pandas as pd

#: a cell without a value (no counterpart in the paper, no test possible)
NO_COUNTERPART = "—"


def format_p(p: float) -> str:
    """Two significant digits; scientific below 0.001; "—" where no test was possible."""
    if p is None or (isinstance(p, float) and math.isnan(p)):
        return NO_COUNTERPART
    if p < 1e-3:
        return f"{p:.1e}"
    return f"{p:.2g}"


def format_sign_flip(p: float, floor: float | None = None) -> str:
    """A sign-flip p for a sentence, never printed below its own value or floor: rounded
    *up* to two significant digits (0.0625 → "0.063", never "0.062"), with the exact
    fraction 1/2^k where p is one ("1/16 = 0.063"); "—" where no test was possible."""
    if p is None or not np.isfinite(p):
        return NO_COUNTERPART
    p = float(p)
    if floor is not None and np.isfinite(floor):
        p = max(p, float(floor))
    text = format_p_up(p)
    k = math.log2(1 / p) if p > 0 else math.inf
    if p < 1 and abs(k - round(k)) < 1e-12 and round(k) <= 30:
        return f"1/{2 ** round(k)} = {text}"
    return text


def format_p_up(p: float) -> str:
    """A p-value rounded *up* to two significant digits (scientific below 0.001), so it is
    never printed below its true value or an exact test's floor (0.0625 → "0.063"); "—"
    where no test was possible."""
    if p is None or not np.isfinite(p):
        return NO_COUNTERPART
    if p <= 0:
        return "0"
    exp = math.floor(math.log10(p)) - 1
    up = math.ceil(p / 10.0**exp - 1e-9) * 10.0**exp
    return f"{up:.1e}" if up < 1e-3 else f"{up:.2g}"


def fmt_num(x: float, digits: int = 4, sign: bool = False) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return NO_COUNTERPART
    return f"{x:+.{digits}f}" if sign else f"{x:.{digits}f}"


def fmt_mean_std(mean: float, std: float, digits: int = 4) -> str:
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return NO_COUNTERPART
    if std is None or (isinstance(std, float) and math.isnan(std)):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


_SUPERSCRIPT = str.maketrans("0123456789-", "⁰¹²³⁴⁵⁶⁷⁸⁹⁻")
_PLAIN_DIGITS = str.maketrans("⁰¹²³⁴⁵⁶⁷⁸⁹⁻", "0123456789-")


def fmt_large(x: float, sig: int = 3) -> str:
    """A large number for a reader: ``5.67 × 10⁹`` (``sig`` significant digits, trailing
    zeros dropped) from a million on, digits with thousands separators below (``12,345``);
    "—" without a value."""
    if x is None or not np.isfinite(x):
        return NO_COUNTERPART
    if abs(x) < 1e6:
        return f"{x:,.0f}" if abs(x) >= 100 else f"{x:.{sig}g}"
    exp = int(math.floor(math.log10(abs(x))))
    mantissa = f"{x / 10 ** exp:.{sig}g}"
    if abs(float(mantissa)) >= 10:  # rounded up to the next power of ten
        exp, mantissa = exp + 1, f"{x / 10 ** (exp + 1):.{sig}g}"
    return f"{mantissa} × 10{str(exp).translate(_SUPERSCRIPT)}"


def dash_nan(text: str) -> str:
    """Plain text (a fixed-width listing) with every standalone ``nan`` shown as the tables'
    "—", right-aligned in the same three characters so columns stay aligned."""
    return re.sub(r"(?<![\w.])nan(?![\w.])", f"  {NO_COUNTERPART}", text)


def fmt_pct(x: float) -> str:
    return NO_COUNTERPART if x is None or np.isnan(x) else f"{x:+.2f} %"


def fmt_steps(lo: float, hi: float) -> str:
    if np.isnan(lo):
        return "?"
    return f"{int(lo)}" if lo == hi else f"{int(lo)}–{int(hi)}"


def fmt_ci(lo: float, hi: float, digits: int = 4) -> str:
    if np.isnan(lo):
        return NO_COUNTERPART
    return f"[{lo:+.{digits}f}, {hi:+.{digits}f}]"


def finish_table(out: pd.DataFrame, csv: list[str], display: dict[str, pd.Series | list],
            title: str, note: str, omitted: list[str]) -> pd.DataFrame:
    for col, values in display.items():
        out[col] = list(values)
    out.attrs.update(csv=list(csv), display=list(display), title=title, note=note,
                     omitted=list(omitted))
    return out


def table_markdown(df: pd.DataFrame, title: str | None = None, note: str | None = None) -> str:
    """The display columns as a Markdown table, with title and note."""
    title = title if title is not None else df.attrs.get("title", "")
    note = note if note is not None else df.attrs.get("note", "")
    cols = df.attrs.get("display") or list(df.columns)
    # a "|" in a cell (KL(p||q)) escaped, as GitHub Markdown wants: it would end the cell
    cells = df[cols].map(lambda v: v.replace("|", "\\|") if isinstance(v, str) else v)
    # numparse off: tabulate would re-format the formatted p-values ("1.0e-06" -> "1e-06")
    body = cells.to_markdown(index=False, disable_numparse=True) if len(df) \
        else "*(no rows)*"
    return "\n\n".join(filter(None, [f"**{title}**" if title else "", body, note]))


def write_table(df: pd.DataFrame, out_dir: str | Path, name: str, title: str | None = None,
                note: str | None = None) -> list[Path]:
    """Write ``name.csv`` (the machine-readable columns, full precision), ``name.md`` and
    ``name.tex`` (the display columns, title and note) into ``out_dir``; returns the paths.

    ``title``/``note`` default to ``df.attrs``. A frame without ``attrs`` (any DataFrame)
    is written whole to all three.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    title = title if title is not None else df.attrs.get("title", name)
    note = note if note is not None else df.attrs.get("note", "")
    csv_cols = df.attrs.get("csv") or [c for c in df.columns
                                       if c not in (df.attrs.get("display") or [])]
    disp_cols = df.attrs.get("display") or list(df.columns)
    csv, md, tex = (out_dir / f"{name}.{ext}" for ext in ("csv", "md", "tex"))
    df[csv_cols].to_csv(csv, index=False)
    md.write_text(table_markdown(df, title, note) + "\n", encoding="utf-8")
    body = df[disp_cols]
    latex = _latex_unicode(body.to_latex(index=False, caption=title, label=f"tab:{name}",
                                         float_format="%.4g", escape=True)) \
        if len(body) else "% (no rows)\n"
    tex.write_text(f"% {title}\n% {note}\n" + latex, encoding="utf-8")
    return [csv, md, tex]


_LATEX_UNICODE = {"±": r"$\pm$", "−": "$-$", "—": "---", "–": "--", "×": r"$\times$",
                  "→": r"$\to$", "≤": r"$\leq$", "≥": r"$\geq$"}


def _latex_unicode(text: str) -> str:
    """The few non-ASCII symbols of the tables as plain LaTeX (pdflatex-safe)."""
    text = re.sub(r"× 10([⁰¹²³⁴⁵⁶⁷⁸⁹⁻]+)", lambda m: r"$\times 10^{"
                  + m.group(1).translate(_PLAIN_DIGITS) + "}$", text)
    for k, v in _LATEX_UNICODE.items():
        text = text.replace(k, v)
    return text


def write_tables(tables: dict[str, pd.DataFrame], out_dir: str | Path) -> list[dict]:
    """:func:`write_table` for each of :func:`build_tables`' tables; returns the manifest
    entries (``name``, ``title``, ``note``, ``omitted``, ``files``)."""
    entries = []
    for name, t in tables.items():
        files = write_table(t, out_dir, name)
        entries.append({"name": name, "title": t.attrs.get("title", name),
                        "note": t.attrs.get("note", ""), "omitted": t.attrs.get("omitted", []),
                        "files": files})
    return entries
