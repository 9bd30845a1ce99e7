"""Claims are judged per dataset and protocol: a dataset where training helps (Fashion-MNIST)
is judged on its own, next to one where it does not (digits) - never a conjunction that lets
one dataset's failed positive control gate the other, or one's pass speak for both. The
README leads with the dataset whose control passes."""

import pandas as pd
from test_claims import base_values, make_df

from rkdo_core.reporting.claims import (
    FAILS,
    HOLDS,
    PASSES,
    UNTESTABLE,
    UNTESTABLE_REGIME,
    claims_checklist,
)
from rkdo_core.reporting.readme import _claims_table, bottom_line
from rkdo_core.reporting.stats import CONTROL_HURTS, positive_control_sentences
from rkdo_core.reporting.stats import positive_control as control_of

CONTROL = "(audit, first) positive control"
FEWER = "60–80 % fewer epochs"


def _mixed(rkdo_early_gap=0.0):
    """digits: training hurts (linear eval falls with epochs); Fashion: it helps, and
    RKDO@1/2 is as good as I-Con@5 (claim b holds there) unless ``rkdo_early_gap``."""
    digits = make_df(lambda m, e: base_values(m, e, lin=lambda m, e: 0.80 - 0.005 * e),
                     datasets=("digits",))
    def fashion_lin(m, e):
        if m == "icon":
            return 0.70 + 0.02 * min(e, 5)
        return 0.70 + (0.10 - rkdo_early_gap if e > 0 else 0.0)
    fashion = make_df(lambda m, e: base_values(m, e, lin=fashion_lin),
                      datasets=("fashion_mnist",))
    return pd.concat([digits, fashion], ignore_index=True)


def _row(t, prefix, dataset):
    sub = t[t.claim.str.startswith(prefix) & (t.datasets == dataset)]
    assert len(sub) == 1, (prefix, dataset, sub[["claim", "datasets"]].values.tolist())
    return sub.iloc[0]


def test_each_dataset_gets_its_own_control_and_downstream_verdicts():
    t = claims_checklist(_mixed(), min_important_difference=0.02)
    assert _row(t, CONTROL, "Fashion-MNIST").verdict == PASSES
    assert _row(t, CONTROL, "digits").verdict == CONTROL_HURTS
    # Fashion's claim (b) is judged (holds: RKDO@1 0.80 vs I-Con@5 0.80, RKDO@1 > I-Con@1);
    # digits' stays gated by its own failed control
    assert _row(t, FEWER, "Fashion-MNIST").verdict == HOLDS
    assert _row(t, FEWER, "digits").verdict == UNTESTABLE_REGIME
    # the verdict follows Fashion's data: a large early gap makes it fail there alone
    t2 = claims_checklist(_mixed(rkdo_early_gap=0.08), min_important_difference=0.02)
    assert _row(t2, FEWER, "Fashion-MNIST").verdict == FAILS
    assert _row(t2, FEWER, "digits").verdict == UNTESTABLE_REGIME


def test_table3_rows_are_judged_once_per_setting():
    t = claims_checklist(_mixed(), min_important_difference=0.02)
    t3 = t[t.source == "paper Table 3"]
    # CIFAR-10/100 and STL-10 are not in the grid: each row once per grid dataset (its
    # analogue in the evidence), never a column of its own
    assert sorted(t3.datasets.value_counts().to_dict().items()) == [
        ("Fashion-MNIST", 3), ("digits", 3)]
    assert set(t3.verdict) == {UNTESTABLE}
    assert t3[t3.datasets == "Fashion-MNIST"].evidence.str.contains(
        "Fashion-MNIST analogue under the same rule").all()


def test_readme_leads_with_the_dataset_whose_control_passes():
    df = _mixed()
    t = claims_checklist(df, min_important_difference=0.02)
    claims = t[["claim", "source", "protocol", "datasets", "verdict"]].to_dict("records")
    table = _claims_table(claims)
    head = table.splitlines()[0]
    assert head == "| claim | Fashion-MNIST, paper protocol | digits, paper protocol |"
    control_line = next(line for line in table.splitlines() if CONTROL in line)
    assert control_line.endswith(f"| {PASSES} | {CONTROL_HURTS} |")
    text = " ".join(bottom_line({"claims": claims, "datasets": ["digits", "fashion_mnist"],
                                 "seeds": [1, 2, 3, 4, 5], "protocols": ["paper"]}))
    fashion = text.index("better than its untrained start on Fashion-MNIST")
    digits = text.index("measurably worse than its untrained start on digits")
    assert fashion < digits
    assert "RKDO does reach comparable accuracy with fewer epochs" in text
    sentences = positive_control_sentences(control_of(df))
    assert sentences[0].startswith("Fashion-MNIST") and "passes" in sentences[0]


def test_a_summary_written_before_per_dataset_claims_renders_as_before():
    """Claims without a datasets key (figures/summary.json of earlier stops): one column
    per protocol, no dataset named."""
    claims = [{"claim": "x", "source": "s", "protocol": p, "verdict": HOLDS}
              for p in ("full", "paper")]
    assert _claims_table(claims).splitlines()[0] == "| claim | full protocol | paper protocol |"
