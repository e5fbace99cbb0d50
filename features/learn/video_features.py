"""Per-video feature vectors computed from the cache alone (SSIM series, face tracks, JPEG crops): no decoding."""

from __future__ import annotations

import functools
import math

import cv2
import numpy as np
import pandas as pd

# Bump when a feature's definition changes: the features table is recomputed. "4": face_grid_blockiness.
FEATURES_VERSION = "4"

_SERIES = {
    "mean": "mean SSIM between consecutive frames",
    "std": "standard deviation of the SSIM series",
    "p05": "5th percentile of the SSIM series (the worst transitions)",
    "p50": "median of the SSIM series",
    "min": "lowest SSIM between two consecutive frames",
    "drop_rate": "fraction of transitions more than 3 robust deviations (at least 0.02) below the median: drops",
    "lag1": "lag-1 autocorrelation of the SSIM series (smooth motion is autocorrelated, flicker is not)",
    "hf_energy": "mean squared first difference of the SSIM series: high-frequency (flicker) energy",
}

FEATURES: dict[str, str] = {
    **{f"face_ssim_{k}": f"main face track: {v}" for k, v in _SERIES.items()},
    **{f"frame_ssim_{k}": f"whole frame: {v}" for k, v in _SERIES.items()},
    "face_minus_frame_ssim": "mean of face SSIM minus frame SSIM on the same transitions",
    "face_frame_ssim_corr": "correlation of face and frame SSIM series (a pasted face moves on its own)",
    "face_over_frame_hf": "log ratio of face to frame flicker energy",
    "face_sharpness": "mean log Laplacian variance of the grey face crop (blur of the face)",
    "frame_sharpness": "mean log Laplacian variance of the downscaled grey frame",
    "face_over_frame_sharpness": "face sharpness minus frame sharpness (log ratio)",
    "face_sharpness_cv": "temporal coefficient of variation of face sharpness (blur flicker)",
    "seam_sharpness": "log ratio of Laplacian variance inside the face box to the ring around it, on stored crops",
    "seam_noise": "log ratio of high-pass noise inside the face box to the ring around it",
    "seam_color": "chroma (Lab a, b) distance between the inner face and the ring around it",
    "seam_color_flicker": "standard deviation over sampled frames of that chroma distance",
    "spec_slope": "slope of log power against log frequency of the inner face's spectrum (96 px, windowed)",
    "spec_hf": "log power of the highest spatial frequencies of the inner face minus the lowest ones",
    "spec_hf_flicker": "standard deviation over sampled frames of that high-frequency level",
    "box_jitter": "mean absolute second difference of the face-box centre, relative to box size",
    "box_scale_jitter": "standard deviation of the frame-to-frame change of log box size",
    "landmark_mouth_sd": "log standard deviation over keyframes of mouth width / eye distance (MTCNN landmarks of "
                         "the main face): how much the expression moves; generated faces move less",
    "landmark_nose_sd": "log standard deviation over keyframes of nose-to-eye-midpoint distance / eye distance",
    "landmark_vertical_sd": "log standard deviation over keyframes of mouth-to-eye-midpoint distance / eye distance",
    "face_grid_blockiness": "mean over stored crops of the face centre's block-grid traces (features.video.crops."
                            "grid_blockiness); NaN when the video has under GRID_MIN_BITS_PER_PIXEL bits per pixel",
    "det_confidence_mean": "mean MTCNN confidence on keyframes where the main face was detected",
    "det_confidence_min": "lowest MTCNN confidence of the main face",
    "detection_rate": "fraction of keyframes on which any face was detected",
    "face_track_count": "number of face tracks kept",
    "has_face": "1 when a face track was found, else 0",
}
FEATURE_NAMES = list(FEATURES)
# Expression dynamics from the detector's landmarks: crop_linear combines them with its crop and patch scores.
LANDMARK_FEATURES = ["landmark_mouth_sd", "landmark_nose_sd", "landmark_vertical_sd"]
# What crop_linear's final combination reads of the video table beside its crop and patch scores. Not the block-grid
# trace: it helped the development folds and broke crop_linear on clips from other sources (bench/results/decisions.md).
VIDEO_INPUTS = list(LANDMARK_FEATURES)
# Below this the last encoding's quantisation swamps the earlier grid (FF++ c40 is about 2^-7.5, c23 2^-4.5): the
# feature is left out (NaN) rather than read as a signal, fixed in advance from codec knowledge, not fitted.
GRID_MIN_BITS_PER_PIXEL = 2.0 ** -6


