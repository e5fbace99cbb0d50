"""Fitting a registered model kind: on training folds, scored on the held-out fold; and the final model, saved
with its digests and card entries. What the train tasks run, one call each."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from features.learn import ood
from features.learn.model_files import sha256_file
from features.learn.registry import build
from features.learn.training_set import TrainingSet


def fit_fold(kind: str, settings: Mapping, train: TrainingSet, test: TrainingSet) -> dict:
    """Fit on the training folds and predict the held-out fold: {video_id, p_fake, device}."""
    model = build(kind, settings).fit(train)
    return {"video_id": test.video_ids, "p_fake": [float(p) for p in model.predict_proba(test)],
            "device": model.device()}


def fit_final(kind: str, settings: Mapping, data: TrainingSet, directory: str | Path) -> dict:
    """Fit on every labelled video, save the model's files into `directory`: {device, digests, feature_importance,
    scorer_shares}."""
    model = build(kind, settings).fit(data)
    digests = model.save(directory)  # the card records each file's digest; dfp refuses a file that no longer matches
    guard = fit_ood_guard(data, settings.get("seed", 0))
    if guard is not None:  # saved beside the model and checked like its files
        guard.save(Path(directory) / ood.OOD_FILE)
        digests[ood.OOD_FILE] = sha256_file(Path(directory) / ood.OOD_FILE)
    return {"device": model.device(), "digests": digests, "ood_threshold": None if guard is None else guard.threshold,
            **model.card(data)}


def fit_ood_guard(data: TrainingSet, seed: int = 0) -> ood.OodGuard | None:
    """The out-of-distribution guard of the training videos (their folds give its threshold); None without folds
    of held-out videos to set it on."""
    if "fold" not in data.videos.columns or (data.videos.fold.to_numpy() >= 0).sum() < 2:
        return None
    representation = ood.video_representation(data.videos, data.descriptors)
    if representation.shape[1] == 0:
        return None
    return ood.fit_guard(representation, data.videos.fold.to_numpy(np.int64), seed)


def ood_scores(guard: ood.OodGuard, data: TrainingSet, p_fake: np.ndarray, prior: float) -> dict[str, np.ndarray]:
    """The guard's view of scored videos: {p_fake tempered towards the prior, ood_distance, ood}."""
    distance = guard.distance(ood.video_representation(data.videos, data.descriptors).loc[data.video_ids])
    return {"p_fake": guard.temper(p_fake, prior, distance), "ood_distance": distance,
            "ood": distance > guard.threshold}
