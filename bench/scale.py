"""Scale benchmark: what a scheduled run with nothing to do costs as the dataset grows (issue #22).

    python bench/scale.py                          # N = 1,000 and 10,000 videos, today's per-video layout
    python bench/scale.py --sizes 1000 --keep DIR  # keep the synthetic tree and cache for a closer look

For each N it builds, in a temporary folder, a dataset of N small stat-able files listed in a labels.csv (one
folder of 1,000 files per thousand) and a cache whose videos table holds one committed row per file, as a real
extraction would leave it: the listing's metadata, a fingerprint, the file's stat, the cache key of the current
settings and code, and the measurement columns of a real row. Then, on one core, it measures:

- discover: listing the folder and reading labels.csv;
- plan: the whole no-op plan the flow runs (stat every file, read the videos table, diff); it must find
  nothing to do and open no file (counted);
- videos read: the videos table alone (`CacheStore.read("videos")`);
- files: data files per table.

Prints a markdown table and writes bench/results/scale.json with the machine. The per-video layout is today's;
the Delta layout of issue #22 is to be measured beside it at N = 1,000, 10,000 and 100,000 once it exists.
"""

from __future__ import annotations

import argparse
import builtins
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("OMP_NUM_THREADS", "1")

from bench.common import table, write_json  # noqa: E402
from features import FEATURE_CODE_VERSION  # noqa: E402
from features.config import ExtractConfig  # noqa: E402
from features.store.cache import CacheStore, cache_key, file_stat  # noqa: E402
from features.store.datasets import discover  # noqa: E402
from tasks.extract import plan_videos  # noqa: E402

# The measurement columns of a committed row (values of a real 10 s DFDC clip); only their presence matters.
TEMPLATE = {"status": "ok", "width": 1920, "height": 1080, "fps": 29.97, "frame_count": 300, "rotation": 0,
            "codec": "h264", "frames_decoded": 300, "duration_s": 10.01, "file_bytes": 3_900_000, "n_tracks": 1,
            "main_track_id": 0, "keyframes": 30, "keyframes_with_face": 30, "face_detection_rate": 1.0,
            "crops_stored": 32, "decode_s": 2.1, "detect_s": 3.4, "track_crop_s": 0.4, "ssim_s": 0.9,
            "write_s": 0.05, "total_s": 6.9, "worker": "bench:0"}


def build(root: Path, n: int) -> tuple[Path, str]:
    """N files in folders of 1,000 with a labels.csv, and a cache that already holds all of them."""
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
    store = CacheStore(cache)
    for entry in discover([str(clips)]):
        fingerprint = f"synthetic-{entry.video_id}"
        store.write_table("videos", entry.video_id, [{
            **entry.metadata(), **TEMPLATE, "fingerprint": fingerprint, "file_stat": file_stat(entry.path),
            "config_hash": config.config_hash, "code_version": FEATURE_CODE_VERSION,
            "cache_key": cache_key(fingerprint, config.config_hash, FEATURE_CODE_VERSION)}])
    return clips, cache


def measure(clips: Path, cache: str) -> dict:
    config = ExtractConfig(datasets=[str(clips)], cache=cache)
    opened = []
    real_open = builtins.open

    def counting_open(file, *args, **kwargs):
        if str(file).endswith(".mp4"):
            opened.append(file)
        return real_open(file, *args, **kwargs)

    t = time.perf_counter()
    entries = discover([str(clips)])
    discover_s = time.perf_counter() - t
    builtins.open = counting_open
    try:
        t = time.perf_counter()
        plan = plan_videos.fn(entries, config)
        plan_s = time.perf_counter() - t
    finally:
        builtins.open = real_open
    if plan.todo or plan.restat or len(plan.skipped) != len(entries):
        raise SystemExit(f"the no-op plan is not a no-op: {plan.counts()}")
    t = time.perf_counter()
    videos = CacheStore(cache).read("videos")
    read_s = time.perf_counter() - t
    files = {name: sum(1 for _ in (Path(cache) / name).glob("*.parquet")) for name in ("videos", "faces", "ssim")}
    return {"videos": len(videos), "discover_s": round(discover_s, 3), "plan_s": round(plan_s, 3),
            "plan_ms_per_video": round(1000 * plan_s / len(entries), 3), "videos_read_s": round(read_s, 3),
            "video_files_opened": len(opened), "files_videos_table": files["videos"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--out", default="bench/results/scale.json")
    parser.add_argument("--keep", default=None, help="build under this folder and keep it")
    args = parser.parse_args()
    rows = []
    for n in args.sizes:
        with tempfile.TemporaryDirectory(dir=args.keep) as tmp:
            t = time.perf_counter()
            clips, cache = build(Path(tmp) / f"n{n}", n)
            built = time.perf_counter() - t
            rows.append({"layout": "per-video parquet", "n": n, "build_s": round(built, 1), **measure(clips, cache)})
            print(table(rows[-1:], list(rows[-1])), flush=True)
    columns = ["layout", "n", "discover_s", "plan_s", "plan_ms_per_video", "videos_read_s", "video_files_opened",
               "files_videos_table"]
    print("\n" + table(rows, columns))
    print(f"\nwrote {write_json(args.out, {'rows': rows, 'targets': {'noop_plan_100k_s': 10, 'videos_read_s': 1}})}")


if __name__ == "__main__":
    main()
