"""What training, evaluation and scoring read of the cache: the video table with its features, the stale-partition
queries, the main face's crops and descriptors, and the training set a model kind reads, read once per run.

The per-video features and the crop descriptors are computed here from the cached faces and crops (no video is
decoded) and written as their own tables; read back, a video without current descriptors has them computed on
the spot (not written).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable

import numpy as np
import pandas as pd

from features.learn import descriptors
from features.learn.training_set import TrainingSet
from features.learn.video_features import FEATURE_NAMES, FEATURES_VERSION, video_features
from features.store.cache import FACES_SCHEMA, CacheStore, MissingSettingsError
from features.store.delta_cache import DeltaCacheStore, MapReads

VIDEO_COLUMNS = ["video_id", "cache_key", "fingerprint", "config_hash", "label", "leakage_group", "dataset", "method",
                 "compression", "status", "error", "split", "path", "relpath", "n_tracks", "keyframes", "keyframes_with_face"]
# What bits_per_pixel reads of a videos row (the block-grid feature is left out on heavily compressed video).
SIZE_COLUMNS = ["width", "height", "frame_count", "frames_decoded", "file_bytes"]
# What the per-video features read of a faces partition: everything but the lossless crops (the descriptors' input).
FEATURE_FACE_COLUMNS = [name for name in FACES_SCHEMA.names if name != "crop_lossless"]
DEFAULT_CROP_MARGIN = 0.3  # an extraction whose settings were not recorded used ExtractConfig's default


@functools.lru_cache(maxsize=16)
def crop_margin(cache: str, config_hash: str) -> float:
    """The crop margin an extraction (by config hash) stored its crops with."""
    try:
        return float(DeltaCacheStore(cache).read_config(config_hash)["crop_margin"])
    except (MissingSettingsError, KeyError):
        return DEFAULT_CROP_MARGIN


# --- the video table and its per-video features ------------------------------------------------------------

def video_table(store: CacheStore) -> pd.DataFrame:
    """Every cached video with its features (NaN where it has none, e.g. failed decodes)."""
    videos = store.read("videos", columns=VIDEO_COLUMNS)
    feats = store.read("features", columns=["video_id", "cache_key", "features_version", *FEATURE_NAMES])
    feats = feats[feats.features_version == FEATURES_VERSION].drop(columns="features_version")
    return videos.merge(feats, on=["video_id", "cache_key"], how="left")


def other_extraction_code(store: CacheStore, code_version: str) -> pd.DataFrame:
    """The extracted videos (status ok) whose rows were written by another version of the extraction code than
    `code_version` (features.FEATURE_CODE_VERSION): their stored values may mean something else."""
    videos = store.read("videos", columns=["video_id", "status", "code_version"])
    return videos[(videos.status == "ok") & (videos.code_version.fillna("unknown") != code_version)]


def feature_row(store: CacheStore, video: dict) -> dict:
    """Features of one cached video; rows of an uncommitted (older or newer) extraction are ignored."""
    key = video["cache_key"]
    faces = store.read_partition("faces", video["video_id"], columns=FEATURE_FACE_COLUMNS)
    ssim = store.read_partition("ssim", video["video_id"])
    faces = faces[faces.cache_key == key]
    ssim = ssim[ssim.cache_key == key]
    values = video_features(video, faces, ssim, crop_margin(store.url, video["config_hash"]))
    return {"video_id": video["video_id"], "cache_key": key, "features_version": FEATURES_VERSION, **values}


def feature_rows(store: CacheStore, videos: Iterable[dict]) -> dict[str, list[dict]]:
    """The features row of each given video, by video id."""
    return {video["video_id"]: [feature_row(store, video)] for video in videos}


def write_features(store: CacheStore, videos: Iterable[dict]) -> int:
    """Compute and write the features rows of the given videos, as one write; returns how many."""
    return store.write_tables("features", feature_rows(store, videos))


def stale_feature_videos(store: CacheStore) -> list[dict]:
    """Videos whose features partition is missing, from another extraction, or from older feature code."""
    videos = store.read("videos", columns=[*VIDEO_COLUMNS, *SIZE_COLUMNS])  # feature_row needs the size too
    videos = videos[videos.status != "failed"]
    have = store.read("features", columns=["video_id", "cache_key", "features_version"], committed_only=False)
    current = have[have.features_version == FEATURES_VERSION][["video_id", "cache_key"]]
    merged = videos.merge(current.assign(_have=True), on=["video_id", "cache_key"], how="left")
    return merged[merged._have.isna()].drop(columns="_have").to_dict("records")


# --- crops and crop descriptors -----------------------------------------------------------------------------

def main_crops(store: CacheStore, video_ids: list[str], keys: dict[str, str],
               column: str = "crop_jpeg", map_reads: MapReads | None = None) -> pd.DataFrame:
    """Stored crops of each video's main face track: the JPEG ones (crop_jpeg), or the lossless native-scale ones
    (crop_lossless) the descriptors are computed from; one read of the faces table (its files read by
    `map_reads` when given), videos in the given order."""
    faces = store.read_videos("faces", video_ids, columns=["video_id", "cache_key", "frame_index", "is_main", column],
                              map_reads=map_reads)
    faces = faces[(faces.cache_key == faces.video_id.map(keys)) & faces.is_main.astype(bool) & faces[column].notna()]
    order = {vid: i for i, vid in enumerate(video_ids)}
    faces = faces.sort_values("video_id", key=lambda ids: ids.map(order), kind="stable")
    return faces[["video_id", "frame_index", column]].reset_index(drop=True)


def descriptor_frame(store: CacheStore, video: dict) -> pd.DataFrame:
    """Descriptors of one video's main-face crops (video_id, frame_index, blended, table_names()), plus their
    self-blended copies when the video is REAL."""
    vid = video["video_id"]
    crops = main_crops(store, [vid], {vid: video["cache_key"]}, column="crop_lossless")
    margins = {vid: crop_margin(store.url, video["config_hash"])}
    tables = [descriptors.descriptor_table(crops, margins).assign(blended=False)]
    if video.get("label") == "REAL":
        tables.append(descriptors.descriptor_table(crops, margins, self_blended=True).assign(blended=True))
    return pd.concat(tables, ignore_index=True)


def descriptor_rows(store: CacheStore, video: dict) -> list[dict]:
    """descriptor_frame as the cache's rows, the values packed in table_names() order."""
    frame = descriptor_frame(store, video)
    values = frame[descriptors.table_names()].to_numpy(np.float32)
    return [{"video_id": video["video_id"], "cache_key": video["cache_key"],
             "descriptors_version": descriptors.DESCRIPTORS_VERSION, "frame_index": int(frame_index),
             "blended": bool(blended), "values": row}
            for frame_index, blended, row in zip(frame.frame_index, frame.blended, values, strict=True)]


