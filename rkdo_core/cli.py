"""The ``rkdo`` command line: train, evaluate, grid, curve, verify, aggregate, theory, mechanism,
bench, flops.

Every RunConfig field is an option (``--steps-per-epoch``, ``--alpha`` …), generated from
the dataclass so the CLI and the config cannot drift apart. Options not given keep the
preset's value (``--preset paper`` by default). Bad input ends with one clear line and
exit status 2, never a traceback.

`rkdo --help`, `rkdo verify` and `rkdo aggregate` never import torch (the grid's and the
aggregation's work happens in notebook kernels; `rkdo grid` imports it only to check a
dataset's files, never for digits). The commands that need it — train, evaluate, curve,
bench, flops — import their module only once their arguments, values and paths are checked, so
``--help`` and every argument or path error answer at once (tools/args.py holds bench's and
flops's torch-free parsers). An argument error is two lines: the error naming the argument,
the value and what is allowed, and ``see rkdo CMD --help``.
"""

from __future__ import annotations

import argparse
import dataclasses
import errno
import sys
import typing
from pathlib import Path

from .config import (
    EVAL_FEATURES,
    METHOD_NAMES,
    ConfigError,
    RunConfig,
    load_params,
    parse_int_list,
)
from .curvespec import CurveSpec, check_spec
from .datasets import DATASET_NAMES
from .errors import DatasetUnavailableError, NonFiniteLossError
from .layout import AGGREGATE_NOTEBOOK, THEORY_NOTEBOOK, require_trained_run, run_label
from .reporting.readme import (
    load_summary,
    render_results,
    update_readme,
    update_timings,
    write_summary,
)
from .runio import read_json
from .runs.backends import load_slurm_options
from .runs.grid import plan_grid, prepare_grid, run_grid
from .runs.integrity import format_report, verify_results
from .runs.notebooks import MECHANISM_NOTEBOOK, run_mechanism, run_theory
from .runs.plan import describe_cost
from .runs.runner import describe_os_error
from .runs.site import build_site
from .tools.args import ShortErrorParser, bench_config, bench_parser, flops_config, flops_parser
from .tools.measure import measure_main
from .tools.profile import profile_main

_NONE_WORDS = {"none", "full", "all"}


def _optional_int(text: str) -> int | None:
    return None if text.lower() in _NONE_WORDS else int(text)


def _bool(text: str) -> bool:
    if text.lower() in {"1", "true", "yes", "on"}:
        return True
    if text.lower() in {"0", "false", "no", "off"}:
        return False
    raise ValueError(text)


_optional_int.__name__ = "integer (or none/full/all)"
_bool.__name__ = "boolean"


def _budgets(text: str) -> tuple[int, ...]:
    return parse_int_list(text, "epochs")


_budgets.__name__ = "comma-separated integers"


def _parser_for(field: dataclasses.Field):
    hint = typing.get_type_hints(RunConfig)[field.name]
    if field.name == "epochs":
        return _budgets
    if hint is bool:
        return _bool
    if hint is int:
        return int
    if hint is float:
        return float
    if hint == (int | None):
        return _optional_int
    return str  # str and str | None


#: RunConfig fields with a closed set of values: argparse lists and checks them
_CHOICES = {"dataset": list(DATASET_NAMES), "method": list(METHOD_NAMES),
            "eval_features": list(EVAL_FEATURES)}


def _add_config_options(p: argparse.ArgumentParser, skip=()) -> None:
    p.add_argument("--preset", choices=["paper", "full"], default="paper",
                   help="protocol preset the other options override (default: paper)")
    g = p.add_argument_group("run configuration (defaults: the preset's, see docs/method.md §3)")
    for f in dataclasses.fields(RunConfig):
        if f.name in skip or f.name == "protocol":
            continue
        extra = " ('none'/'full'/'all' = None)" if _parser_for(f) is _optional_int else ""
        choices = _CHOICES.get(f.name)
        g.add_argument("--" + f.name.replace("_", "-"), dest=f.name, type=_parser_for(f),
                       default=argparse.SUPPRESS, choices=choices,
                       metavar="{" + ",".join(choices) + "}" if choices else f.name.upper(),
                       help=f"default {f.default!r}{extra}")