def drop_mask(x: np.ndarray) -> np.ndarray:
    """Transitions more than 3 robust deviations (and at least 0.02) below the series' median."""
    med = float(np.median(x))
    mad = float(np.median(np.abs(x - med))) * 1.4826
    return x < med - max(3 * mad, 0.02)


def series_stats(x: np.ndarray) -> dict[str, float]:
    """The _SERIES statistics of one SSIM series (NaN when too short)."""
    x = np.asarray(x, np.float64)
    x = x[np.isfinite(x)]
    if len(x) < 3:
        return {k: math.nan for k in _SERIES}
    d = np.diff(x)
    centered = x - x.mean()
    denom = float((centered**2).sum())
    return {
        "mean": float(x.mean()),
        "std": float(x.std()),
        "p05": float(np.percentile(x, 5)),
        "p50": float(np.median(x)),
        "min": float(x.min()),
        "drop_rate": float(drop_mask(x).mean()),
        "lag1": float((centered[1:] * centered[:-1]).sum() / denom) if denom > 1e-12 else 0.0,
        "hf_energy": float((d**2).mean()),
    }


def _log(x: float) -> float:
    return math.log(max(x, 1e-6))


def crop_regions(crop_bgr: np.ndarray, margin: float) -> tuple[np.ndarray, np.ndarray]:
    """Masks of the inner face (box shrunk by 10%) and the ring between the face box and the crop edge."""
    return _regions(crop_bgr.shape[0], float(margin))


@functools.lru_cache(maxsize=8)
def _regions(n: int, margin: float) -> tuple[np.ndarray, np.ndarray]:
    # Depends only on the crop size and margin: every crop of a cache shares one pair of (read-only) masks.
    box_half = n / (1 + margin) / 2
    yy, xx = np.mgrid[0:n, 0:n]
    dist = np.maximum(np.abs(xx - n / 2 + 0.5), np.abs(yy - n / 2 + 0.5))
    inner = dist < 0.9 * box_half
    ring = (dist >= box_half) & (dist < n / 2 - 1)
    inner.flags.writeable = ring.flags.writeable = False
    return inner, ring


def inner_face_grey(crop_bgr: np.ndarray, margin: float) -> np.ndarray:
    """The grey square inside the face box of a crop (the box shrunk by 10%), where blending leaves its traces."""
    n = crop_bgr.shape[0]
    half = int(n / (1 + max(margin, 0.0)) / 2 * 0.9)
    centre = n // 2
    return cv2.cvtColor(crop_bgr[centre - half:centre + half, centre - half:centre + half], cv2.COLOR_BGR2GRAY)


def seam_contrast(crop: np.ndarray, inner: np.ndarray, ring: np.ndarray) -> tuple[float, float, np.ndarray]:
    """Face against surround on one crop: log sharpness ratio, log noise ratio, and chroma (Lab a, b) difference."""
    grey = cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY).astype(np.float32)
    lap = cv2.Laplacian(grey, cv2.CV_32F)
    resid = grey - cv2.medianBlur(crop, 3).mean(axis=2).astype(np.float32)
    lab = cv2.cvtColor(crop, cv2.COLOR_BGR2LAB).astype(np.float32)
    sharp = _log(float(lap[inner].var())) - _log(float(lap[ring].var()))
    noise = _log(float(resid[inner].std())) - _log(float(resid[ring].std()))
    return sharp, noise, lab[inner][:, 1:].mean(0) - lab[ring][:, 1:].mean(0)


def seam_stats(crops: list[np.ndarray], margin: float) -> dict[str, float]:
    """Blending-seam cues on stored crops: sharpness, noise and colour of the face against its surround."""
    if not crops or margin <= 0.05:
        return {k: math.nan for k in ("seam_sharpness", "seam_noise", "seam_color", "seam_color_flicker")}
    inner, ring = crop_regions(crops[0], margin)
    sharp, noise, color = [], [], []
    for crop in crops:
        s, n, chroma = seam_contrast(crop, inner, ring)
        sharp.append(s)
        noise.append(n)
        color.append(float(np.linalg.norm(chroma)))
    return {
        "seam_sharpness": float(np.mean(sharp)),
        "seam_noise": float(np.mean(noise)),
        "seam_color": float(np.mean(color)),
        "seam_color_flicker": float(np.std(color)),
    }


SPECTRUM_SIZE = 96
_SPECTRUM_BINS = 12


def _radial_bins(n: int) -> np.ndarray:
    fy = np.fft.fftfreq(n)[:, None]
    fx = np.fft.fftfreq(n)[None, :]
    radius = np.hypot(fx, fy)  # cycles per pixel, 0 .. 0.707
    return np.minimum((radius / 0.5 * _SPECTRUM_BINS).astype(int), _SPECTRUM_BINS)  # bin 12: corners, unused


