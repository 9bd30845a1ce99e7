"""`make reproduce-fashion`'s grid (params/fashion.yaml): with the dataset's files missing it
stops before any run with the loader's error; on miniature files in the official format one
run of its configuration trains and evaluates (every full-protocol key present)."""

import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torchvision.datasets as tvd
from helpers import idx_images_bytes, idx_labels_bytes, write_gz

from rkdo_core import data as D
from rkdo_core.cli import main
from rkdo_core.config import load_params
from rkdo_core.data import FASHION_MNIST_FILES
from rkdo_core.layout import EVAL_FULL_KEYS, EVAL_V3_KEYS
from rkdo_core.reporting.stats import eval_size_mde
from rkdo_core.training.evaluate import evaluate_run, probe_cs
from rkdo_core.training.train import train

ROOT = Path(__file__).resolve().parents[1]
FASHION = ROOT / "params" / "fashion.yaml"
SPEC = load_params(FASHION)


@pytest.fixture
def nowhere(tmp_path, monkeypatch):
    """No Fashion-MNIST files anywhere: an empty data root, an empty 'Debian' folder, and a
    download that fails as it does without a network."""
    monkeypatch.setattr(D, "FASHION_MNIST_DEBIAN_DIR", tmp_path / "debian")
    monkeypatch.setenv("RKDO_DATA_ROOT", str(tmp_path / "data"))

    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network here")

    monkeypatch.setattr(tvd, "FashionMNIST", offline)
    return tmp_path


def test_fashion_grid_stops_before_any_run_when_files_are_missing(nowhere, capsys):
    out = nowhere / "results"
    assert main(["grid", str(FASHION), "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "fashion_mnist" in err and "apt-get install dataset-fashion-mnist" in err
    assert str(nowhere / "debian") in err and "train-images-idx3-ubyte.gz" in err
    assert not list(out.glob("fashion_mnist/*/*/seed_*")), "a run was started"


def test_fashion_grid_config_is_the_cpu_grid():
    cfgs = SPEC.configs()
    assert {c.dataset for c in cfgs} == {"fashion_mnist"} and len(cfgs) == 10
    assert all(c.protocol == "full" and c.threads == 1 for c in cfgs)
    # the budgets the YAML states: 100 / 200 / 500 optimizer steps; claim (b)'s pairs at
    # 20 % and 40 % of I-Con's steps
    (spe,) = {c.steps_per_epoch for c in cfgs}
    assert [e * spe for e in SPEC.epochs] == [100, 200, 500]
    for early, late in SPEC.aggregate["table3_pairs"]:
        assert 0.2 <= early / late <= 0.4
    # its test subset resolves the margin M (the YAML's sentence, computed)
    (n,) = {c.eval_images for c in cfgs}
    m = SPEC.aggregate["min_important_difference"]
    assert eval_size_mde(n) <= m < eval_size_mde(n - 400)
    assert f"differ by {eval_size_mde(n):.4f}" in FASHION.read_text()
    assert probe_cs(cfgs[0].probe_cv_cs, cfgs[0].probe_cv_c_max) == (0.001, 0.01, 0.1, 1.0,
                                                                     10.0)


def test_fashion_shares_digits_aggregation_settings():
    """One results folder holds both datasets, so one set of aggregation settings."""
    assert SPEC.aggregate == load_params(ROOT / "params" / "default.yaml").aggregate \
        == load_params(ROOT / "params" / "default_full.yaml").aggregate


def test_one_fashion_run_trains_and_evaluates_on_miniature_files(tmp_path, monkeypatch):
    root = tmp_path / "data"
    rng = np.random.default_rng(0)
    for (images, labels), n in zip((FASHION_MNIST_FILES[:2], FASHION_MNIST_FILES[2:]), (80, 40)):
        write_gz(root / "fashion_mnist" / images,
                 idx_images_bytes(rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)))
        write_gz(root / "fashion_mnist" / labels, idx_labels_bytes(np.arange(n) % 10))
    monkeypatch.setattr(D, "FASHION_MNIST_DEBIAN_DIR", tmp_path / "debian")
    cfg = SPEC.configs()[0].replace(data_root=str(root), steps_per_epoch=2, batch_size=16,
                                    epochs=(1,), probe_train_images=40, yardstick_images=32,
                                    probe_cv_cs=2, probe_cv_folds=2, threads=1)
    train(cfg, tmp_path / "run", progress=False)
    rows = evaluate_run(tmp_path / "run")
    assert [r["epoch"] for r in rows] == [0, 1] and [r["steps"] for r in rows] == [0, 2]
    for r in rows:
        assert r["dataset"] == "fashion_mnist" and r["eval_images"] == 40
        assert set(EVAL_V3_KEYS) | set(EVAL_FULL_KEYS) <= set(r)
        assert 0 <= r["linear_cv"] <= 1 and 0 <= r["knn20"] <= 1


def test_readme_states_what_params_fashion_yaml_runs():
    """The README's Fashion-MNIST paragraph types the grid's settings: they must be the
    params file's (and the curve's defaults)."""
    from rkdo_core.training.curve import DEFAULT_SEEDS, DEFAULT_STEPS  # deferred: torch

    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text[text.index("## Real images: Fashion-MNIST"):
                   text.index("## The paper's grid")]
    flat = " ".join(section.split())
    cfg = SPEC.configs()[0]
    spe = cfg.steps_per_epoch
    assert (f"both methods, {len(SPEC.seeds)} seeds, "
            + " / ".join(f"{e * spe:,}" for e in SPEC.epochs)
            + " optimizer steps of " + str(cfg.batch_size) + " images (epochs "
            + " / ".join(map(str, SPEC.epochs)) + f" of {spe} steps)") in flat
    assert (f"({cfg.probe_train_images:,} probe-train and {cfg.eval_images:,} test images)"
            in flat)
    assert f"seeds {DEFAULT_SEEDS[0]} and {DEFAULT_SEEDS[1]}, up to {DEFAULT_STEPS[-1]:,} steps" \
        in flat
    assert f"grid stops at {max(SPEC.epochs) * spe} steps" in flat
