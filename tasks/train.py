"""Tasks of the training, evaluation and scoring flows: features from the cache, fold fits, final fits."""

from __future__ import annotations

import functools

import numpy as np
import pandas as pd
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from features.learn import crop_models, models
from features.learn.model_files import sha256_file
from features.learn.video_features import FEATURE_NAMES, FEATURES_VERSION, video_features
from features.store.cache import FACES_SCHEMA, CacheStore
from features.store.rundir import join, staged_dir

VIDEO_COLUMNS = ["video_id", "cache_key", "fingerprint", "config_hash", "label", "leakage_group", "dataset", "method",
                 "compression", "status", "error", "split", "path", "relpath", "n_tracks", "keyframes", "keyframes_with_face"]
# What bits_per_pixel reads of a videos row (the block-grid feature is left out on heavily compressed video).
SIZE_COLUMNS = ["width", "height", "frame_count", "frames_decoded", "file_bytes"]


@functools.lru_cache(maxsize=16)
def _crop_margin(cache: str, config_hash: str) -> float:
    try:
        return float(CacheStore(cache).read_config(config_hash)["crop_margin"])
    except (FileNotFoundError, KeyError):
        return 0.3


# What the per-video features read of a faces partition: everything but the lossless crops (the descriptors' input).
FEATURE_FACE_COLUMNS = [name for name in FACES_SCHEMA.names if name != "crop_lossless"]


def feature_row(store: CacheStore, video: dict) -> dict:
    """Features of one cached video; rows of an uncommitted (older or newer) extraction are ignored."""
    key = video["cache_key"]
    faces = store.read_partition("faces", video["video_id"], columns=FEATURE_FACE_COLUMNS)
    ssim = store.read_partition("ssim", video["video_id"])
    faces = faces[faces.cache_key == key]
    ssim = ssim[ssim.cache_key == key]
    values = video_features(video, faces, ssim, _crop_margin(store.url, video["config_hash"]))
    return {"video_id": video["video_id"], "cache_key": key, "features_version": FEATURES_VERSION, **values}


@task(name="compute-features", retries=2, retry_delay_seconds=5, cache_policy=NO_CACHE, persist_result=False)
def compute_features(cache: str, videos: list[dict]) -> int:
    """Compute and write the features partition of each given video (no video is decoded)."""
    store = CacheStore(cache)
    for video in videos:
        store.write_table("features", video["video_id"], [feature_row(store, video)])
    return len(videos)


def stale_feature_videos(store: CacheStore) -> list[dict]:
    """Videos whose features partition is missing, from another extraction, or from older feature code."""
    videos = store.read("videos", columns=[*VIDEO_COLUMNS, *SIZE_COLUMNS])  # feature_row needs the size too
    videos = videos[videos.status != "failed"]
    have = store.read("features", columns=["video_id", "cache_key", "features_version"], committed_only=False)
    current = have[have.features_version == FEATURES_VERSION][["video_id", "cache_key"]]
    merged = videos.merge(current.assign(_have=True), on=["video_id", "cache_key"], how="left")
    return merged[merged._have.isna()].drop(columns="_have").to_dict("records")


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


def main_crops(store: CacheStore, video_ids: list[str], keys: dict[str, str],
               column: str = "crop_jpeg") -> pd.DataFrame:
    """Stored crops of each video's main face track: the JPEG ones (crop_jpeg), or the lossless native-scale ones
    (crop_lossless) the descriptors are computed from."""
    parts = []
    for vid in video_ids:
        faces = store.read_partition("faces", vid, columns=["video_id", "cache_key", "frame_index", "is_main", column])
        faces = faces[(faces.cache_key == keys[vid]) & faces.is_main & faces[column].notna()]
        parts.append(faces[["video_id", "frame_index", column]])
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=["video_id", "frame_index", column])


def worker_address() -> str | None:
    """The Dask worker this task runs on (None outside a worker)."""
    from distributed import get_worker

    try:
        return get_worker().address
    except ValueError:
        return None


