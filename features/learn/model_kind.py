"""The interface every model kind implements (one class per kind, in features.learn.kinds; named in
features.learn.registry): what it reads, its options, fit, P(FAKE) per video, its files, and its card entries.

A kind saves one main file, `model_file` (and files named after it, such as MODEL.calibration.json), in a format
that loads without running code: .skops, .keras or .json, read through features.learn.model_files.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import ClassVar

import numpy as np

from features.learn.model_files import sha256_file
from features.learn.training_set import TrainingSet


class VideoModel(ABC):
    """A model kind: `fit(training_set)` returns self; `predict_proba(table)` gives P(FAKE) per video row (NaN
    where it cannot score one); `save(dir)` writes its files and returns their sha256 digests, `load(dir)` reads
    them back (safe formats only); `card(training_set)` is what the run's model card records about it."""

    name: ClassVar[str]
    reads: ClassVar[frozenset[str]]  # of features.learn.training_set.READABLE
    model_file: ClassVar[str]
    description: ClassVar[str]  # one line, for the config's help
    options: ClassVar[tuple[str, ...]] = ()  # the TrainConfig fields it takes, besides the seed
    uses_gpu: ClassVar[bool] = False  # its fits go to a GPU worker when the cluster has one
    scores_from: ClassVar[str] = ""  # how dfp score explains its scores; empty: by the per-video features

    def __init__(self, seed: int = 0, **options):
        unknown = sorted(set(options) - set(self.options))
        if unknown:
            raise TypeError(f"model {self.name} takes no options {unknown} (its options: {list(self.options)})")
        self.seed = seed
        self.settings = options
        self.fitted_ = None

    @abstractmethod
    def fit(self, data: TrainingSet) -> VideoModel:
        """Fit on every (labelled) video of `data`; returns self."""

    @abstractmethod
    def predict_proba(self, data: TrainingSet) -> np.ndarray:
        """P(FAKE) for each row of data.videos (NaN where it cannot score a video)."""

    @abstractmethod
    def write(self, path: Path) -> None:
        """Write the fitted model to its main file `path` (and files named after it)."""

    @classmethod
    @abstractmethod
    def read(cls, path: Path):
        """The fitted model (fitted_) saved at `path`, read without running code from it."""

    def device(self) -> str:
        """Where it was fitted, as the card records it."""
        return "CPU"

    def card(self, data: TrainingSet) -> dict:
        """What the model card records of the model fitted on `data`."""
        return {"feature_importance": {}, "scorer_shares": {}}

    def save(self, directory: str | Path) -> dict[str, str]:
        """Write the model's files into `directory`; returns {file name: sha256} (the card records them, and
        dfp refuses to load a file that no longer matches)."""
        directory = Path(directory)
        self.write(directory / self.model_file)
        return {p.name: sha256_file(p) for p in sorted(directory.glob(f"{self.model_file}*")) if p.is_file()}

    @classmethod
    def load(cls, directory: str | Path) -> VideoModel:
        """The model saved in `directory` by save."""
        model = cls()
        model.fitted_ = cls.read(Path(directory) / cls.model_file)
        return model
