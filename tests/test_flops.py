"""FLOP counting (`rkdo_core.flops`): closed forms, what differs between depths, `rkdo flops`.

No wall-clock bound is asserted (the CPU is shared); times are only checked to be positive
and ordered (p10 <= median <= p90).
"""

import contextlib
import io
import json
import math

import numpy as np
import pytest
import torch

from rkdo_core import losses
from rkdo_core.config import RunConfig
from rkdo_core.reporting.reported import load_reported
from rkdo_core.tools.flops import CONVENTIONS, flops_main
from rkdo_core.training.stepflops import (
    count_step_flops,
    loss_elementwise_ops,
    profiler_flops,
    step_flops,
)

B, IN, OUT = 5, 8, 4


def test_linear_layer_closed_forms():
    lin = torch.nn.Linear(IN, OUT)
    x = torch.randn(B, IN)
    # FlopCounterMode: 2 FLOPs per multiply-add, the bias add not counted.
    assert count_step_flops(lambda: lin(x)) == 2 * B * IN * OUT
    # Backward of a linear model: dW = gradᵀ x (one product) and, if x needs a gradient,
    # dx = grad W (a second one): forward + backward = 2x or exactly 3x the forward.
    assert count_step_flops(lambda: lin(x).sum().backward()) == 2 * (2 * B * IN * OUT)
    xg = x.clone().requires_grad_()
    assert count_step_flops(lambda: lin(xg).sum().backward()) == 3 * (2 * B * IN * OUT)
    # The profiler (the paper's tool) on a forward pass: addmm 2 per multiply-add, and one
    # FLOP per element of aten::mul / aten::add, nothing for exp.
    assert profiler_flops(lambda: lin(x)) == 2 * B * IN * OUT
    assert profiler_flops(lambda: x * x) == B * IN
    assert profiler_flops(lambda: torch.exp(x)) == 0


def test_step_flops_closed_form_of_the_loss_product():
    """Everything of a step is linear in the batch size except the loss's B×B similarity
    S = z1 z2ᵀ: 2·B·B·64 forward, twice that backward. So f(2B) − 2 f(B) = 6·64·(4B² − 2B²)."""
    c = RunConfig(dataset="digits", batch_size=16, device="cpu")
    f16 = step_flops(c, 32)
    f32 = step_flops(c.replace(batch_size=32), 32)
    assert f32 - 2 * f16 == 6 * 64 * (32**2 - 2 * 16**2)
    # Depth and the method change only elementwise loss work, which FlopCounterMode ignores.
    assert step_flops(c.replace(depth=1), 32) == f16
    assert step_flops(c.replace(method="icon"), 32) == f16
    # The training seed does not enter (weights' values never change a FLOP count).
    assert step_flops(c.replace(seed=7), 32) == f16


def test_loss_elementwise_work_grows_with_depth():
    c = RunConfig(batch_size=16, device="cpu")
    d1, d2, d3 = (loss_elementwise_ops(c.replace(depth=d)) for d in (1, 2, 3))
    assert 0 < d1 < d2 < d3
    # Each recursion step repeats the same ops on (B, B) matrices: linear in depth.
    assert d3 - d2 == d2 - d1
    assert d2 - d1 > 16 * 16  # at least one (B, B) op per step


@pytest.fixture(scope="module")
def flops_json(tmp_path_factory):
    out_file = tmp_path_factory.mktemp("flops") / "flops.json"
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        rc = flops_main(["--steps", "2", "--warmup", "0", "--batch-size", "16",
                         "--device", "cpu", "--threads", "1", "--json",
                         "--out", str(out_file)])
    assert rc == 0
    printed = json.loads(buf.getvalue())
    saved = json.loads(out_file.read_text())
    assert printed == saved
    return saved


