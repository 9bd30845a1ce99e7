"""Every command the README shows is exercised here, with tiny settings (issue 15: a README
command once failed as written).

The commands are read from README.md itself — its ```bash blocks and every inline
`make …` / `rkdo …` — so a new or edited command without a way to test it fails
:func:`test_every_readme_command_is_exercised`. How each kind is exercised:

- ``rkdo grid …``: run as written with ``--dry-run`` added (and ``--out`` in a temporary
  folder): the params file, every option and the data root are parsed and planned, nothing
  trains; the real grid's execution is tests/test_grid.py's.
- ``rkdo aggregate DIR``: the session's ``smoke_aggregated`` fixture runs it on the smoke
  grid (also read by tests/test_grid.py and the HTML tests); here its options are parsed.
  ``rkdo verify DIR``: run on the smoke grid.
- ``make TARGET``: ``make -n`` expands it; each ``rkdo`` line of the recipe is then
  exercised by the rule for its kind (grids with ``--dry-run``; theory, mechanism, flops,
  readme, measure: parsed by the CLI's own parser — tests/test_notebooks.py,
  tests/test_mechanism_runs.py, tests/test_flops.py and tests/test_readme.py run them).
  ``make first-look``'s recipe must be exactly the smoke grid conftest.py runs and the
  aggregation above.
"""

import contextlib
import io
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from rkdo_core.cli import build_parser, main
from rkdo_core.tools.profile import profile_parser

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")

pytestmark = pytest.mark.slow


def readme_commands(text: str = README) -> list[str]:
    """Shell commands of the README: each line of its ```bash blocks (comments dropped,
    ``\\`` continuations joined) and each inline `make …` or `rkdo …`."""
    out = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        cmd = ""
        for line in block.splitlines():
            line = "" if line.lstrip().startswith("#") else line.split("  #")[0].rstrip()
            if not line:
                continue
            if line.endswith("\\"):
                cmd += line[:-1].strip() + " "
                continue
            out.append(cmd + line.strip())
            cmd = ""
    inline = re.findall(r"`((?:make|rkdo|\.venv/bin/rkdo) [^`]+)`", text)
    return list(dict.fromkeys(out + inline))


def _rkdo_args(cmd: str) -> list[str]:
    words = shlex.split(cmd)
    assert words[0] in ("rkdo", ".venv/bin/rkdo"), cmd
    return words[1:]


