"""Training of one (dataset, method, seed) run (01_train.ipynb makes one call here: :func:`train`).

A run trains once up to the largest epoch budget and saves a checkpoint at every budget
(and at budget 0, the untrained encoder), so budgets 1, 2, 5, 10 are checkpoints of one
run rather than four separate trainings. Run folder layout::

    RUN/config.json            resolved config + provenance (git SHA, versions, device)
    RUN/train_log.jsonl        one line per optimizer step: step, epoch, loss, seconds
    RUN/checkpoints/epoch_NNN.pt
                               model weights + epoch, steps, train loss; no optimizer state
    RUN/train_complete.json    written last: the run trained to every budget
    RUN/metrics/epoch_NNN.json written by evaluation (training/evaluate.py)

The file names are those of :mod:`rkdo_core.layout`.

Every file is written atomically; ``train_complete.json`` exists only if all budgets did.

Speed (measured by ``rkdo bench``): the data is one uint8 tensor on the device, augmented
in batches; the loop makes no host synchronisation per step — losses stay on the device
and are read at the end of each epoch (and every ``SYNC_EVERY`` steps of a long one), when
their log lines are written and checked for NaN/inf (the error still names the first
non-finite step, and nothing of that epoch is checkpointed). `setup_training` /
`train_step` are the step the bench times.

Divergence guard: a run whose numbers stop being finite raises
:class:`~rkdo_core.errors.NonFiniteLossError` naming the step and is never marked complete.
Three things are checked, none with a per-step host sync: every step's loss (the losses
propagate NaN: a NaN embedding gives a NaN loss), every step's total gradient norm (one
``_foreach_norm`` over the gradients, ~0.5 % of a CPU step), and the weights and batch-norm
buffers at every read-back, i.e. before any checkpoint (an update that overflowed them
shows there even on an epoch's last step). The untrained encoder's loss (budget 0) too.
"""

from __future__ import annotations

import contextlib
import json
import math
import platform
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from .. import losses as losses_mod
from ..augment import two_views
from ..config import ConfigError, RunConfig, same_run_config
from ..data import DatasetSplits, load_dataset
from ..errors import NonFiniteLossError
from ..layout import (
    CHECKPOINTS,
    CONFIG,
    METRICS,
    TRAIN_COMPLETE,
    TRAIN_LOG,
    checkpoint_path,
    is_trained,
)
from ..model import Encoder, build_model, resolve_device
from ..runio import git_state, read_json, write_atomic, write_json_atomic
from ..testhooks import pause_point

#: the loop reads losses back from the device (and writes their log lines, and checks them
#: for NaN/inf) every this many steps and at the end of each epoch, never per step.
SYNC_EVERY = 50


def _seeds(seed: int) -> tuple[int, int, int]:
    """Independent seeds for batch order, augmentation, and the step-0 loss estimate."""
    return tuple(int(s) for s in np.random.SeedSequence(seed).generate_state(3))


def steps_per_epoch(config: RunConfig, n_train: int) -> int:
    """Optimizer steps in one "epoch": the config's cap, or a full pass (last partial batch
    dropped so every batch has B rows, as batch-norm and the B×B target need)."""
    full = n_train // config.batch_size
    if full < 1:
        raise ConfigError("batch_size", config.batch_size,
                          f"must not exceed the {n_train} training images of {config.dataset}")
    if config.steps_per_epoch is None:
        return full
    if config.steps_per_epoch > full:
        raise ConfigError(
            "steps_per_epoch", config.steps_per_epoch,
            f"at most {full} batches of {config.batch_size} fit in one pass over the "
            f"{n_train} training images of {config.dataset}; use None for a full pass")
    return config.steps_per_epoch


def load_data(config: RunConfig) -> DatasetSplits:
    return load_dataset(config.dataset, data_root=config.data_root, image_size=config.image_size)


