import math

import cv2
import numpy as np
import pandas as pd
import pytest

from features.learn.evaluation import (
    assign_folds,
    bootstrap_intervals,
    check_groups_within_folds,
    dfdc_log_loss,
    evaluate,
    fold_splits,
    grouped_folds,
    metrics,
    prior_predictions,
)
from features.visuals.plots import plot_evaluation


@pytest.mark.parametrize("seed", range(5))
def test_no_leakage_group_ever_straddles_folds(seed):
    rng = np.random.default_rng(seed)
    groups = rng.integers(0, 25, 200).astype(str)
    labels = rng.integers(0, 2, 200)
    fold = grouped_folds(labels, groups, k=5, seed=seed)
    assert set(fold) == set(range(5))
    assert (pd.Series(fold).groupby(groups).nunique() == 1).all()


def test_straddling_groups_are_detected():
    with pytest.raises(AssertionError, match="split across folds"):
        check_groups_within_folds(np.array([0, 1, 1]), np.array(["a", "a", "b"]))


def test_too_few_groups_is_a_clear_error():
    with pytest.raises(ValueError, match="at least 2 leakage groups"):
        grouped_folds(np.array([0, 1]), np.array(["g", "g"]), k=5)


def test_dfdc_log_loss_clips_like_the_competition():
    assert math.isclose(dfdc_log_loss([1], [0.0]), -math.log(1e-15))
    assert math.isclose(dfdc_log_loss([0, 1], [0.5, 0.5]), math.log(2))


def test_metrics_values():
    m = metrics(np.array([0, 0, 1, 1]), np.array([0.1, 0.6, 0.7, 0.9]))
    assert m["roc_auc"] == 1.0 and m["accuracy"] == 0.75 and m["balanced_accuracy"] == 0.75
    assert math.isclose(m["brier"], (0.01 + 0.36 + 0.09 + 0.01) / 4)
    assert math.isnan(metrics(np.array([1, 1]), np.array([0.4, 0.9]))["roc_auc"])


def test_prior_baseline_uses_the_other_folds():
    y = np.array([1, 1, 0, 0, 1, 0])
    fold = np.array([0, 0, 1, 1, 2, 2])
    assert np.allclose(prior_predictions(y, fold), [1 / 4, 1 / 4, 3 / 4, 3 / 4, 2 / 4, 2 / 4])


def test_prior_baseline_auc_is_that_of_a_constant():
    # Per-fold FAKE rates anti-correlate with the fold's own labels: ranking by them scores 0.0 here, not 0.5.
    y = np.array([1, 1, 0, 0, 1, 0])
    frame = pd.DataFrame({"label": np.where(y == 1, "FAKE", "REAL"), "p_fake": [0.9, 0.8, 0.1, 0.2, 0.7, 0.3],
                          "p_prior": prior_predictions(y, np.array([0, 0, 1, 1, 2, 2]))})
    assert metrics(y, frame.p_prior)["roc_auc"] < 0.2
    result = evaluate(frame)
    assert result["prior"]["roc_auc"] == 0.5 and result["overall"]["roc_auc"] == 1.0
    assert result["prior"]["log_loss"] == pytest.approx(dfdc_log_loss(y, frame.p_prior))


def _frame():
    return pd.DataFrame({"label": ["REAL", "FAKE", "REAL", "FAKE", "FAKE", "REAL"],
                         "p_fake": [0.2, 0.8, 0.3, 0.6, 0.5, 0.5], "p_prior": 0.5,
                         "dataset": ["a", "a", "b", "b", "b", "a"], "method": [None, "X", None, "Y", "Y", None],
                         "status": ["ok", "ok", "ok", "ok", "no_face", "failed"]})


