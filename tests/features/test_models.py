import os

import numpy as np
import pandas as pd
import pytest
import skops.io as sio
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer

from features.crops import encode_jpeg
from features.models import build_cnn, cnn_video_scores, fit_cnn, fit_gbm, load_cnn, load_gbm, save_cnn, save_gbm
from features.video_features import FEATURE_NAMES


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


def _descriptor_rows(n_videos: int, signal: float, seed: int = 0):
    from features.crop_descriptors import descriptor_names

    rng = np.random.default_rng(seed)
    names = descriptor_names()
    rows, labels, groups = [], {}, {}
    for i in range(n_videos):
        vid, fake = f"v{i}", i % 2
        labels[vid], groups[vid] = fake, f"g{i // 2}"
        values = rng.normal(0, 1, (6, len(names)))
        values[:, 0] += signal * fake  # one descriptor carries the label
        rows.append(pd.DataFrame(values, columns=names).assign(video_id=vid))
    table = pd.concat(rows, ignore_index=True)
    return table[["video_id", *names]], labels, groups


def test_crop_model_scores_videos_by_their_frames_and_round_trips(tmp_path):
    from features.models import crop_video_scores, fit_crop_gbm, load_crop_gbm, save_crop_gbm

    train, labels, groups = _descriptor_rows(40, signal=3.0)
    test, test_labels, _ = _descriptor_rows(12, signal=3.0, seed=1)
    model = fit_crop_gbm(train, labels, groups, seed=0)
    scores = crop_video_scores(model, test, [*sorted(test_labels), "no-crops"])
    fakes = [scores[v] for v, y in test_labels.items() if y]
    reals = [scores[v] for v, y in test_labels.items() if not y]
    assert min(fakes) > max(reals) and np.isnan(scores["no-crops"])
    assert 0.0 < model.scale  # calibrated on held-out logits: larger mean logit, larger P(FAKE)
    save_crop_gbm(model, tmp_path / "model_crops.skops")
    again = crop_video_scores(load_crop_gbm(tmp_path / "model_crops.skops"), test, sorted(test_labels))
    assert again == {v: scores[v] for v in sorted(test_labels)}


def test_self_blended_rows_teach_the_crop_model_what_fake_looks_like():
    from features.models import crop_mean_logits, fit_crop_gbm

    train, labels, groups = _descriptor_rows(40, signal=0.0)  # the real videos' fakes carry nothing
    blended = train[train.video_id.map(labels) == 0].copy()
    blended["spectrum_1"] = blended["spectrum_1"] + 4.0  # ... but self-blended crops show a shifted spectrum
    probe = train[train.video_id.isin(["v0", "v2"])].copy()
    probe.loc[probe.video_id == "v2", "spectrum_1"] += 4.0
    with_sbi = crop_mean_logits(fit_crop_gbm(train, labels, groups, seed=0, blended=blended).classifier, probe)
    without = crop_mean_logits(fit_crop_gbm(train, labels, groups, seed=0).classifier, probe)
    assert with_sbi["v2"] > with_sbi["v0"] + 2.0  # frames that look blended get FAKE logits
    assert abs(without["v2"] - without["v0"]) < with_sbi["v2"] - with_sbi["v0"]
