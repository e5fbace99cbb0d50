"""The one evaluation harness of dfp train, dfp evaluate and bench/quality.py: leakage-safe folds, out-of-fold
predictions, video-level metrics as the field reports them beside the class-prior baseline, bootstrap intervals
and breakdowns (plots: visuals.plots)."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pandas as pd
from sklearn.metrics import accuracy_score, balanced_accuracy_score, brier_score_loss, roc_auc_score
from sklearn.model_selection import GroupKFold, StratifiedGroupKFold

# The DFDC competition clipped submitted probabilities to [1e-15, 1 - 1e-15] before the log loss.
DFDC_EPS = 1e-15
BOOTSTRAP_RESAMPLES = 1000  # of the percentile intervals in evaluate's result
UNSCORED = 0.5  # what a video the model cannot score (failed decode, no face) gets


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


def assign_folds(videos: pd.DataFrame, folds: int, seed: int = 0, holdout: bool = False) -> np.ndarray:
    """Fold per labelled video: grouped K-fold, or with `holdout` the metadata split (-1 = train only, 0 =
    validation: every split but "train")."""
    groups = videos.leakage_group.to_numpy()
    if holdout:
        is_train = videos.split.fillna("").str.lower().eq("train").to_numpy()
        if is_train.all() or not is_train.any():
            raise ValueError("--holdout needs videos with split=train and videos with another split")
        fold = np.where(is_train, -1, 0)
        check_groups_within_folds(fold, groups)
        return fold
    return grouped_folds((videos.label == "FAKE").to_numpy(int), groups, folds, seed)


def fold_splits(fold: np.ndarray, train_mask=None, test_mask=None) -> list[tuple[int, np.ndarray, np.ndarray]]:
    """(fold, training rows, held-out rows) per fold (fold -1 only trains), as boolean masks; `train_mask` and
    `test_mask` restrict which rows may train and which are held out (e.g. train on c23, test on c40)."""
    fold = np.asarray(fold)
    train_mask = np.ones(len(fold), bool) if train_mask is None else np.asarray(train_mask, bool)
    test_mask = np.ones(len(fold), bool) if test_mask is None else np.asarray(test_mask, bool)
    return [(int(f), train_mask & (fold != f), test_mask & (fold == f)) for f in np.unique(fold[fold >= 0])]


def flag_unscorable(frame: pd.DataFrame) -> pd.DataFrame:
    """Videos with no face or a failed decode get 0.5 and a flag, never a silent drop."""
    frame = frame.copy()
    unscorable = (frame.status != "ok") | frame.p_fake.isna()
    frame["flagged"] = unscorable
    frame["p_fake"] = frame.p_fake.where(~unscorable, UNSCORED)
    return frame


Fit = Callable[[pd.DataFrame, int], Callable[[pd.DataFrame], np.ndarray]]


def cross_validated(frame: pd.DataFrame, fit: Fit, seed: int, folds: int, train_mask=None,
                    test_mask=None) -> pd.DataFrame:
    """Out-of-fold P(FAKE) (p_fake) and class-prior (p_prior) predictions for the rows in test_mask, folds by
    leakage group, fitted in this process: `fit(training rows, seed)` returns a predict(rows) -> P(FAKE). A fold
    whose training rows hold one label only is left out; unscorable rows (status not ok) get 0.5."""
    y = (frame.label == "FAKE").to_numpy(int)
    fold = grouped_folds(y, frame.leakage_group.to_numpy(), folds, seed=seed)
    out = frame.assign(fold=fold, p_fake=np.nan, p_prior=np.nan)
    usable = (frame.status == "ok").to_numpy()
    for _, train, test in fold_splits(fold, train_mask, test_mask):
        if not test.any() or len(np.unique(y[train])) < 2:
            continue
        predict = fit(frame[train & usable], seed)
        p = np.full(test.sum(), UNSCORED)
        ok = usable[test]
        if ok.any():
            p[ok] = predict(frame[test][ok])
        out.loc[test, "p_fake"] = p
        out.loc[test, "p_prior"] = y[train].mean()
    return out[out.p_fake.notna()]


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


def bootstrap_intervals(y: np.ndarray, p: np.ndarray, resamples: int = BOOTSTRAP_RESAMPLES, seed: int = 0,
                        groups: np.ndarray | None = None, level: float = 0.95) -> dict[str, tuple[float, float]]:
    """Percentile bootstrap intervals of the ROC AUC and the DFDC log loss: videos (or, with `groups`, whole
    leakage groups) resampled with replacement, `resamples` times, seeded. A resample with one label only has no
    AUC and is skipped for it; NaN bounds when nothing can be resampled."""
    y = np.asarray(y, int)
    p = np.asarray(p, np.float64)
    nan = (math.nan, math.nan)
    if resamples <= 0 or len(y) == 0:
        return {"roc_auc": nan, "log_loss": nan}
    if groups is None:
        units = [np.array([i]) for i in range(len(y))]
    else:  # in sorted group order
        _, inverse = np.unique(np.asarray(groups), return_inverse=True)
        units = [np.flatnonzero(inverse == g) for g in range(inverse.max() + 1)]
    rng = np.random.default_rng(seed)
    aucs, losses = [], []
    for _ in range(resamples):
        rows = np.concatenate([units[i] for i in rng.choice(len(units), len(units), replace=True)])
        losses.append(dfdc_log_loss(y[rows], p[rows]))
        if 0 < y[rows].sum() < len(rows):
            aucs.append(roc_auc_score(y[rows], p[rows]))
    tail = 100 * (1 - level) / 2

    def interval(values: list[float]) -> tuple[float, float]:
        return (float(np.percentile(values, tail)), float(np.percentile(values, 100 - tail))) if values else nan

    return {"roc_auc": interval(aucs), "log_loss": interval(losses)}


def evaluate(frame: pd.DataFrame, score: str = "p_fake", prior: str = "p_prior",
             bootstrap: int = BOOTSTRAP_RESAMPLES, seed: int = 0) -> dict:
    """Overall metrics beside the prior baseline, percentile bootstrap intervals (over videos, `bootstrap`
    resamples, seeded) of the AUC and log loss, and breakdowns by dataset, method and status."""
    y = (frame.label == "FAKE").to_numpy(int)
    result = {"overall": metrics(y, frame[score]), "prior": prior_metrics(y, frame[prior]), "breakdowns": {}}
    if bootstrap:
        intervals = bootstrap_intervals(y, frame[score], bootstrap, seed)
        result["bootstrap"] = {"resamples": bootstrap, "seed": seed, "unit": "video", "level": 0.95,
                               "roc_auc": list(intervals["roc_auc"]), "log_loss": list(intervals["log_loss"])}
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
