"""Rerun benchmark: `dfp extract` twice on the same datasets with a fresh cache; the second run must be a no-op.

    python bench/rerun.py                                   # generated demo data (20 clips)
    python bench/rerun.py ../shared/data/dfdc-mini/train_sample_videos ../shared/data/ffpp-mini

Prints a markdown table and writes bench/results/rerun.json. Each run is the whole command as a user runs it
(Python start-up, local Prefect server, Dask cluster when needed), timed from outside.
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import table, write_json  # noqa: E402


def run(datasets: list[str], cache: str, extra: list[str]) -> tuple[float, str]:
    started = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "flows.cli", "extract", *datasets, "--cache", cache, *extra],
                            capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1])
    elapsed = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"dfp extract failed:\n{result.stderr[-3000:]}")
    return elapsed, result.stdout.strip().splitlines()[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("datasets", nargs="*")
    parser.add_argument("--out", default="bench/results/rerun.json")
    parser.add_argument("--flags", default="", help='extra dfp extract flags, e.g. "--detector haar"')
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="dfp-bench-") as tmp:
        datasets = args.datasets
        if not datasets:
            from features.video.demo import make_demo_dataset

            datasets = [str(make_demo_dataset(Path(tmp) / "dfdc-demo", n_clips=20, frames=60, seed=0))]
        cache = str(Path(tmp) / "cache")
        extra = shlex.split(args.flags)
        first, first_line = run(datasets, cache, extra)
        second, second_line = run(datasets, cache, extra)
    rows = [
        {"run": "first", "seconds": first, "summary": first_line},
        {"run": "rerun (nothing changed)", "seconds": second, "summary": second_line},
    ]
    ratio = second / first
    print(table(rows, ["run", "seconds", "summary"]))
    print(f"\nrerun / first = {ratio:.3f} (target < 0.10)")
    path = write_json(args.out, {"datasets": datasets, "runs": rows, "rerun_ratio": ratio})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
