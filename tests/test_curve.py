"""`rkdo curve` (issue 22): the learning curve on miniature Fashion-MNIST files in the official
IDX format — the CSV's columns and rows, the untrained encoder shared by both methods of a
seed, the probe's chosen C among the per-C rows with the same accuracy, evaluation inside
training leaving the training unchanged, re-runs skipping what the CSV holds (and a killed
write), --workers 2 giving the rows of --workers 1, the figure drawn from the CSV alone,
and one clear line with exit status 2 for each kind of bad input."""

import json
import shutil
import urllib.error
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torchvision.datasets as tvd
from helpers import idx_images_bytes, idx_labels_bytes, write_gz

from rkdo_core import data as D
from rkdo_core.cli import main
from rkdo_core.curvecsv import COLUMNS, append_rows, read_rows
from rkdo_core.data import FASHION_MNIST_FILES
from rkdo_core.training.curve import CurveSpec, base_config, step_schedule
from rkdo_core.training.evaluate import probe_cs
from rkdo_core.training.train import train

N_TRAIN, N_TEST = 80, 40
N_CS = 5  # params/fashion_curve.yaml: probe_cv_cs
ROWS_PER_STEP = 1 + N_CS + 3  # linear_cv, linear_C per C, knn20, knn5, knn5_cosine


def write_miniature(root: Path) -> Path:
    """Random 28x28 images, labels cycling 0..9 (every class 8 / 4 times), in the official
    file names under root/fashion_mnist."""
    rng = np.random.default_rng(0)
    for (images, labels), n in zip((FASHION_MNIST_FILES[:2], FASHION_MNIST_FILES[2:]),
                                   (N_TRAIN, N_TEST)):
        write_gz(root / "fashion_mnist" / images,
                 idx_images_bytes(rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)))
        write_gz(root / "fashion_mnist" / labels, idx_labels_bytes(np.arange(n) % 10))
    return root


def curve_args(folder: Path, data: Path, *extra: str, steps: str = "0,2,4",
               methods: str = "icon,rkdo") -> list[str]:
    return ["curve", "--data-root", str(data), "--steps", steps, "--methods", methods,
            "--seeds", "42", "--probe-images", "40", "--test-images", "40",
            "--set", "batch_size=16", "--threads", "1", "--csv", str(folder / "c.csv"),
            "--runs-dir", str(folder / "runs"), "--no-progress", *extra]


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    return write_miniature(tmp_path_factory.mktemp("curve_data"))


@pytest.fixture(scope="module")
def curve(tmp_path_factory, data_root) -> Path:
    """One tiny curve: icon and rkdo, seed 42, steps 0, 2, 4, probe 40 / test 40 images."""
    out = tmp_path_factory.mktemp("curve")
    assert main(curve_args(out, data_root, "--no-plot")) == 0
    return out


def frame(csv: Path) -> pd.DataFrame:
    return pd.DataFrame(read_rows(csv))


def test_csv_columns_and_rows(curve):
    assert (curve / "c.csv").read_text().splitlines()[0].split(",") == list(COLUMNS)
    df = frame(curve / "c.csv")
    assert len(df) == 2 * 3 * ROWS_PER_STEP
    for (method, step), g in df.groupby(["method", "step"]):
        assert method in {"icon", "rkdo"} and step in {0, 2, 4}
        assert sorted(g.metric.value_counts().items()) == sorted(
            {"linear_cv": 1, "linear_C": N_CS, "knn20": 1, "knn5": 1,
             "knn5_cosine": 1}.items())
        assert sorted(g.loc[g.metric == "linear_C", "C"]) == pytest.approx(probe_cs(N_CS))
    assert df.value.between(0, 1).all()
    # how the rows were computed: the sizes asked for, the full protocol's features and
    # folds, a step schedule whose "epochs" are the budgets, one thread, this CPU
    assert set(df.probe_images) == {40} and set(df.test_images) == {40}
    assert set(df.features) == {"backbone"} and set(df.cv_folds) == {3}
    assert set(df.batch_size) == {16} and set(df.steps_per_epoch) == {2}
    assert set(df.threads) == {1} and set(df.workers) == {1} and df.cpu.str.len().min() > 0
    assert df.loc[df.step == 0, "train_s_per_step"].isna().all()
    assert (df.loc[df.step > 0, "train_s_per_step"] > 0).all()
    assert (df.eval_seconds > 0).all()
    assert df.train_loss.notna().all()


def test_step_zero_is_the_same_untrained_encoder_for_both_methods(curve):
    df = frame(curve / "c.csv")
    zero = df[df.step == 0].set_index(["metric", "C"], drop=False).sort_index()
    icon = zero[zero.method == "icon"][["metric", "C", "value", "cv_score"]]
    rkdo = zero[zero.method == "rkdo"][["metric", "C", "value", "cv_score"]]
    pd.testing.assert_frame_equal(icon.reset_index(drop=True), rkdo.reset_index(drop=True))
    # ... while the loss functions differ (their step-0 losses are not the same number)
    losses = df[df.step == 0].groupby("method").train_loss.first()
    assert losses["icon"] != losses["rkdo"]