def radial_spectrum(face_grey: np.ndarray) -> np.ndarray:
    """Azimuthally averaged log power spectrum of a square grey face image, resampled to SPECTRUM_SIZE."""
    image = cv2.resize(face_grey, (SPECTRUM_SIZE, SPECTRUM_SIZE), interpolation=cv2.INTER_AREA).astype(np.float64)
    window = np.outer(np.hanning(SPECTRUM_SIZE), np.hanning(SPECTRUM_SIZE))
    power = np.abs(np.fft.fft2((image - image.mean()) * window)) ** 2
    bins = _radial_bins(SPECTRUM_SIZE)
    sums = np.bincount(bins.ravel(), power.ravel(), _SPECTRUM_BINS + 1)[:_SPECTRUM_BINS]
    counts = np.bincount(bins.ravel(), minlength=_SPECTRUM_BINS + 1)[:_SPECTRUM_BINS]
    return np.log(np.maximum(sums / np.maximum(counts, 1), 1e-12))


def spectrum_stats(crops: list[np.ndarray], margin: float) -> dict[str, float]:
    """Frequency cues of the inner face (upsampling and blending smooth or distort its high frequencies).

    Every crop is cut to the face box and resampled to one size first, so the statistics do not encode the
    source resolution directly.
    """
    if not crops:
        return {"spec_slope": math.nan, "spec_hf": math.nan, "spec_hf_flicker": math.nan}
    slopes, highs = [], []
    freqs = np.log((np.arange(_SPECTRUM_BINS) + 0.5) / _SPECTRUM_BINS * 0.5)
    for crop in crops:
        face = inner_face_grey(crop, margin)
        if face.shape[0] < 16:
            continue
        spectrum = radial_spectrum(face)
        slopes.append(float(np.polyfit(freqs[2:], spectrum[2:], 1)[0]))
        highs.append(float(spectrum[-3:].mean() - spectrum[1:4].mean()))
    if not slopes:
        return {"spec_slope": math.nan, "spec_hf": math.nan, "spec_hf_flicker": math.nan}
    return {"spec_slope": float(np.median(slopes)), "spec_hf": float(np.median(highs)),
            "spec_hf_flicker": float(np.std(highs))}


def box_stats(boxes: pd.DataFrame) -> dict[str, float]:
    """Jitter of the main face box over consecutive frames."""
    if len(boxes) < 4:
        return {"box_jitter": math.nan, "box_scale_jitter": math.nan}
    b = boxes.sort_values("frame_index")
    cx = ((b.x1 + b.x2) / 2).to_numpy(np.float64)
    cy = ((b.y1 + b.y2) / 2).to_numpy(np.float64)
    size = np.maximum((b.x2 - b.x1).to_numpy(np.float64), 1.0)
    second = np.hypot(np.diff(cx, 2), np.diff(cy, 2)) / np.median(size)
    return {"box_jitter": float(second.mean()), "box_scale_jitter": float(np.diff(np.log(size)).std())}


def landmark_stats(faces: pd.DataFrame) -> dict[str, float]:
    """LANDMARK_FEATURES from the main face's MTCNN landmarks (left eye, right eye, nose, mouth left, mouth right) on
    the keyframes where it was detected. Distances are divided by the eye distance, so face size and distance to
    the camera cancel; NaN with fewer than 3 such keyframes (or Haar detections, which have no landmarks)."""
    rows = faces[faces.detected & faces.landmarks.notna()] if len(faces) and "landmarks" in faces else faces.iloc[0:0]
    if len(rows) < 3:
        return {name: math.nan for name in LANDMARK_FEATURES}
    points = np.stack([np.asarray(v, np.float64) for v in rows.landmarks]).reshape(-1, 5, 2)
    eyes = (points[:, 0] + points[:, 1]) / 2
    eye_distance = np.maximum(np.linalg.norm(points[:, 0] - points[:, 1], axis=1), 1e-6)
    ratios = {
        "landmark_mouth_sd": np.linalg.norm(points[:, 3] - points[:, 4], axis=1) / eye_distance,
        "landmark_nose_sd": np.linalg.norm(points[:, 2] - eyes, axis=1) / eye_distance,
        "landmark_vertical_sd": np.linalg.norm((points[:, 3] + points[:, 4]) / 2 - eyes, axis=1) / eye_distance,
    }
    return {name: float(np.log(max(r.std(), 1e-6))) for name, r in ratios.items()}