def _config_from(args: argparse.Namespace, **fixed) -> RunConfig:
    names = {f.name for f in dataclasses.fields(RunConfig)}
    overrides = {k: v for k, v in vars(args).items() if k in names}
    return RunConfig.preset(args.preset, **{**overrides, **fixed})


def cmd_train(args) -> int:
    cfg = _config_from(args)  # a bad value ends here, before torch is imported
    from .training.evaluate import evaluate_run  # deferred: imports torch
    from .training.train import train  # deferred: imports torch

    done = train(cfg, args.out, progress=not args.no_progress, force=args.force)
    for b in done["budgets"]:
        loss = "-" if b["train_loss"] is None else f"{b['train_loss']:.4f}"
        print(f"epoch {b['epoch']:>3}  steps {b['steps']:>5}  train loss {loss}")
    if args.evaluate:
        _print_metrics(evaluate_run(args.out))
    print(f"run written to {args.out}")
    return 0


def cmd_evaluate(args) -> int:
    require_trained_run(args.run_dir)  # a wrong path ends here, before torch is imported
    from .training.evaluate import evaluate_run  # deferred: imports torch

    _print_metrics(evaluate_run(args.run_dir, force=args.force))
    return 0


def _print_metrics(rows: list[dict]) -> None:
    for r in rows:
        print(f"epoch {r['epoch']:>3}  linear {r['linear_eval']:.4f}  NMI {r['nmi']:.4f}  "
              f"ARI {r['ari']:.4f}  kNN {r['neighborhood_acc']:.4f}  ({r['eval_images']} images)")


#: a grid axis -> the params file key that sets it (``--set`` cannot: it is one value)
GRID_AXIS_KEYS = {"dataset": "datasets", "method": "methods", "seed": "seeds",
                  "epochs": "epochs", "protocol": "preset"}


def _set_value(text: str) -> tuple[str, object]:
    """``FIELD=VALUE`` for any RunConfig field, parsed as its CLI option would be."""
    name, sep, value = text.partition("=")
    fields_ = {f.name: f for f in dataclasses.fields(RunConfig) if f.name not in GRID_AXIS_KEYS}
    if name in GRID_AXIS_KEYS:
        raise ConfigError("--set", text, f"{name} is a grid axis, one value per run: edit "
                          f"`{GRID_AXIS_KEYS[name]}:` in the params file (or a copy) instead")
    if not sep or name not in fields_:
        raise ConfigError("--set", text, "must be FIELD=VALUE with FIELD one of "
                          + ", ".join(fields_))
    parse = _parser_for(fields_[name])
    try:
        return name, parse(value)
    except ValueError:
        raise ConfigError(name, value, f"must be a {parse.__name__}") from None


def cmd_grid(args) -> int:
    """Expand a params file and run every incomplete run through the notebooks. A dry run
    makes every check the real run makes (prepare_grid), with the same messages, first."""
    spec = load_params(args.params)
    override = dict(_set_value(s) for s in args.set)
    if args.data_root is not None:
        override["data_root"] = args.data_root
    out = Path(args.out or Path("results") / spec.name)
    if args.scheduler is not None and args.backend != "dask":
        raise ConfigError("--scheduler", args.scheduler, "only goes with --backend dask")
    if args.slurm_options is not None and args.backend != "slurm":
        raise ConfigError("--slurm-options", args.slurm_options,
                          "only goes with --backend slurm")
    slurm_options = None
    if args.backend == "slurm":
        slurm_options = load_slurm_options(args.slurm_options)
    configs = prepare_grid(spec, out, workers=args.workers, override=override,
                           backend=args.backend, scheduler=args.scheduler,
                           check_data=not args.no_data_check, dry_run=args.dry_run)
    n = len(configs)
    print(f"grid {spec.source}: {len(spec.datasets)} dataset(s) × {len(spec.methods)} "
          f"method(s) × {len(spec.seeds)} seed(s) = {n} runs, budgets {list(spec.epochs)} "
          f"({spec.preset} protocol) -> {out}", flush=True)
    if args.dry_run:
        plan = plan_grid(configs, out)
        for cfg, _run_dir, state, detail in plan:
            print(f"  {state:<16} {run_label(cfg)}" + (f"  ({detail})" if detail else ""))
        states = [p[2] for p in plan]
        counts = ", ".join(f"{states.count(s)} {s}" for s in dict.fromkeys(states))
        print(f"cost of the whole grid (complete runs included), {args.workers} worker(s):")
        for line in describe_cost(configs, out, workers=args.workers):
            print(line)
        print(f"{n} runs: {counts}; would run the pending and failed ones, re-evaluate "
              f"(not retrain) those with a stale evaluation, leave those "
              f"running elsewhere to their grid and refuse those with another config or "
              f"altered files; nothing was started (--dry-run)")
        return 0
    report = run_grid(spec, out, workers=args.workers, override=override,
                      progress=not args.no_progress, backend=args.backend,
                      scheduler=args.scheduler, slurm_options=slurm_options,
                      check_data=not args.no_data_check)
    elsewhere = report.count("running elsewhere")
    print(f"{n} runs: {report.count('complete')} completed now, {report.count('skipped')} "
          f"already complete, {len(report.failed)} failed"
          + (f", {elsewhere} running elsewhere (locked by another grid; re-run "
             "later to pick up what it leaves)" if elsewhere else "")
          + f" ({report.seconds:.0f} s)")
    if report.failed:
        print(f"rkdo: {len(report.failed)} run(s) failed:", file=sys.stderr)
        for o in report.failed:
            where = f"\n    executed notebook: {o.notebook}" if o.notebook else ""
            print(f"  {o.label}: {o.error}{where}", file=sys.stderr)
        return 1
    print(f"next: rkdo aggregate {out}")
    return 0