def descriptor_frame(store: CacheStore, video: dict) -> pd.DataFrame:
    """Descriptors of one video's main-face crops (video_id, frame_index, blended, table_names()), plus their
    self-blended copies when the video is REAL."""
    from features.learn.descriptors import descriptor_table

    vid = video["video_id"]
    crops = main_crops(store, [vid], {vid: video["cache_key"]}, column="crop_lossless")
    margins = {vid: _crop_margin(store.url, video["config_hash"])}
    tables = [descriptor_table(crops, margins).assign(blended=False)]
    if video.get("label") == "REAL":
        tables.append(descriptor_table(crops, margins, self_blended=True).assign(blended=True))
    return pd.concat(tables, ignore_index=True)


def descriptor_rows(store: CacheStore, video: dict) -> list[dict]:
    """descriptor_frame as the cache's rows, the values packed in table_names() order."""
    from features.learn.descriptors import DESCRIPTORS_VERSION, table_names

    frame = descriptor_frame(store, video)
    values = frame[table_names()].to_numpy(np.float32)
    return [{"video_id": video["video_id"], "cache_key": video["cache_key"], "descriptors_version": DESCRIPTORS_VERSION,
             "frame_index": int(frame_index), "blended": bool(blended), "values": row}
            for frame_index, blended, row in zip(frame.frame_index, frame.blended, values, strict=True)]


@task(name="compute-descriptors", retries=2, retry_delay_seconds=5, cache_policy=NO_CACHE, persist_result=False)
def compute_descriptors(cache: str, videos: list[dict]) -> int:
    """Compute and write the crop-descriptor partition of each given video (from its stored crops)."""
    store = CacheStore(cache)
    for video in videos:
        store.write_table("descriptors", video["video_id"], descriptor_rows(store, video))
    return len(videos)


def stale_descriptor_videos(store: CacheStore) -> list[dict]:
    """Videos with stored crops whose descriptors are missing, from another extraction or older descriptor code,
    or (for a REAL video) lack the self-blended copies."""
    from features.learn.descriptors import DESCRIPTORS_VERSION

    videos = store.read("videos", columns=[*VIDEO_COLUMNS, "crops_stored"])
    videos = videos[(videos.status == "ok") & (videos.crops_stored.fillna(0) > 0)]
    have = store.read("descriptors", columns=["video_id", "cache_key", "descriptors_version", "blended"],
                      committed_only=False)
    have = have[have.descriptors_version == DESCRIPTORS_VERSION]
    current = have.groupby(["video_id", "cache_key"]).blended.any().rename("_blends").reset_index()
    merged = videos.merge(current, on=["video_id", "cache_key"], how="left")
    has_blends = merged._blends.astype("boolean").fillna(False)
    stale = merged._blends.isna() | ((merged.label == "REAL") & ~has_blends)
    return merged[stale].drop(columns="_blends").to_dict("records")


def crop_descriptors(table: pd.DataFrame, cache: str, blended: bool = False) -> pd.DataFrame:
    """Per-crop descriptors of the main-face crops of the table's videos (their self-blended copies with
    `blended`), read from the cache; a video without current cached ones is computed here (not written)."""
    from features.learn.descriptors import DESCRIPTORS_VERSION, descriptor_table, table_names

    store = CacheStore(cache)
    columns = ["video_id", "frame_index", *table_names()]
    parts = []
    for video in table.to_dict("records"):
        part = store.read_partition("descriptors", video["video_id"])
        part = part[(part.cache_key == video["cache_key"]) & (part.descriptors_version == DESCRIPTORS_VERSION)]
        if part.empty or (blended and not part.blended.any()):
            part = descriptor_frame(store, {**video, "label": "REAL" if blended else None})
        if not part.empty:
            parts.append(part[part.blended == blended][columns])
    if not parts:  # the empty table, typed as descriptor_table types it
        return descriptor_table(pd.DataFrame(columns=["video_id", "frame_index", "crop_lossless"]), {})
    out = pd.concat(parts, ignore_index=True)
    out["frame_index"] = out.frame_index.astype("int64")
    return out


CROP_FITS = {"crop_gbm": crop_models.fit_crop_gbm, "crop_linear": crop_models.fit_crop_linear}


