"""Time to each careless-command error (issue #21: one line, exit 2, under 3 s), as a user meets it.

    python bench/cli_errors.py [--repeat 3]

Each case is the whole `dfp` process, timed from outside; the median of --repeat runs. Prints a markdown table
and writes bench/results/cli_errors.json with the machine. tests/flows/test_cli_errors.py checks the messages,
and that none of these commands imports Prefect, Dask or TensorFlow before it fails.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.common import table, write_json  # noqa: E402


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cases(tmp: Path) -> dict[str, list[str]]:
    cache, run = tmp / "cache", tmp / "run"
    (cache / "videos").mkdir(parents=True)
    run.mkdir()
    (run / "model.skops").write_bytes(b"x")
    (run / "model_card.json").write_text(json.dumps({"model": "gbm", "model_file": "model.skops"}))
    return {
        "dfp evaluate nope-run": ["evaluate", "nope-run", "--cache", str(cache)],
        "dfp score nope.mp4": ["score", "nope.mp4", "--run", str(run), "--out", str(tmp / "out")],
        "dfp inspect nope.mp4": ["inspect", "nope.mp4"],
        "bad --dask-address": ["train", str(cache), "--out", str(tmp / "r"), "--dask-address",
                               f"tcp://127.0.0.1:{_closed_port()}"],
        "dfp train MISSING": ["train", "MISSING", "--out", str(tmp / "r")],
        "dfp report CACHE --run nope": ["report", str(cache), "--run", "nope", "--out", str(tmp / "r.html")],
        "--folds 0": ["train", str(cache), "--out", str(tmp / "r"), "--folds", "0"],
        "dfp cache info MISSING": ["cache", "info", "MISSING"],
        "dfp cache vacuum per-video CACHE": ["cache", "vacuum", str(cache)],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--out", default="bench/results/cli_errors.json")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
        env.update({"DFP_HOME": str(Path(tmp) / "home"), "PYTHONPATH": str(REPO)})
        for name, argv in cases(Path(tmp)).items():
            times, result = [], None
            for _ in range(args.repeat):
                started = time.perf_counter()
                result = subprocess.run([sys.executable, "-m", "flows.cli", *argv], env=env, cwd=tmp,
                                        capture_output=True, text=True, timeout=120)
                times.append(time.perf_counter() - started)
            rows.append({"case": name, "seconds": round(statistics.median(times), 2), "exit": result.returncode,
                         "lines": len((result.stdout + result.stderr).splitlines()),
                         "message": result.stderr.strip()[:90]})
    print(table(rows, ["case", "seconds", "exit", "lines", "message"]))
    print(f"\nwrote {write_json(args.out, {'rows': rows, 'target_s': 3})}")


if __name__ == "__main__":
    main()