def _methods(text: str) -> tuple[str, ...]:
    return tuple(m.strip() for m in text.split(",") if m.strip())


def cmd_curve(args) -> int:
    """Learning curve: train one run per (method, seed) to the largest step budget,
    evaluate every budget into the CSV, then draw the figure from the CSV."""
    from .reporting.curve_figure import write_figure  # deferred: imports matplotlib

    if not args.plot_only:
        spec = CurveSpec(
            methods=_methods(args.methods), seeds=parse_int_list(args.seeds, "seeds"),
            steps=parse_int_list(args.steps, "steps"), probe_images=args.probe_images,
            test_images=args.test_images, csv=args.csv,
            runs_dir=args.runs_dir, workers=args.workers, threads=args.threads,
            overrides=dict(_set_value(s) for s in args.set), data_root=args.data_root,
            keep_checkpoints=args.keep_checkpoints, progress=not args.no_progress,
            **({"params": args.params} if args.params else {}))
        check_spec(spec)  # a bad argument answered at once, before torch is imported
        from .training.curve import run_curve  # deferred: imports torch

        done = run_curve(spec)
        print(f"{done['evaluated']} checkpoint(s) evaluated in {done['jobs']} run(s) "
              f"({done['seconds']:.0f} s) -> {done['csv']}")
    if args.no_plot:
        return 0
    for path in write_figure(args.csv):
        print(f"written: {path}")
    return 0


def cmd_verify(args) -> int:
    """Re-check a results folder's runs against their recorded checksums."""
    checks = verify_results(args.results_dir)
    if not checks:  # nothing checked is not "no problems": most likely the wrong folder
        raise FileNotFoundError(
            f"results folder {args.results_dir!r} holds no runs (no DATASET/PROTOCOL/METHOD/"
            f"seed_N folders and no grid.json naming any); nothing to verify")
    print(format_report(checks, args.results_dir))
    return 0 if all(c.ok for c in checks) else 1


def _notebook_failed(name: str, error, folder) -> int:
    """One line for a failed notebook execution (papermill's error), naming the saved
    notebook that shows it; exit status 1."""
    print(f"rkdo: error: {name} failed in cell {error.exec_count} ({error.ename}: "
          f"{error.evalue}); the executed notebook with the error is {Path(folder) / name}",
          file=sys.stderr)
    return 1


def cmd_aggregate(args) -> int:
    """Execute 05_aggregate over a results folder, render every notebook, write index.html."""
    # deferred: papermill takes about a second to import
    from papermill.exceptions import PapermillExecutionError

    try:
        index = build_site(args.results_dir, diagnostics=not args.no_diagnostics,
                           progress=not args.no_progress,
                           include_altered=args.include_altered)
    except PapermillExecutionError as e:
        return _notebook_failed(AGGREGATE_NOTEBOOK, e, args.results_dir)
    print(f"written: {index}")
    return 0


