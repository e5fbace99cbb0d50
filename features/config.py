"""The one configuration model of an extraction run; its output-affecting part is hashed into every cache key."""

from __future__ import annotations

import hashlib
import json
import os
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, GetJsonSchemaHandler, field_validator
from pydantic.functional_validators import AfterValidator
from pydantic_core import core_schema

from features.learn import registry

# Fields that change how a run executes but never what it writes: excluded from the config hash.
RUNTIME_FIELDS = frozenset({"datasets", "cache", "workers", "dask_address", "force", "retry_failed", "device",
                            "prefetch_frames", "decode_threads", "keep_labels", "compact",
                            "commit_every"})


class ExtractConfig(BaseModel):
    """Everything that describes an extraction run: inputs, where results go, and how frames become rows."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    datasets: list[str] = Field(default_factory=list, description="Dataset folders, CSV files or video files.")
    cache: str = Field("cache", description="Cache location: a local path or an fsspec URL such as s3://bucket/cache.")
    workers: int | None = Field(None, ge=1, description="Local Dask worker processes (default: one per core).")
    dask_address: str | None = Field(None, description="tcp://host:port of an existing Dask scheduler.")
    force: bool = Field(False, description="Redo every video even when its cache entry is current.")
    retry_failed: bool = Field(False, description="Redo videos whose cached status is 'failed'.")
    keep_labels: bool = Field(False, description="Keep the labels, splits and leakage groups already cached for these "
                                                 "videos whatever the listing says (what dfp score does).")
    commit_every: int = Field(256, ge=1, description="Commit what the workers staged every N videos (and at least "
                                                     "once a minute): a killed run loses at most one batch.")
    compact: bool = Field(False, description="After the run, compact the cache's tables and checkpoint their logs "
                                             "(`dfp cache compact`; the scheduled deployment does).")

    detector: Literal["mtcnn", "haar"] = Field("mtcnn", description="Face detector run on keyframes.")
    device: str = Field("auto", description="TensorFlow device for MTCNN and the tf SSIM backend: auto, CPU:0, GPU:0.")
    keyframe_interval: int = Field(10, ge=1, description="Detect faces every N frames; track in between.")
    detect_long_side: int = Field(640, ge=64, description="Keyframes are downscaled so their long side is at most this.")
    detect_batch: int = Field(8, ge=1, description="Keyframes per detector call (MTCNN batches frames of one size).")
    full_detect_every: int = Field(4, ge=1, description="Every Nth keyframe searches the whole frame; the others "
                                                        "search full-resolution regions around tracked faces "
                                                        "(1: always the whole frame).")
    min_face_size: int = Field(20, ge=8, description="Smallest face, in pixels of the downscaled keyframe.")
    mtcnn_threshold: float = Field(0.9, gt=0, lt=1, description="MTCNN final-stage (ONet) confidence threshold.")
    detect_normalize: bool = Field(True, description="Stretch keyframe luminance before MTCNN (finds faces in dark clips).")
    haar_min_neighbors: int = Field(5, ge=1, description="Haar cascade minNeighbors: higher means fewer false faces.")
    iou_threshold: float = Field(0.3, gt=0, lt=1, description="Minimum IoU to continue a track at the next keyframe.")
    max_missed_keyframes: int = Field(3, ge=0, description="Keyframes a track may go undetected before it ends.")
    crop_margin: float = Field(0.3, ge=0, le=2, description="Margin added around the face box, as a fraction of its size.")
    crop_size: int = Field(224, ge=16, description="Side of the stored square face crops, in pixels (the JPEG crops "
                                                  "are resized to it; the lossless ones are only shrunk to it).")
    crops_per_video: int = Field(32, ge=0, description="Frames per video, evenly spaced, whose crops are stored: as "
                                                       "JPEG at crop_size, and losslessly at the video's own scale.")
    jpeg_quality: int = Field(95, ge=10, le=100, description="JPEG quality of stored crops.")
    ssim_face_size: int = Field(64, ge=8, description="Side of the grey face crop compared between consecutive frames.")
    ssim_frame_long_side: int = Field(256, ge=16, description="Long side of the grey frame compared between consecutive frames.")
    ssim_backend: Literal["numpy", "tf"] = Field("numpy", description="numpy (OpenCV box filter) or tf (TensorFlow, for GPU workers).")
    prefetch_frames: int = Field(8, ge=0, description="Frames decoded ahead in a background thread (0: none). "
                                                      "Local clusters with a worker on every core use 0.")
    decode_threads: int = Field(0, ge=0, description="FFmpeg decoding threads per video (0: FFmpeg's default, one "
                                                     "per core). Local clusters with a worker on every core use 1.")
    max_frames: int | None = Field(None, ge=1, description="Decode at most this many frames per video.")
    # allow_inf_nan=False: inf passed gt=0 and then made every video fail with OverflowError.
    max_seconds: float | None = Field(None, gt=0, allow_inf_nan=False,
                                      description="Decode at most this many seconds per video (a finite number).")

    @field_validator("datasets", mode="before")
    @classmethod
    def _paths_as_strings(cls, value):
        """Accept pathlib paths as well as strings."""
        return [os.fspath(v) for v in value] if isinstance(value, (list, tuple)) else value

    def output_settings(self) -> dict:
        """The settings that determine what extraction writes."""
        return self.model_dump(exclude=set(RUNTIME_FIELDS))

    @property
    def config_hash(self) -> str:
        """Short stable hash of the output-affecting settings."""
        blob = json.dumps(self.output_settings(), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:12]


def settings_differences(trained: dict[str, dict], evaluated: dict[str, dict]) -> dict[str, dict]:
    """Output-affecting extraction settings (ExtractConfig.output_settings, by config hash) that differ between the
    extractions a model was trained on and those of another cache: setting -> {"trained": [...], "evaluated": [...]}."""
    def values(configs: dict[str, dict]) -> dict[str, list]:
        out: dict[str, list] = {}
        for settings in configs.values():
            for key, value in settings.items():
                if value not in out.setdefault(key, []):
                    out[key].append(value)
        return out

    before, after = values(trained), values(evaluated)
    return {key: {"trained": before.get(key, []), "evaluated": after.get(key, [])}
            for key in sorted(set(before) | set(after))
            if sorted(map(repr, before.get(key, []))) != sorted(map(repr, after.get(key, [])))}


def _registered(name: str) -> str:
    registry.get(name)  # raises, naming the registered kinds
    return name


class _ModelNameSchema:
    """The JSON schema of a model name: a string, one of the kinds registered when the schema is made."""

    @staticmethod
    def __get_pydantic_json_schema__(schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler) -> dict:
        return {**handler(schema), "enum": registry.model_names()}


# A model kind's name (features.learn.registry): checked against the registered kinds when a config is made.
ModelName = Annotated[str, AfterValidator(_registered), _ModelNameSchema]


class TrainConfig(BaseModel):
    """A training run: which cache, which model, how it is cross-validated, where results go."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    cache: str = Field(..., description="Cache written by `dfp extract` (local path or fsspec URL).")
    out: str = Field(..., description="Run directory for metrics, plots, predictions and the model.")
    model: ModelName = Field(registry.DEFAULT_MODEL, description=registry.model_help())
    folds: int = Field(5, ge=2, description="Grouped cross-validation folds (by leakage group).")
    holdout: bool = Field(False, description="Use the metadata split instead of CV: split=train trains, "
                                             "every other split validates.")
    seed: int = Field(0, description="Seed for splits and models: same seed, same run on the same machine.")
    cnn_size: Literal["small", "large"] = Field("small", description="small trains in minutes on a CPU; "
                                                                     "large is meant for GPU workers.")
    cnn_epochs: int = Field(8, ge=1, description="CNN training epochs.")
    workers: int | None = Field(None, ge=1, description="Local Dask worker processes (default: one per core).")
    dask_address: str | None = Field(None, description="tcp://host:port of an existing Dask scheduler.")
    overwrite: bool = Field(False, description="Replace an existing run directory (its evaluations are deleted too).")


class ScoreConfig(BaseModel):
    """Scoring new videos with a trained run."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    videos: list[str] = Field(..., description="Video files, folders or datasets to score.")
    model: str = Field(..., description="Run directory written by `dfp train`.")
    out: str = Field(..., description="Folder for predictions.csv and predictions_detail.csv.")
    cache: str | None = Field(None, description="Cache for extraction (default: OUT/cache).")
    workers: int | None = Field(None, ge=1)
    dask_address: str | None = None


class EvaluateConfig(BaseModel):
    """Scoring a trained run on another labelled cache (cross-dataset results)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    run: str = Field(..., description="Run directory written by `dfp train`.")
    cache: str = Field(..., description="Another labelled cache written by `dfp extract`.")
    workers: int | None = Field(None, ge=1)
    dask_address: str | None = None
