"""The out-of-distribution guard: distances to the training videos, a threshold from out-of-fold distances, scores
tempered towards the prior beyond it, and a plain-JSON file."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.learn import ood


def clips(n: int, shift: float = 0.0, seed: int = 0, columns: int = 6) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    values = rng.normal(size=(n, columns)) + shift
    return pd.DataFrame(values, columns=[f"f{i}" for i in range(columns)], index=[f"v{seed}-{i}" for i in range(n)])


@pytest.fixture(scope="module")
def guard() -> ood.OodGuard:
    train = clips(200)
    return ood.fit_guard(train, np.arange(200) % 5, seed=0)


def test_about_one_in_twenty_unseen_in_distribution_videos_is_flagged_and_far_ones_all_are(guard):
    fresh = guard.distance(clips(400, seed=1))
    assert 0.01 <= (fresh > guard.threshold).mean() <= 0.12  # the threshold is the 95% out-of-fold quantile
    far = guard.distance(clips(50, shift=6.0, seed=2))
    assert (far > guard.threshold).all() and far.min() > 2 * guard.threshold


def test_scores_are_kept_inside_and_pulled_to_the_prior_far_outside(guard):
    p = np.array([0.9, 0.1, 0.6])
    inside = np.full(3, guard.threshold * 0.5)
    np.testing.assert_allclose(guard.temper(p, 0.7, inside), p)
    far = np.full(3, guard.threshold + 40 * guard.spread)
    np.testing.assert_allclose(guard.temper(p, 0.7, far), 0.7, atol=1e-6)
    one_spread = np.full(3, guard.threshold + guard.spread)
    logit = np.log(p / (1 - p))
    base = np.log(0.7 / 0.3)
    expected = 1 / (1 + np.exp(-(base + np.exp(-1) * (logit - base))))
    np.testing.assert_allclose(guard.temper(p, 0.7, one_spread), expected)


def test_missing_values_and_columns_are_filled_by_the_training_medians(guard):
    sample = clips(3, seed=3)
    sample.iloc[0, 2] = np.nan
    distances = guard.distance(sample.drop(columns=["f5"]))
    assert np.isfinite(distances).all() and distances.shape == (3,)
    medians = pd.DataFrame([guard.median], columns=guard.columns)
    filled = sample.fillna({"f2": guard.median[2]}).assign(f5=guard.median[5])
    np.testing.assert_allclose(distances, guard.distance(filled))
    nothing = pd.DataFrame(index=["blank"])  # no column at all: every value is the median's
    np.testing.assert_allclose(guard.distance(nothing), guard.distance(medians))


def test_the_guard_is_plain_json_and_a_file_of_another_shape_is_refused(guard, tmp_path):
    path = tmp_path / ood.OOD_FILE
    guard.save(path)
    again = ood.OodGuard.load(path)
    sample = clips(10, seed=4)
    np.testing.assert_allclose(again.distance(sample), guard.distance(sample))
    (tmp_path / "bad.json").write_text('{"columns": [], "__reduce__": "os.system"}')
    with pytest.raises(ValueError, match=r"bad.json: not an out-of-distribution guard"):
        ood.OodGuard.load(tmp_path / "bad.json")


def test_the_representation_adds_the_mean_plain_crop_descriptors_per_video():
    videos = pd.DataFrame({"video_id": ["a", "b"], "face_ssim_mean": [0.9, 0.8]})
    descriptors = pd.DataFrame({"video_id": ["a", "a", "a", "b"], "frame_index": [0, 1, 1, 0],
                                "blended": [False, False, True, False], "lbp_0": [1.0, 3.0, 100.0, 5.0]})
    rep = ood.video_representation(videos, descriptors)
    assert list(rep.index) == ["a", "b"] and rep.loc["a", "crop:lbp_0"] == 2.0 and rep.loc["b", "crop:lbp_0"] == 5.0
    assert rep.loc["a", "face_ssim_mean"] == 0.9
    assert list(ood.video_representation(videos).columns) == ["face_ssim_mean"]


def test_a_guard_needs_two_folds():
    with pytest.raises(ValueError, match="at least two folds"):
        ood.fit_guard(clips(10), np.zeros(10, int))
