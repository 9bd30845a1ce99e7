"""`rkdo profile`: where a results folder's wall time went, from the records the suite
writes (docs/usage.md "Performance")."""

import json

import pytest

from rkdo_core.cli import main
from rkdo_core.tools.profile import run_rows, stage_rows, summarize_runs


def test_run_rows_split_each_run_into_training_evaluation_and_the_rest(smoke_results):
    rows = run_rows(smoke_results)
    assert len(rows) == 6  # params/smoke.yaml: 2 methods x 3 seeds
    for r in rows:
        run = smoke_results / r["run"]
        done = json.loads((run / "run_complete.json").read_text())
        train = json.loads((run / "train_complete.json").read_text())
        evaluation = sum(json.loads(f.read_text())["seconds"]
                         for f in (run / "metrics").glob("epoch_*.json"))
        assert r["total"] == done["seconds"] and r["training"] == train["seconds"]
        assert r["evaluation"] == pytest.approx(evaluation)
        assert r["other"] == pytest.approx(r["total"] - r["training"] - r["evaluation"])
        assert r["steps"] == 4  # 2 epochs of 2 steps
        assert 0 < r["training"] < r["total"] and r["other"] > 0
        # the evaluation's recorded parts add up to no more than its whole
        parts = r["embed"] + r["metrics"] + r["yardstick"]
        assert 0 < parts <= r["evaluation"] + 1e-6
    (s,) = summarize_runs(rows)
    assert s["protocol"] == "paper" and s["runs"] == 6 and s["steps"] == 24
    assert s["dataset"] == "digits"
    assert s["total"] == pytest.approx(sum(r["total"] for r in rows))


def test_stage_rows_time_each_make_command_until_the_next(tmp_path):
    log = tmp_path / "make.log"
    log.write_text("1796311000 .venv/bin/rkdo grid params/default.yaml --out r\n"
                   "1796311003 grid params/default.yaml: 10 runs\n"
                   "1796311900 .venv/bin/rkdo theory --out r/theory\n"
                   "1796311960 test -f r/flops.json || .venv/bin/rkdo flops --out r/flops.json\n"
                   "1796311960 rkdo flops — digits, batch 64 (a line flops prints)\n"
                   "1796311961 cp r/figures/*.png figures/\n"
                   "1796311990 done: open r/index.html\n")
    stages = stage_rows(log)
    assert [s["seconds"] for s in stages] == [900, 60, 1, 29]
    assert stages[0]["command"].endswith("params/default.yaml --out r")
    log.write_text("no stamps here\n")
    with pytest.raises(ValueError, match="no line starts with a Unix time"):
        stage_rows(log)


def test_profile_command_prints_tables_and_refuses_bad_input(smoke_results, tmp_path,
                                                             capsys):
    assert main(["profile", str(smoke_results)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("CPU: ") and "| digits | paper | 6 | 24 |" in out
    assert main(["profile", str(tmp_path / "nowhere")]) == 2
    assert "results 'nowhere" in capsys.readouterr().err.replace(str(tmp_path) + "/", "")
    assert main(["profile", str(tmp_path)]) == 2
    assert "no complete run" in capsys.readouterr().err


@pytest.mark.slow
def test_split_times_every_measure_of_one_checkpoint(smoke_results, capsys):
    run = smoke_results / "digits" / "paper" / "icon" / "seed_42"
    before = sorted(p.stat().st_mtime_ns for p in run.rglob("*") if p.is_file())
    assert main(["profile", "--split", str(run), "--epoch", "2"]) == 0
    out = capsys.readouterr().out
    for measure in ("embed evaluation images", "linear_eval (C = 1)", "k-means (NMI, ARI)",
                    "yardsticks", "FLOP count", "t-SNE"):
        assert f"| {measure}" in out
    assert sorted(p.stat().st_mtime_ns for p in run.rglob("*") if p.is_file()) == before