def bits_per_pixel(video: dict) -> float:
    """File size over decoded pixels (frame_count x width x height) of a videos row; NaN when unknown."""
    frames = video.get("frame_count")
    if not frames or frames != frames:  # None, 0 or NaN: a container without a frame count
        frames = video.get("frames_decoded")
    try:
        pixels = float(frames) * video["width"] * video["height"]
        return 8.0 * float(video["file_bytes"]) / pixels if pixels > 0 else math.nan
    except (KeyError, TypeError, ValueError):
        return math.nan


def grid_stats(video: dict, main_faces: pd.DataFrame) -> dict[str, float]:
    """face_grid_blockiness of the main face (NaN on heavily compressed video, or without values)."""
    values = main_faces.grid_blockiness.dropna() if "grid_blockiness" in main_faces else pd.Series(dtype=float)
    if not len(values) or not bits_per_pixel(video) >= GRID_MIN_BITS_PER_PIXEL:
        return {"face_grid_blockiness": math.nan}
    return {"face_grid_blockiness": float(values.mean())}


def decode_crops(jpegs) -> list[np.ndarray]:
    out = []
    for blob in jpegs:
        if blob is None:
            continue
        image = cv2.imdecode(np.frombuffer(blob, np.uint8), cv2.IMREAD_COLOR)
        if image is not None:
            out.append(image)
    return out


def video_features(video: dict, faces: pd.DataFrame, ssim: pd.DataFrame, crop_margin: float) -> dict[str, float]:
    """The documented feature vector (FEATURES) of one video from its cached rows."""
    out: dict[str, float] = {}
    frame = ssim[ssim.track_id == -1].sort_values("frame_index")
    face = ssim[ssim.is_main & (ssim.track_id >= 0)].sort_values("frame_index")
    for prefix, series in (("face", face), ("frame", frame)):
        out.update({f"{prefix}_ssim_{k}": v for k, v in series_stats(series.ssim.to_numpy()).items()})
    joined = face.merge(frame, on="frame_index", suffixes=("_face", "_frame"))
    if len(joined) >= 3:
        diff = joined.ssim_face - joined.ssim_frame
        out["face_minus_frame_ssim"] = float(diff.mean())
        corr = np.corrcoef(joined.ssim_face, joined.ssim_frame)[0, 1] if joined.ssim_face.std() > 0 and joined.ssim_frame.std() > 0 else 0.0
        out["face_frame_ssim_corr"] = float(corr)
        out["face_over_frame_hf"] = _log(out["face_ssim_hf_energy"]) - _log(out["frame_ssim_hf_energy"])
    else:
        out.update({k: math.nan for k in ("face_minus_frame_ssim", "face_frame_ssim_corr", "face_over_frame_hf")})
    face_sharp = np.log(np.maximum(face.sharpness.to_numpy(np.float64), 1e-6)) if len(face) else np.array([])
    frame_sharp = np.log(np.maximum(frame.sharpness.to_numpy(np.float64), 1e-6)) if len(frame) else np.array([])
    out["face_sharpness"] = float(face_sharp.mean()) if len(face_sharp) else math.nan
    out["frame_sharpness"] = float(frame_sharp.mean()) if len(frame_sharp) else math.nan
    out["face_over_frame_sharpness"] = out["face_sharpness"] - out["frame_sharpness"]
    raw = np.exp(face_sharp) if len(face_sharp) else np.array([])
    out["face_sharpness_cv"] = float(raw.std() / raw.mean()) if len(raw) and raw.mean() > 0 else math.nan
    main = faces[faces.is_main] if len(faces) else faces
    crops = decode_crops(main.crop_jpeg) if len(main) else []
    out.update(seam_stats(crops, crop_margin))
    out.update(spectrum_stats(crops, crop_margin))
    out.update(box_stats(main) if len(main) else {"box_jitter": math.nan, "box_scale_jitter": math.nan})
    out.update(landmark_stats(main))
    out.update(grid_stats(video, main))
    conf = main[main.detected].confidence.dropna() if len(main) else pd.Series(dtype=float)
    out["det_confidence_mean"] = float(conf.mean()) if len(conf) else math.nan
    out["det_confidence_min"] = float(conf.min()) if len(conf) else math.nan
    keyframes = video.get("keyframes") or 0
    out["detection_rate"] = float(video.get("keyframes_with_face") or 0) / keyframes if keyframes else 0.0
    out["face_track_count"] = float(video.get("n_tracks") or 0)
    out["has_face"] = 1.0 if len(main) else 0.0
    return {name: out[name] for name in FEATURE_NAMES}
