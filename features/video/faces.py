"""Face detectors on downscaled keyframes: MTCNN (default, batched) and OpenCV's Haar cascade (fast)."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from features.video.crops import crop_square, iou, square_box


@dataclass(frozen=True)
class Detections:
    """Faces found in one frame, in full-frame pixel coordinates."""

    boxes: np.ndarray  # (n, 4) float32 x1, y1, x2, y2
    confidences: np.ndarray  # (n,) float32; NaN where the detector gives none (Haar)
    landmarks: np.ndarray | None  # (n, 10) float32: left eye, right eye, nose, mouth left, mouth right (x, y)

    @classmethod
    def empty(cls, with_landmarks: bool = False) -> Detections:
        return cls(
            np.zeros((0, 4), np.float32),
            np.zeros((0,), np.float32),
            np.zeros((0, 10), np.float32) if with_landmarks else None,
        )

    def __len__(self) -> int:
        return len(self.boxes)


def detection_scale(width: int, height: int, long_side: int) -> float:
    """Factor that shrinks a frame so its long side is at most `long_side` (never enlarges)."""
    return min(1.0, long_side / max(width, height))


def stretch_luminance(frame_bgr: np.ndarray) -> np.ndarray:
    """Stretch the 1st..99th luminance percentiles to the full range: dark, flat clips become detectable."""
    lab = cv2.cvtColor(frame_bgr, cv2.COLOR_BGR2LAB)
    lum = lab[..., 0]
    lo, hi = np.percentile(lum[::4, ::4], (1, 99))
    lut = np.clip((np.arange(256) - lo) * 255.0 / max(hi - lo, 1.0), 0, 255).astype(np.uint8)
    lab[..., 0] = cv2.LUT(lum, lut)
    return cv2.cvtColor(lab, cv2.COLOR_LAB2BGR)


class HaarDetector:
    """OpenCV's frontal-face Haar cascade, which ships inside the opencv-python wheel."""

    name = "haar"

    def __init__(self, min_face_size: int = 20, min_neighbors: int = 5):
        path = cv2.data.haarcascades + "haarcascade_frontalface_default.xml"
        self._cascade = cv2.CascadeClassifier(path)
        if self._cascade.empty():
            raise RuntimeError(f"cannot load the Haar cascade from {path}")
        self.min_face_size = min_face_size
        self.min_neighbors = min_neighbors

    def prepare(self, frame_bgr: np.ndarray, scale: float) -> np.ndarray:
        small = frame_bgr if scale == 1.0 else cv2.resize(frame_bgr, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        return cv2.equalizeHist(cv2.cvtColor(small, cv2.COLOR_BGR2GRAY))

    def detect(self, images: list[np.ndarray], scale: float, min_face_size: int | None = None) -> list[Detections]:
        out = []
        size = min_face_size or self.min_face_size
        for image in images:
            found = self._cascade.detectMultiScale(
                image, scaleFactor=1.1, minNeighbors=self.min_neighbors, minSize=(size, size)
            )
            if len(found) == 0:
                out.append(Detections.empty())
                continue
            xywh = np.asarray(found, np.float32)
            boxes = np.column_stack([xywh[:, 0], xywh[:, 1], xywh[:, 0] + xywh[:, 2], xywh[:, 1] + xywh[:, 3]]) / scale
            out.append(Detections(boxes.astype(np.float32), np.full(len(boxes), np.nan, np.float32), None))
        return out


_MTCNN_SAFE_MIN_FACE = 20


class MtcnnDetector:
    """ipazc MTCNN, batched over keyframes of one size; weights ship inside the mtcnn wheel."""

    name = "mtcnn"

    def __init__(self, min_face_size: int = 20, threshold: float = 0.9, device: str = "CPU:0",
                 normalize: bool = True, compiled: bool = True):
        from mtcnn import MTCNN  # imports TensorFlow: only when this detector is chosen

        self._model = MTCNN(device=device)
        self.min_face_size = min_face_size
        self.threshold = threshold
        self.normalize = normalize
        self.compiled = compiled and _compile_stages(self._model)

    def prepare(self, frame_bgr: np.ndarray, scale: float) -> np.ndarray:
        small = frame_bgr if scale == 1.0 else cv2.resize(frame_bgr, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        if self.normalize:
            small = stretch_luminance(small)
        return np.ascontiguousarray(cv2.cvtColor(small, cv2.COLOR_BGR2RGB))  # a fresh uint8 array per frame

    def detect(self, images: list[np.ndarray], scale: float, min_face_size: int | None = None) -> list[Detections]:
        if not images:
            return []
        if len({im.shape for im in images}) != 1:
            raise ValueError("MTCNN batches must hold frames of one size (it pads to the largest)")
        min_face = min_face_size or self.min_face_size
        if min_face > _MTCNN_SAFE_MIN_FACE:
            # mtcnn 1.0 sizes its image pyramid as if the minimum face were 12 px: with a larger one the last
            # levels shrink below the 12 px network input and the whole batch silently returns no face.
            # Finding faces >= min_face px equals finding faces >= 20 px in an image shrunk by 20 / min_face.
            shrink = _MTCNN_SAFE_MIN_FACE / min_face
            small = [cv2.resize(im, None, fx=shrink, fy=shrink, interpolation=cv2.INTER_AREA) for im in images]
            return self.detect(small, scale * shrink, _MTCNN_SAFE_MIN_FACE)
        # A Python list of RGB uint8 frames is the only input mtcnn 1.0 batches; numpy output is (n, 16):
        # image index, x1, y1, x2, y2, confidence, five landmark x, then five landmark y.
        rows = self._model.detect_faces(
            list(images), box_format="xyxy", output_type="numpy",
            min_face_size=min_face, threshold_onet=self.threshold,
        )
        rows = np.asarray(rows, np.float32).reshape(-1, 16)
        out = []
        for i in range(len(images)):
            mine = rows[rows[:, 0] == i]
            mine = mine[mine[:, 5] >= self.threshold]
            out.append(
                Detections(
                    (mine[:, 1:5] / scale).astype(np.float32),
                    mine[:, 5].astype(np.float32),
                    (_interleave(mine[:, 6:16]) / scale).astype(np.float32),
                )
            )
        return out


def _compile_stages(model) -> bool:
    """Run mtcnn's three networks as compiled TensorFlow functions instead of eager Keras calls.

    mtcnn 1.0 calls its Keras models eagerly, PNet once per pyramid scale: Keras' per-layer Python overhead cost
    about half of the detection time. One trace per network (any image size and batch) halves it with the same
    boxes (tested). Returns False, leaving the models eager, if mtcnn's internals are not as expected.
    """
    import tensorflow as tf  # lazy: seconds to import, only for the TF backend or MTCNN

    stages = getattr(model, "_stages", None)
    if not stages or not all(hasattr(stage, "_model") for stage in stages):
        return False
    signature = [tf.TensorSpec([None, None, None, 3], tf.float32)]
    for stage in stages:
        stage._model = tf.function(stage._model, input_signature=signature, reduce_retracing=True)
    return True


def detect_in_rois(detector, frames: list[tuple[np.ndarray, list[np.ndarray]]], roi_size: int = 128,
                   roi_factor: float = 2.5) -> list[Detections]:
    """Detect faces only in square regions around where faces are expected, one detector call for all frames.

    `frames` holds (full-resolution BGR frame, expected face boxes). Each region is `roi_factor` times a box,
    cut from the full-resolution frame and resized to `roi_size` pixels, so every region is one size and the
    whole set is one batch. Detections are mapped back to frame pixels and merged per frame.
    """
    images, origins = [], []
    for n, (frame, boxes) in enumerate(frames):
        for box in boxes:
            sq = np.round(square_box(box, roi_factor - 1.0)).astype(int)
            images.append(detector.prepare(crop_square(frame, box, roi_factor - 1.0, roi_size), 1.0))
            origins.append((n, sq[0], sq[1], max(int(sq[2] - sq[0]), 1) / roi_size))
    found = detector.detect(images, 1.0) if images else []
    per_frame: list[list] = [[] for _ in frames]
    for dets, (n, x0, y0, factor) in zip(found, origins, strict=True):
        if len(dets):
            landmarks = None if dets.landmarks is None else dets.landmarks * factor + np.tile([x0, y0], 5)
            per_frame[n].append(Detections((dets.boxes * factor + np.array([x0, y0, x0, y0])).astype(np.float32),
                                           dets.confidences, None if landmarks is None else landmarks.astype(np.float32)))
    out = []
    for parts in per_frame:
        if not parts:
            out.append(Detections.empty(detector.name == "mtcnn"))
            continue
        marks = [p.landmarks for p in parts if p.landmarks is not None]
        merged = Detections(np.concatenate([p.boxes for p in parts]), np.concatenate([p.confidences for p in parts]),
                            np.concatenate(marks) if len(marks) == len(parts) else None)
        out.append(non_max_suppression(merged, 0.5))
    return out


def non_max_suppression(dets: Detections, iou_threshold: float) -> Detections:
    """Keep the most confident of overlapping detections (regions of neighbouring faces can overlap)."""
    if len(dets) < 2:
        return dets
    conf = np.nan_to_num(dets.confidences, nan=0.0)
    order = np.argsort(-conf, kind="stable")
    overlaps = iou(dets.boxes, dets.boxes)
    keep: list[int] = []
    for i in order:
        if all(overlaps[i, j] < iou_threshold for j in keep):
            keep.append(int(i))
    keep.sort()
    return Detections(dets.boxes[keep], dets.confidences[keep], None if dets.landmarks is None else dets.landmarks[keep])


def _interleave(landmarks: np.ndarray) -> np.ndarray:
    """mtcnn's x0..x4, y0..y4 as x0, y0, x1, y1, ... (left eye, right eye, nose, mouth left, mouth right)."""
    return np.stack([landmarks[:, :5], landmarks[:, 5:]], axis=-1).reshape(-1, 10)


def make_detector(kind: str, min_face_size: int, mtcnn_threshold: float, haar_min_neighbors: int,
                  device: str = "CPU:0", normalize: bool = True):
    """The detector named in the config."""
    if kind == "mtcnn":
        return MtcnnDetector(min_face_size=min_face_size, threshold=mtcnn_threshold, device=device, normalize=normalize)
    if kind == "haar":
        return HaarDetector(min_face_size=min_face_size, min_neighbors=haar_min_neighbors)
    raise ValueError(f"unknown detector {kind!r}: choose mtcnn or haar")