def _make_recipe(target: str, **variables: str) -> list[str]:
    args = ["make", "-n", "-s", target, *(f"{k}={v}" for k, v in variables.items())]
    done = subprocess.run(args, cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    text = re.sub(r"\\\n\s*", " ", done.stdout)  # join the recipe's continued lines
    return [ln for ln in text.splitlines() if ln.strip()]


def _dry_grid(args: list[str], out: Path) -> None:
    """A grid command as written, planned only: --dry-run, --out below ``out``. A dry run
    checks what the real run checks: ``--slurm-options FILE`` gets a copy of
    params/slurm.example.yaml (as the README says to make), and a dataset that is not on
    this machine must stop the dry run naming its folder; the plan is then made with
    ``--no-data-check``."""
    if "--out" in args:
        i = args.index("--out")
        args = args[:i] + ["--out", str(out / Path(args[i + 1]).name)] + args[i + 2:]
    else:
        args = [*args, "--out", str(out / "grid")]
    if "--slurm-options" in args:
        i = args.index("--slurm-options")
        copy = out / Path(args[i + 1]).name
        shutil.copy(ROOT / "params" / "slurm.example.yaml", copy)
        args[i + 1] = str(copy)
    if "--dry-run" not in args:
        args.append("--dry-run")
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        rc = main(args)
    if rc == 2 and "is not available under the data root" in err.getvalue():
        assert "--dry-run downloads nothing" in err.getvalue(), err.getvalue()
        rc = main([*args, "--no-data-check"])
    assert rc == 0, (args, err.getvalue())


def _exercise_rkdo(cmd: str, tmp: Path, smoke: Path) -> None:
    args = _rkdo_args(cmd)
    if args[0] == "grid":
        _dry_grid(args, tmp)
    elif args[0] == "aggregate":
        # the session's smoke_aggregated fixture ran `rkdo aggregate SMOKE`; this one's
        # options must parse the same way
        build_parser().parse_args(["aggregate", str(smoke), *args[2:]])
        assert (smoke / "index.html").is_file()
    elif args[0] == "verify":
        assert main(["verify", str(smoke), *args[2:]]) == 0
    elif args[0] in ("measure", "bench", "flops"):
        with pytest.raises(SystemExit) as e:  # their own parsers; their tests run them
            main([args[0], "--help"])
        assert e.value.code == 0
    else:
        build_parser().parse_args(args)  # theory, mechanism, readme: their own tests run them


def _recipe_rkdo_lines(target: str, tmp: Path) -> list[str]:
    lines = _make_recipe(target, RESULTS=str(tmp / "r"),
                         SMOKE_RESULTS=str(tmp / "s"))
    out = []
    for ln in lines:
        for part in re.split(r"\|\||&&", ln):
            part = part.strip()
            if part.startswith(".venv/bin/rkdo "):
                out.append(part)
    return out


@pytest.fixture(scope="module")
def smoke(smoke_aggregated):
    return smoke_aggregated


def test_readme_commands_are_found():
    cmds = readme_commands()
    assert "make reproduce" in cmds and "make test" in cmds and "make first-look" in cmds
    assert any(c.startswith(".venv/bin/rkdo grid") for c in cmds)


def test_first_look_is_the_tested_smoke_grid_and_aggregation(tmp_path):
    recipe = _recipe_rkdo_lines("first-look", tmp_path)
    s = tmp_path / "s"
    assert recipe == [f".venv/bin/rkdo grid params/smoke.yaml --out {s} --workers 2",
                      f".venv/bin/rkdo aggregate {s}"]
    # conftest.py's smoke_results runs exactly this grid (plus --no-progress)
    conftest = (ROOT / "tests" / "conftest.py").read_text()
    assert '"grid", str(PARAMS / "smoke.yaml"), "--out", str(out), "--workers", "2"' in conftest


def test_every_readme_command_is_exercised(tmp_path, smoke, monkeypatch):
    monkeypatch.chdir(ROOT)  # the README's commands run from the repository root
    for cmd in readme_commands():
        words = shlex.split(cmd)
        if words[0] == "make":
            target = words[1] if len(words) > 1 else "all"
            if target == "first-look":
                continue  # test_first_look_is_the_tested_smoke_grid_and_aggregation
            lines = _recipe_rkdo_lines(target, tmp_path)
            assert lines or target in ("test", "lab", "lock"), f"{cmd}: no rkdo command"
            for line in lines:
                _exercise_rkdo(line, tmp_path, smoke)
        elif words[0] in ("rkdo", ".venv/bin/rkdo"):
            _exercise_rkdo(cmd, tmp_path, smoke)
        else:
            pytest.fail(f"README command {cmd!r}: no way to exercise it in this test")


def test_make_test_lab_and_lock_expand_to_what_they_promise(tmp_path):
    test = _make_recipe("test")
    assert any("ruff check" in ln for ln in test) and any("pytest" in ln for ln in test)
    assert any("jupyter lab" in ln for ln in _make_recipe("lab"))
    assert any("pip-compile" in ln and "constraints.txt" in ln for ln in _make_recipe("lock"))


def _fenced_rkdo(text: str) -> list[str]:
    """The `rkdo` commands of a page's ```bash blocks (not its inline mentions)."""
    inline = set(re.findall(r"`((?:make|rkdo|\.venv/bin/rkdo) [^`]+)`", text))
    return [c for c in readme_commands(text) if c not in inline
            and shlex.split(c)[0] in ("rkdo", ".venv/bin/rkdo")]


def test_docs_usage_rkdo_commands_work_as_written(tmp_path, monkeypatch):
    """docs/usage.md's shell blocks: `rkdo train` and `rkdo evaluate` run as written (in a
    scratch folder, so `runs/` lands there), grids are planned with --dry-run, the rest
    parse. (A README command once failed as written: --steps-per-epoch 20 > the 19 batches
    of 64 that fit in digits.)"""
    text = (ROOT / "docs" / "usage.md").read_text(encoding="utf-8")
    cmds = _fenced_rkdo(text)
    assert any(shlex.split(c)[1] == "train" for c in cmds)
    work = tmp_path / "work"
    work.mkdir()
    (work / "params").symlink_to(ROOT / "params")
    monkeypatch.chdir(work)
    for cmd in cmds:
        args = _rkdo_args(cmd)
        if args[0] == "grid":
            _dry_grid(args, tmp_path)
        elif args[0] in ("train", "evaluate") and "--help" not in args:
            extra = ["--no-progress", "--device", "cpu"] if args[0] == "train" else []
            assert main([*args, *extra]) == 0, cmd
        elif args[0] == "profile":  # parsed by its own parser (running it: test_profile.py)
            profile_parser().parse_args(args[1:])
        elif args[0] in ("bench", "flops", "measure") or "--help" in args:
            with pytest.raises(SystemExit) as e:
                main([*args[:1], "--help"] if args[0] in ("bench", "flops", "measure")
                     else args)
            assert e.value.code == 0
        else:
            build_parser().parse_args(args)
    assert (work / "runs" / "rkdo-42" / "metrics" / "epoch_002.json").is_file()