def cmd_readme(args) -> int:
    """Write the results folder's summary JSON; regenerate the README's results block,
    RESULTS.md and (from the timings file, where it exists) the README's timing table."""
    if args.results_dir is not None:
        summary = write_summary(args.results_dir, args.summary)
        print(f"wrote {args.summary} ({len(summary['claims'])} claims)")
    summary = load_summary(args.summary)
    update_readme(args.readme, summary)
    results_md = Path(args.readme).with_name("RESULTS.md")
    results_md.write_text(render_results(summary), encoding="utf-8")
    print(f"regenerated the results block of {args.readme} and {results_md}")
    if Path(args.timings).is_file():
        update_timings(args.readme, read_json(args.timings))
        print(f"regenerated the timing table of {args.readme} from {args.timings}")
    return 0


class NotebookParamError(ValueError):
    """A notebook parameter given on the command line is malformed or unknown."""


def _notebook_params(pairs: list[list[str]]) -> dict:
    """``-p NAME VALUE`` pairs, values parsed as YAML scalars (``5`` -> int, ``0.5`` ->
    float, ``true`` -> bool), as papermill's own CLI does."""
    import yaml

    return {name: yaml.safe_load(value) for name, value in pairs}


def _execute_standalone(run, name: str, args) -> Path | int:
    """Execute a stand-alone notebook (theory, mechanism) with ``-p`` parameters: its path,
    or the exit status of a failed execution."""
    # deferred: papermill takes about a second to import
    from papermill.exceptions import PapermillExecutionError

    params = _notebook_params(args.param)
    try:
        return run(args.out, **params)
    except ValueError as e:  # unknown parameter name: nothing was executed
        raise NotebookParamError(str(e)) from None
    except PapermillExecutionError as e:
        return _notebook_failed(name, e, args.out)


def cmd_theory(args) -> int:
    """Execute notebooks/03_convergence_theory.ipynb with papermill and render it to HTML."""
    out = _execute_standalone(run_theory, THEORY_NOTEBOOK, args)
    if isinstance(out, int):
        return out
    print(f"executed {out}\nrendered {out.with_suffix('.html')}")
    return 0


