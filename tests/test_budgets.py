"""The rule that picks the Fashion grid's budgets from the learning curve
(rkdo_core/reporting/budgets.py), on hand-made curves whose answer is known."""

import json
import math

import pandas as pd
import pytest

from rkdo_core.curvecsv import COLUMNS
from rkdo_core.reporting import budgets
from rkdo_core.reporting.curve_figure import load_curve, write_figure


def _curve(values: dict[int, dict[int, float]], n_test: int = 2000,
           method: str = "icon") -> pd.DataFrame:
    """values[seed][step] -> linear_cv accuracy; a frame with the CSV's columns."""
    rows = []
    for seed, by_step in values.items():
        for step, v in by_step.items():
            row = dict.fromkeys(COLUMNS)
            row.update(method=method, seed=seed, step=step, metric="linear_cv", value=v,
                       test_images=n_test)
            rows.append(row)
    return pd.DataFrame(rows)


def test_gains_noise_and_pass_follow_the_written_rule():
    df = _curve({42: {0: 0.80, 100: 0.79, 500: 0.83, 1000: 0.85},
                 123: {0: 0.78, 100: 0.80, 500: 0.80, 1000: 0.84}})
    table = {t["step"]: t for t in budgets.step_table(df)}
    se = math.sqrt(0.79 * 0.21 / 2000)  # binomial SE at the untrained mean 0.79
    # step 100: seed 42 loses 0.01 -> fails whatever the mean
    assert table[100]["gains"] == {42: pytest.approx(-0.01), 123: pytest.approx(0.02)}
    assert not table[100]["passes"]
    # step 500: gains 0.03 and 0.02, SD 0.00707 < mean 0.025 -> passes
    assert table[500]["sd"] == pytest.approx(0.01 / math.sqrt(2), abs=1e-6)
    assert table[500]["noise"] == pytest.approx(max(0.01 / math.sqrt(2), se), abs=1e-6)
    assert table[500]["passes"]
    got = budgets.choose(df)
    assert got["gate_step"] == 500
    assert got["early_step"] == 100  # 100 is 20 % of 500


def test_two_seeds_that_agree_on_a_tiny_gain_do_not_pass():
    """SD 0 would make any positive gain 'beyond noise': the binomial SE is the floor."""
    df = _curve({42: {0: 0.80, 500: 0.802}, 123: {0: 0.81, 500: 0.812}})
    (t,) = budgets.step_table(df)
    assert t["sd"] == pytest.approx(0.0, abs=1e-9)
    assert t["noise"] == pytest.approx(math.sqrt(0.805 * 0.195 / 2000), abs=1e-6)
    assert not t["passes"]
    got = budgets.choose(df)
    assert got["gate_step"] is None and got["early_step"] is None
    assert "no step of the curve passes" in got["verdict"]


def test_a_step_not_reached_by_every_seed_is_left_out():
    df = _curve({42: {0: 0.7, 100: 0.8, 250: 0.9}, 123: {0: 0.7, 100: 0.81}})
    assert [t["step"] for t in budgets.step_table(df)] == [100]


def test_other_methods_do_not_enter_the_gate():
    icon = _curve({42: {0: 0.8, 100: 0.79}, 123: {0: 0.8, 100: 0.78}})
    rkdo = _curve({42: {0: 0.8, 100: 0.95}, 123: {0: 0.8, 100: 0.96}}, method="rkdo")
    assert budgets.choose(pd.concat([icon, rkdo]))["gate_step"] is None


@pytest.mark.parametrize("steps, gate, early", [
    ([0, 100, 250, 500, 1000, 1500], 1000, 250),   # 25 % of 1000
    ([0, 100, 250, 500, 1000, 1500], 1500, 500),   # 33 %
    ([0, 100, 250, 500, 1000, 1500], 500, 100),    # 20 %
    ([0, 100, 250, 500, 1000, 1500], 250, 100),    # 40 %
    ([0, 100, 250, 500, 1000, 1500], 100, None),   # nothing below 100
    ([0, 100, 700, 1000], 1000, 700),              # none in [200, 400]: smallest above
])
def test_early_budget(steps, gate, early):
    assert budgets.early_step(steps, gate) == early


def test_missing_step_zero_or_method_is_named():
    with pytest.raises(ValueError, match="no step 0"):
        budgets.step_table(_curve({42: {100: 0.8}, 123: {100: 0.8}}))
    with pytest.raises(ValueError, match="no linear_cv rows of method 'icon'"):
        budgets.step_table(_curve({42: {0: 0.8}}, method="rkdo"))


def test_write_budgets_and_markdown(tmp_path):
    df = _curve({42: {0: 0.80, 500: 0.83}, 123: {0: 0.78, 500: 0.80}})
    csv = tmp_path / "curve.csv"
    df.to_csv(csv, index=False, columns=list(COLUMNS))
    dest, result = budgets.write_budgets(load_curve(csv), csv)
    assert dest == tmp_path / "curve_budgets.json"
    assert json.loads(dest.read_text())["gate_step"] == result["gate_step"] == 500
    md = budgets.markdown(result)
    assert "| 500 | +0.0300 | +0.0200 | +0.0250 |" in md and "| yes |" in md


def test_the_curve_figure_carries_the_budgets(tmp_path):
    df = _curve({42: {0: 0.80, 100: 0.81, 500: 0.83}, 123: {0: 0.78, 100: 0.78, 500: 0.80}})
    for col, v in (("cpu", "X"), ("threads", 1), ("workers", 1), ("probe_images", 500),
                   ("features", "backbone"), ("cv_folds", 3), ("batch_size", 64),
                   ("steps_per_epoch", 50), ("config_id", "abc"), ("eval_seconds", 1.0)):
        df[col] = v
    csv = tmp_path / "curve.csv"
    df.to_csv(csv, index=False, columns=list(COLUMNS))
    out = write_figure(csv)
    assert tmp_path / "curve_budgets.json" in out
    assert "gate budget 500, early budget 100" in (tmp_path / "curve.md").read_text()
