import math

import cv2
import numpy as np
import pandas as pd
import pytest

from features.learn.evaluation import (
    check_groups_within_folds,
    dfdc_log_loss,
    evaluate,
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
