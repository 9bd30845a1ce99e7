"""Where the runs of a grid execute: this machine, a Dask cluster, or SLURM (submitit).

One task is one run (:func:`rkdo_core.runs.runner.run_task`): it takes the run's lock, skips
the run when it is already complete, else executes it with
:func:`rkdo_core.runs.runner.run_one`. Tasks are
idempotent, so re-submitting a grid resumes it, whatever killed it. No scheduling is done
here: each back-end hands the tasks to an existing engine.

- ``local``: a thread pool of ``workers`` threads on this machine (each run is its own
  Jupyter kernel process, so threads only wait).
- ``dask``: ``distributed.Client``: an embedded ``LocalCluster`` of ``workers`` one-thread
  worker processes, or the cluster at ``scheduler`` (``tcp://HOST:PORT``). A run whose
  device is ``cuda`` asks for the worker resource ``GPU=1`` (start GPU workers with
  ``dask worker ... --resources GPU=1``, one per GPU).
- ``slurm``: ``submitit.AutoExecutor`` job arrays (``map_array``) with the options of a
  YAML file (partition, time, gpus_per_node, ...; see params/slurm.example.yaml);
  ``cluster="local"``/``"debug"`` runs the same jobs on this machine (tests).

The lock is :mod:`rkdo_core.runs.locks`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor
from concurrent.futures import wait as futures_wait
from pathlib import Path
from typing import Any

from ..config import ConfigError, RunConfig
from ..layout import run_label
from .runner import RunOutcome, run_task

BACKENDS = ("local", "dask", "slurm")
#: the local back-end's main thread wakes at least this often (seconds): Python raises
#: KeyboardInterrupt only when the main thread runs bytecode, and the OS may deliver a
#: SIGINT/SIGTERM to a worker thread, leaving a blocked main thread asleep until a run ends
#: (by when the next queued run may have started)
INTERRUPT_POLL_S = 0.2


# ---- executors: each takes the tasks and calls on_done(outcome) as they finish ----------

Task = tuple[RunConfig, Path]


def _uses_gpu(cfg: RunConfig) -> bool:
    return cfg.device.startswith("cuda")


def execute_local(tasks: list[Task], on_done: Callable, *, workers: int,
                  kernel: str | None) -> None:
    pool = ThreadPoolExecutor(max_workers=workers)
    futures = []
    try:
        futures = [pool.submit(run_task, cfg, d, kernel) for cfg, d in tasks]
        pending = set(futures)
        while pending:
            done, pending = futures_wait(pending, timeout=INTERRUPT_POLL_S,
                                         return_when=FIRST_COMPLETED)
            for fut in (f for f in futures if f in done):
                on_done(fut.result())
    except BaseException:
        # Ctrl-C/SIGTERM: start no further run. Runs already executing finish on their own
        # (each is a kernel process); only complete runs are marked complete.
        pool.shutdown(wait=False, cancel_futures=True)
        print(f"stopping: {sum(f.cancelled() for f in futures)} queued run(s) will not "
              "start; the running ones finish first", flush=True)
        raise
    finally:
        pool.shutdown(wait=True)


def execute_dask(tasks: list[Task], on_done: Callable, *, workers: int, kernel: str | None,
                 scheduler: str | None = None) -> None:
    # deferred: distributed takes seconds to import and only this back-end needs it
    from distributed import Client, LocalCluster, as_completed

    cluster = None
    if scheduler is None:
        gpu = any(_uses_gpu(cfg) for cfg, _ in tasks)
        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                               dashboard_address=None,
                               resources={"GPU": 1} if gpu else None)
        client = Client(cluster)
    else:
        client = Client(scheduler)
    try:
        futures = []
        for cfg, d in tasks:
            # pure=False: a re-submitted task must run again (it skips itself when complete)
            futures.append(client.submit(run_task, cfg, d, kernel, pure=False,
                                         key=f"rkdo-{cfg.dataset}-{cfg.method}-{cfg.seed}-"
                                             f"{time.time_ns()}",
                                         resources={"GPU": 1} if _uses_gpu(cfg) else None))
        for fut in as_completed(futures):
            on_done(fut.result())
    except BaseException:
        print("stopping: cancelling the queued runs", flush=True)
        raise
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


#: keys of a SLURM options file -> submitit AutoExecutor parameter
SLURM_KEYS = {
    "partition": "slurm_partition",
    "time": "timeout_min",
    "gpus_per_node": "gpus_per_node",
    "cpus_per_task": "cpus_per_task",
    "mem_gb": "mem_gb",
    "array_parallelism": "slurm_array_parallelism",
    "account": "slurm_account",
    "qos": "slurm_qos",
    "constraint": "slurm_constraint",
    "setup": "slurm_setup",
    "additional_parameters": "slurm_additional_parameters",
    "job_name": "name",
}
SLURM_CLUSTERS = ("slurm", "local", "debug")


def _minutes(value: Any) -> int:
    """SLURM time: minutes (int) or 'HH:MM:SS' / 'D-HH:MM:SS'."""
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    if isinstance(value, str):
        days, _, hms = value.rpartition("-")
        parts = hms.split(":")
        if len(parts) == 3 and all(p.isdigit() for p in parts) and (not days or days.isdigit()):
            h, m, s = (int(p) for p in parts)
            total = (int(days or 0) * 24 + h) * 60 + m + (1 if s else 0)
            if total > 0:
                return total
    raise ValueError(value)


def load_slurm_options(path: str | Path | None) -> dict[str, Any]:
    """Read and validate a SLURM options file into submitit parameters (plus ``cluster``)."""
    if path is None:
        return {"cluster": "slurm"}
    import yaml

    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"SLURM options file {str(p)!r} not found "
                                "(see params/slurm.example.yaml)")
    data = yaml.safe_load(p.read_text()) or {}
    if not isinstance(data, Mapping):
        raise ConfigError(str(p), type(data).__name__, "must be a mapping of SLURM options")
    allowed = ["cluster", *SLURM_KEYS]
    unknown = sorted(set(data) - set(allowed))
    if unknown:
        raise ConfigError(f"{p}: {unknown[0]}", data[unknown[0]],
                          f"unknown key; allowed keys are {allowed}")
    out: dict[str, Any] = {"cluster": data.get("cluster", "slurm")}
    if out["cluster"] not in SLURM_CLUSTERS:
        raise ConfigError(f"{p}: cluster", out["cluster"], f"allowed: {list(SLURM_CLUSTERS)}")
    for key, value in data.items():
        if key == "cluster":
            continue
        if key == "time":
            try:
                value = _minutes(value)
            except ValueError:
                raise ConfigError(f"{p}: time", value, "minutes (a positive integer) or "
                                  "'HH:MM:SS' / 'D-HH:MM:SS'") from None
        elif key in ("gpus_per_node", "cpus_per_task", "array_parallelism") and not (
                isinstance(value, int) and not isinstance(value, bool) and value >= 0):
            raise ConfigError(f"{p}: {key}", value, "must be a non-negative integer")
        elif key == "mem_gb" and not (isinstance(value, int) and not isinstance(value, bool)
                                      and value > 0):
            raise ConfigError(f"{p}: mem_gb", value, "must be a positive integer (GB)")
        elif key == "setup" and not (isinstance(value, list)
                                     and all(isinstance(v, str) for v in value)):
            raise ConfigError(f"{p}: setup", value, "must be a list of shell commands")
        elif key == "additional_parameters" and not isinstance(value, Mapping):
            raise ConfigError(f"{p}: additional_parameters", value,
                              "must be a mapping of sbatch options to values")
        elif key in ("partition", "account", "qos", "constraint", "job_name") and not \
                isinstance(value, str):
            raise ConfigError(f"{p}: {key}", value, "must be a string")
        out[SLURM_KEYS[key]] = value
    return out


def execute_slurm(tasks: list[Task], on_done: Callable, *, out: Path, kernel: str | None,
                  options: Mapping[str, Any] | None = None) -> None:
    import submitit  # deferred: only this back-end needs it

    options = dict(options or {"cluster": "slurm"})
    cluster = options.pop("cluster", "slurm")
    executor = submitit.AutoExecutor(folder=out / ".submitit" / "%j",
                                     cluster=None if cluster == "slurm" else cluster)
    options.setdefault("name", "rkdo")
    executor.update_parameters(**options)
    if not tasks:
        return
    cfgs, dirs = zip(*tasks)
    jobs = executor.map_array(run_task, list(cfgs), list(dirs), [kernel] * len(tasks))
    print(f"submitted {len(jobs)} job(s) ({cluster}): "
          f"{', '.join(sorted({str(j.job_id).split('_')[0] for j in jobs}))}", flush=True)
    try:
        for job, (cfg, d) in zip(jobs, tasks):
            try:
                on_done(job.result())
            except Exception as e:  # the job itself died (time limit, node failure, ...)
                on_done(RunOutcome(run_label(cfg), d, "failed",
                                   error=f"job {job.job_id} failed: "
                                         f"{str(e).strip().splitlines()[-1][:500]}"))
    except BaseException:
        # the jobs stay queued on the cluster (scancel them to stop); re-running resumes
        print(f"stopped waiting; the submitted jobs keep running (scancel "
              f"{str(jobs[0].job_id).split('_')[0]} to stop them)", flush=True)
        raise
