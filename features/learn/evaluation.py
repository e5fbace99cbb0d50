"""Leakage-safe splits, video-level metrics as the field reports them, and breakdowns (plots: visuals.plots)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from sklearn.metrics import accuracy_score, balanced_accuracy_score, brier_score_loss, roc_auc_score
from sklearn.model_selection import GroupKFold, StratifiedGroupKFold

# The DFDC competition clipped submitted probabilities to [1e-15, 1 - 1e-15] before the log loss.
DFDC_EPS = 1e-15


def grouped_folds(labels: np.ndarray, groups: np.ndarray, k: int, seed: int = 0) -> np.ndarray:
    """Fold index per video; every leakage group lies in exactly one fold (stratified by label where possible)."""
    labels = np.asarray(labels)
    groups = np.asarray(groups)
    n_groups = len(np.unique(groups))
    if n_groups < 2:
        raise ValueError(f"grouped cross-validation needs at least 2 leakage groups, found {n_groups}")
    k = min(k, n_groups)
    try:
        splitter = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
        splits = list(splitter.split(np.zeros(len(labels)), labels, groups))
    except ValueError:
        splits = list(GroupKFold(n_splits=k).split(np.zeros(len(labels)), labels, groups))
    fold = np.full(len(labels), -1)
    for i, (_, test) in enumerate(splits):
        fold[test] = i
    check_groups_within_folds(fold, groups)
    return fold


def check_groups_within_folds(fold: np.ndarray, groups: np.ndarray) -> None:
    """Raise when any leakage group appears in two folds."""
    per_group = pd.Series(np.asarray(fold)).groupby(np.asarray(groups)).nunique()
    straddling = per_group[per_group > 1]
    if len(straddling):
        raise AssertionError(f"leakage groups split across folds: {list(straddling.index)[:5]}")


def dfdc_log_loss(y: np.ndarray, p: np.ndarray) -> float:
    p = np.clip(np.asarray(p, np.float64), DFDC_EPS, 1 - DFDC_EPS)
    y = np.asarray(y, np.float64)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def metrics(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    """Video-level metrics: y is 1 for FAKE, p is P(FAKE)."""
    y = np.asarray(y, int)
    p = np.asarray(p, np.float64)
    both = len(np.unique(y)) == 2
    return {
        "n": int(len(y)),
        "n_fake": int(y.sum()),
        "log_loss": dfdc_log_loss(y, p),
        "roc_auc": float(roc_auc_score(y, p)) if both else math.nan,
        "accuracy": float(accuracy_score(y, p >= 0.5)),
        "balanced_accuracy": float(balanced_accuracy_score(y, p >= 0.5)) if both else math.nan,
        "brier": float(brier_score_loss(y, p)) if len(y) else math.nan,
    }


def prior_predictions(y: np.ndarray, fold: np.ndarray) -> np.ndarray:
    """The constant class-prior baseline, out of fold: each fold gets the FAKE rate of the other folds."""
    y = np.asarray(y, np.float64)
    out = np.empty(len(y))
    for f in np.unique(fold):
        train = fold != f
        out[fold == f] = y[train].mean() if train.any() else y.mean()
    return out


def prior_metrics(y: np.ndarray, p_prior: np.ndarray) -> dict[str, float]:
    """Metrics of the class-prior baseline. Its ROC AUC is 0.5 by definition: the per-fold FAKE rates differ a
    little between folds, and ranking videos by them would give an AUC that only reflects how the folds fell."""
    result = metrics(y, p_prior)
    if math.isfinite(result["roc_auc"]):
        result["roc_auc"] = 0.5
    return result


def evaluate(frame: pd.DataFrame, score: str = "p_fake", prior: str = "p_prior") -> dict:
    """Overall metrics beside the prior baseline, and breakdowns by dataset, method and status."""
    y = (frame.label == "FAKE").to_numpy(int)
    result = {"overall": metrics(y, frame[score]), "prior": prior_metrics(y, frame[prior]), "breakdowns": {}}
    for column in ("dataset", "method", "status"):
        if column not in frame:
            continue
        values = frame[column].fillna("original" if column == "method" else "none")
        parts = {}
        for value, part in frame.groupby(values):
            py = (part.label == "FAKE").to_numpy(int)
            parts[str(value)] = {"model": metrics(py, part[score]), "prior": prior_metrics(py, part[prior])}
        result["breakdowns"][column] = parts
    return result
