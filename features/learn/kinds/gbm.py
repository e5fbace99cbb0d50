"""gbm: calibrated gradient boosting on the per-video features (features.learn.models).

The module imports its implementation (scikit-learn, OpenCV, pandas: seconds) inside the methods: the
registry, and through it the config and the CLI, read the class's declarations without them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from features.learn.model_kind import VideoModel
from features.learn.training_set import TrainingSet


class Gbm(VideoModel):
    name = "gbm"
    reads = frozenset({"features"})
    model_file = "model.skops"
    description = "calibrated gradient boosting on per-video features"

    def fit(self, data: TrainingSet) -> Gbm:
        from features.learn import models  # lazy: see the module docstring
        from features.learn.video_features import FEATURE_NAMES  # lazy: see the module docstring
        videos = data.videos
        self.fitted_ = models.fit_gbm(videos[FEATURE_NAMES], data.y, videos.leakage_group.to_numpy(), seed=self.seed)
        return self

    def predict_proba(self, data: TrainingSet) -> np.ndarray:
        from features.learn.video_features import FEATURE_NAMES  # lazy: see the module docstring
        return self.fitted_.predict_proba(data.videos[FEATURE_NAMES])[:, 1]

    def write(self, path: Path) -> None:
        from features.learn import models  # lazy: see the module docstring
        models.save_gbm(self.fitted_, path)

    @classmethod
    def read(cls, path: Path):
        from features.learn import models  # lazy: see the module docstring
        return models.load_gbm(path)

    def card(self, data: TrainingSet) -> dict:
        from features.learn import models  # lazy: see the module docstring
        from features.learn.video_features import FEATURE_NAMES  # lazy: see the module docstring
        importances = models.gbm_importances(self.fitted_, data.videos[FEATURE_NAMES], data.y, seed=self.seed)
        return {"feature_importance": importances, "scorer_shares": {}}