def test_breakdowns_by_dataset_method_and_status():
    result = evaluate(_frame())
    assert result["overall"]["n"] == 6 and result["prior"]["log_loss"] == pytest.approx(math.log(2))
    assert set(result["breakdowns"]["dataset"]) == {"a", "b"}
    assert set(result["breakdowns"]["method"]) == {"original", "X", "Y"}
    assert result["breakdowns"]["status"]["no_face"]["model"]["n"] == 1


def test_plots_are_real_pngs(tmp_path):
    paths = plot_evaluation(_frame(), tmp_path, title="test")
    assert set(paths) == {"roc", "calibration", "scores"}
    for path in paths.values():
        image = cv2.imread(path)
        assert image is not None and image.shape[0] > 300 and image.shape[1] > 300
        assert image.std() > 10  # not blank


def _scored(signal: float, n: int = 200, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    return y, 1 / (1 + np.exp(-(rng.normal(0, 1, n) + signal * (2 * y - 1))))


def test_bootstrap_intervals_bracket_the_measured_value_and_are_seeded():
    y, p = _scored(signal=2.0)
    intervals = bootstrap_intervals(y, p, resamples=300, seed=1)
    auc, loss = metrics(y, p)["roc_auc"], metrics(y, p)["log_loss"]
    assert 0.85 < intervals["roc_auc"][0] < auc < intervals["roc_auc"][1] <= 1.0
    assert intervals["log_loss"][0] < loss < intervals["log_loss"][1]
    assert bootstrap_intervals(y, p, resamples=300, seed=1) == intervals
    assert bootstrap_intervals(y, p, resamples=300, seed=2) != intervals
    lo, hi = bootstrap_intervals(*_scored(signal=0.0), resamples=300)["roc_auc"]
    assert lo < 0.5 < hi
    assert all(math.isnan(v) for v in bootstrap_intervals([1, 1], [0.2, 0.9], 50)["roc_auc"])  # one label only


def test_a_group_bootstrap_resamples_whole_leakage_groups():
    y = np.array([0, 1] * 4)
    p = np.array([0.1, 0.9] * 4)
    same = bootstrap_intervals(y, p, 100, groups=np.repeat(np.arange(4), 2))  # every group ranks perfectly
    assert same["roc_auc"] == (1.0, 1.0)


def test_evaluate_puts_the_intervals_in_the_metrics():
    result = evaluate(_frame(), bootstrap=200, seed=3)
    assert result["bootstrap"]["resamples"] == 200 and result["bootstrap"]["seed"] == 3
    lo, hi = result["bootstrap"]["roc_auc"]
    assert 0.0 <= lo <= result["overall"]["roc_auc"] <= hi <= 1.0
    assert result["bootstrap"] == evaluate(_frame(), bootstrap=200, seed=3)["bootstrap"]
    assert "bootstrap" not in evaluate(_frame(), bootstrap=0)


def test_fold_splits_train_on_the_other_folds_within_the_masks():
    fold = np.array([-1, 0, 0, 1, 1, 2])
    splits = fold_splits(fold)
    assert [f for f, _, _ in splits] == [0, 1, 2]  # fold -1 only trains
    _, train, test = splits[0]
    assert train.tolist() == [True, False, False, True, True, True] and test.tolist() == [False, True, True] + [False] * 3
    c23 = np.array([True, True, False, True, False, True])
    _, train, test = fold_splits(fold, train_mask=c23, test_mask=~c23)[1]
    assert train.tolist() == [True, True, False, False, False, True] and test.tolist() == [False] * 4 + [True, False]


def test_holdout_folds_follow_the_metadata_split():
    videos = pd.DataFrame({"label": ["REAL", "FAKE", "REAL", "FAKE"], "leakage_group": ["a", "a", "b", "b"],
                           "split": ["train", "Train", "val", None]})
    assert assign_folds(videos, folds=5, holdout=True).tolist() == [-1, -1, 0, 0]
    with pytest.raises(ValueError, match="--holdout needs videos with split=train"):
        assign_folds(videos.assign(split="train"), folds=5, holdout=True)
