"""How far a video lies from the training videos, and scores tempered towards the prior as that distance grows.

A video's representation is its per-video features, with the mean of its main-face crop descriptors where the
model reads them. The guard standardises the training videos' representations, projects them on their first
principal components, and keeps (a sample of) them as reference points; a video's distance is its mean distance
to the `k` nearest. The threshold and the scale come from out-of-fold distances (each fold's videos measured
against a guard fitted on the other folds): about 5% of unseen in-distribution videos lie beyond it. Beyond the
threshold a score's logit moves towards the prior's, by exp(-(distance - threshold) / scale), and the video is
flagged `ood`. Saved as plain JSON: nothing in it can run code.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from features.learn.video_features import FEATURE_NAMES

OOD_FILE = "ood_guard.json"
COMPONENTS = 16
NEIGHBOURS = 5
QUANTILE = 0.95  # of the out-of-fold distances: the flag threshold
REFERENCE_POINTS = 4096  # kept in the file at most: the distance is a mean over the nearest few, sampling is harmless
_EPS = 1e-6


def video_representation(videos: pd.DataFrame, descriptors: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per video (index video_id): its per-video features and, given crop descriptors, their mean per
    video (a video without crops gets NaN there, filled by the guard's medians)."""
    features = videos.set_index("video_id")[[c for c in FEATURE_NAMES if c in videos.columns]].astype(np.float64)
    if descriptors is None or descriptors.empty:
        return features
    values = [c for c in descriptors.columns if c not in ("video_id", "cache_key", "descriptors_version",
                                                          "frame_index", "blended")]
    if "blended" in descriptors.columns:
        descriptors = descriptors[~descriptors.blended.astype(bool)]
    means = descriptors.groupby("video_id")[values].mean().add_prefix("crop:")
    return features.join(means, how="left")


@dataclass
class OodGuard:
    columns: list[str]
    median: list[float]
    mean: list[float]
    scale: list[float]
    components: list[list[float]]
    reference: list[list[float]]
    threshold: float
    spread: float
    neighbours: int = NEIGHBOURS

    def _project(self, matrix: np.ndarray) -> np.ndarray:
        filled = np.where(np.isfinite(matrix), matrix, np.asarray(self.median))
        return ((filled - np.asarray(self.mean)) / np.asarray(self.scale)) @ np.asarray(self.components).T

    def distance(self, representation: pd.DataFrame) -> np.ndarray:
        """Mean distance of each row to its nearest reference points (the columns the guard was fitted on)."""
        matrix = representation.reindex(columns=self.columns).to_numpy(np.float64)
        return _knn_distance(self._project(matrix), np.asarray(self.reference), self.neighbours)

    def weight(self, distance: np.ndarray) -> np.ndarray:
        """1 up to the threshold, then decaying: how much of the model's score (in logits) is kept."""
        return np.exp(-np.maximum(np.asarray(distance) - self.threshold, 0.0) / self.spread)

    def temper(self, p: np.ndarray, prior: float, distance: np.ndarray) -> np.ndarray:
        """Scores moved towards the prior, in logit space, by how far beyond the threshold each video lies."""
        p = np.clip(np.asarray(p, np.float64), _EPS, 1 - _EPS)
        base = np.log(prior / (1 - prior))
        logit = base + self.weight(distance) * (np.log(p / (1 - p)) - base)
        return 1 / (1 + np.exp(-logit))

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(asdict(self)))

    @classmethod
    def load(cls, path: str | Path) -> OodGuard:
        """Plain JSON; a file of another shape is refused with its name."""
        data = json.loads(Path(path).read_text())
        fields = set(cls.__dataclass_fields__)
        if not isinstance(data, dict) or set(data) != fields:
            raise ValueError(f"{path}: not an out-of-distribution guard (expected the fields {sorted(fields)})")
        return cls(**data)


def _knn_distance(points: np.ndarray, reference: np.ndarray, k: int) -> np.ndarray:
    from sklearn.neighbors import NearestNeighbors

    k = max(1, min(k, len(reference)))
    distances, _ = NearestNeighbors(n_neighbors=k).fit(reference).kneighbors(points)
    return distances.mean(axis=1)


def _fit_projection(matrix: np.ndarray, seed: int) -> dict:
    from sklearn.decomposition import PCA

    median = pd.DataFrame(matrix).median().fillna(0.0).to_numpy()  # 0 for a column with no value at all
    filled = np.where(np.isfinite(matrix), matrix, median)
    mean, scale = filled.mean(axis=0), filled.std(axis=0)
    scale = np.where(scale > _EPS, scale, 1.0)
    standard = (filled - mean) / scale
    n = min(COMPONENTS, standard.shape[0] - 1, standard.shape[1])
    pca = PCA(n_components=max(n, 1), random_state=seed).fit(standard)
    return {"median": median, "mean": mean, "scale": scale, "components": pca.components_,
            "reference": pca.transform(standard)}


def fit_guard(representation: pd.DataFrame, fold: np.ndarray, seed: int = 0) -> OodGuard:
    """A guard fitted on the training videos' representations, its threshold and scale from the distances of each
    fold's videos to a guard fitted on the other folds (folds < 0 only ever train)."""
    matrix = representation.to_numpy(np.float64)
    fold = np.asarray(fold)
    held_out = []
    for f in np.unique(fold[fold >= 0]):
        inside = fold != f
        if inside.sum() < 2:
            continue
        projection = _fit_projection(matrix[inside], seed)
        guard = _guard(representation.columns, projection, threshold=0.0, spread=1.0)
        held_out.append(guard.distance(representation[~inside]))
    if not held_out:
        raise ValueError("the out-of-distribution guard needs at least two folds of training videos")
    distances = np.concatenate(held_out)
    threshold = float(np.quantile(distances, QUANTILE))
    spread = float(max(threshold - np.quantile(distances, 0.5), _EPS))
    projection = _fit_projection(matrix, seed)
    reference = projection["reference"]
    if len(reference) > REFERENCE_POINTS:
        reference = reference[np.random.default_rng(seed).choice(len(reference), REFERENCE_POINTS, replace=False)]
    return _guard(representation.columns, {**projection, "reference": reference}, threshold, spread)


def _guard(columns, projection: dict, threshold: float, spread: float) -> OodGuard:
    return OodGuard(columns=list(columns), median=projection["median"].tolist(), mean=projection["mean"].tolist(),
                    scale=projection["scale"].tolist(), components=projection["components"].tolist(),
                    reference=projection["reference"].tolist(), threshold=threshold, spread=spread)
