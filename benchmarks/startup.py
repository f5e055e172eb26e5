"""Start-up time of the CLI (issue 19, part 4): `matcalc diff "x^T A x" x` against `python -c pass` and
`python -c "import lark"`, measured in one run, so that a loaded machine slows all of them alike.

Run: python benchmarks/startup.py              (20 runs of each command, interleaved)
     python benchmarks/startup.py --repeat 50 --no-bytecode
     python benchmarks/startup.py --compare /work/main   (and another checkout's `python -m matcalc`: before/after)

Each command is a fresh interpreter (sys.executable itself, not a pyenv shim, whose shell start-up would be
counted). The table gives the best and the median wall time of each, and their ratios to `python -c pass`.
By default the interpreters may read and write bytecode caches, kept in a temporary PYTHONPYCACHEPREFIX (an
installed package has its .pyc files; a checkout run with PYTHONDONTWRITEBYTECODE=1 compiles every module at every
start); --no-bytecode measures that instead. `python -m matcalc` runs this checkout's matcalc; the installed
`matcalc` entry point, when there is one, runs the package installed in the interpreter (an editable install may
point at another checkout). This is a measurement, not a test: nothing here fails on a slow machine.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXPECTED = "(A + A^T) x"  # what every matcalc command below must print


def commands(compare: list[Path]) -> list[tuple[str, list[str], Path | None]]:
    """(label, argv, the checkout it runs with PYTHONPATH, if any) of each command timed; the first is the
    baseline."""
    python = sys.executable
    diff = [python, "-m", "matcalc", "diff", "x^T A x", "x"]
    listed: list[tuple[str, list[str], Path | None]] = [
        ("python -c pass", [python, "-c", "pass"], None),
        ('python -c "import lark"', [python, "-c", "import lark"], None),
        ('python -c "import sympy"', [python, "-c", "import sympy"], None),
        ('python -m matcalc diff "x^T A x" x', diff, ROOT),
    ]
    listed += [(f'python -m matcalc diff "x^T A x" x ({other})', diff, other) for other in compare]
    installed = Path(python).with_name("matcalc")
    entry = str(installed) if installed.exists() else shutil.which("matcalc")
    if entry is not None:
        listed.append(('matcalc diff "x^T A x" x (installed)', [entry, "diff", "x^T A x", "x"], None))
    return listed


def environment(bytecode: bool, cache: str) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    if bytecode:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = cache  # written once by the warm-up run, read by every timed run
    else:
        env["PYTHONDONTWRITEBYTECODE"] = "1"
        env.pop("PYTHONPYCACHEPREFIX", None)
    return env


class Failed(Exception):
    pass


def run_once(argv: list[str], env: dict[str, str], cwd: Path) -> tuple[float, str]:
    start = time.perf_counter()
    done = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise Failed(f"{' '.join(argv)} failed (exit {done.returncode}): {done.stderr.strip().splitlines()[-1:]}")
    return elapsed, done.stdout.strip()


def main() -> None:
    options = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    options.add_argument("--repeat", type=int, default=20, help="runs of each command (default 20)")
    options.add_argument("--no-bytecode", action="store_true", help="no .pyc caches: every module compiled each run")
    options.add_argument("--compare", type=Path, action="append", default=[], metavar="CHECKOUT",
                         help="also time `python -m matcalc` of another checkout (e.g. /work/main)")
    args = options.parse_args()

    listed = commands([path.resolve() for path in args.compare])
    with tempfile.TemporaryDirectory(prefix="matcalc-startup-pyc-") as cache:
        env = environment(not args.no_bytecode, cache)
        envs = {checkout: env if checkout is None else {**env, "PYTHONPATH": str(checkout)}
                for _, _, checkout in listed}
        # `python -m` puts the working directory first on sys.path: each checkout runs from its own, the others
        # from the cache's (where no matcalc is)
        cwds = {checkout: Path(cache) if checkout is None else checkout for _, _, checkout in listed}
        working = []
        for label, argv, checkout in listed:  # warm-up: writes the caches, and checks what matcalc prints
            try:
                _, output = run_once(argv, envs[checkout], cwds[checkout])
            except Failed as error:
                if "installed" not in label:
                    raise SystemExit(str(error)) from None
                print(f"not timed: {error}")  # an editable install whose checkout is gone, say
                continue
            if "matcalc" in label and output != EXPECTED:
                raise SystemExit(f"{label} printed {output!r}, not {EXPECTED!r}")
            working.append((label, argv, checkout))
        listed = working
        times: dict[str, list[float]] = {label: [] for label, _, _ in listed}
        for _ in range(args.repeat):  # interleaved: a burst of load slows every command, not one
            for label, argv, checkout in listed:
                times[label].append(run_once(argv, envs[checkout], cwds[checkout])[0])

    best_pass = min(times[listed[0][0]])
    median_pass = statistics.median(times[listed[0][0]])
    width = max(len(label) for label in times)
    print(f"{args.repeat} runs each, {'no bytecode caches' if args.no_bytecode else 'with bytecode caches'}, "
          f"Python {sys.version.split()[0]} ({sys.executable}); load average {os.getloadavg()[0]:.2f}")
    print(f"{'command':{width}s}  {'best ms':>8s}  {'median ms':>9s}  {'best/pass':>9s}  {'median/pass':>11s}  "
          f"{'best - pass':>11s}")
    for label, values in times.items():
        best, median = min(values), statistics.median(values)
        print(f"{label:{width}s}  {1000 * best:8.1f}  {1000 * median:9.1f}  {best / best_pass:9.2f}  "
              f"{median / median_pass:11.2f}  {1000 * (best - best_pass):9.1f}ms")


if __name__ == "__main__":
    main()
