"""crop_gbm: boosting on per-crop texture descriptors with self-blended fakes (features.learn.crop_models).

The module imports its implementation (scikit-learn, OpenCV, pandas: seconds) inside the methods: the
registry, and through it the config and the CLI, read the class's declarations without them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from features.learn.model_kind import VideoModel
from features.learn.training_set import TrainingSet


class CropGbm(VideoModel):
    name = "crop_gbm"
    reads = frozenset({"descriptors"})
    model_file = "model_crops.skops"
    description = "boosting on per-crop texture descriptors with self-blended fakes"
    scores_from = "texture model on main-face crops"

    def fit(self, data: TrainingSet) -> CropGbm:
        from features.learn import crop_models  # lazy: see the module docstring
        self.fitted_ = crop_models.fit_crop_gbm(data.descriptors, data.labels(), data.groups(), seed=self.seed,
                                                blended=data.blended)
        return self

    def predict_proba(self, data: TrainingSet) -> np.ndarray:
        from features.learn import crop_models  # lazy: see the module docstring
        scores = crop_models.crop_video_scores(self.fitted_, data.descriptors, data.video_ids, data.videos)
        return data.videos.video_id.map(scores).to_numpy(np.float64)

    def write(self, path: Path) -> None:
        from features.learn import crop_models  # lazy: see the module docstring
        crop_models.save_crop_gbm(self.fitted_, path)

    @classmethod
    def read(cls, path: Path):
        from features.learn import crop_models  # lazy: see the module docstring
        return crop_models.load_crop_gbm(path)