def test_per_c_rows_hold_the_chosen_c_with_the_same_accuracy(curve):
    df = frame(curve / "c.csv")
    for (_method, _step), g in df.groupby(["method", "step"]):
        cv = g[g.metric == "linear_cv"].iloc[0]
        at_c = g[(g.metric == "linear_C") & np.isclose(g.C, cv.C, rtol=0, atol=0)]
        assert len(at_c) == 1
        assert at_c.value.iloc[0] == cv.value and at_c.cv_score.iloc[0] == cv.cv_score
        # the chosen C has the best mean CV score (ties: the smallest C)
        per_c = g[g.metric == "linear_C"].sort_values("C")
        assert cv.cv_score == per_c.cv_score.max()
        assert cv.C == per_c.C[per_c.cv_score == per_c.cv_score.max()].min()


def test_evaluating_inside_training_leaves_the_training_unchanged(curve, data_root, tmp_path):
    """The curve's run logs the very losses of a plain `train` of the same config."""
    logged = [json.loads(x)["loss"] for x in
              (curve / "runs" / "icon" / "seed_42" / "train_log.jsonl").read_text().splitlines()]
    cfg = replace(base_config(CurveSpec(overrides={"batch_size": 16},
                                        data_root=str(data_root))),
                  method="icon", seed=42, epochs=(1, 2), steps_per_epoch=2, threads=1)
    assert cfg.protocol == "full" and cfg.dataset == "fashion_mnist"
    train(cfg, tmp_path / "plain", progress=False)
    plain = [json.loads(x)["loss"] for x in
             (tmp_path / "plain" / "train_log.jsonl").read_text().splitlines()]
    assert len(logged) == 4 and logged == plain
    # the checkpoints were deleted once evaluated (the default)
    assert not list((curve / "runs").rglob("*.pt"))


def test_rerun_skips_computed_rows_and_recomputes_only_what_is_missing(curve, data_root,
                                                                      tmp_path, capsys):
    work = tmp_path / "w"
    shutil.copytree(curve, work)
    before = (work / "c.csv").read_text()
    assert main(curve_args(work, data_root, "--no-plot")) == 0
    assert "0 checkpoint(s) evaluated in 0 run(s)" in capsys.readouterr().out
    assert (work / "c.csv").read_text() == before

    # drop rkdo's step 4 and leave a half-written line, as a killed run would
    lines = before.splitlines()
    kept = [ln for ln in lines if not ln.startswith("rkdo,42,4,")]
    assert len(lines) - len(kept) == ROWS_PER_STEP
    (work / "c.csv").write_text("\n".join(kept) + "\n" + "rkdo,42,4,linear_cv,0.3")
    assert main(curve_args(work, data_root, "--no-plot")) == 0
    assert "1 checkpoint(s) evaluated in 1 run(s)" in capsys.readouterr().out
    again = frame(work / "c.csv")
    assert len(again) == len(frame(curve / "c.csv"))
    cols = ["method", "seed", "step", "metric", "C", "value", "cv_score", "train_loss"]
    pd.testing.assert_frame_equal(
        again[cols].sort_values(cols[:5]).reset_index(drop=True),
        frame(curve / "c.csv")[cols].sort_values(cols[:5]).reset_index(drop=True))


def test_two_workers_give_the_rows_of_one(curve, data_root, tmp_path):
    """Runs in 2 processes, rows appended by the parent only: the same numbers as in-process
    (same thread count), steps 0 and 2 (same steps per epoch, so the same training)."""
    assert main(curve_args(tmp_path, data_root, "--workers", "2", "--no-plot",
                           steps="0,2")) == 0
    two = frame(tmp_path / "c.csv")
    assert set(two.workers) == {2}
    one = frame(curve / "c.csv")
    one = one[one.step <= 2]
    cols = ["method", "seed", "step", "metric", "C", "value", "cv_score", "train_loss"]
    pd.testing.assert_frame_equal(
        two[cols].sort_values(cols[:5]).reset_index(drop=True),
        one[cols].sort_values(cols[:5]).reset_index(drop=True))


def test_plot_only_draws_from_the_csv_alone(curve, tmp_path, capsys):
    csv = tmp_path / "only" / "fashion_learning_curve.csv"
    csv.parent.mkdir()
    shutil.copy(curve / "c.csv", csv)
    assert main(["curve", "--plot-only", "--csv", str(csv)]) == 0
    for suffix in (".png", ".pdf", ".md"):
        assert csv.with_suffix(suffix).stat().st_size > 0
    assert csv.with_suffix(".png").read_bytes()[:4] == b"\x89PNG"
    md = csv.with_suffix(".md").read_text()
    df = frame(csv)
    cpu = df.cpu.iloc[0]
    assert cpu in md and "1 torch thread(s) per run" in md and "seeds 42" in md
    assert "probe-train 40 / test 40 images" in md and "real optimizer steps" in md
    # the caption's table is the CSV's means
    lin = df[df.metric == "linear_cv"].set_index(["method", "step"]).value
    assert f"| 4 | {lin['icon', 4]:.4f} | {lin['rkdo', 4]:.4f} |" in md
    assert not list(csv.parent.glob("runs"))  # nothing trained

    capsys.readouterr()
    assert main(["curve", "--plot-only", "--csv", str(tmp_path / "none.csv")]) == 2
    err = capsys.readouterr().err
    assert "none.csv" in err and "Traceback" not in err