def train(config: RunConfig, out_dir: str | Path, *, progress: bool = True,
          force: bool = False,
          on_checkpoint: Callable[[dict[str, Any], Path], None] | None = None
          ) -> dict[str, Any]:
    """Train one run to every budget in ``config.epochs``; returns the completion record.

    A complete run is not retrained unless ``force``; a partial one is started afresh.
    Same config on CPU -> identical loss log and identical checkpoint weights.

    ``on_checkpoint(record, path)``, if given, is called as soon as each budget's
    checkpoint (budget 0 included) is written, with that budget's record (``epoch``,
    ``steps``, ``train_loss``) and the checkpoint's path, inside the run's thread setting
    (`rkdo curve` evaluates there, so a killed run keeps what it evaluated). It must leave
    the model and the generators alone (it gets neither); it is not called for a complete
    run that is returned as it is.
    """
    out = Path(out_dir)
    if is_trained(out) and not force:
        done = read_json(out / TRAIN_COMPLETE)
        if same_run_config(done.get("config", {}), config.to_dict()):
            return done
        raise ConfigError("out_dir", str(out),
                          "holds a complete run with a different config; choose another "
                          "folder or pass force=True / --force to overwrite it")
    # Anything here is a partial or superseded run: start from scratch, so no stale
    # checkpoint or log line can be mixed into the new one.
    for stale in (CHECKPOINTS, METRICS):
        shutil.rmtree(out / stale, ignore_errors=True)
    for stale in (TRAIN_COMPLETE, TRAIN_LOG):
        (out / stale).unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)

    with thread_setting(config.threads):
        return _train(config, out, progress=progress, on_checkpoint=on_checkpoint)


def _train(config: RunConfig, out: Path, *, progress: bool,
           on_checkpoint: Callable[[dict[str, Any], Path], None] | None = None
           ) -> dict[str, Any]:
    device = resolve_device(config.device)  # ConfigError where this machine lacks it
    data = load_data(config)
    n_train = data.train.images.shape[0]
    n_steps = steps_per_epoch(config, n_train)
    torch.manual_seed(config.seed)
    setup = setup_training(config, device)
    write_json_atomic(out / CONFIG,
                      {"config": config.to_dict(), "provenance": provenance(device),
                       "steps_per_epoch": n_steps, "n_train": n_train,
                       "implementation": setup.implementation()})

    model = setup.model
    data_seed, aug_seed, probe_seed = _seeds(config.seed)
    g_data = torch.Generator().manual_seed(data_seed)
    g_aug = torch.Generator().manual_seed(aug_seed)
    images = data.train.images.to(device)

    torch_save_atomic(checkpoint_path(out, 0), _checkpoint(model, 0, 0, None))
    pause_point(f"{Path(out).resolve()} checkpoint 0")  # tests only (rkdo_core.testhooks)
    budgets = set(config.epochs)
    records: dict[int, dict[str, Any]] = {0: {
        "epoch": 0, "steps": 0,
        "train_loss": _initial_loss(model, setup.loss_fn, images, n_steps, config.batch_size,
                                    probe_seed, encode=setup.encode_eager,
                                    views=setup.views)}}
    if not math.isfinite(records[0]["train_loss"]):
        raise NonFiniteLossError(
            f"{config.method} seed {config.seed}: the untrained encoder's loss (budget 0, "
            f"step 0) is {records[0]['train_loss']}; nothing was trained and the run is not "
            f"marked complete")
    if on_checkpoint is not None:
        on_checkpoint(dict(records[0]), checkpoint_path(out, 0))
    step = 0
    t_start = time.perf_counter()
    bar = tqdm(total=config.max_epochs * n_steps, desc=f"{config.method} seed {config.seed}",
               disable=not progress, mininterval=2.0, leave=False)
    with open(out / TRAIN_LOG, "w") as log, contextlib.closing(bar):
        for epoch in range(1, config.max_epochs + 1):
            model.train()
            order = torch.randperm(n_train, generator=g_data)
            clock = _StepClock(device)
            pending: list[torch.Tensor] = []  # (loss, grad norm) device pairs not yet read
            values: list[float] = []  # this epoch's losses, read
            for i in range(n_steps):
                clock.start()
                idx = order[i * config.batch_size:(i + 1) * config.batch_size].to(device)
                v1, v2 = setup.views(images[idx], g_aug)
                pending.append(train_step_checked(setup, v1, v2))
                clock.stop()
                bar.update(1)
                if len(pending) == SYNC_EVERY or i == n_steps - 1:
                    # One host sync per SYNC_EVERY steps (once per epoch under the paper
                    # protocol): read the losses, gradient norms and step times, log them,
                    # check them, and check the weights the last update left.
                    got = torch.stack(pending).cpu().tolist()
                    pending = []
                    losses_read = [v for v, _ in got]
                    bad, why = _first_non_finite(got, float(weights_norm(model)))
                    for j, (value, dt) in enumerate(zip(losses_read, clock.take())):
                        if bad is not None and j > bad:
                            break  # the log ends at the first non-finite step
                        log.write(json.dumps({"step": step + j + 1, "epoch": epoch,
                                              "loss": value, "seconds": round(dt, 6)}) + "\n")
                    log.flush()
                    if bad is not None:
                        last = max((b for b in records if b > 0), default=0)
                        raise NonFiniteLossError(
                            f"{config.method} seed {config.seed}: {why} at step "
                            f"{step + bad + 1} (epoch {epoch}); the run is not marked complete "
                            f"(last complete checkpoint: epoch {last}, "
                            f"{checkpoint_path(out, last)})")
                    step += len(got)
                    values += losses_read
            if epoch in budgets:
                # The paper's "final training loss": mean batch loss of the last epoch.
                rec = {"epoch": epoch, "steps": step, "train_loss": float(np.mean(values))}
                torch_save_atomic(checkpoint_path(out, epoch),
                                  _checkpoint(model, epoch, step, rec["train_loss"]))
                records[epoch] = rec
                if on_checkpoint is not None:
                    on_checkpoint(dict(rec), checkpoint_path(out, epoch))
    done = {"config": config.to_dict(), "steps_per_epoch": n_steps,
            "budgets": [records[b] for b in sorted(records)],
            "seconds": round(time.perf_counter() - t_start, 3), "device": str(device)}
    write_json_atomic(out / TRAIN_COMPLETE, done)
    return done