def cmd_mechanism(args) -> int:
    """Execute notebooks/06_mechanism.ipynb with papermill and render it to HTML."""
    out = _execute_standalone(run_mechanism, MECHANISM_NOTEBOOK, args)
    if isinstance(out, int):
        return out
    print(f"executed {out}\nrendered {out.with_suffix('.html')}\n"
          f"wrote {Path(args.out) / 'mechanism.csv'} and fig_mechanism.png/.pdf")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = ShortErrorParser(
        prog="rkdo", description="Train, evaluate, run grids of, verify and aggregate the "
        "RKDO vs I-Con reproduction. `rkdo COMMAND --help` for each command; the README "
        "shows the two commands most users need (`make reproduce`, `make test`).")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train one (dataset, method, seed) run to every budget")
    _add_config_options(p)
    p.add_argument("--out", required=True, help="run folder")
    p.add_argument("--force", action="store_true", help="retrain even if the run is complete")
    p.add_argument("--evaluate", action="store_true", help="also evaluate every checkpoint")
    p.add_argument("--no-progress", action="store_true",
                   help="no progress bars (logs, batch jobs)")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", help="metrics for every checkpoint of a run")
    p.add_argument("run_dir", help="one run folder (where `rkdo train --out` wrote, or "
                   "RESULTS/<dataset>/<protocol>/<method>/seed_N of a grid)")
    p.add_argument("--force", action="store_true", help="recompute existing metrics files")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("grid", help="run a params grid through the notebooks (papermill)")
    p.add_argument("params", help="a params file, e.g. params/default.yaml")
    p.add_argument("--out", help="results folder (default: results/<params file name>)")
    p.add_argument("--workers", type=int, default=1,
                   help="runs executed at once (default 1); each uses the config's torch "
                        "threads (default 1, as a run by hand: the same numbers)")
    p.add_argument("--data-root", help="folder holding cifar10/cifar100/stl10 "
                   "(default: $RKDO_DATA_ROOT or ~/.cache/rkdo/data)")
    p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                   help="set a RunConfig field for every run (repeatable), e.g. device=cuda")
    p.add_argument("--dry-run", action="store_true",
                   help="list every run and whether it is complete, then stop")
    p.add_argument("--backend", choices=["local", "dask", "slurm"], default="local",
                   help="where runs execute: local (this machine, default), dask (a Dask "
                        "cluster; embedded LocalCluster of --workers processes unless "
                        "--scheduler), slurm (submitit job array; --slurm-options)")
    p.add_argument("--scheduler", metavar="tcp://HOST:PORT",
                   help="address of a running Dask scheduler (--backend dask)")
    p.add_argument("--slurm-options", metavar="FILE",
                   help="YAML file of SLURM options: partition, time, gpus_per_node, ... "
                        "(see params/slurm.example.yaml; --backend slurm)")
    p.add_argument("--no-data-check", action="store_true",
                   help="skip loading every dataset before the runs start (for a submitting "
                        "machine that does not see the workers' data root)")
    p.add_argument("--no-progress", action="store_true",
                   help="no progress bars (logs, batch jobs)")
    p.set_defaults(func=cmd_grid)

    p = sub.add_parser(
        "curve", help="learning curve on Fashion-MNIST: probe and k-NN accuracy of the "
        "encoder against optimizer steps, per method and seed (CSV, figure, caption)",
        description="Train one run per (method, seed) with the params file's config up to "
        "the largest step budget, evaluate the encoder at every budget (the fixed probe-"
        "train and test subsets embedded once per checkpoint: CV linear probe, the probe at "
        "each C, weighted 20-NN and 5-NN, 5-NN agreement), append the rows to the CSV as "
        "they are computed (a re-run skips those there), then draw the figure and caption "
        "beside the CSV from the CSV alone.")
    p.add_argument("--params", default=None, help="params file whose config the runs use "
                   "(default: params/fashion_curve.yaml of this project)")
    p.add_argument("--methods", default="icon,rkdo", help="comma-separated (default "
                   "icon,rkdo)")
    p.add_argument("--seeds", default="42,123", help="comma-separated (default 42,123)")
    p.add_argument("--steps", default="0,100,250,500,1000,1500",
                   help="optimizer-step budgets, increasing, 0 = the untrained encoder "
                        "(default 0,100,250,500,1000,1500)")
    p.add_argument("--probe-images", type=int, default=5000, help="size of the fixed "
                   "stratified subset of train images: the probe's train set and the k-NN "
                   "memory bank (default 5000)")
    p.add_argument("--test-images", type=int, default=2000, help="size of the fixed "
                   "stratified subset of test images scored (default 2000)")
    p.add_argument("--csv", default="figures/fashion_learning_curve.csv",
                   help="the rows (default figures/fashion_learning_curve.csv); the .png, "
                        ".pdf and .md go beside it")
    p.add_argument("--runs-dir", default="results/fashion_curve",
                   help="run folders with the checkpoints (default results/fashion_curve)")
    p.add_argument("--workers", type=int, default=1, help="(method, seed) runs at once, "
                   "each in its own process (default 1)")
    p.add_argument("--threads", type=int, default=None, help="torch threads per run "
                   "(default: 1 with --workers > 1, else torch's default)")
    p.add_argument("--data-root", help="folder holding the dataset (default: "
                   "$RKDO_DATA_ROOT or ~/.cache/rkdo/data; Fashion-MNIST also "
                   "/usr/share/datasets/fashion-mnist)")
    p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                   help="set a RunConfig field for every run (repeatable), e.g. device=cuda")
    p.add_argument("--keep-checkpoints", action="store_true",
                   help="keep each checkpoint after evaluating it (default: delete it)")
    p.add_argument("--plot-only", action="store_true",
                   help="train nothing: draw the figure and caption from the CSV")
    p.add_argument("--no-plot", action="store_true", help="compute the rows, draw nothing")
    p.add_argument("--no-progress", action="store_true",
                   help="no progress bars or per-checkpoint lines")
    p.set_defaults(func=cmd_curve)

    p = sub.add_parser("verify", help="re-check a results folder: list missing, partial or "
                       "altered runs (recorded sha256); exit 1 if any")
    p.add_argument("results_dir")
    p.set_defaults(func=cmd_verify)

    p = sub.add_parser("aggregate", help="tables, figures, HTML and index.html of a results "
                       "folder (executes notebooks/05_aggregate.ipynb)")
    p.add_argument("results_dir")
    p.add_argument("--no-diagnostics", action="store_true",
                   help="skip executing 04_figures for one run per dataset and method")
    p.add_argument("--include-altered", action="store_true",
                   help="use runs whose files differ from their recorded checksums (left "
                        "out by default), marked in the tables' data and index.html")
    p.add_argument("--no-progress", action="store_true",
                   help="no progress bars (logs, batch jobs)")
    p.set_defaults(func=cmd_aggregate)

    p = sub.add_parser("readme", help="summarise an aggregated results folder into "
                       "figures/summary.json; regenerate README.md's results block, "
                       "RESULTS.md and the README's timing table from the files")
    p.add_argument("results_dir", nargs="?", help="an aggregated results folder (omitted: "
                   "re-render from the existing summary)")
    p.add_argument("--summary", default="figures/summary.json")
    p.add_argument("--readme", default="README.md")
    p.add_argument("--timings", default="figures/timings.json",
                   help="what `rkdo measure` recorded (default figures/timings.json)")
    p.set_defaults(func=cmd_readme)

    p = sub.add_parser("theory", help="execute the convergence-theory notebook (docs/method.md §5)")
    p.add_argument("--out", default="results/default/theory", help="folder for the executed "
                   "notebook and its HTML")
    p.add_argument("-p", "--param", nargs=2, action="append", default=[],
                   metavar=("NAME", "VALUE"), help="override a notebook parameter "
                   "(n, d, alpha, k, lr, lr_overshoot, steps, seed, n_draws)")
    p.set_defaults(func=cmd_theory)

    p = sub.add_parser("mechanism", help="execute the mechanism notebook: the function gap "
                       "I-Con vs RKDO, synthetic and on a results folder's checkpoints")
    p.add_argument("--out", default="results/default/mechanism", help="folder for the "
                   "executed notebook, its HTML, mechanism.csv and fig_mechanism.png/.pdf")
    p.add_argument("-p", "--param", nargs=2, action="append", default=[],
                   metavar=("NAME", "VALUE"), help="override a notebook parameter "
                   "(results_dir, batch_size, dim, alignment, seeds)")
    p.set_defaults(func=cmd_mechanism)

    # `rkdo bench ...` is handed to rkdo_core.tools.bench's own parser (see main); listed here
    # so that `rkdo --help` shows it.
    sub.add_parser("bench", add_help=False,
                   help="time our training step against the reference pipeline "
                        "(rkdo bench --help)")
    sub.add_parser("measure", add_help=False,
                   help="time a command and the disk a folder holds after it, into "
                        "figures/timings.json (rkdo measure --help)")
    sub.add_parser("profile", add_help=False,
                   help="where a results folder's wall time went: training, evaluation, the "
                        "rest, per protocol; make-log stages (rkdo profile --help)")
    sub.add_parser("flops", add_help=False,
                   help="FLOPs per optimizer step of RKDO depth 1 and 3 (and I-Con), two "
                        "conventions, and wall time per step (rkdo flops --help)")
    return parser


