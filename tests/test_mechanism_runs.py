"""The mechanism notebook's numbers (`training.mechanism_runs`) and its execution."""

import math

import pandas as pd
import pytest
import torch

from rkdo_core.cli import main
from rkdo_core.config import RunConfig
from rkdo_core.data import load_dataset
from rkdo_core.layout import checkpoint_path, run_dir_for
from rkdo_core.losses import icon_loss, rkdo_loss
from rkdo_core.mechanism import function_gap, rkdo_alpha_zero_limit, synthetic_views
from rkdo_core.runs.notebooks import MECHANISM_NOTEBOOK, run_mechanism
from rkdo_core.training.evaluate import evaluate_run
from rkdo_core.training.mechanism_runs import SWEEPS, run_mechanism_analysis
from rkdo_core.training.train import load_encoder, thread_setting, train
from rkdo_core.training.yardstick import yardstick_views

TINY = dict(dataset="digits", epochs=(1,), steps_per_epoch=2, batch_size=16, device="cpu",
            eval_images=48, threads=1)
SMALL_SWEEPS = {"alpha": (0.3, 0.5), "depth": (1, 3), "beta": (0.0, 0.1),
                "alignment": (0.0, 0.5, 1.0)}


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    with thread_setting(1):
        yield


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    """A tiny results folder: rkdo and icon, seed 42, trained and evaluated."""
    root = tmp_path_factory.mktemp("mech_results")
    for method in ("rkdo", "icon"):
        cfg = RunConfig(method=method, **TINY)
        run = run_dir_for(root, cfg)
        train(cfg, run, progress=False)
        evaluate_run(run)
    return root


@pytest.fixture(scope="module")
def analysis(tmp_path_factory, results):
    out = tmp_path_factory.mktemp("mech_out")
    return out, run_mechanism_analysis(out, results, seeds=(0, 1), sweeps=SMALL_SWEEPS)


def test_csv_synthetic_rows_equal_function_gap(analysis):
    out, res = analysis
    csv = pd.read_csv(out / "mechanism.csv")
    syn = csv[csv["source"] == "synthetic"]
    assert len(syn) == sum(len(v) for v in SMALL_SWEEPS.values()) * 2
    for _, row in syn.iterrows():
        settings = {"temperature": 0.5, "debias_alpha": 0.2, "alpha": 0.5, "depth": 3,
                    "beta": 0.1}
        align = 0.5
        if row["parameter"] == "alignment":
            align = row["value"]
        else:
            settings[row["parameter"]] = (int(row["value"]) if row["parameter"] == "depth"
                                          else row["value"])
        z1, z2 = synthetic_views(64, 64, align, seed=int(row["seed"]))
        direct = function_gap(z1, z2, **settings)
        for k in ("L_icon", "L_rkdo", "relative_gap"):
            assert row[k] == pytest.approx(direct[k], rel=1e-12, abs=1e-15)


def test_closed_form_rows(analysis):
    _, res = analysis
    t = res["table"]
    ex = t[t["source"] == "closed_form"]
    collapsed = ex[(ex["parameter"] == "alpha") & (ex["value"] == 0.5)
                   & ex["case"].str.startswith("collapsed")]
    assert collapsed["relative_gap"].item() == pytest.approx(0.2485, abs=5e-5)
    assert collapsed["L_icon"].item() == pytest.approx(2.8472, abs=1e-4)
    assert collapsed["L_rkdo"].item() == pytest.approx(2.1396, abs=1e-4)
    lim = ex[ex["case"].str.startswith("α → 0")]
    z1, z2 = synthetic_views(64, 64, 0.5, seed=0)
    expected = float(rkdo_alpha_zero_limit(z1, z2))
    l_icon = float(icon_loss(z1, z2, temperature=0.5, debias_alpha=0.2))
    assert lim["L_rkdo"].item() == pytest.approx(expected, rel=1e-12)
    assert lim["relative_gap"].item() == pytest.approx((l_icon - expected) / l_icon, rel=1e-12)
    assert lim["relative_gap"].item() < 0  # RKDO above I-Con as α → 0


def test_checkpoint_rows_are_the_losses_on_the_yardstick_views(analysis, results):
    _, res = analysis
    t = res["table"]
    ck = t[t["source"] == "checkpoint"]
    assert len(ck) == 4 and set(ck["method"]) == {"rkdo", "icon"}
    cfg = RunConfig(method="rkdo", **TINY)
    run = run_dir_for(results, cfg)
    model = load_encoder(cfg, checkpoint_path(run, 1), torch.device("cpu")).eval()
    images = load_dataset("digits").test.images[:48]
    icon, rkdo, cos = [], [], []
    with torch.no_grad():
        for v1, v2 in yardstick_views(images, 16):
            z1, z2 = model(v1), model(v2)
            icon.append(float(icon_loss(z1, z2, temperature=0.5, debias_alpha=0.2)))
            rkdo.append(float(rkdo_loss(z1, z2)))
            cos.append(float(torch.nn.functional.cosine_similarity(z1, z2).mean()))
    row = ck[(ck["method"] == "rkdo") & (ck["epoch"] == 1)].iloc[0]
    mean = lambda xs: sum(xs) / len(xs)  # noqa: E731
    assert row["L_icon"] == pytest.approx(mean(icon), rel=1e-5)
    assert row["L_rkdo"] == pytest.approx(mean(rkdo), rel=1e-5)
    assert row["positive_cosine"] == pytest.approx(mean(cos), rel=1e-4)
    assert math.isclose(row["relative_gap"], (row["L_icon"] - row["L_rkdo"]) / row["L_icon"])


def test_files_and_caption(analysis):
    out, res = analysis
    for name in ("mechanism.csv", "fig_mechanism.png", "fig_mechanism.pdf"):
        assert (out / name).stat().st_size > 0
    assert "24.85 %" in res["caption"] and "seeds [0, 1]" in res["caption"]
    assert "checkpoints" in res["caption"]
    assert set(SWEEPS) == set(SMALL_SWEEPS)


def test_notebook_executes_on_a_results_folder(tmp_path, results):
    out = tmp_path / "mechanism"
    path = run_mechanism(out, results_dir=str(results), seeds=[0])
    assert path == out / MECHANISM_NOTEBOOK and path.with_suffix(".html").is_file()
    csv = pd.read_csv(out / "mechanism.csv")
    assert (csv["source"] == "checkpoint").sum() == 4
    assert (out / "fig_mechanism.png").is_file() and (out / "fig_mechanism.pdf").is_file()
    assert b"/CreationDate" not in (out / "fig_mechanism.pdf").read_bytes()  # same bytes


def test_cli_mechanism_synthetic_only_and_bad_parameter(tmp_path, capsys):
    out = tmp_path / "m"
    assert main(["mechanism", "--out", str(out), "-p", "seeds", "[0]"]) == 0
    assert "mechanism.csv" in capsys.readouterr().out
    csv = pd.read_csv(out / "mechanism.csv")
    assert not (csv["source"] == "checkpoint").any()
    assert main(["mechanism", "--out", str(out), "-p", "nope", "1"]) == 2
    assert "nope" in capsys.readouterr().err
