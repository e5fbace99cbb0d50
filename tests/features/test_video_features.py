import math

import cv2
import numpy as np
import pandas as pd
import pytest

from features.learn.video_features import (
    FEATURE_NAMES,
    FEATURES,
    GRID_MIN_BITS_PER_PIXEL,
    LANDMARK_FEATURES,
    VIDEO_INPUTS,
    bits_per_pixel,
    box_stats,
    grid_stats,
    landmark_stats,
    seam_stats,
    series_stats,
    video_features,
)
from features.video.crops import encode_jpeg
from tests.conftest import face_scene


def test_every_feature_is_described_in_one_line():
    assert len(FEATURE_NAMES) == len(set(FEATURE_NAMES)) >= 30
    assert all(desc and "\n" not in desc for desc in FEATURES.values())


def test_series_stats_values():
    smooth = np.linspace(0.90, 0.99, 50)
    flicker = np.tile([0.99, 0.80], 25)
    s, f = series_stats(smooth), series_stats(flicker)
    assert s["lag1"] > 0.9 and f["lag1"] < -0.9
    assert f["hf_energy"] > 100 * s["hf_energy"]
    assert math.isclose(f["min"], 0.80, abs_tol=1e-9) and math.isclose(s["p50"], np.median(smooth))
    drops = np.full(40, 0.97)
    drops[[5, 20]] = 0.6
    assert series_stats(drops)["drop_rate"] == 2 / 40
    assert all(math.isnan(v) for v in series_stats(np.array([0.9, 0.8])).values())


def test_seam_sharpness_sees_a_blurred_face_in_a_sharp_surround():
    crop = cv2.resize(face_scene()[64:256, 10:202], (130, 130))
    blurred = crop.copy()
    inner = slice(25, 105)
    blurred[inner, inner] = cv2.GaussianBlur(crop, (0, 0), 3)[inner, inner]
    sharp, soft = seam_stats([crop], 0.3), seam_stats([blurred], 0.3)
    assert soft["seam_sharpness"] < sharp["seam_sharpness"] - 1.0
    assert math.isnan(seam_stats([], 0.3)["seam_color"])


def test_box_jitter():
    frames = np.arange(20)
    steady = pd.DataFrame({"frame_index": frames, "x1": frames * 2.0, "y1": 0.0, "x2": frames * 2.0 + 100, "y2": 100.0})
    shaky = steady.assign(x1=steady.x1 + np.tile([0, 5], 10), x2=steady.x2 + np.tile([0, 5], 10))
    assert box_stats(steady)["box_jitter"] < 1e-9
    assert box_stats(shaky)["box_jitter"] > 0.05


def _landmarks(mouth_widths, scale=1.0):
    """MTCNN-order landmarks (left eye, right eye, nose, mouth left, mouth right), eyes 40 px apart times `scale`."""
    return [(np.array([[30, 40], [70, 40], [50, 60], [50 - w / 2, 80], [50 + w / 2, 80]], np.float32) * scale).ravel()
            for w in mouth_widths]


def test_landmark_stats_measure_expression_movement_whatever_the_face_size():
    widths = [30, 34, 26, 38, 30, 22]
    faces = pd.DataFrame({"detected": True, "landmarks": _landmarks(widths)})
    out = landmark_stats(faces)
    assert list(out) == LANDMARK_FEATURES and set(LANDMARK_FEATURES) <= set(FEATURE_NAMES)
    assert math.isclose(out["landmark_mouth_sd"], math.log(np.std(np.array(widths) / 40)), rel_tol=1e-5)
    # nose and mouth never move relative to the eyes here: the floor, far below any moving face
    assert out["landmark_nose_sd"] < -10 and out["landmark_vertical_sd"] < -10
    bigger = landmark_stats(pd.DataFrame({"detected": True, "landmarks": _landmarks(widths, scale=3.0)}))
    assert math.isclose(bigger["landmark_mouth_sd"], out["landmark_mouth_sd"], abs_tol=1e-5)
    still = landmark_stats(pd.DataFrame({"detected": True, "landmarks": _landmarks([30, 30.5, 29.5, 30, 30.5, 30])}))
    assert still["landmark_mouth_sd"] < out["landmark_mouth_sd"] - 2


def test_landmark_stats_need_three_detected_keyframes_with_landmarks():
    two = pd.DataFrame({"detected": [True, True, False, True], "landmarks": [*_landmarks([30, 34, 38]), None]})
    assert all(math.isnan(v) for v in landmark_stats(two).values())
    assert all(math.isnan(v) for v in landmark_stats(two.drop(columns="landmarks")).values())  # Haar: none


