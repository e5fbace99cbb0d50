"""IoU tracking of faces between keyframes, so every decoded frame has a box for each live face track."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from features.video.crops import iou
from features.video.faces import Detections


@dataclass(frozen=True)
class FrameBox:
    """The box of one track in one frame: detected on a keyframe, or interpolated/held in between."""

    frame: int
    track_id: int
    box: np.ndarray  # float32 x1, y1, x2, y2 in full-frame pixels
    detected: bool
    confidence: float
    landmarks: np.ndarray | None


@dataclass
class FaceTrack:
    """Running summary of one face track."""

    track_id: int
    first_frame: int
    last_detection_frame: int
    last_box: np.ndarray
    hits: int = 1
    missed: int = 0
    area_sum: float = 0.0
    ended: bool = False

    @property
    def score(self) -> float:
        """Size times persistence: the main face is large and found on many keyframes."""
        return self.hits * (self.area_sum / max(self.hits, 1))


def _affinity(tracks: np.ndarray, dets: np.ndarray, iou_threshold: float) -> np.ndarray:
    """IoU, or for fast motion a near-centre match of similar size scored just above the threshold."""
    overlap = iou(tracks, dets)
    tc = (tracks[:, None, :2] + tracks[:, None, 2:]) / 2
    dc = (dets[None, :, :2] + dets[None, :, 2:]) / 2
    t_size = np.maximum(tracks[:, 2] - tracks[:, 0], tracks[:, 3] - tracks[:, 1])[:, None]
    d_size = np.maximum(dets[:, 2] - dets[:, 0], dets[:, 3] - dets[:, 1])[None, :]
    near = np.linalg.norm(tc - dc, axis=-1) < np.maximum(t_size, d_size)  # moved less than a face width
    similar = (d_size / np.maximum(t_size, 1e-6) > 0.5) & (d_size / np.maximum(t_size, 1e-6) < 2.0)
    fallback = np.where(near & similar, iou_threshold, 0.0)
    return np.maximum(overlap, fallback)


@dataclass
class IouTracker:
    """Greedy IoU matching of keyframe detections to live tracks, with linear interpolation in between."""

    iou_threshold: float = 0.3
    max_missed: int = 2
    tracks: dict[int, FaceTrack] = field(default_factory=dict)
    _last_keyframe: int | None = None

    def update(self, frame: int, dets: Detections) -> list[FrameBox]:
        """Match detections at keyframe `frame`; return boxes for every frame since the previous keyframe."""
        prev = self._last_keyframe
        start = frame if prev is None else prev + 1
        live = [t for t in self.tracks.values() if not t.ended]
        pairs: list[tuple[int, int]] = []
        if live and len(dets):
            score = _affinity(np.stack([t.last_box for t in live]), dets.boxes, self.iou_threshold)
            used_t, used_d = set(), set()
            for flat in np.argsort(-score, axis=None):
                ti, di = np.unravel_index(flat, score.shape)
                if score[ti, di] < self.iou_threshold:
                    break
                if ti in used_t or di in used_d:
                    continue
                used_t.add(ti)
                used_d.add(di)
                pairs.append((int(ti), int(di)))
        matched_t = {ti for ti, _ in pairs}
        matched_d = {di for _, di in pairs}
        out: list[FrameBox] = []

        for ti, di in pairs:
            track = live[ti]
            box = dets.boxes[di]
            last = track.last_detection_frame
            for f in range(max(start, last + 1), frame):
                w = (f - last) / (frame - last)
                out.append(FrameBox(f, track.track_id, ((1 - w) * track.last_box + w * box).astype(np.float32),
                                    False, float("nan"), None))
            out.append(self._detected(frame, track.track_id, dets, di))
            track.last_detection_frame, track.last_box = frame, box.astype(np.float32)
            track.hits += 1
            track.missed = 0
            track.area_sum += _area(box)

        for ti, track in enumerate(live):
            if ti in matched_t:
                continue
            track.missed += 1
            if track.missed > self.max_missed:
                track.ended = True
                continue
            for f in range(start, frame + 1):  # hold the last box while the detector misses this face
                out.append(FrameBox(f, track.track_id, track.last_box.copy(), False, float("nan"), None))

        for di in range(len(dets)):
            if di in matched_d:
                continue
            track_id = len(self.tracks)
            box = dets.boxes[di].astype(np.float32)
            self.tracks[track_id] = FaceTrack(track_id, frame, frame, box, area_sum=_area(box))
            out.append(self._detected(frame, track_id, dets, di))

        self._last_keyframe = frame
        out.sort(key=lambda fb: (fb.frame, fb.track_id))
        return out

    @staticmethod
    def _detected(frame: int, track_id: int, dets: Detections, i: int) -> FrameBox:
        landmarks = None if dets.landmarks is None else dets.landmarks[i].astype(np.float32)
        return FrameBox(frame, track_id, dets.boxes[i].astype(np.float32), True, float(dets.confidences[i]), landmarks)

    def kept_tracks(self, keyframes: int) -> list[FaceTrack]:
        """Tracks found on at least two keyframes (one for very short clips); spurious single hits are dropped."""
        need = min(2, keyframes)
        return [t for t in self.tracks.values() if t.hits >= need]

    def main_track(self, keyframes: int) -> int | None:
        """The largest and most persistent face."""
        kept = self.kept_tracks(keyframes)
        return max(kept, key=lambda t: (t.score, -t.track_id)).track_id if kept else None


def _area(box: np.ndarray) -> float:
    return float(max(box[2] - box[0], 0) * max(box[3] - box[1], 0))
