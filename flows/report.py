"""`dfp report CACHE`: one self-contained HTML file about a cache and, optionally, a training run."""

from __future__ import annotations

from pathlib import Path

from features.store.delta_cache import DeltaCacheStore
from features.visuals.report import build_report


def write_report(cache: str, out: str, run: str | None = None, sample: int = 24) -> str:
    store = DeltaCacheStore(cache)
    videos = store.read("videos")
    if videos.empty:
        raise ValueError(f"report failed for {cache}: the cache has no videos")
    faces = store.read("faces", columns=["video_id", "cache_key", "is_main", "frame_index", "crop_jpeg"])
    faces = faces[faces.is_main & faces.crop_jpeg.notna()].sort_values("frame_index").groupby("video_id").head(1)
    ssim = store.read("ssim", columns=["video_id", "cache_key", "track_id", "frame_index", "is_main", "ssim"])
    page = build_report(videos, faces, ssim, title=f"deepfake-pipeline report: {cache}",
                        run_dir=Path(run) if run else None, sample=sample)
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page, encoding="utf-8")
    return str(path)