def _rows(n=20, with_face=True):
    ssim = [{"track_id": -1, "frame_index": i, "is_main": False, "ssim": 0.95, "sharpness": 50.0} for i in range(1, n)]
    faces = []
    if with_face:
        ssim += [{"track_id": 0, "frame_index": i, "is_main": True, "ssim": 0.9 + 0.01 * (i % 2), "sharpness": 20.0}
                 for i in range(1, n)]
        jpeg = encode_jpeg(cv2.resize(face_scene()[64:256, 10:202], (96, 96)), 90)
        faces = [{"track_id": 0, "frame_index": i, "is_main": True, "x1": 10.0 + i, "y1": 10.0, "x2": 110.0 + i,
                  "y2": 110.0, "detected": i % 5 == 0, "confidence": 0.99 if i % 5 == 0 else None,
                  "crop_jpeg": jpeg if i % 4 == 0 else None} for i in range(n)]
    return pd.DataFrame(faces, columns=["track_id", "frame_index", "is_main", "x1", "y1", "x2", "y2", "detected",
                                        "confidence", "crop_jpeg"]), pd.DataFrame(ssim)


def test_video_features_from_cached_rows():
    faces, ssim = _rows()
    out = video_features({"keyframes": 4, "keyframes_with_face": 3, "n_tracks": 1}, faces, ssim, 0.3)
    assert list(out) == FEATURE_NAMES
    assert out["has_face"] == 1.0 and out["detection_rate"] == 0.75 and out["face_track_count"] == 1.0
    assert math.isclose(out["face_minus_frame_ssim"], np.mean([0.9 + 0.01 * (i % 2) for i in range(1, 20)]) - 0.95,
                        abs_tol=1e-6)
    assert math.isclose(out["face_over_frame_sharpness"], math.log(20) - math.log(50), abs_tol=1e-6)
    assert math.isclose(out["det_confidence_mean"], 0.99, abs_tol=1e-6)
    assert all(math.isfinite(out[k]) for k in ("seam_sharpness", "seam_color", "box_jitter"))


def test_no_face_video_keeps_frame_features_and_marks_face_features_missing():
    faces, ssim = _rows(with_face=False)
    out = video_features({"keyframes": 4, "keyframes_with_face": 0, "n_tracks": 0}, faces, ssim, 0.3)
    assert out["has_face"] == 0.0 and out["detection_rate"] == 0.0
    assert math.isfinite(out["frame_ssim_mean"]) and math.isnan(out["face_ssim_mean"])
    assert math.isnan(out["seam_sharpness"]) and math.isnan(out["det_confidence_mean"])


def test_spectrum_sees_blur_of_the_inner_face_whatever_the_crop_size():
    from features.learn.video_features import spectrum_stats

    rng = np.random.default_rng(0)
    texture = cv2.GaussianBlur(rng.integers(0, 256, (224, 224, 3)).astype(np.uint8), (0, 0), 1.0)
    blurred = cv2.GaussianBlur(texture, (0, 0), 3.0)
    sharp = spectrum_stats([texture] * 3, margin=0.3)
    soft = spectrum_stats([blurred] * 3, margin=0.3)
    assert soft["spec_hf"] < sharp["spec_hf"] - 1.0
    assert soft["spec_slope"] < sharp["spec_slope"]
    assert sharp["spec_hf_flicker"] == pytest.approx(0.0, abs=1e-9)  # identical frames: no flicker
    small = spectrum_stats([cv2.resize(texture, (160, 160), interpolation=cv2.INTER_AREA)] * 3, margin=0.3)
    assert abs(small["spec_hf"] - sharp["spec_hf"]) < abs(soft["spec_hf"] - sharp["spec_hf"])
    assert all(np.isnan(v) for v in spectrum_stats([], margin=0.3).values())


def test_grid_feature_is_the_mean_over_crops_and_left_out_on_heavily_compressed_video():
    faces = pd.DataFrame({"grid_blockiness": [2.0, None, 4.0]})
    light = {"file_bytes": 10_000_000, "frame_count": 100, "width": 640, "height": 480}  # 2.6 bits per pixel
    assert bits_per_pixel(light) == pytest.approx(8e7 / (100 * 640 * 480))
    assert grid_stats(light, faces) == {"face_grid_blockiness": 3.0}
    heavy = {**light, "file_bytes": int(GRID_MIN_BITS_PER_PIXEL / 8 * 100 * 640 * 480 * 0.9)}
    assert math.isnan(grid_stats(heavy, faces)["face_grid_blockiness"])
    unknown = {k: v for k, v in light.items() if k != "file_bytes"}
    assert math.isnan(bits_per_pixel(unknown)) and math.isnan(grid_stats(unknown, faces)["face_grid_blockiness"])
    assert math.isnan(grid_stats(light, faces.iloc[1:2])["face_grid_blockiness"])  # no value on any crop
    assert VIDEO_INPUTS == LANDMARK_FEATURES and {*VIDEO_INPUTS, "face_grid_blockiness"} <= set(FEATURE_NAMES)
