"""The command-line arguments of `rkdo bench` and `rkdo flops`, torch-free, and the parser
class every `rkdo` command uses.

`rkdo bench --help`, `rkdo flops --help` and a bad argument of either answer without
importing torch (which takes 10-20 s on a small, busy CPU): the command line parses and
checks the arguments here first, and imports :mod:`rkdo_core.tools.bench` or
:mod:`rkdo_core.tools.flops` only when a command really runs. An argument error is one line
(the argument, the value and what is allowed) and a pointer to ``--help``, not the whole
usage block.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import typing
from typing import Any, NoReturn

from ..config import ConfigError, RunConfig


class ShortErrorParser(argparse.ArgumentParser):
    """argparse, but an argument error prints two lines: ``PROG: error: MESSAGE`` (argparse
    names the argument, the value and what is allowed) and ``see PROG --help``, instead of
    the usage block (about 20 lines for `rkdo train`) before the one useful line."""

    def error(self, message: str) -> NoReturn:
        print(f"{self.prog}: error: {message}\nsee {self.prog} --help", file=sys.stderr)
        sys.exit(2)


def bench_parser() -> argparse.ArgumentParser:
    p = ShortErrorParser(
        prog="rkdo bench",
        description="Training-step speed: ours vs the reference pipeline, RKDO vs I-Con, "
                    "FLOP rate, peak memory, grid-level savings (see rkdo_core/bench.py).")
    p.add_argument("--steps", type=int, default=20, help="timed steps per figure (default 20)")
    p.add_argument("--warmup", type=int, default=3, help="untimed warm-up steps (default 3)")
    p.add_argument("--threads", type=int, default=None,
                   help="intra-op threads (default: the faster of 1 and all cores, measured)")
    p.add_argument("--dataset", default="digits")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--device", default="auto")
    p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                   help="override a RunConfig field of our step, e.g. --set channels_last=true "
                        "(repeatable)")
    p.add_argument("--no-grid", action="store_true",
                   help="skip the side-by-side processes (grid step counts are still given)")
    p.add_argument("--profile", action="store_true",
                   help="also list the top operators of our step (torch.profiler)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead")
    return p


def parse_set(items: list[str]) -> dict[str, Any]:
    """``--set FIELD=VALUE`` items of `rkdo bench` as RunConfig overrides."""
    hints = typing.get_type_hints(RunConfig)
    names = {f.name for f in dataclasses.fields(RunConfig)}
    out: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or key not in names:
            raise ConfigError(key or item, item, "--set takes FIELD=VALUE with a RunConfig field")
        hint = hints[key]
        if hint is bool:
            low = text.lower()
            if low not in {"true", "false", "1", "0", "yes", "no", "on", "off"}:
                raise ConfigError(key, text, "must be true or false")
            out[key] = low in {"true", "1", "yes", "on"}
        elif text.lower() in {"none", "null"}:
            out[key] = None
        elif hint in (int, int | None):
            out[key] = int(text)
        elif hint is float:
            out[key] = float(text)
        else:
            out[key] = text
    return out


def bench_config(args: argparse.Namespace) -> RunConfig:
    """The config `rkdo bench` measures, after every check that needs no torch
    (ConfigError/ValueError naming the field and the value otherwise)."""
    config = RunConfig(dataset=args.dataset, batch_size=args.batch_size, device=args.device,
                       **parse_set(args.set))
    if args.steps < 1 or args.warmup < 0:
        raise ConfigError("steps", args.steps, "--steps must be >= 1 and --warmup >= 0")
    if args.threads is not None and args.threads < 1:
        raise ConfigError("threads", args.threads, "must be a positive integer")
    return config


def flops_parser() -> argparse.ArgumentParser:
    p = ShortErrorParser(
        prog="rkdo flops",
        description="FLOPs per optimizer step of RKDO depth 1 and 3 (and I-Con): forward "
                    "with the torch profiler as the paper did, forward+backward with "
                    "FlopCounterMode, and measured wall time per step (rkdo_core/flops.py).")
    p.add_argument("--steps", type=int, default=10,
                   help="timed steps per variant (default 10)")
    p.add_argument("--warmup", type=int, default=2,
                   help="untimed warm-up steps per variant (default 2)")
    p.add_argument("--batch-size", type=int, default=64,
                   help="images per batch (default 64, the paper's; smaller for quick checks)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    p.add_argument("--threads", type=int, default=1,
                   help="torch intra-op threads (default 1: on a small shared CPU two threads "
                        "stall on each other and the times scatter by 10x)")
    p.add_argument("--json", action="store_true", help="print the JSON result instead")
    p.add_argument("--out", default=None, metavar="FILE", help="also write the JSON to FILE")
    return p


def flops_config(args: argparse.Namespace) -> RunConfig:
    """The config `rkdo flops` measures, after every check that needs no torch."""
    if args.steps < 1:
        raise ConfigError("steps", args.steps, "--steps must be an integer >= 1")
    if args.warmup < 0:
        raise ConfigError("warmup", args.warmup, "--warmup must be an integer >= 0")
    if args.threads is not None and args.threads < 1:
        raise ConfigError("threads", args.threads, "--threads must be an integer >= 1")
    return RunConfig(dataset="digits", batch_size=args.batch_size, device=args.device)
