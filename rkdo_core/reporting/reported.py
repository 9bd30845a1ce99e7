"""The paper's reported numbers, read from ``params/reported.yaml`` — their only home.

Tables 1–4 of the paper (the "Paper …" columns and the reported markers of the figures),
and the FLOP figures of its efficiency claim, as data; nothing here is measured.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import yaml

REPO_DIR = Path(__file__).resolve().parents[2]
DEFAULT_REPORTED = REPO_DIR / "params" / "reported.yaml"


@dataclass(frozen=True)
class Reported:
    """The paper's Tables 1–4 (``params/reported.yaml``) as DataFrames."""

    table1: pd.DataFrame
    table2: pd.DataFrame
    table3: pd.DataFrame
    table4: pd.DataFrame
    table4_epoch: int
    protocol: str = "paper"
    p_claim: str = ""
    source: str = ""
    titles: dict = field(default_factory=dict)
    #: the efficiency claim: forward FLOPs per step by recursion depth, and the stated
    #: bound (percent) on depth 3's overhead over depth 1
    forward_flops: dict = field(default_factory=dict)
    overhead_pct_max: float = float("nan")

    @property
    def datasets(self) -> list[str]:
        return sorted(set(self.table1.dataset))


def load_reported(path: str | Path | None = None) -> Reported:
    """Read the paper's reported numbers (default: the repository's
    ``params/reported.yaml``)."""

    path = Path(path) if path is not None else DEFAULT_REPORTED
    if not path.is_file():
        raise FileNotFoundError(f"reported numbers file {path} does not exist")
    raw = yaml.safe_load(path.read_text())
    missing = [k for k in ("table1", "table2", "table3", "table4") if k not in raw]
    if missing:
        raise ValueError(f"{path}: missing section(s) {missing}")
    frames = {k: pd.DataFrame(raw[k]["rows"]) for k in ("table1", "table2", "table3", "table4")}
    return Reported(**frames, table4_epoch=int(raw["table4"]["epochs"]),
                    protocol=raw.get("protocol", "paper"),
                    p_claim=raw["table1"].get("p_value_claim", ""),
                    source=raw.get("source", str(path)),
                    titles={k: raw[k].get("title", k) for k in frames},
                    forward_flops={int(k): float(v) for k, v in
                                   raw.get("efficiency", {}).get("forward_flops", {}).items()},
                    overhead_pct_max=float(raw.get("efficiency", {})
                                           .get("overhead_pct_max", float("nan"))))
