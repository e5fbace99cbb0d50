"""Per-crop texture descriptors of the inner face, for frame-level classifiers aggregated to videos.

Computed on stored JPEG crops (no decoding of videos): uniform LBP histograms at two radii and the radial
power spectrum of the face box resampled to 128 px (so the source resolution is normalised away first),
plus the blending-seam contrasts (sharpness, noise, chroma) of the face against the ring around it.
"""

from __future__ import annotations

import cv2
import numpy as np

from features.video_features import crop_regions, radial_spectrum, seam_contrast

FACE_SIDE = 128
_LBP = ((8, 1), (16, 2))


def descriptor_names() -> list[str]:
    names = [f"lbp{p}_{r}_{i}" for p, r in _LBP for i in range(p + 2)]
    names += [f"spectrum_{i}" for i in range(1, 12)]
    names += ["seam_sharpness", "seam_noise", "seam_a", "seam_b", "face_l_std", "face_a_std", "face_b_std"]
    return names


def crop_descriptor(crop_bgr: np.ndarray, margin: float) -> np.ndarray:
    """The descriptor of one square BGR crop whose face box sits inside a `margin` border."""
    from skimage.feature import local_binary_pattern

    n = crop_bgr.shape[0]
    half = int(n / (1 + margin) / 2 * 0.9)
    centre = n // 2
    face = cv2.cvtColor(crop_bgr[centre - half:centre + half, centre - half:centre + half], cv2.COLOR_BGR2GRAY)
    face = cv2.resize(face, (FACE_SIDE, FACE_SIDE), interpolation=cv2.INTER_AREA)
    values: list[float] = []
    for points, radius in _LBP:
        codes = local_binary_pattern(face, points, radius, "uniform")
        hist, _ = np.histogram(codes, bins=points + 2, range=(0, points + 2), density=True)
        values += hist.tolist()
    spectrum = radial_spectrum(face)
    values += (spectrum[1:] - spectrum[1]).tolist()  # shape of the spectrum, not its level
    inner, ring = crop_regions(crop_bgr, margin)
    sharp, noise, chroma = seam_contrast(crop_bgr, inner, ring)
    values += [sharp, noise, *chroma.tolist()]
    values += cv2.cvtColor(crop_bgr, cv2.COLOR_BGR2LAB).astype(np.float32)[inner].std(0).tolist()
    return np.asarray(values, np.float32)
