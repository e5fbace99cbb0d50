"""Square face crops with a margin: resized for JPEG storage and the grey face SSIM series, and at the video's own
pixel scale, stored losslessly, for the texture descriptors."""

from __future__ import annotations

import cv2
import numpy as np


def square_box(box: np.ndarray, margin: float) -> np.ndarray:
    """A square around the face box, its side the box's longer side times (1 + margin), same centre."""
    x1, y1, x2, y2 = (float(v) for v in box)
    side = max(x2 - x1, y2 - y1, 1.0) * (1.0 + margin)
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    return np.array([cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2], np.float32)


def _square_region(image: np.ndarray, box: np.ndarray, margin: float) -> np.ndarray | None:
    """The pixels of the square around `box` (square_box), padded with black where it leaves the frame; None when
    it lies wholly outside."""
    sx1, sy1, sx2, sy2 = np.round(square_box(box, margin)).astype(int)
    h, w = image.shape[:2]
    side = max(sx2 - sx1, 1)
    ix1, iy1, ix2, iy2 = max(sx1, 0), max(sy1, 0), min(sx1 + side, w), min(sy1 + side, h)
    if ix2 <= ix1 or iy2 <= iy1:
        return None
    inner = image[iy1:iy2, ix1:ix2]
    if (ix1, iy1, ix2, iy2) != (sx1, sy1, sx1 + side, sy1 + side):
        inner = cv2.copyMakeBorder(
            inner, iy1 - sy1, sy1 + side - iy2, ix1 - sx1, sx1 + side - ix2, cv2.BORDER_CONSTANT, value=0
        )
    return inner


def _resized(square: np.ndarray, side: int) -> np.ndarray:
    if square.shape[0] == side:
        return square.copy()  # not a view that would keep the whole frame alive
    interp = cv2.INTER_AREA if square.shape[0] > side else cv2.INTER_LINEAR
    return cv2.resize(square, (side, side), interpolation=interp)


def crop_square(image: np.ndarray, box: np.ndarray, margin: float, size: int) -> np.ndarray:
    """The square crop around `box`, padded with black where it leaves the frame, resized to size x size."""
    square = _square_region(image, box, margin)
    if square is None:
        return np.zeros((size, size) + image.shape[2:], image.dtype)
    return _resized(square, size)


# Below this side a native-scale crop is enlarged: the descriptors' zones and 7 x 7 patches need some pixels.
NATIVE_MIN_SIDE = 64


def crop_native(image: np.ndarray, box: np.ndarray, margin: float, max_side: int,
                min_side: int = NATIVE_MIN_SIDE) -> np.ndarray:
    """The square crop around `box` at the video's own pixel scale: its side is the square's side in frame pixels,
    shrunk to `max_side` when larger and enlarged to `min_side` when smaller, and kept otherwise.

    Residual statistics are made for the pixel grid the video was encoded on: enlarging a small face replaces
    its residuals with the interpolation kernel's, and JPEG storage adds its own 8 x 8 quantisation noise at the
    scale the descriptors measure, so these crops are neither enlarged (above `min_side`) nor stored lossily."""
    square = _square_region(image, box, margin)
    if square is None:
        return np.zeros((min_side, min_side) + image.shape[2:], image.dtype)
    return _resized(square, int(np.clip(square.shape[0], min_side, max(max_side, min_side))))


def encode_lossless(image_bgr: np.ndarray) -> bytes:
    """Lossless WebP bytes of a BGR crop (about a third smaller than PNG); decode with cv2.imdecode."""
    ok, buf = cv2.imencode(".webp", image_bgr, [cv2.IMWRITE_WEBP_QUALITY, 101])  # quality > 100: lossless
    if not ok:
        raise ValueError("lossless WebP encoding failed")
    return buf.tobytes()


def encode_jpeg(image_bgr: np.ndarray, quality: int) -> bytes:
    """JPEG bytes of a BGR (or grey) crop; decode with cv2.imdecode or PIL."""
    ok, buf = cv2.imencode(".jpg", image_bgr, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise ValueError("JPEG encoding failed")
    return buf.tobytes()


GRID = 8  # side of the coding blocks whose traces grid_blockiness measures (JPEG / MPEG DCT blocks; H.264's 4 x 4
# and 8 x 8 transforms and 16 x 16 macroblocks all have edges on it)


def grid_phase(rotation: int, width: int, height: int) -> tuple[int, int]:
    """Where the coded frame's block grid falls in an upright frame of `width` x `height` that was turned by the
    container's display rotation (decode.VideoProbe.rotation, OpenCV's convention): edges at columns x with
    (x - px) % GRID == 0 and rows y with (y - py) % GRID == 0. The coded grid starts at the coded frame's top-left
    corner; a rotation moves that corner, so a side that is not a multiple of GRID shifts the grid (a 480 x 854
    portrait clip turned by 270 degrees has its row edges at 6 mod 8, not 0)."""
    rotation %= 360
    return ((width % GRID) if rotation in (90, 180) else 0, (height % GRID) if rotation in (180, 270) else 0)


def grid_blockiness(grey: np.ndarray, box: np.ndarray, reach: float = 0.5,
                    phase: tuple[int, int] = (0, 0)) -> float:
    """How much stronger the steps across the frame's GRID-pixel block edges are than the steps elsewhere, in the
    face centre: 100 x log(mean |difference| between neighbours on either side of a block edge / mean |difference|
    between other neighbours), over the square within `reach` x half the box's longer side of its centre, on the
    full-resolution grey frame (block edges at multiples of GRID in frame coordinates, shifted by `phase`:
    grid_phase). NaN when the square is under two blocks wide.

    Every encoding leaves its block grid in the pixels. A real video re-encoded keeps the grid of its earlier
    encoding in the face too; a face re-synthesised before the last encoding has only the last one, so on lightly
    compressed video its centre is less blocky than a real face's (heavy compression swamps both)."""
    x1, y1, x2, y2 = (float(v) for v in box)
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    r = reach * max(x2 - x1, y2 - y1) / 2
    h, w = grey.shape[:2]
    left, top = max(int(np.floor(cx - r)), 0), max(int(np.floor(cy - r)), 0)
    right, bottom = min(int(np.ceil(cx + r)), w), min(int(np.ceil(cy + r)), h)
    if right - left < 2 * GRID or bottom - top < 2 * GRID:
        return float("nan")
    region = grey[top:bottom, left:right].astype(np.float32)
    across_x = ((np.arange(left + 1, right) - phase[0]) % GRID) == 0  # the step from column c-1 to c crosses an edge
    across_y = ((np.arange(top + 1, bottom) - phase[1]) % GRID) == 0
    steps_x, steps_y = np.abs(np.diff(region, axis=1)), np.abs(np.diff(region, axis=0))
    edge = np.concatenate([steps_x[:, across_x].ravel(), steps_y[across_y].ravel()]).mean()
    inside = np.concatenate([steps_x[:, ~across_x].ravel(), steps_y[~across_y].ravel()]).mean()
    return float(100 * np.log((edge + 1e-3) / (inside + 1e-3)))


def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of boxes a (n, 4) and b (m, 4) in x1, y1, x2, y2."""
    a = np.asarray(a, np.float64).reshape(-1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)
    x1 = np.maximum(a[:, None, 0], b[None, :, 0])
    y1 = np.maximum(a[:, None, 1], b[None, :, 1])
    x2 = np.minimum(a[:, None, 2], b[None, :, 2])
    y2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-9), 0.0)
