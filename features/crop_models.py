"""Frame-level models on crop descriptors (features.crop_descriptors), aggregated to one P(FAKE) per video.

Both learn from every stored main-face crop labelled as its video, plus self-blended fakes of the REAL crops:
- crop_gbm: gradient boosting on the texture descriptors;
- crop_linear: a standardised linear scorer on all descriptors, trained jointly on single crops and on
  pairs (self-blended crop, the real crop it was made from). A pair differs only by the blend, so the pair
  term learns what blending changes with identity, pose and lighting held fixed.
A video's score is the mean frame score, Platt-calibrated on out-of-fold means of the training videos
(3 folds by leakage group): in-sample scores would be overconfident.
"""

from __future__ import annotations

import json
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from threadpoolctl import threadpool_limits

from features.crop_descriptors import descriptor_names, texture_names

KEYS = ["video_id", "frame_index"]
LINEAR_C = 0.1  # L2 strength of crop_linear, fixed in advance (never tuned on reported folds)


@dataclass
class CropModel:
    """Boosting on per-crop texture descriptors plus a Platt scaling of video mean logits."""

    classifier: HistGradientBoostingClassifier
    scale: float = 1.0
    shift: float = 0.0
    columns: list[str] = field(default_factory=texture_names)

    def frame_scores(self, descriptors: pd.DataFrame) -> np.ndarray:
        p = np.clip(self.classifier.predict_proba(_matrix(descriptors, self.columns))[:, 1], 1e-4, 1 - 1e-4)
        return np.log(p / (1 - p))


@dataclass
class CropLinearModel:
    """w . (x - mean) / std per crop, plus a Platt scaling of video mean scores. Plain arrays: saved as JSON."""

    columns: list[str]
    mean: np.ndarray
    std: np.ndarray
    weights: np.ndarray
    scale: float = 1.0
    shift: float = 0.0

    def frame_scores(self, descriptors: pd.DataFrame) -> np.ndarray:
        return _standardised(_matrix(descriptors, self.columns), self.mean, self.std) @ self.weights


