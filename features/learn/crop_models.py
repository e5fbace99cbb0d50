"""Frame-level models on crop descriptors (features.learn.descriptors), aggregated to one P(FAKE) per video.

Both learn from every stored main-face crop labelled as its video, plus self-blended fakes of the REAL crops:
- crop_gbm: gradient boosting on the texture descriptors;
- crop_linear: a standardised linear scorer on all crop-level descriptors, trained jointly on single crops and
  on pairs (self-blended crop, the real crop it was made from). A pair differs only by the blend, so the pair
  term learns what blending changes with identity, pose and lighting held fixed. Beside it, a patch scorer
  (PatchScorer): one linear scorer shared by the central face patches, trained on patches with the same pairs
  but labelled by where the self-blend actually fell; a crop scores its most manipulated-looking patch. The two
  see the face differently (their video scores correlate about 0.3 on the development clips), and their
  combination is learnt, not fixed.
A video's inputs are the mean crop score (and the mean patch score), and for crop_linear the video's landmark
dynamics (features.learn.video_features.LANDMARK_FEATURES: how much the expression moves, which generated faces do
less) and the block-grid traces in its face centre (face_grid_blockiness: a face re-synthesised before the last
encoding lacks the earlier encodings' grid); a logistic regression on them, fitted on out-of-fold inputs of the
training videos (3 folds by leakage group), weighs and calibrates them: in-sample scores would be overconfident.
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from threadpoolctl import threadpool_limits

from features.learn.descriptors import (
    PATCH_BINS,
    descriptor_names,
    patch_blend_names,
    patch_names,
    patch_positions,
    texture_names,
)
from features.learn.evaluation import grouped_folds
from features.learn.model_files import load_skops, read_json
from features.learn.video_features import VIDEO_INPUTS

KEYS = ["video_id", "frame_index"]
LINEAR_C = 0.1  # L2 strength of crop_linear, fixed in advance (never tuned on reported folds)
PATCH_C = 0.1  # L2 strength of the patch scorer
FAKE_PATCH_WEIGHT = 0.3  # a FAKE video's central patches are only probably manipulated: they count less
BLENDED_PATCH = 0.5  # a self-blended patch is a FAKE example when the blend mask covers at least half of it


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
class PatchScorer:
    """w . (h - mean) / std on each central patch's residual histograms (one w for every patch); a crop's score
    is its highest patch score. Plain arrays: saved as JSON."""

    mean: np.ndarray
    std: np.ndarray
    weights: np.ndarray

    def crop_scores(self, descriptors: pd.DataFrame) -> np.ndarray:
        return (((_patches(descriptors) - self.mean) / self.std) @ self.weights).max(axis=1)


@dataclass
class CropLinearModel:
    """w . (x - mean) / std per crop, an optional PatchScorer, and a logistic combination of a video's mean crop
    score (scale) and mean patch score (patch_scale). Plain arrays: saved as JSON."""

    columns: list[str]
    mean: np.ndarray
    std: np.ndarray
    weights: np.ndarray
    scale: float = 1.0
    shift: float = 0.0
    patch: PatchScorer | None = None
    patch_scale: float = 0.0
    video_columns: list[str] = field(default_factory=list)  # per-video inputs of the combination (landmarks)
    video_weights: np.ndarray = field(default_factory=lambda: np.zeros(0))
    video_fill: np.ndarray = field(default_factory=lambda: np.zeros(0))  # training medians, for a missing value

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


def _patches(descriptors: pd.DataFrame) -> np.ndarray:
    """(rows, central patches, PATCH_BINS): the patch histograms of a descriptor table."""
    return _matrix(descriptors, patch_names()).reshape(len(descriptors), len(patch_positions()), PATCH_BINS)


def video_mean_scores(model, descriptors: pd.DataFrame) -> pd.Series:
    """Mean frame score per video of a descriptor table."""
    if descriptors.empty:
        return pd.Series(dtype=float)
    return pd.Series(model.frame_scores(descriptors), index=descriptors.video_id.to_numpy()).groupby(level=0).mean()


def video_inputs(model, descriptors: pd.DataFrame, videos: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per video with crops, what the final logistic combination sees: "crop", the mean frame score; for a model
    with a patch scorer "patch", the mean of its crops' patch scores; and the model's video_columns, read from
    `videos` (video_id plus those columns; a missing value takes the training median)."""
    columns = [video_mean_scores(model, descriptors).rename("crop")]
    if getattr(model, "patch", None) is not None:
        patch = model.patch.crop_scores(descriptors) if len(descriptors) else np.zeros(0)
        columns.append(pd.Series(patch, index=descriptors.video_id.to_numpy(), dtype=float).groupby(level=0).mean()
                       .rename("patch"))
    inputs = pd.concat(columns, axis=1)
    wanted = list(getattr(model, "video_columns", []))
    if wanted:
        missing = [c for c in wanted if videos is None or c not in videos.columns]
        if missing:
            raise ValueError(f"this crop_linear model also reads the per-video features {missing}: pass the video "
                             "table (dfp computes them with the other per-video features)")
        values = videos.drop_duplicates("video_id").set_index("video_id")[wanted].astype(float)
        values = values.reindex(inputs.index).fillna(pd.Series(model.video_fill, index=wanted))
        inputs = inputs.join(values)
    return inputs


