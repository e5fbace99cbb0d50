"""SSIM between consecutive grey images, batched; numerically the same as skimage's structural_similarity.

Same window and constants as `skimage.metrics.structural_similarity(a, b, data_range=255)`: a 7x7 uniform
window, K1=0.01, K2=0.03, sample covariance, averaged over windows that lie fully inside the image.
The `tf` backend computes the same formula with TensorFlow ops (for GPU workers). It uses the uniform window
rather than `tf.image.ssim`'s 11x11 Gaussian, so series do not depend on which backend produced them.
"""

from __future__ import annotations

import cv2
import numpy as np

WIN = 7
K1, K2 = 0.01, 0.03
DATA_RANGE = 255.0
_COV_NORM = WIN * WIN / (WIN * WIN - 1.0)


def _window_mean(x: np.ndarray) -> np.ndarray:
    """Mean over every fully-inside WIN x WIN window of an image (the borders skimage crops away)."""
    pad = WIN // 2
    return cv2.boxFilter(x, -1, (WIN, WIN), normalize=True, borderType=cv2.BORDER_REFLECT)[pad:-pad, pad:-pad]


class _Stats:
    """Window means of one grey image and of its square: computed once per image in a series."""

    def __init__(self, image: np.ndarray):
        # float32 on [0, 255] values: within 1e-6 of skimage's float64 result (tested to 1e-3), and faster.
        self.x = image.astype(np.float32)
        self.mean = _window_mean(self.x)
        self.var = _COV_NORM * (_window_mean(self.x * self.x) - self.mean * self.mean)


def _ssim_stats(a: _Stats, b: _Stats) -> float:
    cov = _COV_NORM * (_window_mean(a.x * b.x) - a.mean * b.mean)
    c1, c2 = (K1 * DATA_RANGE) ** 2, (K2 * DATA_RANGE) ** 2
    s = ((2 * a.mean * b.mean + c1) * (2 * cov + c2)) / ((a.mean * a.mean + b.mean * b.mean + c1) * (a.var + b.var + c2))
    return float(s.mean(dtype=np.float64))


def _check(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(a)
    b = np.asarray(b)
    if a.ndim == 2:
        a, b = a[None], b[None]
    if a.shape != b.shape or a.ndim != 3:
        raise ValueError(f"SSIM needs two stacks of grey images of one shape, got {a.shape} and {b.shape}")
    if min(a.shape[1:]) < WIN:
        raise ValueError(f"SSIM needs images of at least {WIN}x{WIN} pixels, got {a.shape[1:]}")
    return a, b


def ssim_numpy(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Mean SSIM of each pair (a[i], b[i]) of uint8 grey images; returns shape (n,)."""
    a, b = _check(a, b)
    return np.array([_ssim_stats(_Stats(x), _Stats(y)) for x, y in zip(a, b, strict=True)], np.float32)


def ssim_series_numpy(images: np.ndarray) -> np.ndarray:
    """SSIM of each image with the one before it, shape (n - 1,).

    The same values as ssim_numpy(images[:-1], images[1:]), but each image's window statistics are computed
    once instead of twice: three box filters per frame instead of five.
    """
    images = np.asarray(images)
    if len(images) < 2:
        return np.zeros(0, np.float32)
    _check(images[:1], images[:1])
    values = np.empty(len(images) - 1, np.float32)
    prev = _Stats(images[0])
    for i in range(1, len(images)):
        cur = _Stats(images[i])
        values[i - 1] = _ssim_stats(prev, cur)
        prev = cur
    return values


def ssim_tf(a: np.ndarray, b: np.ndarray, device: str | None = None) -> np.ndarray:
    """The same SSIM with TensorFlow ops, batched on the given device (for example 'GPU:0')."""
    import tensorflow as tf  # lazy: seconds to import, only for the TF backend or MTCNN

    a, b = _check(a, b)
    if len(a) == 0:
        return np.zeros(0, np.float32)
    with tf.device(device or "CPU:0"):
        x = tf.convert_to_tensor(a[..., None], tf.float32) / DATA_RANGE
        y = tf.convert_to_tensor(b[..., None], tf.float32) / DATA_RANGE

        def mean(t):
            return tf.nn.avg_pool2d(t, ksize=WIN, strides=1, padding="VALID")

        ux, uy = mean(x), mean(y)
        vx = _COV_NORM * (mean(x * x) - ux * ux)
        vy = _COV_NORM * (mean(y * y) - uy * uy)
        vxy = _COV_NORM * (mean(x * y) - ux * uy)
        c1, c2 = K1**2, K2**2
        s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))
        return tf.reduce_mean(s, axis=[1, 2, 3]).numpy().astype(np.float32)


def ssim_series(images: np.ndarray, backend: str = "numpy", device: str | None = None) -> np.ndarray:
    """SSIM of each grey uint8 image with the one before it, shape (n - 1,), with the chosen backend."""
    if backend == "numpy":
        return ssim_series_numpy(images)
    if backend == "tf":
        images = np.asarray(images)
        return ssim_tf(images[:-1], images[1:], device=device) if len(images) > 1 else np.zeros(0, np.float32)
    raise ValueError(f"unknown SSIM backend {backend!r}: choose numpy or tf")


def ssim_pairs(a: np.ndarray, b: np.ndarray, backend: str = "numpy", device: str | None = None) -> np.ndarray:
    """SSIM of each pair of grey uint8 images with the chosen backend."""
    if backend == "numpy":
        return ssim_numpy(a, b)
    if backend == "tf":
        return ssim_tf(a, b, device=device)
    raise ValueError(f"unknown SSIM backend {backend!r}: choose numpy or tf")
