"""Scale benchmark: what a scheduled run with nothing to do costs as the dataset grows (issue #22).

    python bench/scale.py                          # N = 1,000 and 10,000 (per-video), and 100,000 (Delta)
    python bench/scale.py --sizes 1000 --delta-sizes 1000 --keep DIR  # keep the synthetic trees and caches
    python bench/scale.py --sizes --delta-sizes 10000 100000 --baseline /path/to/older/checkout  # before/after

For each N it builds, in a temporary folder, a dataset of N small stat-able files listed in a labels.csv (one
folder of 1,000 files per thousand) and a cache whose videos table holds one committed row per file, as a real
extraction would leave it: the listing's metadata, a fingerprint, the file's stat, the cache key of the current
settings and code, and the measurement columns of a real row. Then, on one core, it measures:

- discover: listing the folder and reading labels.csv;
- plan: the whole no-op plan the flow runs (stat every file, read the videos table, diff); it must find
  nothing to do and open no file (counted);
- videos read: the videos table alone (`read("videos")`);
- features read: the per-video features table (one row per video, as training reads it);
- partition read: one video's features row (`read_partition`);
- files: data files per table.

Two layouts: the Delta tables the flows keep (`features.store.delta_cache.DeltaCacheStore`), written as a flow
commits them, in batches of 1,000 videos, then compacted (`delta_cache.compact`; its time is `compact_s`, the files
are counted after it), and the per-video Parquet files of earlier versions (`CacheStore`), planned by the real
planner with that store in place of the Delta one.

With `--baseline DIR` (a checkout of an older commit, e.g. a `git worktree`), each tree is also discovered and
planned by that checkout's code in a subprocess (`baseline_discover_s`, `baseline_plan_s`), so a change is
measured before and after on the same files, in the same run, under the same load.

Prints a markdown table and writes bench/results/scale.json with the machine.
"""

from __future__ import annotations

import argparse
import builtins
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("OMP_NUM_THREADS", "1")

import tasks.extract  # noqa: E402
from bench.common import table, write_json  # noqa: E402
from features import FEATURE_CODE_VERSION  # noqa: E402
from features.config import ExtractConfig  # noqa: E402
from features.learn.video_features import FEATURE_NAMES, FEATURES_VERSION  # noqa: E402
from features.store import delta_cache  # noqa: E402
from features.store.cache import CacheStore, cache_key, file_stat  # noqa: E402
from features.store.datasets import discover  # noqa: E402
from tasks.extract import plan_videos  # noqa: E402

LAYOUTS = {"per-video parquet": CacheStore, "delta": delta_cache.DeltaCacheStore}
BATCH = 1000  # videos per commit in the Delta layout, as the flow batches them

# The measurement columns of a committed row (values of a real 10 s DFDC clip); only their presence matters.
TEMPLATE = {"status": "ok", "width": 1920, "height": 1080, "fps": 29.97, "frame_count": 300, "rotation": 0,
            "codec": "h264", "frames_decoded": 300, "duration_s": 10.01, "file_bytes": 3_900_000, "n_tracks": 1,
            "main_track_id": 0, "keyframes": 30, "keyframes_with_face": 30, "face_detection_rate": 1.0,
            "crops_stored": 32, "decode_s": 2.1, "detect_s": 3.4, "track_crop_s": 0.4, "ssim_s": 0.9,
            "write_s": 0.05, "total_s": 6.9, "worker": "bench:0"}


def build(root: Path, n: int, layout: str = "per-video parquet") -> tuple[Path, str]:
    """N files in folders of 1,000 with a labels.csv, and a cache that already holds all of them (a videos row
    and a features row each) in the given layout."""
    clips = root / "clips"
    lines = ["path,label"]
    for i in range(n):
        rel = f"{i // 1000:03d}/clip_{i:06d}.mp4"
        path = clips / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(i.to_bytes(8, "little") * 8)
        lines.append(f"{rel},{'FAKE' if i % 2 else 'REAL'}")
    (clips / "labels.csv").write_text("\n".join(lines) + "\n")
    cache = str(root / "cache")
    config = ExtractConfig(datasets=[str(clips)], cache=cache)
    videos, features = {}, {}
    for entry in discover([str(clips)]):
        fingerprint = f"synthetic-{entry.video_id}"
        key = cache_key(fingerprint, config.config_hash, FEATURE_CODE_VERSION)
        videos[entry.video_id] = [{
            **entry.metadata(), **TEMPLATE, "fingerprint": fingerprint, "file_stat": file_stat(entry.path),
            "config_hash": config.config_hash, "code_version": FEATURE_CODE_VERSION, "cache_key": key}]
        features[entry.video_id] = [{"video_id": entry.video_id, "cache_key": key, "features_version": FEATURES_VERSION,
                                     **dict.fromkeys(FEATURE_NAMES, 0.5)}]
    if layout == "delta":
        store = delta_cache.DeltaCacheStore(cache)
        ids = list(videos)
        for start in range(0, len(ids), BATCH):
            batch = ids[start:start + BATCH]
            store.write_tables("videos", {vid: videos[vid] for vid in batch})
            store.write_tables("features", {vid: features[vid] for vid in batch})
    else:
        store = CacheStore(cache)
        for vid in videos:
            store.write_table("features", vid, features[vid])
            store.write_table("videos", vid, videos[vid])
    return clips, cache


def _timed(fn):
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


