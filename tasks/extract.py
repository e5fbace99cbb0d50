"""Tasks of the extraction flow: discover and plan on the driver, extract one video on a Dask worker."""

from __future__ import annotations

import datetime as dt
import functools
import os
import socket
import time
from concurrent.futures import ThreadPoolExecutor

from prefect import task
from prefect.cache_policies import NO_CACHE

from features import FEATURE_CODE_VERSION
from features.config import ExtractConfig
from features.store.cache import (
    cache_key,
    file_stat,
    fingerprint_file,
    is_storage_full,
    reusable_fingerprint,
)
from features.store.datasets import VideoEntry, discover
from features.store.delta_cache import DeltaCacheStore
from features.store.plan import (
    LOST_TASK_STEP,
    METADATA_COLUMNS,
    ExtractionPlan,
    FileState,
    VideoJob,
    cached_rows,
    plan_extraction,
)
from features.video.decode import StepError
from features.video.extract import VideoResult, extract_video
from features.video.faces import make_detector


@task(name="discover-videos", cache_policy=NO_CACHE, persist_result=False)
def discover_videos(datasets: list[str]) -> list[VideoEntry]:
    """List every video of the given datasets with labels and leakage groups."""
    return discover(datasets)


@task(name="plan-extraction", cache_policy=NO_CACHE, persist_result=False)
def plan_videos(entries: list[VideoEntry], config: ExtractConfig) -> ExtractionPlan:
    """Fingerprint every new or changed video and compare with the cache: what to extract, skip or refresh.

    A file whose stat matches its videos row is not opened (cache.file_stat): a no-op rerun reads no video."""
    store = DeltaCacheStore(config.cache)
    cached = store.read("videos", columns=["video_id", "cache_key", "status", "error_step", "fingerprint", "file_stat",
                                           *METADATA_COLUMNS])
    rows = cached_rows(cached)

    config_hash = config.config_hash  # a pydantic dump and a JSON encoding: once, not once per video

    def states_of(chunk: list[VideoEntry]) -> list[FileState]:
        return [_file_state(e, config_hash, rows.get(e.video_id)) for e in chunk]

    # I/O bound (object-store stats, hashing new files): threads are fine on the driver. Entries go in chunks,
    # as one future per video costs more than a local stat does.
    size = max(1, min(_PLAN_CHUNK, -(-len(entries) // (8 * _PLAN_WORKERS))))
    chunks = [entries[i:i + size] for i in range(0, len(entries), size)]
    with ThreadPoolExecutor(max_workers=_PLAN_WORKERS) as pool:
        found = [state for chunk in pool.map(states_of, chunks) for state in chunk]
    states = dict(zip((e.video_id for e in entries), found, strict=True))
    return plan_extraction(entries, states, rows, force=config.force, retry_failed=config.retry_failed,
                           keep_labels=config.keep_labels)


_PLAN_WORKERS = 8
_PLAN_CHUNK = 500  # most entries per future: small enough that a chunk of new files to hash still spreads


def file_state(entry: VideoEntry, config: ExtractConfig, cached: dict | None = None) -> FileState:
    """Fingerprint one listed video, or reuse its cached fingerprint when the file's stat is unchanged; a file
    that cannot be read gets a reason instead of an exception."""
    return _file_state(entry, config.config_hash, cached)


def _file_state(entry: VideoEntry, config_hash: str, cached: dict | None) -> FileState:
    fingerprint, stat, problem = None, None, None
    if not entry.discovery_error:
        try:
            stat = file_stat(entry.path)
            if stat is not None:
                fingerprint = reusable_fingerprint(stat, cached) or _fingerprint(entry.path, stat)
        except OSError as exc:
            problem = f"cannot read the file: {type(exc).__name__}: {exc}"
    return FileState(fingerprint, cache_key(fingerprint, config_hash, FEATURE_CODE_VERSION), problem, stat)


@functools.lru_cache(maxsize=1 << 17)
def _fingerprint(path: str, stat: str) -> str | None:
    """Hash a new or changed file once per process and stat: the CLI plans once to see whether there is
    anything to do and the flow plans again, and the second pass must not read the file again."""
    return fingerprint_file(path)


@task(name="refresh-metadata", cache_policy=NO_CACHE, persist_result=False)
def refresh_metadata(entries: list[VideoEntry], cache: str, restat: dict[str, str] | None = None) -> int:
    """Rewrite the videos rows of cached videos whose labels, splits or groups changed, or whose file stat did
    (`restat`: video_id -> stat), in one commit; no decoding."""
    store = DeltaCacheStore(cache)
    restat = restat or {}
    by_id = {e.video_id: e.metadata() for e in entries}
    wanted = list(dict.fromkeys([*by_id, *restat]))
    rows = {}
    for row in store.read_video_rows(wanted):
        vid = row["video_id"]
        stat = {"file_stat": restat[vid]} if vid in restat else {}
        rows[vid] = [{**row, **by_id.get(vid, {}), **stat}]
    store.write_tables("videos", rows)
    return len(entries)


def cap_threads() -> None:
    """One worker process, one thread: keep OpenCV and TensorFlow from starting pools of their own."""
    import cv2

    cv2.setNumThreads(1)


def resolve_device(requested: str) -> str:
    """'auto' becomes GPU:0 when TensorFlow sees a GPU on this worker, else CPU:0."""
    if requested != "auto":
        return requested
    import tensorflow as tf

    return "GPU:0" if tf.config.list_physical_devices("GPU") else "CPU:0"


@functools.lru_cache(maxsize=4)
def worker_detector(kind: str, min_face_size: int, threshold: float, min_neighbors: int, device: str, normalize: bool):
    """The face detector of this worker process, built once per setting, with TensorFlow held to one thread."""
    if kind == "mtcnn":
        import tensorflow as tf

        try:
            tf.config.threading.set_intra_op_parallelism_threads(1)
            tf.config.threading.set_inter_op_parallelism_threads(1)
        except RuntimeError:
            pass  # TensorFlow already initialised in this process: keep its pools
    return make_detector(kind, min_face_size, threshold, min_neighbors, device, normalize)


def run_extraction(job: VideoJob, config: ExtractConfig) -> VideoResult:
    """Extract one video; every failure of the video itself becomes a 'failed' result, never an exception."""
    entry = job.entry
    if entry.discovery_error:
        return VideoResult.failed(StepError(entry.video_id, "discover", entry.discovery_error))
    if job.read_error:
        return VideoResult.failed(StepError(entry.video_id, "probe", job.read_error))
    if job.fingerprint is None:
        return VideoResult.failed(StepError(entry.video_id, "probe", f"file not found: {entry.path}"))
    try:
        cap_threads()
        needs_tf = config.detector == "mtcnn" or config.ssim_backend == "tf"
        device = resolve_device(config.device) if needs_tf else "CPU:0"
        detector = worker_detector(config.detector, config.min_face_size, config.mtcnn_threshold,
                             config.haar_min_neighbors, device, config.detect_normalize)
        return extract_video(entry.path, entry.video_id, config, detector, ssim_device=device)
    except StepError as exc:
        return VideoResult.failed(exc)
    except Exception as exc:  # noqa: BLE001 - a bad video must not stop the run
        return VideoResult.failed(f"extract failed for {entry.video_id}: {type(exc).__name__}: {exc}")


@task(
    name="extract-video",
    task_run_name="extract {job.entry.video_id}",
    retries=2,
    retry_delay_seconds=5,
    cache_policy=NO_CACHE,
    persist_result=False,
)
def extract_video_task(job: VideoJob, config: ExtractConfig) -> dict:
    """Extract one video and stage its faces and ssim data files in the cache (invisible until the flow commits
    them); returns a small manifest, never frames: counts, and the staged write the flow commits."""
    started = time.perf_counter()
    result = run_extraction(job, config)
    row = video_row(job, config, result, total_s=time.perf_counter() - started)
    # Storage errors are not the video's fault: they raise, and Prefect retries the task; but a full disk stays
    # full, so it is reported at once (no retry) and the flow stops submitting videos.
    try:
        staged = DeltaCacheStore(config.cache).stage_video(row, result.faces, result.ssim)
    except OSError as exc:
        if not is_storage_full(exc):
            raise
        return {**manifest(row, seconds=time.perf_counter() - started), "status": "failed", "storage_full": True,
                "error": f"cache write failed for {job.entry.video_id}: {config.cache} is out of space: {exc}"}
    return {**manifest(row, seconds=time.perf_counter() - started), "staged": staged}


def video_row(job: VideoJob, config: ExtractConfig, result: VideoResult, total_s: float | None = None) -> dict:
    """The videos-table row of one extraction: listing metadata, result, cache key, provenance."""
    return {
        **job.entry.metadata(),
        **result.video,
        "fingerprint": job.fingerprint,
        "file_stat": job.file_stat,
        "config_hash": config.config_hash,
        "code_version": FEATURE_CODE_VERSION,
        "cache_key": job.cache_key,
        "worker": f"{socket.gethostname()}:{os.getpid()}",
        "extracted_at": dt.datetime.now(dt.timezone.utc),
        "total_s": None if total_s is None else round(total_s, 4),
    }


def manifest(row: dict, seconds: float | None) -> dict:
    """The small summary a task returns to the flow."""
    return {
        "video_id": row["video_id"],
        "status": row["status"],
        "error": row.get("error"),
        "n_tracks": row.get("n_tracks"),
        "seconds": None if seconds is None else round(seconds, 3),
        "worker": row["worker"],
    }


def record_lost_task(job: VideoJob, config: ExtractConfig, exc: BaseException) -> dict:
    """A task that died (a worker killed by the decoder, storage down after retries): write a failed row."""
    message = f"extract failed for {job.entry.video_id}: task did not finish: {type(exc).__name__}: {exc}"
    row = video_row(job, config, VideoResult.failed(message, step=LOST_TASK_STEP))
    try:
        DeltaCacheStore(config.cache).write_video(row, [], [])
    except Exception as write_exc:  # noqa: BLE001 - the cache itself is unreachable: report, do not crash
        row["error"] = f"{message}; and the failure could not be recorded: {write_exc}"
    return manifest(row, seconds=None)
