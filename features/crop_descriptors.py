"""Per-crop texture descriptors of the inner face, for frame-level classifiers aggregated to videos.

Computed on stored JPEG crops (no decoding of videos): uniform LBP histograms at two radii and the radial
power spectrum of the face box resampled to 128 px (so the source resolution is normalised away first),
plus the blending-seam contrasts (sharpness, noise, chroma) of the face against the ring around it.
"""

from __future__ import annotations

import cv2
import numpy as np

from features.video_features import crop_regions, inner_face_grey, radial_spectrum, seam_contrast

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

    face = cv2.resize(inner_face_grey(crop_bgr, margin), (FACE_SIDE, FACE_SIDE), interpolation=cv2.INTER_AREA)
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


def descriptor_table(crops, margins: dict[str, float], self_blend_seed: int | None = None):
    """One descriptor row per stored crop (columns: video_id + descriptor_names()).

    `crops` has video_id and crop_jpeg; `margins` maps each video to its crop margin. With `self_blend_seed`,
    each crop is replaced by a self-blended fake of itself first (the same rows, synthetic FAKE content).
    """
    import pandas as pd

    from features.self_blend import self_blend
    from features.video_features import decode_crops

    rng = np.random.default_rng(self_blend_seed) if self_blend_seed is not None else None
    rows, ids = [], []
    for vid, part in crops.groupby("video_id", sort=True):
        for image in decode_crops(part.crop_jpeg):
            if rng is not None:
                image = self_blend(image, margins[vid], rng)
            rows.append(crop_descriptor(image, margins[vid]))
            ids.append(vid)
    names = descriptor_names()
    table = pd.DataFrame(np.stack(rows) if rows else np.zeros((0, len(names)), np.float32), columns=names)
    table.insert(0, "video_id", ids)
    return table
