"""Grid back-ends and the per-run lock.

- the lock: held -> a second holder is refused with who holds it; a SIGKILLed holder frees it;
- two grid processes on one folder execute every run exactly once (fake notebooks);
- the same grid through `local` and `dask` (embedded LocalCluster, 2 workers) gives identical
  metrics files; submitit's debug mode runs a grid too, with the same numbers;
- SLURM options files are validated.

The real grids are the smallest that exercise everything: digits, rkdo + icon, seed 42,
budget 1 of 2 steps, threads=1 (so that every back-end computes the same numbers).
"""

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from helpers import results_numbers, same_as_reference, tiny_params

from rkdo_core.cli import main
from rkdo_core.config import ConfigError, load_params
from rkdo_core.layout import is_complete, run_dir_for
from rkdo_core.runs.backends import load_slurm_options
from rkdo_core.runs.locks import RunLocked, lock_holder, run_lock

ROOT = Path(__file__).resolve().parent.parent
# ---- the lock ----------------------------------------------------------------------------

def test_lock_refuses_a_second_holder_and_names_the_first(tmp_path):
    with run_lock(tmp_path):
        holder = lock_holder(tmp_path)
        assert holder.startswith(f"pid {os.getpid()} on ")
        with pytest.raises(RunLocked, match=f"pid {os.getpid()}"), run_lock(tmp_path):
            pass
    assert lock_holder(tmp_path) is None
    with run_lock(tmp_path):  # free again
        pass


