import os
import re

import numpy as np
import pandas as pd
import pytest
import skops.io as sio
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer

from features.learn.models import (
    build_cnn,
    cnn_video_scores,
    fit_cnn,
    fit_gbm,
    keras_device,
    load_cnn,
    load_gbm,
    save_cnn,
    save_gbm,
)
from features.learn.video_features import FEATURE_NAMES
from features.video.crops import encode_jpeg


def _features(n=60, seed=0):
    rng = np.random.default_rng(seed)
    X = pd.DataFrame(rng.normal(size=(n, len(FEATURE_NAMES))), columns=FEATURE_NAMES)
    y = (X.face_ssim_mean + 0.3 * rng.normal(size=n) > 0).astype(int).to_numpy()
    X["det_confidence_mean"] = np.nan  # e.g. the Haar detector has no confidence
    return X, y, (np.arange(n) // 2).astype(str)


def test_gbm_is_one_calibrated_pipeline_that_round_trips_through_skops(tmp_path):
    X, y, groups = _features()
    model = fit_gbm(X, y, groups, seed=0)
    p = model.predict_proba(X.assign(extra_column="ignored"))[:, 1]
    assert ((p > 0) & (p < 1)).all()
    assert np.corrcoef(p, X.face_ssim_mean)[0, 1] > 0.5
    save_gbm(model, tmp_path / "m.skops")
    again = load_gbm(tmp_path / "m.skops")
    assert np.array_equal(again.predict_proba(X)[:, 1], p)


def test_gbm_is_reproducible_for_a_seed():
    X, y, groups = _features()
    a = fit_gbm(X, y, groups, seed=3).predict_proba(X)
    b = fit_gbm(X, y, groups, seed=3).predict_proba(X)
    assert np.array_equal(a, b)


def test_skops_files_with_foreign_types_are_refused(tmp_path):
    evil = make_pipeline(FunctionTransformer(os.system))
    sio.dump(evil, str(tmp_path / "evil.skops"))
    with pytest.raises(ValueError, match="refusing to load"):
        load_gbm(tmp_path / "evil.skops")


def _crops(n_videos=8, per_video=4):
    rng = np.random.default_rng(0)
    rows, labels, groups = [], {}, {}
    for v in range(n_videos):
        vid = f"v{v}"
        labels[vid] = v % 2
        groups[vid] = f"g{v // 2}"
        for i in range(per_video):
            image = rng.integers(0, 60 if v % 2 else 255, (64, 64, 3), dtype=np.uint8)
            rows.append({"video_id": vid, "frame_index": i, "crop_jpeg": encode_jpeg(image, 90)})
    return pd.DataFrame(rows), labels, groups


def test_cnn_trains_and_round_trips_in_safe_mode(tmp_path):
    crops, labels, groups = _crops()
    model = fit_cnn(crops, labels, groups, size="small", epochs=1, seed=0)
    scores = cnn_video_scores(model, crops, sorted(labels))
    assert all(0 < s < 1 for s in scores.values())
    save_cnn(model, tmp_path / "m.keras")
    again = load_cnn(tmp_path / "m.keras")
    assert cnn_video_scores(again, crops, sorted(labels)) == pytest.approx(scores, abs=1e-6)
    assert np.isnan(cnn_video_scores(again, crops.iloc[:0], ["none"])["none"])


def test_large_cnn_takes_larger_crops():
    assert build_cnn("large").input_shape == (None, 128, 128, 3)


def test_keras_device_names_the_device_keras_and_its_backend():
    import keras

    device = keras_device()
    assert re.fullmatch(r"(CPU|GPU \(.+\)) \(Keras \S+, tensorflow \S+\)", device)
    assert f"Keras {keras.__version__}," in device


def test_keras_device_reads_the_jax_backend_when_keras_runs_on_it(monkeypatch):
    import sys
    import types

    import keras

    gpu = types.SimpleNamespace(platform="gpu", device_kind="NVIDIA H200")
    monkeypatch.setitem(sys.modules, "jax", types.SimpleNamespace(__version__="0.11.2", devices=lambda: [gpu]))
    monkeypatch.setattr(keras.backend, "backend", lambda: "jax")
    assert keras_device() == f"GPU (NVIDIA H200) (Keras {keras.__version__}, jax 0.11.2)"


def test_cnn_augmentation_layers_are_chosen_by_name():
    layers = [layer.__class__.__name__ for layer in build_cnn("small", augmentation=("flip", "translation")).layers]
    assert "RandomFlip" in layers and "RandomTranslation" in layers and "RandomContrast" not in layers
    assert not any(name.startswith("Random") for name in (layer.__class__.__name__
                                                          for layer in build_cnn("small", augmentation=()).layers))
    with pytest.raises(ValueError, match=r"unknown CNN augmentation \['rotate'\]: choose from \['contrast', 'flip'"):
        build_cnn("small", augmentation=("flip", "rotate"))