def _standardised(x: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """(x - mean) / std, a missing value (NaN: e.g. the seam contrasts of a crop without margin) at the mean."""
    return np.nan_to_num((x - mean) / std, nan=0.0)


def _matrix(descriptors: pd.DataFrame, columns: list[str]) -> np.ndarray:
    missing = [c for c in columns if c not in descriptors.columns]
    if missing:
        raise ValueError(f"crop descriptors lack {len(missing)} columns the model was trained on "
                         f"(first: {missing[0]}): retrain the model with this version of deepfake-pipeline")
    return descriptors[columns].to_numpy(np.float64)


def video_mean_scores(model, descriptors: pd.DataFrame) -> pd.Series:
    """Mean frame score per video of a descriptor table."""
    if descriptors.empty:
        return pd.Series(dtype=float)
    return pd.Series(model.frame_scores(descriptors), index=descriptors.video_id.to_numpy()).groupby(level=0).mean()


def crop_video_scores(model, descriptors: pd.DataFrame, video_ids: list[str]) -> dict[str, float]:
    """P(FAKE) per video (NaN for a video without crops)."""
    means = video_mean_scores(model, descriptors[descriptors.video_id.isin(set(video_ids))])
    z = model.scale * means + model.shift
    scores = dict(zip(means.index, 1 / (1 + np.exp(-z.clip(-30, 30)))))
    return {v: float(scores.get(v, math.nan)) for v in video_ids}


def _calibrated(fit: Callable[[set[str]], object], descriptors: pd.DataFrame, labels: dict[str, int],
                groups: dict[str, str], seed: int):
    """Fit on every video, with the Platt scaling learnt on out-of-fold video means of 3 inner grouped folds."""
    from features.evaluation import grouped_folds

    vids = np.array(sorted(labels))
    inner = grouped_folds(np.array([labels[v] for v in vids]), np.array([groups[v] for v in vids]), 3, seed=seed)
    held = pd.concat([video_mean_scores(fit(set(vids[inner != f])), descriptors[descriptors.video_id.isin(set(vids[inner == f]))])
                      for f in np.unique(inner)])
    platt = LogisticRegression(C=1.0).fit(held.to_numpy()[:, None], held.index.map(labels).to_numpy())
    model = fit(set(vids))
    model.scale, model.shift = float(platt.coef_[0, 0]), float(platt.intercept_[0])
    return model


def _blended_of_reals(blended: pd.DataFrame | None, like: pd.DataFrame, videos: set[str],
                      labels: dict[str, int]) -> pd.DataFrame:
    """The self-blended rows made from the REAL videos among `videos` (no rows, `like`'s columns, when none)."""
    if blended is None:
        return like.iloc[0:0]
    return blended[blended.video_id.isin({v for v in videos if labels[v] == 0})]


def blend_differences(descriptors: pd.DataFrame, blended: pd.DataFrame, columns: list[str]) -> np.ndarray:
    """x_blend - x_real for every self-blended row whose source crop (same video_id, frame_index) is present."""
    sources = descriptors[KEYS].reset_index(drop=True).reset_index()  # "index": position in `descriptors`
    paired = blended.reset_index(drop=True).reset_index().merge(sources, on=KEYS, suffixes=("_blend", "_real"))
    return (_matrix(blended, columns)[paired.index_blend.to_numpy()]
            - _matrix(descriptors, columns)[paired.index_real.to_numpy()])


def fit_crop_gbm(descriptors: pd.DataFrame, labels: dict[str, int], groups: dict[str, str], seed: int = 0,
                 blended: pd.DataFrame | None = None) -> CropModel:
    """Boosting on the texture descriptors; `blended` rows (self-blended REAL crops) join as FAKE."""
    columns = texture_names()

    def fit(videos: set[str]) -> CropModel:
        rows = descriptors[descriptors.video_id.isin(videos)]
        extra = _blended_of_reals(blended, rows, videos, labels)
        x = np.concatenate([_matrix(rows, columns), _matrix(extra, columns)])
        y = np.concatenate([rows.video_id.map(labels).to_numpy(int), np.ones(len(extra), int)])
        classifier = HistGradientBoostingClassifier(max_iter=200, learning_rate=0.05, max_leaf_nodes=15,
                                                    min_samples_leaf=20, l2_regularization=1.0, random_state=seed)
        return CropModel(classifier.fit(x, y), columns=columns)

    return _calibrated(fit, descriptors, labels, groups, seed)


def fit_crop_linear(descriptors: pd.DataFrame, labels: dict[str, int], groups: dict[str, str], seed: int = 0,
                    blended: pd.DataFrame | None = None, c: float = LINEAR_C) -> CropLinearModel:
    """The joint single-crop + blend-pair linear scorer (module docstring).

    One L2 logistic regression without intercept over standardised rows: single crops are [x, 1] with their
    video's label (self-blended crops as FAKE); a pair contributes [x_blend - x_real, 0] as FAKE and its
    negation as REAL, so the same weights must rank every blended crop above its source.
    """
    columns = descriptor_names()

    def fit(videos: set[str]) -> CropLinearModel:
        rows = descriptors[descriptors.video_id.isin(videos)]
        x = _matrix(rows, columns)
        with warnings.catch_warnings():  # a column with no value at all gets mean 0, std 1e-6
            warnings.simplefilter("ignore", RuntimeWarning)
            mean, std = np.nan_to_num(np.nanmean(x, 0)), np.nan_to_num(np.nanstd(x, 0)) + 1e-6
        extra = _blended_of_reals(blended, rows, videos, labels)
        singles = np.concatenate([x, _matrix(extra, columns)])
        y = np.concatenate([rows.video_id.map(labels).to_numpy(int), np.ones(len(extra), int)])
        diff = np.nan_to_num(blend_differences(rows, extra, columns) / std, nan=0.0)
        design = np.concatenate([np.c_[_standardised(singles, mean, std), np.ones(len(singles))],
                                 np.c_[diff, np.zeros(len(diff))], np.c_[-diff, np.zeros(len(diff))]])
        target = np.concatenate([y, np.ones(len(diff), int), np.zeros(len(diff), int)])
        with threadpool_limits(limits=1):  # lbfgs on this thin matrix runs several times slower with a BLAS thread per core
            solver = LogisticRegression(C=c, fit_intercept=False, max_iter=5000, random_state=seed).fit(design, target)
        return CropLinearModel(columns, mean, std, solver.coef_[0, :-1].copy())

    return _calibrated(fit, descriptors, labels, groups, seed)


def descriptor_block(column: str) -> str:
    """The family a descriptor column belongs to: LBP, spectrum, seam/colour, or residual order + zone."""
    if column.startswith("cooc_"):
        _, order, zone, _step, _bin = column.split("_")
        return f"residual {order} {zone}"
    if column.startswith("lbp"):
        return "LBP"
    return "spectrum" if column.startswith("spectrum") else "seam/colour"


def weight_shares(model: CropLinearModel) -> dict[str, float]:
    """Share of the scorer's total |weight| (on standardised descriptors) per descriptor block, largest first:
    what the model looks at."""
    shares = pd.Series(np.abs(model.weights), index=[descriptor_block(c) for c in model.columns]).groupby(level=0).sum()
    shares = shares / shares.sum()
    return {k: round(float(v), 4) for k, v in shares.sort_values(ascending=False).items()}


def save_crop_gbm(model: CropModel, path: str | Path) -> None:
    """The classifier as skops, its calibration and columns as JSON beside it."""
    import skops.io as sio

    sio.dump(model.classifier, str(path))
    Path(str(path) + ".calibration.json").write_text(json.dumps({"scale": model.scale, "shift": model.shift,
                                                                 "columns": model.columns}))


def load_crop_gbm(path: str | Path) -> CropModel:
    from features.models import load_gbm

    calibration = json.loads(Path(str(path) + ".calibration.json").read_text())
    return CropModel(load_gbm(path), float(calibration["scale"]), float(calibration["shift"]),
                     calibration.get("columns", texture_names()))


def save_crop_linear(model: CropLinearModel, path: str | Path) -> None:
    """Everything as one JSON document: it loads without running any code."""
    Path(path).write_text(json.dumps({
        "columns": model.columns, "mean": model.mean.tolist(), "std": model.std.tolist(),
        "weights": model.weights.tolist(), "scale": model.scale, "shift": model.shift}))


def load_crop_linear(path: str | Path) -> CropLinearModel:
    saved = json.loads(Path(path).read_text())
    arrays = [np.asarray(saved[k], np.float64) for k in ("mean", "std", "weights")]
    if not all(len(a) == len(saved["columns"]) for a in arrays):
        raise ValueError(f"{path}: mean, std and weights must each have one value per column")
    return CropLinearModel(list(saved["columns"]), *arrays, float(saved["scale"]), float(saved["shift"]))
