"""crop_linear: the linear scorer on crop descriptors and self-blend pairs, combined with per-video inputs
(features.learn.crop_models).

The module imports its implementation (scikit-learn, OpenCV, pandas: seconds) inside the methods: the
registry, and through it the config and the CLI, read the class's declarations without them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from features.learn.model_kind import VideoModel
from features.learn.training_set import TrainingSet


class CropLinear(VideoModel):
    name = "crop_linear"
    reads = frozenset({"descriptors", "features"})  # the features: its per-video inputs (VIDEO_INPUTS)
    model_file = "model_crops_linear.json"
    description = ("the best on real clips: linear scorer on texture + residual co-occurrence descriptors of the "
                   "face crops, trained on crops and self-blend pairs")
    scores_from = "texture model on main-face crops"

    def fit(self, data: TrainingSet) -> CropLinear:
        from features.learn import crop_models  # lazy: see the module docstring
        self.fitted_ = crop_models.fit_crop_linear(data.descriptors, data.labels(), data.groups(), seed=self.seed,
                                                   blended=data.blended, videos=data.videos)
        return self

    def predict_proba(self, data: TrainingSet) -> np.ndarray:
        from features.learn import crop_models  # lazy: see the module docstring
        scores = crop_models.crop_video_scores(self.fitted_, data.descriptors, data.video_ids, data.videos)
        return data.videos.video_id.map(scores).to_numpy(np.float64)

    def write(self, path: Path) -> None:
        from features.learn import crop_models  # lazy: see the module docstring
        crop_models.save_crop_linear(self.fitted_, path)

    @classmethod
    def read(cls, path: Path):
        from features.learn import crop_models  # lazy: see the module docstring
        return crop_models.load_crop_linear(path)

    def card(self, data: TrainingSet) -> dict:
        from features.learn import crop_models  # lazy: see the module docstring
        return {"feature_importance": crop_models.weight_shares(self.fitted_),
                "scorer_shares": crop_models.input_shares(self.fitted_, data.descriptors, data.videos)}