def test_a_killed_holder_releases_the_lock(tmp_path):
    code = textwrap.dedent(f"""
        import threading
        from rkdo_core.runs.locks import run_lock
        with run_lock({str(tmp_path)!r}):
            print("locked", flush=True)
            threading.Event().wait()  # holds the lock until the test kills it
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "locked"  # blocks until the lock is held
        assert lock_holder(tmp_path) == lock_holder(tmp_path) != None  # noqa: E711
        assert f"pid {proc.pid}" in lock_holder(tmp_path)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert lock_holder(tmp_path) is None  # no stale lock after SIGKILL
    with run_lock(tmp_path):
        pass


FAKE_GRID = textwrap.dedent("""
    import json, os, sys, time
    from pathlib import Path
    import rkdo_core.layout as layout
    import rkdo_core.runs.backends as backends
    import rkdo_core.runs.grid as grid
    import rkdo_core.runs.runner as runner
    from rkdo_core.config import load_params
    from rkdo_core.layout import EVAL_VERSION  # a current evaluation, not a stale one

    params, out, log, collided = sys.argv[1:5]
    collided = Path(collided)

    # Whichever process locks a run first holds it until the other process has found a run
    # locked (when planning, or at its task), so the two collide however fast each starts.
    real_lock_holder, real_run_task = grid.lock_holder, backends.run_task

    def lock_holder(run_dir):
        holder = real_lock_holder(run_dir)
        if holder:
            collided.touch()
        return holder

    def run_task(*args):
        outcome = real_run_task(*args)
        if outcome.status == "running elsewhere":
            collided.touch()
        return outcome

    grid.lock_holder, backends.run_task = lock_holder, run_task

    def execute(name, run_dir, p, kernel):
        if name == layout.TRAIN_NOTEBOOK:  # "training": logged; lasts until a collision
            with open(log, "a") as fh:
                fh.write(f"{run_dir.parts[-2]}/{run_dir.name} {os.getpid()}\\n")
            # the other process (first run: the one this holds) must find it locked, and
            # touches `collided` when it does; polled until then, bounded only on failure
            deadline = time.monotonic() + 300
            while not collided.exists():
                assert time.monotonic() < deadline, "the other grid never found a lock"
                time.sleep(0.01)
        cfg = next(c for c in spec.configs() if c.method == run_dir.parts[-2]
                   and c.seed == int(run_dir.name[5:]))
        for f in layout.expected_files(cfg.epochs):
            (run_dir / f).parent.mkdir(parents=True, exist_ok=True)
            (run_dir / f).write_text(json.dumps({"config": cfg.to_dict(),
                                                 "eval_version": EVAL_VERSION}))
        return run_dir / name
    runner._execute = execute
    spec = load_params(params)
    report = grid.run_grid(spec, out, progress=False, check_data=False)
    print(json.dumps([o.status for o in report.outcomes]))
""")


def test_two_grid_processes_on_one_folder_run_each_run_once(tmp_path):
    params = tmp_path / "four.yaml"
    params.write_text("datasets: [digits]\nmethods: [rkdo, icon]\nseeds: [1, 2]\n"
                      "epochs: [1]\n")
    out, log, collided = tmp_path / "out", tmp_path / "executed.log", tmp_path / "collided"
    procs = [subprocess.Popen([sys.executable, "-c", FAKE_GRID, str(params), str(out),
                               str(log), str(collided)], stdout=subprocess.PIPE, text=True)
             for _ in range(2)]
    statuses = []
    for p in procs:
        stdout, _ = p.communicate(timeout=300)
        assert p.returncode == 0
        statuses.append(json.loads(stdout.strip().splitlines()[-1]))
    executed = [line.split()[0] for line in log.read_text().splitlines()]
    assert sorted(executed) == sorted({"rkdo/seed_1", "icon/seed_1", "rkdo/seed_2",
                                       "icon/seed_2"})  # each exactly once
    both = statuses[0] + statuses[1]
    assert both.count("complete") == 4
    assert set(both) <= {"complete", "skipped", "running elsewhere"}
    assert both.count("complete") + both.count("skipped") + both.count("running elsewhere") == 8
    # they did collide (the first holder of a run waits for that): a run was found locked
    assert both.count("running elsewhere") >= 1
    spec = load_params(params)
    assert all(is_complete(run_dir_for(out, c)) for c in spec.configs())


# ---- the same grid through every back-end -------------------------------------------------

@pytest.mark.slow
def test_local_and_dask_give_identical_metrics(smoke_results, tmp_path):
    rc = main(["grid", str(tiny_params(tmp_path)), "--out", str(tmp_path / "dask"),
               "--backend", "dask", "--workers", "2", "--no-progress"])
    assert rc == 0
    ours = results_numbers(tmp_path / "dask")
    assert len(ours) == 8  # 2 runs x (metrics at budgets 0, 1, 2 + the training log)
    assert same_as_reference(ours, smoke_results)
    grid_rec = json.loads((tmp_path / "dask" / "grid.json").read_text())
    assert grid_rec["backend"] == "dask"
    assert main(["verify", str(tmp_path / "dask")]) == 0


@pytest.mark.slow
def test_submitit_debug_mode_runs_the_grid(smoke_results, tmp_path):
    opts = tmp_path / "slurm.yaml"
    opts.write_text("cluster: debug\npartition: gpu\ntime: '00:30:00'\ncpus_per_task: 1\n")
    out = tmp_path / "slurm"
    rc = main(["grid", str(tiny_params(tmp_path, ("rkdo",))), "--out", str(out),
               "--backend", "slurm", "--slurm-options", str(opts), "--no-progress"])
    assert rc == 0
    ours = results_numbers(out)
    assert len(ours) == 4 and same_as_reference(ours, smoke_results)
    assert (out / ".submitit").is_dir()
    # re-submitting resumes: the complete run is skipped, nothing is submitted
    before = (run_dir_for(out, load_params(tiny_params(tmp_path, ("rkdo",))).configs()[0])
              / "run_complete.json").stat().st_mtime_ns
    assert main(["grid", str(tiny_params(tmp_path, ("rkdo",))), "--out", str(out),
                 "--backend", "slurm", "--slurm-options", str(opts), "--no-progress"]) == 0
    cfg = load_params(tiny_params(tmp_path, ("rkdo",))).configs()[0]
    assert (run_dir_for(out, cfg) / "run_complete.json").stat().st_mtime_ns == before


# ---- SLURM options files -------------------------------------------------------------------

def test_example_slurm_options_file_loads():
    opts = load_slurm_options(ROOT / "params" / "slurm.example.yaml")
    assert opts["cluster"] == "slurm"
    assert opts["slurm_partition"] == "gpu" and opts["timeout_min"] == 240
    assert opts["gpus_per_node"] == 1 and opts["slurm_array_parallelism"] == 8
    import submitit

    ex = submitit.AutoExecutor(folder="/tmp/never-used", cluster="debug")
    ex.update_parameters(**{k: v for k, v in opts.items() if k != "cluster"})


@pytest.mark.parametrize("text, words", [
    ("partiton: gpu\n", ["partiton", "unknown key", "partition"]),
    ("time: soon\n", ["time", "'soon'", "HH:MM:SS"]),
    ("gpus_per_node: -1\n", ["gpus_per_node", "non-negative integer"]),
    ("cluster: pbs\n", ["cluster", "'pbs'", "debug"]),
    ("setup: module load cuda\n", ["setup", "list of shell commands"]),
    ("- a\n", ["must be a mapping"]),
])
def test_bad_slurm_options_name_the_problem(tmp_path, text, words):
    p = tmp_path / "s.yaml"
    p.write_text(text)
    with pytest.raises(ConfigError) as e:
        load_slurm_options(p)
    for w in words:
        assert w in str(e.value), (w, str(e.value))


def test_slurm_time_forms(tmp_path):
    p = tmp_path / "s.yaml"
    for text, minutes in (("90", 90), ("'01:30:00'", 90), ("'1-00:00:30'", 1441)):
        p.write_text(f"time: {text}\n")
        assert load_slurm_options(p)["timeout_min"] == minutes


def test_backend_options_must_match(tmp_path, capsys):
    params = tiny_params(tmp_path)
    assert main(["grid", str(params), "--scheduler", "tcp://h:8786", "--out",
                 str(tmp_path / "o")]) == 2
    assert "--scheduler" in capsys.readouterr().err
    assert main(["grid", str(params), "--backend", "slurm", "--slurm-options",
                 str(tmp_path / "none.yaml"), "--out", str(tmp_path / "o")]) == 2
    assert "none.yaml" in capsys.readouterr().err and not (tmp_path / "o").exists()


def test_dry_run_reports_a_run_locked_by_another_grid(tmp_path, capsys):
    params = tiny_params(tmp_path)
    out = tmp_path / "out"
    a = run_dir_for(out, load_params(params).configs()[0])
    with run_lock(a):
        assert main(["grid", str(params), "--out", str(out), "--dry-run"]) == 0
        text = capsys.readouterr().out
    assert f"running elsewhere digits/paper/rkdo/seed_42  (locked by pid {os.getpid()}" in text
    assert "2 runs: 1 running elsewhere, 1 pending;" in text
    assert main(["grid", str(params), "--out", str(out), "--dry-run"]) == 0
    assert "2 runs: 2 pending;" in capsys.readouterr().out  # released with its holder