# Run by the baseline checkout's interpreter path: its own discover and planner, the store swapped as measure() does.
BASELINE_PLAN = """
import json, sys, time
import tasks.extract
from features.config import ExtractConfig
from features.store import delta_cache
from features.store.cache import CacheStore
from features.store.datasets import discover
clips, cache, layout = sys.argv[1:4]
config = ExtractConfig(datasets=[clips], cache=cache)
store = delta_cache.DeltaCacheStore if layout == "delta" else CacheStore
if hasattr(tasks.extract, "DeltaCacheStore"):  # the planner's store since the flows moved to Delta tables
    tasks.extract.DeltaCacheStore = store
else:
    tasks.extract.CacheStore = store
t = time.perf_counter(); entries = discover([clips]); discover_s = time.perf_counter() - t
t = time.perf_counter(); plan = tasks.extract.plan_videos.fn(entries, config); plan_s = time.perf_counter() - t
assert not plan.todo and len(plan.skipped) == len(entries), plan.counts()
print(json.dumps({"baseline_discover_s": round(discover_s, 3), "baseline_plan_s": round(plan_s, 3)}))
"""


def measure_baseline(checkout: str, clips: Path, cache: str, layout: str) -> dict:
    """Discovery and no-op plan times of the same tree and cache with an older checkout's code."""
    env = {**os.environ, "PYTHONPATH": str(Path(checkout).resolve()), "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", BASELINE_PLAN, str(clips), cache, layout], cwd=checkout, env=env,
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def measure(clips: Path, cache: str, layout: str = "per-video parquet") -> dict:
    config = ExtractConfig(datasets=[str(clips)], cache=cache)
    store_class = LAYOUTS[layout]
    extra = {}
    if layout == "delta":
        _, extra["compact_s"] = _timed(lambda: delta_cache.compact(cache))
        delta_cache.vacuum(cache, retention_hours=0)
    opened = []
    real_open = builtins.open

    def counting_open(file, *args, **kwargs):
        if str(file).endswith(".mp4"):
            opened.append(file)
        return real_open(file, *args, **kwargs)

    entries, discover_s = _timed(lambda: discover([str(clips)]))
    builtins.open = counting_open
    real_store, tasks.extract.DeltaCacheStore = tasks.extract.DeltaCacheStore, store_class  # the planner's store
    try:
        plan, plan_s = _timed(lambda: plan_videos.fn(entries, config))
    finally:
        builtins.open = real_open
        tasks.extract.DeltaCacheStore = real_store
    if plan.todo or plan.restat or len(plan.skipped) != len(entries):
        raise SystemExit(f"the no-op plan is not a no-op: {plan.counts()}")
    videos, read_s = _timed(lambda: store_class(cache).read("videos"))
    feats, features_s = _timed(lambda: store_class(cache).read("features"))
    store = store_class(cache)
    store.read_partition("features", entries[0].video_id)  # a warm store, as in a training loop over videos
    one, partition_s = _timed(lambda: store.read_partition("features", entries[len(entries) // 2].video_id))
    if len(feats) != len(entries) or len(one) != 1:
        raise SystemExit(f"the {layout} cache lost rows: {len(feats)} features rows, {len(one)} in the partition")
    files = {name: sum(1 for p in (Path(cache) / name).glob("*.parquet")) for name in ("videos", "features")}
    return {"videos": len(videos), "discover_s": round(discover_s, 3), "plan_s": round(plan_s, 3),
            "plan_ms_per_video": round(1000 * plan_s / len(entries), 3), "videos_read_s": round(read_s, 3),
            "features_read_s": round(features_s, 3), "partition_read_ms": round(1000 * partition_s, 2),
            "video_files_opened": len(opened), "files_videos_table": files["videos"],
            "files_features_table": files["features"], **{k: round(v, 3) for k, v in extra.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="*", default=[1000, 10000], help="N for the per-video layout")
    parser.add_argument("--delta-sizes", type=int, nargs="*", default=[1000, 10000, 100000], help="N for Delta")
    parser.add_argument("--out", default="bench/results/scale.json")
    parser.add_argument("--keep", default=None, help="build under this folder and keep it")
    parser.add_argument("--baseline", default=None, help="an older checkout: also discover and plan with its code")
    args = parser.parse_args()
    rows = []
    runs = [("per-video parquet", n) for n in args.sizes] + [("delta", n) for n in args.delta_sizes]
    for layout, n in sorted(runs, key=lambda r: (r[1], r[0] != "per-video parquet")):
        with tempfile.TemporaryDirectory(dir=args.keep) as tmp:
            t = time.perf_counter()
            clips, cache = build(Path(tmp) / f"{layout.split()[0]}-n{n}", n, layout)
            built = time.perf_counter() - t
            row = {"layout": layout, "n": n, "build_s": round(built, 1), **measure(clips, cache, layout)}
            if args.baseline:
                row.update(measure_baseline(args.baseline, clips, cache, layout))
            rows.append(row)
            print(table(rows[-1:], list(rows[-1])), flush=True)
    columns = ["layout", "n", "build_s", *(["baseline_discover_s", "discover_s", "baseline_plan_s"] if args.baseline
                                            else ["discover_s"]), "plan_s", "plan_ms_per_video", "videos_read_s", "features_read_s",
               "partition_read_ms", "video_files_opened", "files_videos_table", "files_features_table", "compact_s"]
    print("\n" + table(rows, columns))
    print(f"\nwrote {write_json(args.out, {'rows': rows, 'targets': {'noop_plan_100k_s': 10, 'videos_read_s': 1}})}")


if __name__ == "__main__":
    main()
