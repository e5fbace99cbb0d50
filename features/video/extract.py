"""One video in, three tables' rows out: decode once, detect on keyframes, track, crop, and SSIM every frame."""

from __future__ import annotations

import os
import time
from collections import defaultdict
from contextlib import contextmanager
from dataclasses import dataclass, field

import cv2
import numpy as np

from features.config import ExtractConfig
from features.video.crops import crop_native, crop_square, encode_jpeg, encode_lossless, grid_blockiness, grid_phase
from features.video.decode import StepError, check_complete, frame_limit, iter_frames, open_video, prefetch, probe
from features.video.faces import Detections, detect_in_rois, detection_scale
from features.video.ssim import ssim_pairs, ssim_series
from features.video.tracking import FrameBox, IouTracker

FRAME_TRACK_ID = -1  # track id of the whole-frame SSIM series


@dataclass
class VideoResult:
    """Rows for the videos, faces and ssim tables of one video (metadata and cache keys are added by the caller)."""

    status: str  # ok | no_face | failed
    video: dict
    faces: list[dict] = field(default_factory=list)
    ssim: list[dict] = field(default_factory=list)

    @classmethod
    def failed(cls, error: StepError | str, step: str | None = None, **video) -> VideoResult:
        message = str(error)
        step = getattr(error, "step", None) or step or "extract"
        return cls("failed", {"status": "failed", "error": message, "error_step": step, **video})


@contextmanager
def _step(video: str, step: str, frame: int | None = None):
    """Turn any exception inside a step into a StepError that names the video, the step and the cause."""
    try:
        yield
    except StepError:
        raise
    except Exception as exc:  # noqa: BLE001 - the cause is carried in the message
        raise StepError(video, step, f"{type(exc).__name__}: {exc}", frame=frame) from exc


def sample_frames(expected: int | None, count: int, keyframe_interval: int) -> set[int]:
    """Evenly spaced frame indices whose crops are stored; keyframes when the length is unknown."""
    if count <= 0:
        return set()
    if expected and expected > 0:
        return {int(i) for i in np.linspace(0, expected - 1, min(count, expected)).round()}
    return {i * keyframe_interval for i in range(count)}


def _frame_ssim_size(width: int, height: int, long_side: int) -> tuple[int, int]:
    scale = min(1.0, long_side / max(width, height))
    return max(7, int(round(width * scale))), max(7, int(round(height * scale)))


def sharpness(grey: np.ndarray) -> float:
    """Variance of the Laplacian: high for crisp detail, low for blur (blended faces are often softer)."""
    return float(cv2.Laplacian(grey, cv2.CV_32F).var())


