"""Square face crops with a margin, for JPEG storage and for the grey face SSIM series."""

from __future__ import annotations

import cv2
import numpy as np


def square_box(box: np.ndarray, margin: float) -> np.ndarray:
    """A square around the face box, its side the box's longer side times (1 + margin), same centre."""
    x1, y1, x2, y2 = (float(v) for v in box)
    side = max(x2 - x1, y2 - y1, 1.0) * (1.0 + margin)
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    return np.array([cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2], np.float32)


def crop_square(image: np.ndarray, box: np.ndarray, margin: float, size: int) -> np.ndarray:
    """The square crop around `box`, padded with black where it leaves the frame, resized to size x size."""
    sx1, sy1, sx2, sy2 = np.round(square_box(box, margin)).astype(int)
    h, w = image.shape[:2]
    side = max(sx2 - sx1, 1)
    ix1, iy1, ix2, iy2 = max(sx1, 0), max(sy1, 0), min(sx1 + side, w), min(sy1 + side, h)
    if ix2 <= ix1 or iy2 <= iy1:
        return np.zeros((size, size) + image.shape[2:], image.dtype)
    inner = image[iy1:iy2, ix1:ix2]
    if (ix1, iy1, ix2, iy2) != (sx1, sy1, sx1 + side, sy1 + side):
        inner = cv2.copyMakeBorder(
            inner, iy1 - sy1, sy1 + side - iy2, ix1 - sx1, sx1 + side - ix2, cv2.BORDER_CONSTANT, value=0
        )
    interp = cv2.INTER_AREA if side > size else cv2.INTER_LINEAR
    return cv2.resize(inner, (size, size), interpolation=interp)


def encode_jpeg(image_bgr: np.ndarray, quality: int) -> bytes:
    """JPEG bytes of a BGR (or grey) crop; decode with cv2.imdecode or PIL."""
    ok, buf = cv2.imencode(".jpg", image_bgr, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise ValueError("JPEG encoding failed")
    return buf.tobytes()