def descriptors_by_video(store: CacheStore, videos: Iterable[dict]) -> dict[str, list[dict]]:
    """The crop-descriptor rows of each given video (from its stored crops), by video id."""
    return {video["video_id"]: descriptor_rows(store, video) for video in videos}


def write_descriptors(store: CacheStore, videos: Iterable[dict]) -> int:
    """Compute and write the crop-descriptor rows of the given videos, as one write; returns how many."""
    return store.write_tables("descriptors", descriptors_by_video(store, videos))


def stale_descriptor_videos(store: CacheStore) -> list[dict]:
    """Videos with stored crops whose descriptors are missing, from another extraction or older descriptor code,
    or (for a REAL video) lack the self-blended copies."""
    videos = store.read("videos", columns=[*VIDEO_COLUMNS, "crops_stored"])
    videos = videos[(videos.status == "ok") & (videos.crops_stored.fillna(0) > 0)]
    have = store.read("descriptors", columns=["video_id", "cache_key", "descriptors_version", "blended"],
                      committed_only=False)
    have = have[have.descriptors_version == descriptors.DESCRIPTORS_VERSION]
    current = have.groupby(["video_id", "cache_key"]).blended.any().rename("_blends").reset_index()
    merged = videos.merge(current, on=["video_id", "cache_key"], how="left")
    has_blends = merged._blends.astype("boolean").fillna(False)
    stale = merged._blends.isna() | ((merged.label == "REAL") & ~has_blends)
    return merged[stale].drop(columns="_blends").to_dict("records")


