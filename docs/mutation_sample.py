"""Score a random sample of mutmut's mutants, for when a whole `mutmut run` does not fit.

    python docs/mutation_sample.py 200 [--seed 0] [--workers 2] [--extra extra.json]

Needs the `mutants/` folder and its `mutmut-stats.json` that `mutmut run` leaves once its
stats pass is over (it can be stopped there). Each sampled mutant (a `random.Random(seed)`
shuffle of the sorted names) runs, with `MUTANT_UNDER_TEST` set, against the tests mutmut
recorded for its function, fastest first, under `pytest -x`: exit 1 is killed, 0 survived, a
timeout killed (mutmut's rules). Any other exit (the mutant broke an import, so collection
failed) counts as killed only if the same tests pass without it. ``--extra``: a JSON map
function -> test ids to run first, for tests newer than the stats. Results go to
`mutants/sample.json` (a rerun skips what it holds); the score, a Wilson 95 % interval and
the survivors are printed.
"""

import argparse
import glob
import json
import math
import os
import random
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

PYTEST = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", "-o", "addopts="]
KILLED = ("killed", "timeout")


def names(root: Path) -> list[str]:
    return sorted(
        name
        for meta in glob.glob(str(root / "**/*.meta"), recursive=True)
        for name in json.loads(Path(meta).read_text())["exit_code_by_key"]
    )


def run(root: Path, name: str, tests: list[str], timeout: float) -> dict:
    if not tests:
        return {"status": "no tests"}
    start = time.perf_counter()
    env = {"MUTANT_UNDER_TEST": name, "PYTHONHASHSEED": "0"}
    try:
        rc = _pytest(root, tests, env, timeout)
        status = {0: "survived", 1: "killed"}.get(rc)
        if status is None:  # collection failed: the mutant's, if the tests pass without it
            clean = _pytest(root, tests, {"MUTANT_UNDER_TEST": ""}, timeout)
            status = "killed" if clean == 0 else f"error {rc}"
    except subprocess.TimeoutExpired:
        status = "timeout"
    return {"status": status, "seconds": round(time.perf_counter() - start, 1)}


def _pytest(root, tests, env, timeout) -> int:
    done = subprocess.run(
        PYTEST + tests, cwd=root, env=os.environ | env, capture_output=True, timeout=timeout
    )
    return done.returncode


def collected(root: Path) -> set[str]:
    """The test ids pytest finds in ``root`` now."""
    found = subprocess.run(
        PYTEST[:3] + ["--collect-only", "-q", "-p", "no:cacheprovider", "-o", "addopts="],
        cwd=root, capture_output=True, text=True, env=os.environ | {"MUTANT_UNDER_TEST": ""},
    )  # fmt: skip
    return {line for line in found.stdout.splitlines() if "::" in line}


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    p, den = k / n, 1 + z * z / n
    mid = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return mid - half, mid + half


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("n", type=int, help="how many mutants to draw")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=900, help="seconds per mutant")
    parser.add_argument("--extra", help="JSON: function -> test ids the stats predate")
    parser.add_argument("--root", default="mutants")
    args = parser.parse_args()
    root = Path(args.root)
    stats = json.loads((root / "mutmut-stats.json").read_text())
    by_function, duration = stats["tests_by_mangled_function_name"], stats["duration_by_test"]
    extra = json.loads(Path(args.extra).read_text()) if args.extra else {}
    exists = collected(root)  # the stats may name tests renamed or removed since
    sample = names(root)
    random.Random(args.seed).shuffle(sample)
    sample = sample[: args.n]
    out = root / "sample.json"
    done = json.loads(out.read_text()) if out.exists() else {}

    def one(name):
        if name in done:
            return name, done[name]
        function = name.rsplit("__mutmut_", 1)[0]
        recorded = sorted(set(by_function.get(function, [])), key=lambda t: duration.get(t, 1e9))
        tests = [t for t in dict.fromkeys(extra.get(function, []) + recorded) if t in exists]
        return name, run(root, name, tests, args.timeout)

    with ThreadPoolExecutor(args.workers) as pool:
        for i, (name, result) in enumerate(pool.map(one, sample), 1):
            done[name] = result
            out.write_text(json.dumps(done, indent=1))
            print(f"{i}/{len(sample)} {name}: {result['status']}", flush=True)
    killed = sum(done[m]["status"] in KILLED for m in sample)
    lo, hi = wilson(killed, len(sample))
    print(f"killed {killed}/{len(sample)} = {100 * killed / len(sample):.1f} % "
          f"(95 % Wilson interval {100 * lo:.1f}-{100 * hi:.1f} %)")  # fmt: skip
    for m in sample:
        if done[m]["status"] not in KILLED:
            print(f"  {done[m]['status']}: {m}")


if __name__ == "__main__":
    main()