# ---- bad input: one line, the field, the value, what is allowed, exit 2 ------------------

@pytest.fixture
def nowhere(tmp_path, monkeypatch):
    """No Fashion-MNIST files anywhere (an empty data root and Debian folder, no network)."""
    monkeypatch.setattr(D, "FASHION_MNIST_DEBIAN_DIR", tmp_path / "debian")

    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network here")

    monkeypatch.setattr(tvd, "FashionMNIST", offline)
    return tmp_path / "empty_root"


def _error(capsys, args) -> str:
    capsys.readouterr()
    assert main(args) == 2
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert err.startswith("rkdo: error:") and "Traceback" not in err, err
    return err


@pytest.mark.parametrize("extra, words", [
    (["--methods", "icon,simclr"], ["methods", "'simclr'", "icon, rkdo"]),
    (["--steps=0,-2,4"], ["steps", "0,-2,4", "non-negative", "increasing"]),
    (["--steps", "0,4,2"], ["steps", "0,4,2", "increasing"]),
    (["--steps", "0"], ["steps", "at least one > 0"]),
    (["--probe-images", "81"], ["probe_images", "81", "at most the 80 train images"]),
    (["--test-images", "41"], ["test_images", "41", "at most the 40 test images"]),
    (["--workers", "0"], ["workers", "0", ">= 1"]),
    (["--set", "steps_per_epoch=5"], ["--set", "steps_per_epoch=5", "--steps"]),
])
def test_bad_input_is_one_clear_line(extra, words, data_root, tmp_path, capsys):
    args = curve_args(tmp_path, data_root)
    # a later option wins in argparse: the bad value replaces the good one
    err = _error(capsys, args + extra)
    assert len(err.splitlines()) == 1
    for w in words:
        assert w in err, (w, err)
    assert not (tmp_path / "c.csv").exists() and not (tmp_path / "runs").exists()


def test_missing_data_files_are_one_clear_error(nowhere, tmp_path, capsys):
    err = _error(capsys, curve_args(tmp_path, nowhere))
    assert "fashion_mnist" in err and "apt-get install dataset-fashion-mnist" in err
    assert "train-images-idx3-ubyte.gz" in err
    assert not (tmp_path / "runs").exists()


def test_a_csv_of_other_settings_is_refused(curve, data_root, tmp_path, capsys):
    shutil.copy(curve / "c.csv", tmp_path / "c.csv")
    err = _error(capsys, curve_args(tmp_path, data_root) + ["--probe-images", "30"])
    assert "csv" in err and "probe_images=40" in err and "probe_images=30" in err


# ---- pieces ------------------------------------------------------------------------------

def test_step_schedule_makes_the_epochs_the_budgets():
    assert step_schedule((0, 100, 250, 500, 1000, 1500), 937) == (50, (2, 5, 10, 20, 30))
    assert step_schedule((1000, 2000), 937) == (500, (2, 4))  # gcd 1000 > one pass
    assert step_schedule((0, 7), 5) == (1, (7,))
    assert step_schedule((0, 2, 4), 5) == (2, (1, 2))


def test_csv_append_ends_a_half_written_line_and_the_reader_skips_it(tmp_path):
    row = {c: "" for c in COLUMNS} | {"method": "icon", "seed": 1, "step": 0,
                                      "metric": "knn20", "value": 0.5}
    csv = tmp_path / "x.csv"
    append_rows(csv, [row])
    with open(csv, "a") as fh:
        fh.write("icon,1,5,knn20")  # killed mid-line
    append_rows(csv, [row | {"step": 5, "value": 0.25}, row | {"value": 0.75}])
    rows = read_rows(csv)
    assert sorted((r["step"], r["value"]) for r in rows) == [(0, 0.75), (5, 0.25)]


def test_a_config_error_crosses_processes():
    """A ConfigError raised in a --workers process reaches the parent as the same error."""
    import pickle

    from rkdo_core.config import ConfigError

    e = pickle.loads(pickle.dumps(ConfigError("lr", -1.0, "must be > 0")))
    assert (type(e), e.field, e.value, e.allowed, str(e)) == (
        ConfigError, "lr", -1.0, "must be > 0", "invalid config value lr=-1.0: must be > 0")


def test_a_bad_curve_argument_is_answered_before_torch_is_imported():
    """`rkdo curve --steps 0` took ~27 s to print its one-line error: the check ran after
    torch was imported. It now runs first (rkdo_core/curvespec.py)."""
    import subprocess  # deferred: only this test starts a process
    import sys

    code = ("import sys; from rkdo_core.cli import main; "
            "rc = main(['curve', '--steps', '0', '--csv', 'nowhere.csv']); "
            "print(rc, 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.split() == ["2", "False"], out.stdout + out.stderr
    assert "steps='0'" in out.stderr and "\n" not in out.stderr.strip()