def crop_video_scores(model, descriptors: pd.DataFrame, video_ids: list[str],
                      videos: pd.DataFrame | None = None) -> dict[str, float]:
    """P(FAKE) per video (NaN for a video without crops); `videos` supplies a model's video_columns."""
    inputs = video_inputs(model, descriptors[descriptors.video_id.isin(set(video_ids))], videos)
    z = model.scale * inputs["crop"] + model.shift
    if "patch" in inputs:
        z = z + model.patch_scale * inputs["patch"]
    for column, weight in zip(getattr(model, "video_columns", []), getattr(model, "video_weights", []), strict=True):
        z = z + weight * inputs[column]
    scores = dict(zip(inputs.index, 1 / (1 + np.exp(-z.clip(-30, 30))), strict=True))
    return {v: float(scores.get(v, math.nan)) for v in video_ids}


def _calibrated(fit: Callable[[set[str]], object], descriptors: pd.DataFrame, labels: dict[str, int],
                groups: dict[str, str], seed: int, videos: pd.DataFrame | None = None):
    """Fit on every video, with the final logistic combination (Platt scaling when the model has one input)
    learnt on out-of-fold video_inputs of 3 inner grouped folds."""
    vids = np.array(sorted(labels))
    inner = grouped_folds(np.array([labels[v] for v in vids]), np.array([groups[v] for v in vids]), 3, seed=seed)
    held = pd.concat([video_inputs(fit(set(vids[inner != f])), descriptors[descriptors.video_id.isin(set(vids[inner == f]))],
                                   videos) for f in np.unique(inner)])
    combination = LogisticRegression(C=1.0).fit(held.to_numpy(), held.index.map(labels).to_numpy())
    coefficients = dict(zip(held.columns, combination.coef_[0], strict=True))
    model = fit(set(vids))
    model.scale, model.shift = float(coefficients["crop"]), float(combination.intercept_[0])
    if "patch" in held:
        model.patch_scale = float(coefficients["patch"])
    if getattr(model, "video_columns", None):
        model.video_weights = np.array([coefficients[c] for c in model.video_columns], np.float64)
    return model


def _blended_of_reals(blended: pd.DataFrame | None, like: pd.DataFrame, videos: set[str],
                      labels: dict[str, int]) -> pd.DataFrame:
    """The self-blended rows made from the REAL videos among `videos` (no rows, `like`'s columns, when none)."""
    if blended is None:
        return like.iloc[0:0]
    return blended[blended.video_id.isin({v for v in videos if labels[v] == 0})]