def _tool_args_bad(prog: str, parser, check, argv: list[str]) -> bool:
    """`rkdo bench`/`rkdo flops` arguments parsed and checked before the tool (and torch) is
    imported: --help and argument errors answer at once. True (after one line on stderr)
    when a value is bad; argparse itself exits for --help and malformed arguments."""
    try:
        check(parser().parse_args(argv))
    except (ConfigError, ValueError) as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return True
    return False


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["bench"]:
        if _tool_args_bad("rkdo bench", bench_parser, bench_config, argv[1:]):
            return 2
        from .tools.bench import bench_main  # deferred: imports torch

        return bench_main(argv[1:])
    if argv[:1] == ["measure"]:
        return measure_main(argv[1:])
    if argv[:1] == ["profile"]:
        return profile_main(argv[1:])
    if argv[:1] == ["flops"]:
        if _tool_args_bad("rkdo flops", flops_parser, flops_config, argv[1:]):
            return 2
        from .tools.flops import flops_main  # deferred: imports torch

        return flops_main(argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (ConfigError, DatasetUnavailableError, FileNotFoundError, NotebookParamError) as e:
        print(f"rkdo: error: {e}", file=sys.stderr)
        return 2
    except NonFiniteLossError as e:
        print(f"rkdo: training failed: {e}", file=sys.stderr)
        return 1
    except OSError as e:
        if e.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        print(f"rkdo: error: {describe_os_error(e)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("rkdo: interrupted; complete runs are kept, re-run the same command to "
              "resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