def test_out_json_schema(flops_json):
    r = flops_json
    assert isinstance(r["device"], str) and r["device"] == "cpu"
    assert isinstance(r["conventions"], dict)
    assert all(isinstance(v, str) and v for v in r["conventions"].values())
    for key in ("forward_profiler_flops", "fwd_bwd_flopcounter_flops", "loss_elementwise_ops"):
        assert key in r["conventions"]
    assert r["paper_overhead_pct"] == load_reported().overhead_pct_max == 0.03
    assert r["steps"] == 2 and r["torch_threads"] == 1
    assert [(row["method"], row["depth"]) for row in r["rows"]] == [
        ("rkdo", 1), ("rkdo", 3), ("icon", 0)]
    for row in r["rows"]:
        assert row["method"] in ("rkdo", "icon") and isinstance(row["depth"], int)
        for k in ("forward_profiler_flops", "fwd_bwd_flopcounter_flops"):
            assert isinstance(row[k], int) and row[k] > 0
        for k in ("seconds_per_step_median", "seconds_per_step_p10", "seconds_per_step_p90",
                  "loss_only_seconds_median"):
            assert isinstance(row[k], float) and math.isfinite(row[k]) and row[k] > 0
        assert (row["seconds_per_step_p10"] <= row["seconds_per_step_median"]
                <= row["seconds_per_step_p90"])
    assert set(r["overhead_pct"]) == {"forward_profiler", "fwd_bwd_flopcounter", "wall_time"}
    assert set(CONVENTIONS) <= set(r["conventions"])
    # the raw per-step paired overheads (percent), one per timed step, summarised by the
    # median / p10 / p90 beside them — the claims checklist's Hodges–Lehmann CI needs them
    steps = r["wall_time_paired_overhead_pct_steps"]
    assert len(steps) == r["steps"] and all(math.isfinite(x) for x in steps)
    assert r["wall_time_paired_overhead_pct"]["median"] == pytest.approx(
        float(np.median(steps)))


def test_depths_differ_only_by_the_loss(flops_json):
    by = {(row["method"], row["depth"]): row for row in flops_json["rows"]}
    d1, d3, icon = by[("rkdo", 1)], by[("rkdo", 3)], by[("icon", 0)]
    # FlopCounterMode: the same step count for every variant, and equal to what the
    # evaluation records as flops_per_step for this config.
    c = RunConfig(dataset="digits", batch_size=16, device="cpu")
    assert d1["fwd_bwd_flopcounter_flops"] == d3["fwd_bwd_flopcounter_flops"] == step_flops(c, 32)
    assert icon["fwd_bwd_flopcounter_flops"] == d1["fwd_bwd_flopcounter_flops"]
    assert flops_json["overhead_pct"]["fwd_bwd_flopcounter"] == 0.0
    # The profiler's forward counts differ by exactly what it counts in the two losses alone.
    z = torch.nn.functional.normalize(torch.randn(2, 16, 64), dim=2)

    def loss_count(depth):
        return profiler_flops(lambda: losses.rkdo_loss(z[0], z[1], depth=depth))

    extra = loss_count(3) - loss_count(1)
    assert extra > 0
    assert d3["forward_profiler_flops"] - d1["forward_profiler_flops"] == extra
    expected = 100.0 * extra / d1["forward_profiler_flops"]
    assert flops_json["overhead_pct"]["forward_profiler"] == pytest.approx(expected, rel=1e-12)
    wall = 100.0 * (d3["seconds_per_step_median"] / d1["seconds_per_step_median"] - 1.0)
    assert flops_json["overhead_pct"]["wall_time"] == pytest.approx(wall, rel=1e-9)
    assert d3["loss_elementwise_ops"] > d1["loss_elementwise_ops"]
    # torchvision's stock convolutions also multiply layer4's zero padding: more FLOPs, and
    # the FlopCounterMode count equals step_flops of that config.
    stock = flops_json["stock_convolutions_rkdo_depth1"]
    assert stock["forward_profiler_flops"] > d1["forward_profiler_flops"]
    assert stock["fwd_bwd_flopcounter_flops"] == step_flops(
        c.replace(depth=1, matmul_1x1_maps=False), 32) > d1["fwd_bwd_flopcounter_flops"]
    share = 100.0 * (d3["loss_only_seconds_median"] - d1["loss_only_seconds_median"]) \
        / d1["seconds_per_step_median"]
    assert flops_json["loss_only_overhead_pct_of_step"] == pytest.approx(share, rel=1e-9)


@pytest.mark.parametrize("argv, field", [
    (["--steps", "0"], "steps"),
    (["--warmup", "-1"], "warmup"),
    (["--device", "tpu"], "device"),
    (["--batch-size", "1"], "batch_size"),
])
def test_bad_input_is_a_clear_error(argv, field, capsys):
    assert flops_main(argv) == 2
    err = capsys.readouterr().err
    assert "rkdo flops: error:" in err and field in err
    assert argv[1] in err  # the offending value is named


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_unavailable_device_is_a_clear_error(capsys):
    assert flops_main(["--device", "cuda", "--steps", "1"]) == 2
    assert "CUDA is not available" in capsys.readouterr().err


def test_rkdo_flops_is_a_subcommand(capsys):
    from rkdo_core.cli import build_parser, main

    assert "flops" in build_parser().format_help()
    assert main(["flops", "--steps", "0"]) == 2  # handed to flops_main's own parser
    assert "rkdo flops: error:" in capsys.readouterr().err