# ---- the training step (shared with `rkdo bench`) ------------------------------------------

@contextlib.contextmanager
def thread_setting(threads: int | None) -> Iterator[None]:
    """Run the block with ``threads`` intra-op threads (None: leave torch's setting), then
    restore the previous count. Results depend on it at float rounding level.

    The same count holds for the native thread pools of numpy, scipy and scikit-learn
    (OpenBLAS, OpenMP: ``threadpoolctl``), which the evaluation's probes, k-means and t-SNE
    use: left at their default (every core) they oversubscribed the CPU when a grid ran two
    1-thread runs side by side on 2 cores, and a full-protocol checkpoint's logistic fits
    took ~58 s instead of ~4 s. Converged fits, k-means and t-SNE give bit-identical
    results with 1 or 2 BLAS threads (tests/test_threads.py); the paper's probe on the full
    protocol's unscaled 512-d features (``linear_eval``: C = 1, lbfgs stopped unconverged at
    max_iter = 1000) does not: its last iterate carries BLAS rounding, and 3 of 8 trained
    digits checkpoints moved by one test image (1/540). Before the limit that number
    depended on the machine's core count; now on ``threads`` alone."""
    from threadpoolctl import threadpool_limits  # a scikit-learn dependency

    before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        with threadpool_limits(limits=threads):
            yield
    finally:
        torch.set_num_threads(before)


def make_adam(params, config: RunConfig) -> tuple[torch.optim.Optimizer, str]:
    """Adam(lr, weight_decay) as the reference; the fused kernel when ``config.fused_adam``
    and this torch/device support it. Returns the optimizer and which implementation ran."""
    params = list(params)
    kw = dict(lr=config.lr, weight_decay=config.weight_decay)
    if config.fused_adam:
        try:
            return torch.optim.Adam(params, fused=True, **kw), "fused"
        except (RuntimeError, TypeError, ValueError):
            pass  # older torch or a device without the fused kernel: the reference loop
    return torch.optim.Adam(params, foreach=False, **kw), "for-loop"