def downscale_grey(grey: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Anti-aliased downscale: Gaussian pyramid halvings, then area resampling to the exact size."""
    while grey.shape[1] // 2 >= size[0] and grey.shape[0] // 2 >= size[1]:
        grey = cv2.pyrDown(grey)
    if (grey.shape[1], grey.shape[0]) == size:
        return grey
    return cv2.resize(grey, size, interpolation=cv2.INTER_AREA)


@dataclass
class _Pending:
    index: int
    grey: np.ndarray
    bgr: np.ndarray | None  # kept only for frames whose crop is stored


class _VideoExtractor:
    """State of one streaming extraction; frames are held only between two detector calls."""

    def __init__(self, video: str, config: ExtractConfig, detector, ssim_device: str | None):
        self.video, self.config, self.detector, self.ssim_device = video, config, detector, ssim_device
        self.tracker = IouTracker(config.iou_threshold, config.max_missed_keyframes)
        self.timings: dict[str, float] = defaultdict(float)
        self.pending: list[_Pending] = []
        self.keyframes: list[tuple[int, np.ndarray | None, np.ndarray]] = []  # index, prepared, frame
        self.keyframes_seen = 0
        self.keyframe_count = 0
        self.detected_on: dict[int, set[int]] = defaultdict(set)  # track id -> keyframes where detected
        self.face_rows: list[dict] = []
        self.ssim_rows: list[dict] = []
        self.prev_face: dict[int, tuple[int, np.ndarray]] = {}
        self.face_pairs: list[tuple[int, int, np.ndarray, np.ndarray]] = []
        # Downscaled grey frames not yet compared; the first is the last frame of the previous batch.
        self.frame_series: list[tuple[int, np.ndarray]] = []
        self.scale = 1.0
        self.small_size = (0, 0)
        self.samples: set[int] = set()
        self.grid_phase = (0, 0)  # where the coded block grid falls in the upright frames (crops.grid_phase)

    def add_frame(self, index: int, frame: np.ndarray) -> None:
        cfg = self.config
        t = time.perf_counter()
        with _step(self.video, "ssim", index):
            grey = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
            self.frame_series.append((index, downscale_grey(grey, self.small_size)))
        self.timings["ssim_s"] += time.perf_counter() - t
        self.pending.append(_Pending(index, grey, frame if index in self.samples else None))
        if index % cfg.keyframe_interval == 0:
            self.add_keyframe(index, frame)

    def add_keyframe(self, index: int, frame: np.ndarray) -> None:
        t = time.perf_counter()
        full = self.keyframes_seen % self.config.full_detect_every == 0
        self.keyframes_seen += 1
        with _step(self.video, "detect", index):
            prepared = self.detector.prepare(frame, self.scale) if full else None
        self.keyframes.append((index, prepared, frame))
        self.timings["detect_s"] += time.perf_counter() - t
        if len(self.keyframes) >= self.config.detect_batch:
            self.flush()

    def _detect_batch(self) -> dict[int, Detections]:
        """Detections for every queued keyframe, in two detector calls.

        Scheduled keyframes search the whole downscaled frame, batched. The others search full-resolution
        regions around the faces found on the latest whole-frame keyframe before them (or, at the start of
        the batch, around live tracks), all regions batched in one call: the detector's fixed cost per call
        is paid twice per batch, and small faces are searched at full resolution.
        """
        scheduled = [(i, im) for i, im, _ in self.keyframes if im is not None]
        found: dict[int, Detections] = {}
        if scheduled:
            with _step(self.video, "detect", scheduled[0][0]):
                results = self.detector.detect([im for _, im in scheduled], self.scale)
            found = {i: d for (i, _), d in zip(scheduled, results, strict=True)}
        anchor = [t.last_box for t in self.tracker.tracks.values() if not t.ended]
        regions: list[tuple[int, np.ndarray, list[np.ndarray]]] = []
        for index, prepared, frame in self.keyframes:
            if prepared is not None:
                anchor = list(found[index].boxes)
            elif anchor:
                regions.append((index, frame, anchor))
            else:
                found[index] = Detections.empty(self.detector.name == "mtcnn")
        if regions:
            with _step(self.video, "detect", regions[0][0]):
                results = detect_in_rois(self.detector, [(f, boxes) for _, f, boxes in regions])
            found.update({index: d for (index, _, _), d in zip(regions, results, strict=True)})
        return found

    def flush(self) -> None:
        """Detect on the queued keyframes, resolve every pending frame up to the last one, compute SSIM."""
        if not self.keyframes:
            return
        t = time.perf_counter()
        found = self._detect_batch()
        self.timings["detect_s"] += time.perf_counter() - t
        t = time.perf_counter()
        by_index = {p.index: p for p in self.pending}
        for key_index, _, _ in self.keyframes:
            with _step(self.video, "track", key_index):
                self.keyframe_count += 1
                for fb in self.tracker.update(key_index, found[key_index]):
                    self._resolve(fb, by_index[fb.frame])
        last = self.keyframes[-1][0]
        self.pending = [p for p in self.pending if p.index > last]
        self.keyframes = []
        self.timings["track_crop_s"] += time.perf_counter() - t
        self._compute_ssim()

    def _resolve(self, fb: FrameBox, frame: _Pending) -> None:
        cfg = self.config
        if fb.detected:
            self.detected_on[fb.track_id].add(fb.frame)
        face = crop_square(frame.grey, fb.box, cfg.crop_margin, cfg.ssim_face_size)
        prev = self.prev_face.get(fb.track_id)
        if prev is not None and prev[0] == fb.frame - 1:
            self.face_pairs.append((fb.track_id, fb.frame, prev[1], face))
        self.prev_face[fb.track_id] = (fb.frame, face)
        jpeg = lossless = grid = None
        if frame.bgr is not None:
            jpeg = encode_jpeg(crop_square(frame.bgr, fb.box, cfg.crop_margin, cfg.crop_size), cfg.jpeg_quality)
            lossless = encode_lossless(crop_native(frame.bgr, fb.box, cfg.crop_margin, cfg.crop_size))
            grid = grid_blockiness(frame.grey, fb.box, phase=self.grid_phase)
        x1, y1, x2, y2 = (float(v) for v in fb.box)
        self.face_rows.append({
            "track_id": fb.track_id, "frame_index": fb.frame,
            "x1": x1, "y1": y1, "x2": x2, "y2": y2,
            "detected": fb.detected,
            "confidence": None if np.isnan(fb.confidence) else fb.confidence,
            "landmarks": None if fb.landmarks is None else [float(v) for v in fb.landmarks],
            "crop_jpeg": jpeg, "crop_lossless": lossless,
            "grid_blockiness": None if grid is None or np.isnan(grid) else grid,
        })

    def _compute_ssim(self) -> None:
        t = time.perf_counter()
        backend, device = self.config.ssim_backend, self.ssim_device
        if len(self.frame_series) > 1:
            with _step(self.video, "ssim", self.frame_series[1][0]):
                values = ssim_series(np.stack([small for _, small in self.frame_series]), backend, device)
            self.ssim_rows += [{"track_id": FRAME_TRACK_ID, "frame_index": i, "ssim": float(v), "sharpness": sharpness(b)}
                               for (i, b), v in zip(self.frame_series[1:], values, strict=True)]
            self.frame_series = self.frame_series[-1:]
        if self.face_pairs:
            with _step(self.video, "ssim", self.face_pairs[0][1]):
                values = ssim_pairs(np.stack([a for _, _, a, _ in self.face_pairs]),
                                    np.stack([b for _, _, _, b in self.face_pairs]), backend, device)
            self.ssim_rows += [{"track_id": tid, "frame_index": i, "ssim": float(v), "sharpness": sharpness(b)}
                               for (tid, i, _, b), v in zip(self.face_pairs, values, strict=True)]
            self.face_pairs = []
        self.timings["ssim_s"] += time.perf_counter() - t

    def finish(self, last_index: int, last_frame: np.ndarray) -> VideoResult:
        if last_index % self.config.keyframe_interval != 0:
            self.add_keyframe(last_index, last_frame)  # so the tail of the clip is tracked, not extrapolated
        self.flush()
        kept = {t.track_id: t for t in self.tracker.kept_tracks(self.keyframe_count)}
        main = self.tracker.main_track(self.keyframe_count)

        def keep(row: dict) -> bool:
            tid = row["track_id"]
            # A track spans its first to its last detection; frames held after the face left are dropped.
            return tid == FRAME_TRACK_ID or (tid in kept and row["frame_index"] <= kept[tid].last_detection_frame)

        faces = [dict(r, is_main=r["track_id"] == main) for r in self.face_rows if keep(r)]
        ssim = [dict(r, is_main=r["track_id"] == main) for r in self.ssim_rows if keep(r)]
        keyframes_with_face = len(set().union(*(self.detected_on[t] for t in kept))) if kept else 0
        status = "ok" if kept else "no_face"
        return VideoResult(status, {
            "status": status, "error": None, "error_step": None,
            "n_tracks": len(kept), "main_track_id": main,
            "keyframes": self.keyframe_count, "keyframes_with_face": keyframes_with_face,
            "face_detection_rate": keyframes_with_face / self.keyframe_count if self.keyframe_count else 0.0,
            "crops_stored": sum(r["crop_jpeg"] is not None for r in faces),
            **{k: round(v, 4) for k, v in self.timings.items()},
        }, faces, ssim)


def extract_video(path: str, video: str, config: ExtractConfig, detector, ssim_device: str | None = None) -> VideoResult:
    """Decode `path` once, streaming, and return its face track, crop and SSIM rows.

    Raises StepError (naming the video, the step and the cause) when the file cannot be decoded.
    """
    cap = open_video(path, video, config.decode_threads)
    try:
        info = probe(cap)
        limit = frame_limit(info, config.max_frames, config.max_seconds)
        expected = min(x for x in (limit, info.frame_count or None) if x) if (limit or info.frame_count) else None
        run = _VideoExtractor(video, config, detector, ssim_device)
        run.samples = sample_frames(expected, config.crops_per_video, config.keyframe_interval)
        frames = prefetch(iter_frames(cap, video, limit), config.prefetch_frames)
        index, frame = -1, None
        shape = None
        while True:
            t = time.perf_counter()
            item = next(frames, None)
            run.timings["decode_s"] += time.perf_counter() - t
            if item is None:
                break
            index, frame = item
            if shape is None:
                shape = frame.shape
                run.scale = detection_scale(shape[1], shape[0], config.detect_long_side)
                run.small_size = _frame_ssim_size(shape[1], shape[0], config.ssim_frame_long_side)
                run.grid_phase = grid_phase(info.rotation, shape[1], shape[0])
            elif frame.shape != shape:
                raise StepError(video, "decode", f"frame size changed from {shape[:2]} to {frame.shape[:2]}", index)
            run.add_frame(index, frame)
        check_complete(info, index + 1, limit, video)
        result = run.finish(index, frame)
    finally:
        cap.release()
    result.video.update({
        "width": int(shape[1]), "height": int(shape[0]), "fps": info.fps, "frame_count": info.frame_count,
        "rotation": info.rotation, "codec": info.codec, "frames_decoded": index + 1,
        "duration_s": (index + 1) / info.fps if info.fps else None,
        "file_bytes": os.path.getsize(path) if os.path.isfile(path) else None,
    })
    return result