def _blend_pairs(descriptors: pd.DataFrame, blended: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Positions (in `blended`, in `descriptors`) of every self-blended row and its source crop (same video_id and
    frame_index), for the blended rows whose source is present."""
    sources = descriptors[KEYS].reset_index(drop=True).reset_index()  # "index": position in `descriptors`
    paired = blended[KEYS].reset_index(drop=True).reset_index().merge(sources, on=KEYS, suffixes=("_blend", "_real"))
    return paired.index_blend.to_numpy(), paired.index_real.to_numpy()


def blend_differences(descriptors: pd.DataFrame, blended: pd.DataFrame, columns: list[str]) -> np.ndarray:
    """x_blend - x_real for every self-blended row whose source crop (same video_id, frame_index) is present."""
    at_blend, at_real = _blend_pairs(descriptors, blended)
    return _matrix(blended, columns)[at_blend] - _matrix(descriptors, columns)[at_real]


def fit_patch_scorer(descriptors: pd.DataFrame, blended: pd.DataFrame, labels: dict[str, int],
                     seed: int = 0) -> PatchScorer:
    """The patch scorer of crop_linear, from the crops of labelled videos and the self-blended copies of REAL ones.

    Patches of REAL crops are REAL; patches of FAKE crops FAKE with weight FAKE_PATCH_WEIGHT (a face swap or
    reenactment need not touch every central patch); a self-blended patch the blend covers (BLENDED_PATCH) is
    FAKE, and pairs with the same patch of its source crop as in crop_linear, so the weights learn what blending
    changes inside one patch. Standardised by the REAL patches.
    """
    patches = _patches(descriptors)
    y = descriptors.video_id.map(labels).to_numpy(int)
    real, fake = patches[y == 0].reshape(-1, PATCH_BINS), patches[y == 1].reshape(-1, PATCH_BINS)
    reference = real if len(real) else patches.reshape(-1, PATCH_BINS)
    mean, std = reference.mean(0), reference.std(0) + 1e-6
    blend_patches = _patches(blended)
    covered = _matrix(blended, patch_blend_names()) >= BLENDED_PATCH
    at_blend, at_real = _blend_pairs(descriptors, blended)
    diff = (blend_patches[at_blend] - patches[at_real])[covered[at_blend]] / std
    singles = (np.concatenate([real, fake, blend_patches[covered]]) - mean) / std
    n_blended = int(covered.sum())
    y = np.concatenate([np.zeros(len(real), int), np.ones(len(fake) + n_blended, int)])
    weight = np.concatenate([np.ones(len(real)), np.full(len(fake), FAKE_PATCH_WEIGHT), np.ones(n_blended)])
    return PatchScorer(mean, std, _singles_and_pairs(singles, y, diff, PATCH_C, seed, weight))


def _singles_and_pairs(singles: np.ndarray, y: np.ndarray, diff: np.ndarray, c: float, seed: int,
                       weight: np.ndarray | None = None) -> np.ndarray:
    """Weights of one L2 logistic regression without intercept over standardised rows: single rows are [x, 1] with
    their labels (and `weight`s); a pair difference contributes [d, 0] as FAKE and [-d, 0] as REAL, so the weights
    must rank every blended row above its source."""
    design = np.concatenate([np.c_[singles, np.ones(len(singles))], np.c_[diff, np.zeros(len(diff))],
                             np.c_[-diff, np.zeros(len(diff))]])
    target = np.concatenate([y, np.ones(len(diff), int), np.zeros(len(diff), int)])
    sample_weight = None if weight is None else np.concatenate([weight, np.ones(2 * len(diff))])
    with threadpool_limits(limits=1):  # lbfgs on this thin matrix runs several times slower with a BLAS thread per core
        solver = LogisticRegression(C=c, fit_intercept=False, max_iter=5000, random_state=seed)
        solver.fit(design, target, sample_weight=sample_weight)
    return solver.coef_[0, :-1].copy()


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
                    blended: pd.DataFrame | None = None, c: float = LINEAR_C, patches: bool = True,
                    videos: pd.DataFrame | None = None, video_columns: list[str] | None = None) -> CropLinearModel:
    """The joint single-crop + blend-pair linear scorer (module docstring), with a patch scorer unless `patches`
    is False (then the descriptors need no patch columns), and `video_columns` of the `videos` table (video_id
    plus those columns; default VIDEO_INPUTS when `videos` is given) as further inputs of the combination.

    One L2 logistic regression without intercept over standardised rows: single crops are [x, 1] with their
    video's label (self-blended crops as FAKE); a pair contributes [x_blend - x_real, 0] as FAKE and its
    negation as REAL, so the same weights must rank every blended crop above its source.
    """
    columns = descriptor_names()

    def fit(chosen: set[str]) -> CropLinearModel:
        rows = descriptors[descriptors.video_id.isin(chosen)]
        x = _matrix(rows, columns)
        with warnings.catch_warnings():  # a column with no value at all gets mean 0, std 1e-6
            warnings.simplefilter("ignore", RuntimeWarning)
            mean, std = np.nan_to_num(np.nanmean(x, 0)), np.nan_to_num(np.nanstd(x, 0)) + 1e-6
        extra = _blended_of_reals(blended, rows, chosen, labels)
        singles = np.concatenate([x, _matrix(extra, columns)])
        y = np.concatenate([rows.video_id.map(labels).to_numpy(int), np.ones(len(extra), int)])
        diff = np.nan_to_num(blend_differences(rows, extra, columns) / std, nan=0.0)
        weights = _singles_and_pairs(_standardised(singles, mean, std), y, diff, c, seed)
        patch = fit_patch_scorer(rows, extra, labels, seed) if patches else None
        fill = np.zeros(len(extras))
        if extras:  # a video without the value (no landmarks) scores as the median training video
            fill = np.nan_to_num(videos[videos.video_id.isin(chosen)][extras].astype(float).median().to_numpy())
        return CropLinearModel(columns, mean, std, weights, patch=patch, video_columns=list(extras), video_fill=fill)

    extras = [] if videos is None else list(VIDEO_INPUTS if video_columns is None else video_columns)
    return _calibrated(fit, descriptors, labels, groups, seed, videos)


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


def input_shares(model: CropLinearModel, descriptors: pd.DataFrame, videos: pd.DataFrame | None = None) -> dict[str, float]:
    """Share of the spread of the final logit over the given videos due to each input ("crop", "patch", and the
    video columns): |coefficient| x standard deviation of the input, normalised to sum to 1."""
    inputs = video_inputs(model, descriptors, videos)
    coefficients = {"crop": model.scale, "patch": model.patch_scale,
                    **dict(zip(model.video_columns, np.asarray(model.video_weights, float).tolist(), strict=True))}
    spread = {k: abs(coefficients[k]) * float(inputs[k].std()) for k in inputs.columns}
    total = sum(spread.values()) or 1.0
    return {k: round(v / total, 4) for k, v in spread.items()}


def save_crop_gbm(model: CropModel, path: str | Path) -> None:
    """The classifier as skops, its calibration and columns as JSON beside it."""
    import skops.io as sio  # lazy: ~1 s to import, needed only to read or write a model file

    sio.dump(model.classifier, str(path))
    Path(str(path) + ".calibration.json").write_text(json.dumps({"scale": model.scale, "shift": model.shift,
                                                                 "columns": model.columns}))


def load_crop_gbm(path: str | Path) -> CropModel:
    calibration = read_json(str(path) + ".calibration.json")
    return CropModel(load_skops(path), float(calibration["scale"]), float(calibration["shift"]),
                     calibration.get("columns", texture_names()))


def save_crop_linear(model: CropLinearModel, path: str | Path) -> None:
    """Everything as one JSON document: it loads without running any code."""
    patch = None if model.patch is None else {k: getattr(model.patch, k).tolist() for k in ("mean", "std", "weights")}
    Path(path).write_text(json.dumps({
        "columns": model.columns, "mean": model.mean.tolist(), "std": model.std.tolist(),
        "weights": model.weights.tolist(), "scale": model.scale, "shift": model.shift,
        "patch": patch, "patch_scale": model.patch_scale, "video_columns": model.video_columns,
        "video_weights": np.asarray(model.video_weights, float).tolist(),
        "video_fill": np.asarray(model.video_fill, float).tolist()}))


def load_crop_linear(path: str | Path) -> CropLinearModel:
    """A saved crop_linear model (one saved before patch scorers existed loads without one)."""
    saved = read_json(path)
    arrays = [np.asarray(saved[k], np.float64) for k in ("mean", "std", "weights")]
    if not all(len(a) == len(saved["columns"]) for a in arrays):
        raise ValueError(f"{path}: mean, std and weights must each have one value per column")
    patch = None
    if saved.get("patch") is not None:
        patch = PatchScorer(*(np.asarray(saved["patch"][k], np.float64) for k in ("mean", "std", "weights")))
        if not all(len(a) == PATCH_BINS for a in (patch.mean, patch.std, patch.weights)):
            raise ValueError(f"{path}: its patch scorer has {len(patch.weights)} weights where this version of "
                             f"deepfake-pipeline describes a patch by {PATCH_BINS} values: retrain the model")
    video_columns = [str(c) for c in saved.get("video_columns", [])]
    video_weights = np.asarray(saved.get("video_weights", []), np.float64)
    video_fill = np.asarray(saved.get("video_fill", []), np.float64)
    if not len(video_weights) == len(video_fill) == len(video_columns):
        raise ValueError(f"{path}: video_weights and video_fill must each have one value per video column")
    return CropLinearModel(list(saved["columns"]), *arrays, float(saved["scale"]), float(saved["shift"]),
                           patch, float(saved.get("patch_scale", 0.0)), video_columns, video_weights, video_fill)
