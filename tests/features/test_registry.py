"""The model registry: adding a model is one new class and one registry line, and every registered kind goes
through the same training, saving and loading code."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from features.config import TrainConfig
from features.learn import registry, training
from features.learn.evaluation import assign_folds, fold_splits
from features.learn.model_files import read_json, sha256_file
from features.learn.model_kind import VideoModel
from features.learn.training_set import TrainingSet


class TinyPrior(VideoModel):
    """The smallest model there is: the training set's FAKE rate, for every video."""

    name = "tiny"
    reads = frozenset({"features"})
    model_file = "model_tiny.json"
    description = "the FAKE rate of the training videos"

    def fit(self, data: TrainingSet) -> TinyPrior:
        self.fitted_ = float(data.y.mean())
        return self

    def predict_proba(self, data: TrainingSet) -> np.ndarray:
        return np.full(len(data.videos), self.fitted_)

    def write(self, path: Path) -> None:
        path.write_text(json.dumps({"fake_rate": self.fitted_}))

    @classmethod
    def read(cls, path: Path) -> float:
        return float(read_json(path)["fake_rate"])


@pytest.fixture
def tiny():
    registry.register(TinyPrior)  # the one registry line
    yield TinyPrior
    registry.unregister("tiny")


def _videos(n_groups: int = 6) -> pd.DataFrame:
    """Groups of one REAL and two FAKE videos."""
    return pd.DataFrame([{"video_id": f"g{g}-{i}", "cache_key": f"k{g}-{i}", "leakage_group": f"g{g}",
                          "label": "REAL" if i == 0 else "FAKE", "status": "ok", "split": None}
                         for g in range(n_groups) for i in range(3)])


def test_a_model_registered_in_a_test_trains_scores_saves_and_loads_through_the_training_code(tiny, tmp_path):
    assert registry.model_names() == ["crop_linear", "gbm", "crop_gbm", "cnn", "tiny"]
    assert TrainConfig(cache="c", out="o", model="tiny").model == "tiny"
    assert "tiny" in TrainConfig.model_json_schema()["properties"]["model"]["enum"]

    videos = _videos()
    videos.loc[videos.video_id == "g0-1", "label"] = "REAL"  # the folds' FAKE rates now differ
    videos["fold"] = assign_folds(videos, folds=3, seed=0)
    data = TrainingSet(videos)
    for _, train, test in fold_splits(videos.fold.to_numpy()):
        result = training.fit_fold("tiny", {"seed": 0}, data.subset(train), data.subset(test))
        assert result["video_id"] == list(videos.video_id[test]) and result["device"] == "CPU"
        assert result["p_fake"] == [pytest.approx((videos.label[train] == "FAKE").mean())] * int(test.sum())

    final = training.fit_final("tiny", {"seed": 0}, data, tmp_path)
    assert final == {"device": "CPU", "digests": {"model_tiny.json": sha256_file(tmp_path / "model_tiny.json")},
                     "feature_importance": {}, "scorer_shares": {},
                     "ood_threshold": None}  # these videos have no per-video features: no guard to fit
    loaded = registry.get("tiny").load(tmp_path)
    assert loaded.predict_proba(data.subset(np.ones(len(videos), bool))).tolist() == [11 / 18] * 18


def test_an_unregistered_model_is_refused_by_the_config_and_the_registry(tiny):
    registry.unregister("tiny")
    with pytest.raises(ValidationError, match="unknown model 'tiny': choose from crop_linear, gbm, crop_gbm, cnn"):
        TrainConfig(cache="c", out="o", model="tiny")
    assert TrainConfig.model_json_schema()["properties"]["model"]["enum"] == ["crop_linear", "gbm", "crop_gbm", "cnn"]
    with pytest.raises(ValueError, match="unknown model 'tiny'"):
        registry.build("tiny")
    registry.register(TinyPrior)  # for the fixture's unregister


def test_the_registry_refuses_a_taken_name_an_unsafe_format_and_an_unknown_input(tiny):
    with pytest.raises(ValueError, match="the name 'tiny' is taken; another kind saves model_tiny.json"):
        registry.register(TinyPrior)
    pickled = type("Pickled", (TinyPrior,), {"name": "pickled", "model_file": "model.pkl"})
    with pytest.raises(ValueError, match=r"model\.pkl is not one of \.skops, \.keras, \.json"):
        registry.register(pickled)
    embeddings = type("Embedded", (TinyPrior,), {"name": "embedded", "model_file": "e.json",
                                                 "reads": frozenset({"embeddings"})})
    with pytest.raises(ValueError, match="it reads \\['embeddings'\\]"):
        registry.register(embeddings)
    assert "pickled" not in registry.model_names() and "embedded" not in registry.model_names()


def test_a_kind_takes_only_its_own_options():
    cnn = registry.build("cnn", {"seed": 3, "cnn_size": "large", "cnn_epochs": 2, "folds": 5})
    assert (cnn.seed, cnn.settings) == (3, {"cnn_size": "large", "cnn_epochs": 2})
    assert registry.build("gbm", {"seed": 1, "cnn_size": "large"}).settings == {}
    with pytest.raises(TypeError, match="takes no options \\['cnn_size'\\]"):
        registry.get("gbm")(cnn_size="large")


def test_every_kind_names_a_safe_file_and_what_it_reads():
    files = {name: registry.get(name).model_file for name in registry.model_names()}
    assert files == {"crop_linear": "model_crops_linear.json", "gbm": "model.skops",
                     "crop_gbm": "model_crops.skops", "cnn": "model.keras"}
    assert {name: sorted(registry.get(name).reads) for name in files} == {
        "crop_linear": ["descriptors", "features"], "gbm": ["features"], "crop_gbm": ["descriptors"],
        "cnn": ["crops"]}
    assert [name for name in files if registry.get(name).uses_gpu] == ["cnn"]
