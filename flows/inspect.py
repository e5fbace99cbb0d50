"""`dfp inspect VIDEO`: the notebook's look at one video, from the cache where it can, computed where not."""

from __future__ import annotations

import json
import os
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from features.config import ExtractConfig
from features.store.delta_cache import DeltaCacheStore
from features.video.crops import crop_square
from features.video.decode import iter_frames, open_video, probe
from features.video.extract import FRAME_TRACK_ID, extract_video
from features.video.faces import detection_scale, make_detector
from features.visuals import plots


def _label_from_metadata(path: Path) -> str | None:
    meta = path.parent / "metadata.json"
    try:
        entry = json.loads(meta.read_text()).get(path.name)
        return str(entry.get("label")).upper() if isinstance(entry, dict) and entry.get("label") else None
    except (OSError, ValueError):
        return None


def cached_rows(cache: str | None, path: Path) -> tuple[dict | None, pd.DataFrame, pd.DataFrame]:
    """The video's committed rows in the cache, found by its absolute path."""
    if not cache:
        return None, pd.DataFrame(), pd.DataFrame()
    store = DeltaCacheStore(cache)
    videos = store.read("videos")
    match = videos[(videos.path == str(path)) & (videos.status != "failed")]
    if match.empty:
        return None, pd.DataFrame(), pd.DataFrame()
    row = match.iloc[0].to_dict()
    faces = store.read_partition("faces", row["video_id"])
    ssim = store.read_partition("ssim", row["video_id"])
    return row, faces[faces.cache_key == row["cache_key"]], ssim[ssim.cache_key == row["cache_key"]]


def inspect_video(video: str, out: str, cache: str | None = None, frame: int = 0, step: int = 30,
                  columns: int = 4, rows: int = 3) -> dict[str, str]:
    """Write detections.png, frames.png, face.gif and ssim.png for one video; returns their paths."""
    return _inspect(video, out, cache, frame, step, columns, rows)[0]


def _inspect(video: str, out: str, cache: str | None, frame: int, step: int, columns: int, rows: int):
    """The pictures of one video, and what a side-by-side comparison needs: (name, crops, face SSIM, label, fps)."""
    path = Path(video).expanduser().resolve()
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    row, faces, ssim = cached_rows(cache, path)
    label = (row or {}).get("label") or _label_from_metadata(path)
    config = ExtractConfig()
    mtcnn = make_detector("mtcnn", config.min_face_size, config.mtcnn_threshold, config.haar_min_neighbors)
    haar = make_detector("haar", config.min_face_size, config.mtcnn_threshold, config.haar_min_neighbors)
    if row is None:  # not cached: compute what is missing
        result = extract_video(str(path), path.stem, config, mtcnn)
        faces, ssim = pd.DataFrame(result.faces), pd.DataFrame(result.ssim)
    main = faces[faces.is_main].set_index("frame_index") if len(faces) else pd.DataFrame()
    title = f"{path.name}" + (f" — {label}" if label else "")

    cap = open_video(str(path), path.name)
    info = probe(cap)
    wanted_grid = set(range(0, 10**9, max(step, 1))[: columns * rows])
    chosen, grid, crops = None, [], []
    gif_every = max(1, (info.frame_count or 300) // 300)  # at most ~300 GIF frames for long clips
    for index, bgr in iter_frames(cap, path.name):
        rgb = None
        if index == frame or (chosen is None and index > frame):
            chosen = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        if index in wanted_grid:
            rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
            grid.append((index, cv2.resize(rgb, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA)))
        if len(main) and index in main.index and index % gif_every == 0:
            b = main.loc[index]
            box = np.array([b.x1, b.y1, b.x2, b.y2], np.float32)
            crops.append(cv2.cvtColor(crop_square(bgr, box, config.crop_margin, 160), cv2.COLOR_BGR2RGB))
    cap.release()
    if chosen is None:
        raise ValueError(f"inspect failed for {path.name}: frame {frame} is past the end of the video")

    detection_rows = []
    scale = detection_scale(chosen.shape[1], chosen.shape[0], config.detect_long_side)
    chosen_bgr = cv2.cvtColor(chosen, cv2.COLOR_RGB2BGR)
    for name, detector in (("MTCNN", mtcnn), ("Haar cascade", haar)):
        dets = detector.detect([detector.prepare(chosen_bgr, scale)], scale)[0]
        crop = None
        if len(dets):
            areas = (dets.boxes[:, 2] - dets.boxes[:, 0]) * (dets.boxes[:, 3] - dets.boxes[:, 1])
            crop = cv2.cvtColor(crop_square(chosen_bgr, dets.boxes[int(np.argmax(areas))], 0.3, 224), cv2.COLOR_BGR2RGB)
        detection_rows.append((name, chosen, dets.boxes, crop))

    face_series = face_series_of(ssim)
    strip_every = max(1, len(crops) // 6)
    summary = (path.stem, crops[::strip_every][:6], face_series, label, info.fps)
    paths = {
        "detections": str(plots.detections_png(detection_rows, f"{title} — frame {frame}", out_dir / "detections.png")),
        "frames": str(plots.frames_png(grid, columns, f"{title} — every {step} frames", out_dir / "frames.png")),
    }
    if crops:
        paths["face"] = str(plots.face_gif(crops, info.fps / gif_every if info.fps else 25.0, out_dir / "face.gif"))
    frame_rows = ssim[ssim.track_id == FRAME_TRACK_ID].sort_values("frame_index") if len(ssim) else ssim
    drops = plots.sharp_drops(*face_series[::-1]) if face_series else np.array([], int)
    paths["ssim"] = str(plots.ssim_png((frame_rows.frame_index.to_numpy(), frame_rows.ssim.to_numpy()), face_series,
                                      info.fps, drops, f"{title} — SSIM between consecutive frames", label,
                                      out_dir / "ssim.png"))
    return paths, summary


def face_series_of(ssim: pd.DataFrame) -> tuple[np.ndarray, np.ndarray] | None:
    if not len(ssim):
        return None
    rows = ssim[ssim.is_main & (ssim.track_id >= 0)].sort_values("frame_index")
    return (rows.frame_index.to_numpy(), rows.ssim.to_numpy()) if len(rows) else None


def inspect_videos(videos: list[str], out: str, **options) -> dict[str, dict[str, str] | str]:
    """Inspect each video into OUT/<name>/; with several videos, also OUT/comparison.png side by side."""
    results: dict[str, dict[str, str] | str] = {}
    summaries = []
    for video in videos:
        target = out if len(videos) == 1 else os.path.join(out, Path(video).stem)
        options = {"cache": None, "frame": 0, "step": 30, "columns": 4, "rows": 3, **options}
        results[video], summary = _inspect(video, target, **options)
        summaries.append(summary)
    if len(videos) > 1:
        fps = next((s[4] for s in summaries if s[4]), 0.0)
        results["comparison"] = str(plots.comparison_png([s[:4] for s in summaries], fps,
                                                         Path(out) / "comparison.png"))
    return results


def default_out(video: str) -> str:
    return os.path.join("inspect", Path(video).stem)