@dataclass
class TrainingSetup:
    """Model, optimizer and loss of one run, and how its step computes (from the config).

    ``model`` is the module whose weights are checkpointed; ``forward`` is the same module,
    or its ``torch.compile`` wrapper when ``config.compile``.
    """

    config: RunConfig
    device: torch.device
    model: Encoder
    forward: Callable[[torch.Tensor], torch.Tensor]
    optimizer: torch.optim.Optimizer
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    adam_impl: str
    compiled_ok: bool = False

    def views(self, images_uint8: torch.Tensor,
              generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Two augmented views of a uint8 batch, in the model's memory format."""
        v1, v2 = two_views(images_uint8, generator)
        if self.config.channels_last:
            v1 = v1.contiguous(memory_format=torch.channels_last)
            v2 = v2.contiguous(memory_format=torch.channels_last)
        return v1, v2

    def encode(self, v1: torch.Tensor, v2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return encode_views(self.forward, v1, v2, fused_views=self.config.fused_views,
                            amp_bf16=self.config.amp_bf16, device_type=self.device.type)

    def encode_eager(self, v1: torch.Tensor,
                     v2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """As `encode`, never through the compiled wrapper (for no-grad probes, which would
        otherwise need a second compilation)."""
        return encode_views(self.model, v1, v2, fused_views=self.config.fused_views,
                            amp_bf16=self.config.amp_bf16, device_type=self.device.type)

    def implementation(self) -> dict[str, Any]:
        """What actually ran, for the run's provenance."""
        return {"adam": self.adam_impl, "torch_threads": torch.get_num_threads(),
                **{k: getattr(self.config, k) for k in (
                    "matmul_1x1_maps", "channels_last", "fused_views", "amp_bf16", "compile")}}


def setup_training(config: RunConfig, device: torch.device) -> TrainingSetup:
    """A fresh model (weights from ``config.seed``), its optimizer and the configured loss."""
    model = build_model(config, device)
    opt, impl = make_adam(model.parameters(), config)
    forward: Callable[[torch.Tensor], torch.Tensor] = model
    if config.compile:
        forward = torch.compile(model)
    return TrainingSetup(config=config, device=device, model=model, forward=forward,
                         optimizer=opt, loss_fn=losses_mod.loss_for(config), adam_impl=impl)


def encode_views(forward: Callable[[torch.Tensor], torch.Tensor], v1: torch.Tensor,
                 v2: torch.Tensor, *, fused_views: bool = False, amp_bf16: bool = False,
                 device_type: str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """(z1, z2) float32 embeddings of two (B, 3, H, W) views.

    Default: one forward pass per view, float32 — the reference (per-view batch-norm
    statistics). ``fused_views``: one pass over the 2B images. ``amp_bf16``: the encoder
    under bfloat16 autocast; the embeddings are cast back so the loss stays float32.
    """
    ctx = (torch.autocast(device_type, dtype=torch.bfloat16) if amp_bf16
           else contextlib.nullcontext())
    with ctx:
        if fused_views:
            z1, z2 = forward(torch.cat([v1, v2])).chunk(2)
        else:
            z1, z2 = forward(v1), forward(v2)
    return z1.float(), z2.float()  # no-ops for float32


def train_step(setup: TrainingSetup, v1: torch.Tensor, v2: torch.Tensor) -> torch.Tensor:
    """One optimizer step on two views; returns the detached 0-d loss (no host sync).
    The step the training loop takes (:func:`train_step_checked`), gradient norm included."""
    return train_step_checked(setup, v1, v2)[0]


def train_step_checked(setup: TrainingSetup, v1: torch.Tensor,
                       v2: torch.Tensor) -> torch.Tensor:
    """One optimizer step; returns the device tensor ``[loss, total gradient norm]`` (no host
    sync), both detached, for the loop's divergence guard."""
    if setup.config.compile and not setup.compiled_ok:
        # Compilation happens on the first call (forward and backward): report a failure
        # as a config problem with the cause, not a compiler traceback.
        try:
            loss = _step(setup, v1, v2)
        except Exception as e:  # noqa: BLE001 - any compiler failure, re-raised with context
            first = (str(e).strip().splitlines() or [""])[0][:300]
            raise ConfigError(
                "compile", True,
                f"torch.compile failed on this machine ({type(e).__name__}: {first}); on CPU "
                "it needs a working C++ compiler; run with compile=false") from e
        setup.compiled_ok = True
        return loss
    return _step(setup, v1, v2)


def _step(setup: TrainingSetup, v1: torch.Tensor, v2: torch.Tensor) -> torch.Tensor:
    loss = setup.loss_fn(*setup.encode(v1, v2))
    setup.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    grads = [p.grad for p in setup.model.parameters() if p.grad is not None]
    grad_norm = _total_norm(grads) if grads else loss.new_zeros(())
    setup.optimizer.step()
    return torch.stack([loss.detach().float(), grad_norm.float()])


def _total_norm(tensors: list[torch.Tensor]) -> torch.Tensor:
    """L2 norm of all entries of ``tensors`` together (as clip_grad_norm_ computes it): NaN
    or inf when any entry is, without a host sync. One fused kernel per device and dtype.
    ``tensors`` must not be empty."""
    return torch.linalg.vector_norm(torch.stack(
        [n.float() for n in torch._foreach_norm([t.detach() for t in tensors])]))


def weights_norm(model: torch.nn.Module) -> torch.Tensor:
    """Total L2 norm of the model's parameters and floating-point buffers (batch-norm
    statistics): finite exactly when every one of them is (up to float32 overflow of a sum
    of squares, itself a divergence)."""
    return _total_norm([t for t in (*model.parameters(), *model.buffers())
                        if t.is_floating_point()])


def _first_non_finite(got: list[list[float]], weights: float) -> tuple[int | None, str]:
    """Index of the first read step whose loss or gradient norm is not finite, with what
    happened; else the last step when the weights it left are not finite; else None."""
    for j, (value, grad) in enumerate(got):
        if not math.isfinite(value):
            return j, f"training loss became {value}"
        if not math.isfinite(grad):
            return j, f"the gradient norm became {grad} (loss {value:.6g})"
    if not math.isfinite(weights):
        value, grad = got[-1]
        return len(got) - 1, (f"the optimizer update made the weights non-finite (norm "
                              f"{weights}; loss {value:.6g}, gradient norm {grad:.6g})")
    return None, ""


class _StepClock:
    """Per-step wall times without a host sync per step: CUDA events on CUDA (read once,
    at `seconds`), the host clock elsewhere (CPU work is synchronous; MPS is synchronised
    per step, so its times stay true)."""

    def __init__(self, device: torch.device):
        self.device = device
        self.marks: list[Any] = []

    def _mark(self) -> Any:
        if self.device.type == "cuda":
            ev = torch.cuda.Event(enable_timing=True)
            ev.record()
            return ev
        if self.device.type == "mps":
            torch.mps.synchronize()
        return time.perf_counter()

    def start(self) -> None:
        self.marks.append(self._mark())

    def stop(self) -> None:
        self.marks.append(self._mark())

    def take(self) -> list[float]:
        """Seconds of every step marked since the last call (syncs on CUDA)."""
        pairs = list(zip(self.marks[0::2], self.marks[1::2]))
        self.marks = []
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            return [a.elapsed_time(b) / 1000.0 for a, b in pairs]
        return [b - a for a, b in pairs]


def _initial_loss(model: Encoder, loss_fn, images: torch.Tensor, n_steps: int,
                  batch_size: int, seed: int, *, encode=None, views=two_views) -> float:
    """Budget 0's "training loss": the mean loss of the untrained encoder over one epoch's
    worth of batches (train mode, as in training), with no update. Its own generators, and
    batch-norm buffers restored afterwards, so the training that follows is unchanged.
    ``encode(v1, v2) -> (z1, z2)`` defaults to one plain forward pass per view;
    ``views(images, generator)`` (the run's, e.g. `TrainingSetup.views`) makes the views."""
    if encode is None:
        def encode(v1, v2):
            return model(v1), model(v2)
    buffers = {k: v.clone() for k, v in model.named_buffers()}
    g_data, g_aug = (torch.Generator().manual_seed(seed + i) for i in range(2))
    order = torch.randperm(images.shape[0], generator=g_data)
    values = []
    model.train()
    with torch.no_grad():
        for i in range(n_steps):
            idx = order[i * batch_size:(i + 1) * batch_size].to(images.device)
            values.append(loss_fn(*encode(*views(images[idx], g_aug))))
    for k, v in model.named_buffers():
        v.copy_(buffers[k])
    return float(torch.stack(values).mean())


def _checkpoint(model: Encoder, epoch: int, step: int, train_loss: float | None) -> dict:
    """What ``RUN/checkpoints/epoch_NNN.pt`` holds: the model's ``state_dict`` (weights and
    batch-norm buffers, exactly as trained, float32) and the budget's ``epoch``, ``steps``
    and ``train_loss``. No optimizer state: the checkpoints are results that evaluation
    reads, not restart points (a run killed mid-training is retrained from scratch), and
    Adam's two moments would triple the file (docs/design.md, "Checkpoints: weights only")."""
    return {"model": model.state_dict(), "epoch": epoch, "steps": step,
            "train_loss": train_loss}


def load_encoder(config: RunConfig, ckpt: str | Path, device: torch.device) -> Encoder:
    """The encoder of ``config`` with the weights of checkpoint ``ckpt``, in eval mode.

    Reads only the ``"model"`` entry (strictly: every key of the model, nothing else), so
    checkpoints of older runs, which also hold an ``"optimizer"`` entry, load and evaluate
    exactly as the weights-only ones written today."""
    model = build_model(config, device)
    state = torch.load(ckpt, map_location=device, weights_only=True)
    model.load_state_dict(state["model"])
    return model.eval()




def torch_save_atomic(path: str | Path, obj: Any) -> None:
    """``torch.save`` through :func:`rkdo_core.runio.write_atomic` (no half-written file)."""
    write_atomic(path, lambda fh: torch.save(obj, fh))


def provenance(device: torch.device) -> dict[str, Any]:
    """What produced a result: code version, library versions, device."""
    # deferred: scikit-learn takes seconds to import; only the version is wanted here
    import sklearn
    import torchvision

    info: dict[str, Any] = {
        **git_state(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "numpy": np.__version__,
        "sklearn": sklearn.__version__,
        "device": str(device),
        "torch_threads": torch.get_num_threads(),
    }
    if device.type == "cuda":
        info["device_name"] = torch.cuda.get_device_name(device)
    else:
        info["device_name"] = platform.processor() or platform.machine()
    return info
