"""Scoring reads and predicts a bounded number of videos at a time, and every scorable video gets its own score."""

from __future__ import annotations

import numpy as np
import pandas as pd

from features.learn.training_set import TrainingSet
from flows import train


class ByFeature:
    """Scores a video by its one feature, whatever else is in the batch."""

    def __init__(self):
        self.batches: list[list[str]] = []

    def predict_proba(self, data: TrainingSet) -> np.ndarray:
        self.batches.append(list(data.videos.video_id))
        return 1 / (1 + np.exp(-data.videos.x.to_numpy()))


def test_videos_are_scored_in_chunks_with_the_same_scores_and_unscorable_ones_flagged(monkeypatch, tmp_path):
    reads: list[int] = []
    monkeypatch.setattr(train, "training_set", lambda store, videos, kinds: reads.append(len(videos))
                        or TrainingSet(videos.reset_index(drop=True)))
    table = pd.DataFrame({"video_id": [f"v{i}" for i in range(7)], "x": np.linspace(-2, 2, 7), "n_tracks": 1,
                          "status": ["ok", "ok", "failed", "ok", "ok", "no_face", "ok"],
                          "error": [None, None, "decode: corrupt", None, None, None, None]})
    card = {"model": "crop_linear"}
    monkeypatch.setattr(train, "SCORE_CHUNK", 2)
    model = ByFeature()
    scored = train.score_table(card, model, table, str(tmp_path))
    assert reads == [2, 2, 1] and model.batches == [["v0", "v1"], ["v3", "v4"], ["v6"]]
    monkeypatch.setattr(train, "SCORE_CHUNK", 256)
    whole = train.score_table(card, ByFeature(), table, str(tmp_path))
    assert reads[3:] == [5]
    pd.testing.assert_series_equal(scored.p_fake, whole.p_fake)
    ok = table.status == "ok"
    np.testing.assert_allclose(scored.p_fake[ok], 1 / (1 + np.exp(-table.x[ok])))
    assert list(scored.flagged) == [False, False, True, False, False, True, False]
    assert list(scored.p_fake[~ok]) == [0.5, 0.5]
    assert scored.explanation[2] == "not scored (failed: decode: corrupt): 0.5"
