"""What a user waits for: `dfp train` on the development clips, and `dfp score` of new clips, through the CLI.

    python bench/train_score.py                           # after bench/quality.py has built its cache
    python bench/train_score.py --models crop_linear gbm --score 1 8

Train: the development clips of bench/quality.py's cache (its wild-dev clips left out, as protocol (b) never
trains on them) are copied into a fresh cache without the features and descriptors tables, so `dfp train`
computes everything a first training run on an extracted cache computes (features, crop descriptors and their
self-blends, 5-fold grouped CV, the final fit, plots). Measured per model: wall time, and CPU time of the process
and everything it started (its Prefect server and Dask workers).

Score: `dfp score` of the first N wild-dev clips with the crop_linear run, into a fresh cache each time, so each
clip is decoded, tracked and scored from nothing. Two sizes give the fixed cost (server, cluster, model load) and
the time per video: (wall(N2) - wall(N1)) / (N2 - N1).

Everything runs on the local machine's cores (`--workers` unset: one Dask worker per core). Prints a table and
writes JSON (default bench/results/train_score.json).
"""

from __future__ import annotations

import argparse
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import table, write_json  # noqa: E402
from bench.quality import DEFAULT_OOD, ood_sources  # noqa: E402

DFP = Path(sys.executable).parent / "dfp"
COPIED = ("videos", "faces", "ssim", "configs")  # features and descriptors are left for dfp train to compute


def timed_dfp(*args: str) -> dict:
    """Run one dfp command; its wall time and the CPU time of it and its children (user + system)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    result = subprocess.run([str(DFP), *args], capture_output=True, text=True)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if result.returncode != 0:
        raise SystemExit(f"dfp {' '.join(args)} failed ({result.returncode}):\n{result.stderr[-3000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"wall_s": round(wall, 1), "cpu_s": round(cpu, 1), "stdout": result.stdout}


def development_cache(quality_cache: Path, out: Path, barred: Path = DEFAULT_OOD) -> int:
    """Copy the quality cache's extraction tables and the extraction settings they were made with, keeping only the
    development clips' videos rows (the data rows of the others stay in the files, pointed at by nothing, so no
    reader sees them); returns how many videos."""
    from deltalake import DeltaTable

    from features.store.delta_cache import DeltaCacheStore

    for name in (t for t in COPIED if (quality_cache / t).is_dir()):
        shutil.copytree(quality_cache / name, out / name)
    prefix = str(barred.resolve()).replace("'", "''")
    DeltaTable(str(out / "videos")).delete(f"path LIKE '{prefix}%'")
    return len(DeltaCacheStore(str(out)).read("videos", columns=["video_id"]))


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cache", default=str(ROOT / "bench" / ".cache" / "quality"),
                        help="the extracted cache of bench/quality.py (development and wild-dev clips)")
    parser.add_argument("--models", nargs="+", default=["crop_linear", "gbm"])
    parser.add_argument("--score", type=int, nargs=2, default=[1, 8], metavar=("N1", "N2"),
                        help="score this many wild-dev clips, each from a fresh cache")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "train_score.json"))
    args = parser.parse_args(argv)
    cache = Path(args.cache)
    if not (cache / "videos" / "_delta_log").is_dir():
        parser.error(f"{cache} is not an extracted cache: run bench/quality.py first (it extracts the clips)")
    clips = sorted(p for source in ood_sources([str(DEFAULT_OOD)]) for p in source.rglob("*.mp4"))
    if len(clips) < max(args.score):
        parser.error(f"scoring {max(args.score)} clips needs that many under {DEFAULT_OOD}; found {len(clips)}")

    rows, runs = [], {}
    with tempfile.TemporaryDirectory(prefix="dfp-train-score-") as tmp:
        work = Path(tmp)
        for model in args.models:
            dev = work / f"cache-{model}"
            videos = development_cache(cache, dev)
            runs[model] = work / f"run-{model}"
            measured = timed_dfp("train", str(dev), "--model", model, "--out", str(runs[model]))
            rows.append({"step": f"dfp train --model {model}", "videos": videos, "wall_s": measured["wall_s"],
                         "cpu_s": measured["cpu_s"]})
            print(rows[-1], flush=True)
        run = runs.get("crop_linear") or next(iter(runs.values()))
        scored = {}
        for n in args.score:
            inbox = work / f"score-{n}"
            inbox.mkdir()
            for i, clip in enumerate(clips[:n]):
                shutil.copyfile(clip, inbox / f"{i:03d}-{clip.name}")
            measured = timed_dfp("score", str(inbox), "--run", str(run), "--out", str(work / f"out-{n}"))
            scored[n] = measured
            rows.append({"step": f"dfp score, {n} new clips ({run.name.removeprefix('run-')})", "videos": n,
                         "wall_s": measured["wall_s"], "cpu_s": measured["cpu_s"]})
            print(rows[-1], flush=True)
    n1, n2 = args.score
    per_video = (scored[n2]["wall_s"] - scored[n1]["wall_s"]) / (n2 - n1)
    fixed = scored[n1]["wall_s"] - n1 * per_video
    print(table(rows, ["step", "videos", "wall_s", "cpu_s"]))
    print(f"\nscoring: {per_video:.1f} s per video after a fixed {fixed:.1f} s (server, cluster, model)")
    path = write_json(args.out, {"cache": str(cache), "steps": rows, "score_per_video_s": round(per_video, 1),
                                 "score_fixed_s": round(fixed, 1)})
    print(f"wrote {path}")
    return {"steps": rows, "score_per_video_s": per_video, "score_fixed_s": fixed}


if __name__ == "__main__":
    main()
