"""Run every benchmark script (``bench_*.py``) in this folder, one after the other.

``make bench`` calls this. Each script prints its own table with the machine, BLAS, threads
and load. ``--only core lam`` runs ``bench_core.py`` and ``bench_lam.py`` alone; ``--quick``
is passed to the scripts that accept it.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", nargs="*", help="names such as core, lam, kcenter")
    ap.add_argument("--quick", action="store_true", help="small sizes where a script supports it")
    args = ap.parse_args(argv)
    scripts = sorted(HERE.glob("bench_*.py"))
    if args.only:
        wanted = {f"bench_{name}.py" for name in args.only}
        unknown = wanted - {s.name for s in scripts}
        if unknown:
            print(f"unknown benchmarks: {sorted(unknown)}; have: {[s.stem[6:] for s in scripts]}")
            return 2
        scripts = [s for s in scripts if s.name in wanted]
    failed = []
    for script in scripts:
        extra = []
        if args.quick and "--quick" in script.read_text():
            extra.append("--quick")
        print(f"\n===== {script.name} {' '.join(extra)} =====", flush=True)
        start = time.perf_counter()
        rc = subprocess.call([sys.executable, str(script), *extra])
        print(f"===== {script.name}: exit {rc}, {time.perf_counter() - start:.0f}s =====", flush=True)
        if rc:
            failed.append(script.name)
    if failed:
        print(f"failed: {failed}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