def fit_model(kind: str, table: pd.DataFrame, cache: str, seed: int, cnn_size: str, cnn_epochs: int):
    """Fit one model on labelled rows of the video table; returns (model, device)."""
    y = (table.label == "FAKE").to_numpy(int)
    if kind == "gbm":
        return models.fit_gbm(table[FEATURE_NAMES], y, table.leakage_group.to_numpy(), seed=seed), "CPU"
    if kind in CROP_FITS:
        blended = crop_descriptors(table[y == 0], cache, blended=True)
        extra = {"videos": table} if kind == "crop_linear" else {}  # its per-video inputs (VIDEO_INPUTS)
        return CROP_FITS[kind](crop_descriptors(table, cache), dict(zip(table.video_id, y, strict=True)),
                               dict(zip(table.video_id, table.leakage_group, strict=True)), seed=seed, blended=blended,
                               **extra), "CPU"
    store = CacheStore(cache)
    keys = dict(zip(table.video_id, table.cache_key, strict=True))
    crops = main_crops(store, list(table.video_id), keys)
    labels = dict(zip(table.video_id, y, strict=True))
    groups = dict(zip(table.video_id, table.leakage_group, strict=True))
    return models.fit_cnn(crops, labels, groups, size=cnn_size, epochs=cnn_epochs, seed=seed), models.keras_device()


def predict_model(kind: str, model, table: pd.DataFrame, cache: str) -> np.ndarray:
    """P(FAKE) for each row of the video table (NaN where the model cannot score it)."""
    if kind == "gbm":
        return model.predict_proba(table[FEATURE_NAMES])[:, 1]
    if kind in CROP_FITS:
        scores = crop_models.crop_video_scores(model, crop_descriptors(table, cache), list(table.video_id), table)
        return table.video_id.map(scores).to_numpy(np.float64)
    keys = dict(zip(table.video_id, table.cache_key, strict=True))
    crops = main_crops(CacheStore(cache), list(table.video_id), keys)
    scores = models.cnn_video_scores(model, crops, list(table.video_id))
    return table.video_id.map(scores).to_numpy(np.float64)


@task(name="fit-fold", cache_policy=NO_CACHE, persist_result=False)
def fit_fold(kind: str, train: pd.DataFrame, test: pd.DataFrame, cache: str, seed: int, cnn_size: str,
             cnn_epochs: int) -> dict:
    """Fit on the training folds and predict the held-out fold."""
    model, device = fit_model(kind, train, cache, seed, cnn_size, cnn_epochs)
    get_run_logger().info("fold fitted on %s (%d videos)", device, len(train))
    return {"video_id": list(test.video_id), "p_fake": [float(p) for p in predict_model(kind, model, test, cache)],
            "device": device, "worker": worker_address()}


@task(name="fit-final", cache_policy=NO_CACHE, persist_result=False)
def fit_final(kind: str, table: pd.DataFrame, cache: str, seed: int, cnn_size: str, cnn_epochs: int,
              run_dir: str, model_file: str) -> dict:
    """Fit on every labelled video and save the model in a format that loads without running code."""
    model, device = fit_model(kind, table, cache, seed, cnn_size, cnn_epochs)
    get_run_logger().info("final %s model fitted on %s (%d videos)", kind, device, len(table))
    importances, scorer_shares = {}, {}
    with staged_dir(run_dir) as out:  # local path, or uploaded to the run's URL from this worker
        if kind == "gbm":
            models.save_gbm(model, out / model_file)
            y = (table.label == "FAKE").to_numpy(int)
            importances = models.gbm_importances(model, table[FEATURE_NAMES], y, seed=seed)
        elif kind == "crop_gbm":
            crop_models.save_crop_gbm(model, out / model_file)
        elif kind == "crop_linear":
            crop_models.save_crop_linear(model, out / model_file)
            importances = crop_models.weight_shares(model)
            scorer_shares = crop_models.input_shares(model, crop_descriptors(table, cache), table)
        else:
            models.save_cnn(model, out / model_file)
        # The card records each model file's digest; load_run refuses a file that no longer matches it.
        digests = {p.name: sha256_file(p) for p in sorted(out.glob(f"{model_file}*")) if p.is_file()}
    return {"device": device, "model_path": join(run_dir, model_file), "importances": importances,
            "scorer_shares": scorer_shares, "worker": worker_address(), "digests": digests}
