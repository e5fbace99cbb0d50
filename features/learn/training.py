"""Fitting a registered model kind: on training folds, scored on the held-out fold; and the final model, saved
with its digests and card entries. What the train tasks run, one call each."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

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
    return {"device": model.device(), "digests": digests, **model.card(data)}
