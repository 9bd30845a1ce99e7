"""`rkdo bench --json` with a tiny step count: well-formed JSON with every figure of the issue.

No wall-clock bound is asserted anywhere (the CPU is shared and noisy); the tests check that
each figure is present, finite and consistent with the others.
"""

import json
import math

import pytest

from rkdo_core.cli import main
from rkdo_core.tools.bench import GRIDS, bench_main, format_table, grid_steps, summarize


@pytest.fixture(scope="module")
def bench_json(tmp_path_factory):
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        # Through the `rkdo` entry point, as CI and the README call it.
        rc = main(["bench", "--json", "--steps", "2", "--warmup", "1", "--batch-size", "16",
                   "--device", "cpu"])
    assert rc == 0
    return json.loads(out.getvalue())


def _is_pos(x) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x) and x > 0


def _check_summary(s):
    assert s["n"] == 2
    assert _is_pos(s["median_s"]) and s["min_s"] <= s["p10_s"] <= s["median_s"] <= s["p90_s"]
    assert s["p90_s"] <= s["max_s"]
    assert s["steps_per_s"] == pytest.approx(1 / s["median_s"])


def test_every_figure_is_present_and_consistent(bench_json):
    r = bench_json
    assert r["steps"] == 2 and r["warmup"] == 1 and r["batch_size"] == 16
    assert r["machine"]["device"] == "cpu" and r["machine"]["cpu_cores"] >= 1
    assert r["threads"]["chosen"] >= 1
    # (a), (b) and the ratio
    _check_summary(r["ours"])
    assert set(r["ours"]["breakdown_median_s"]) == {"augment", "model"}
    _check_summary(r["reference"])
    assert r["reference"]["num_workers"] in (0, 1)
    assert set(r["reference"]["by_num_workers"]) == {"0", "1"}
    ref_best = min(v["median_s"] for v in r["reference"]["by_num_workers"].values())
    assert r["reference"]["median_s"] == ref_best  # the reference gets its faster loader
    ratio = r["ratio"]
    assert ratio["ours_over_reference"] == pytest.approx(
        r["ours"]["steps_per_s"] / r["reference"]["steps_per_s"])
    assert ratio["target"] == 1.3 and isinstance(ratio["met"], bool)
    # (c) RKDO vs I-Con
    c = r["rkdo_vs_icon"]
    _check_summary(c["rkdo"])
    _check_summary(c["icon"])
    assert c["overhead_pct"] == pytest.approx(
        100 * (c["rkdo"]["median_s"] / c["icon"]["median_s"] - 1))
    assert c["paired_overhead_pct"]["p10"] <= c["paired_overhead_pct"]["p90"]
    assert _is_pos(c["loss_only_s"]["rkdo"]) and _is_pos(c["loss_only_s"]["icon"])
    assert math.isfinite(c["loss_only_overhead_pct"])
    assert _is_pos(c["flops_rkdo"]) and c["flops_rkdo"] >= c["flops_icon"]
    # (d) FLOPs and the matmul rate
    f = r["flops"]
    assert f["matmul"]["size"] == 2048 and _is_pos(f["matmul"]["median_flops_per_s"])
    # The 1×1-map matmuls skip taps that only meet padding: fewer FLOPs than the reference.
    assert 0 < f["per_step_ours"] < f["per_step_reference"]
    assert f["fraction_of_matmul"] == pytest.approx(
        f["per_step_ours"] / r["ours"]["median_s"] / f["matmul"]["median_flops_per_s"])
    assert 0 < f["fraction_of_matmul"] < 5
    # (e) peak memory
    m = r["memory"]
    assert m["kind"] == "max RSS"
    assert _is_pos(m["default_run_peak_bytes"]) and _is_pos(m["bench_process"]["max_rss_bytes"])
    assert m["default_run"]["config"]["epochs"] == [1]
    assert m["target_bytes"] == 3 * 1024**3 and isinstance(m["met"], bool)
    # grid
    g = r["grid"]
    assert (g["default"]["nested_steps"], g["default"]["separate_steps"]) == (1000, 1800)
    assert (g["paper"]["nested_steps"], g["paper"]["separate_steps"]) == (3000, 5400)
    sbs = g["side_by_side"]
    assert sbs["processes"] >= 2 and sbs["side_by_side"]["threads_each"] == 1
    assert _is_pos(sbs["one_run"]["steps_per_s"])
    assert _is_pos(sbs["side_by_side"]["steps_per_s_total"])
    assert sbs["side_by_side_wins"] == (sbs["ratio"] > 1)
    assert len(r["notes"]) >= 4


def test_human_table_names_every_figure(bench_json):
    text = format_table(bench_json)
    for needle in ("(a) our step", "(b) reference-style step", "throughput ratio",
                   "(c) RKDO step", "RKDO overhead", "(d) float32 matmul", "achieved",
                   "(e) peak memory", "default", "paper", "side by side", "notes:"):
        assert needle in text, needle


def test_grid_steps_nested_against_separate():
    g = grid_steps({**GRIDS["default"], "budgets": (1, 3), "steps_per_epoch": 7})
    assert g["runs"] == 10
    assert (g["nested_steps"], g["separate_steps"]) == (10 * 3 * 7, 10 * 4 * 7)
    assert g["saving_pct"] == pytest.approx(25.0)


def test_summarize():
    s = summarize([3.0, 1.0, 2.0])
    assert (s["median_s"], s["min_s"], s["max_s"], s["n"]) == (2.0, 1.0, 3.0, 3)
    assert s["steps_per_s"] == 0.5
    with pytest.raises(ValueError):
        summarize([])


def test_bad_arguments_end_with_one_line(capsys):
    assert bench_main(["--set", "alpha=2", "--steps", "1"]) == 2
    err = capsys.readouterr().err
    assert "alpha=2.0" in err and "(0, 1]" in err and "Traceback" not in err
    assert bench_main(["--set", "nonsense=1"]) == 2
    assert "RunConfig field" in capsys.readouterr().err
    assert bench_main(["--steps", "0"]) == 2
