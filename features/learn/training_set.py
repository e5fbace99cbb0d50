"""What a model reads of a run's videos, read once (features.store.training_data) and handed out as views."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # pandas takes most of a second to import; the registry, read by the CLI, needs only the type
    import pandas as pd

# What a model kind can read: the per-video features of the video table, the per-crop descriptors of the main
# face's lossless crops (with the self-blended copies of REAL videos' crops), and the main face's JPEG crops.
READABLE = frozenset({"features", "descriptors", "crops"})


@dataclass(frozen=True)
class TrainingSet:
    """Videos (one row each: video_id, cache_key, label, leakage_group, the per-video features) and, where a
    model reads them, the per-crop tables of those videos: `descriptors`, `blended` (self-blended copies of the
    REAL videos' crops) and `crops` (JPEG main-face crops)."""

    videos: pd.DataFrame
    descriptors: pd.DataFrame | None = None
    blended: pd.DataFrame | None = None
    crops: pd.DataFrame | None = None

    def subset(self, rows) -> TrainingSet:
        """The view of some videos (a boolean mask over `videos`), each per-crop table cut to them, in order."""
        videos = self.videos[np.asarray(rows, bool)]
        keep = set(videos.video_id)

        def cut(table: pd.DataFrame | None) -> pd.DataFrame | None:
            return None if table is None else table[table.video_id.isin(keep)]

        return replace(self, videos=videos, descriptors=cut(self.descriptors), blended=cut(self.blended),
                       crops=cut(self.crops))

    @property
    def video_ids(self) -> list[str]:
        return list(self.videos.video_id)

    @property
    def y(self) -> np.ndarray:
        """1 for a FAKE video, 0 otherwise, in row order."""
        return (self.videos.label == "FAKE").to_numpy(int)

    def labels(self) -> dict[str, int]:
        return dict(zip(self.videos.video_id, self.y, strict=True))

    def groups(self) -> dict[str, str]:
        return dict(zip(self.videos.video_id, self.videos.leakage_group, strict=True))
