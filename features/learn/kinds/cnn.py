"""cnn: the small Keras CNN on the main face's JPEG crops (features.learn.models).

The module imports its implementation (scikit-learn, OpenCV, pandas: seconds) inside the methods: the
registry, and through it the config and the CLI, read the class's declarations without them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from features.learn.model_kind import VideoModel
from features.learn.training_set import TrainingSet


class Cnn(VideoModel):
    name = "cnn"
    reads = frozenset({"crops"})
    model_file = "model.keras"
    description = "Keras CNN on face crops"
    options = ("cnn_size", "cnn_epochs")
    uses_gpu = True
    scores_from = "CNN on main-face crops"

    def fit(self, data: TrainingSet) -> Cnn:
        from features.learn import models  # lazy: see the module docstring
        self.fitted_ = models.fit_cnn(data.crops, data.labels(), data.groups(), size=self.settings.get("cnn_size", "small"),
                                      epochs=self.settings.get("cnn_epochs", 8), seed=self.seed)
        return self

    def predict_proba(self, data: TrainingSet) -> np.ndarray:
        from features.learn import models  # lazy: see the module docstring
        scores = models.cnn_video_scores(self.fitted_, data.crops, data.video_ids)
        return data.videos.video_id.map(scores).to_numpy(np.float64)

    def device(self) -> str:
        from features.learn import models  # lazy: see the module docstring
        return models.keras_device()

    def write(self, path: Path) -> None:
        from features.learn import models  # lazy: see the module docstring
        models.save_cnn(self.fitted_, path)

    @classmethod
    def read(cls, path: Path):
        from features.learn import models  # lazy: see the module docstring
        return models.load_cnn(path)