def _empty_descriptors() -> pd.DataFrame:
    """The empty descriptor table, typed as descriptor_table types it."""
    return descriptors.descriptor_table(pd.DataFrame(columns=["video_id", "frame_index", "crop_lossless"]), {})


def _typed(parts: list[pd.DataFrame]) -> pd.DataFrame:
    if not parts:
        return _empty_descriptors()
    out = pd.concat(parts, ignore_index=True)
    out["frame_index"] = out.frame_index.astype("int64")
    return out


def descriptor_tables(store: CacheStore, table: pd.DataFrame, blended_of: Iterable[str] = (),
                      map_reads: MapReads | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per-crop descriptors of the main-face crops of the table's videos, and the self-blended copies of those of
    the videos in `blended_of`, in one read of the descriptors table (its files read by `map_reads` when given);
    a video without current cached ones is computed here (not written)."""
    columns = ["video_id", "frame_index", *descriptors.table_names()]
    blended_of = set(blended_of)
    videos = table.to_dict("records")
    stored = store.read_videos("descriptors", [video["video_id"] for video in videos], map_reads=map_reads)
    by_video = dict(tuple(stored.groupby("video_id", sort=False))) if len(stored) else {}
    plain, blended = [], []
    for video in videos:
        wants_blends = video["video_id"] in blended_of
        part = by_video.get(video["video_id"], stored.iloc[:0])
        part = part[(part.cache_key == video["cache_key"]) & (part.descriptors_version == descriptors.DESCRIPTORS_VERSION)]
        if part.empty or (wants_blends and not part.blended.any()):
            part = descriptor_frame(store, {**video, "label": "REAL" if wants_blends else None})
        if part.empty:
            continue
        plain.append(part[~part.blended.astype(bool)][columns])
        if wants_blends:
            blended.append(part[part.blended.astype(bool)][columns])
    return _typed(plain), _typed(blended)


def crop_descriptors(table: pd.DataFrame, cache: str, blended: bool = False) -> pd.DataFrame:
    """Per-crop descriptors of the main-face crops of the table's videos (their self-blended copies with
    `blended`), read from the cache; a video without current cached ones is computed here (not written)."""
    plain, blends = descriptor_tables(DeltaCacheStore(cache), table, blended_of=table.video_id if blended else ())
    return blends if blended else plain


def training_set(store: CacheStore, videos: pd.DataFrame, reads: Iterable[str],
                 map_reads: MapReads | None = None) -> TrainingSet:
    """The videos (rows of video_table) with what a model kind `reads` of them, each table read once (its data
    files by `map_reads` when given: on a cluster's workers): their crop descriptors (and the self-blended copies
    of the REAL videos' ones), their JPEG main-face crops."""
    reads = set(reads)
    videos = videos.reset_index(drop=True)
    plain = blended = crops = None
    if "descriptors" in reads:
        plain, blended = descriptor_tables(store, videos, blended_of=videos.video_id[videos.label == "REAL"],
                                           map_reads=map_reads)
    if "crops" in reads:
        crops = main_crops(store, list(videos.video_id), dict(zip(videos.video_id, videos.cache_key, strict=True)),
                           map_reads=map_reads)
    return TrainingSet(videos, descriptors=plain, blended=blended, crops=crops)
