"""Tasks of the training, evaluation and scoring flows: feature and descriptor partitions, fold fits, final fits.
Each is one call of features.store.training_data or features.learn.training."""

from __future__ import annotations

from collections.abc import Mapping

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from features.learn import training
from features.learn.registry import get
from features.learn.training_set import TrainingSet
from features.store.delta_cache import DeltaCacheStore, StagedWrite
from features.store.rundir import join, staged_dir
from features.store.training_data import descriptors_by_video, feature_rows


def worker_address() -> str | None:
    """The Dask worker this task runs on (None outside a worker)."""
    from distributed import get_worker  # lazy: only where a task asks which worker it runs on

    try:
        return get_worker().address
    except ValueError:
        return None


@task(name="compute-features", retries=2, retry_delay_seconds=5, cache_policy=NO_CACHE, persist_result=False)
def compute_features(cache: str, videos: list[dict]) -> list[StagedWrite]:
    """Compute the features rows of the given videos (no video is decoded) and stage them in one data file; the
    flow commits what the tasks staged."""
    store = DeltaCacheStore(cache)
    return store.stage_rows("features", feature_rows(store, videos))


@task(name="compute-descriptors", retries=2, retry_delay_seconds=5, cache_policy=NO_CACHE, persist_result=False)
def compute_descriptors(cache: str, videos: list[dict]) -> list[StagedWrite]:
    """Compute the crop-descriptor rows of the given videos (from their stored crops) and stage them in one data
    file; the flow commits what the tasks staged."""
    store = DeltaCacheStore(cache)
    return store.stage_rows("descriptors", descriptors_by_video(store, videos))


@task(name="fit-fold", cache_policy=NO_CACHE, persist_result=False)
def fit_fold(kind: str, settings: Mapping, train: TrainingSet, test: TrainingSet) -> dict:
    """Fit on the training folds and predict the held-out fold."""
    result = training.fit_fold(kind, settings, train, test)
    get_run_logger().info("fold fitted on %s (%d videos)", result["device"], len(train.videos))
    return {**result, "worker": worker_address()}


@task(name="fit-final", cache_policy=NO_CACHE, persist_result=False)
def fit_final(kind: str, settings: Mapping, data: TrainingSet, run_dir: str) -> dict:
    """Fit on every labelled video and save the model in a format that loads without running code."""
    with staged_dir(run_dir) as out:  # local path, or uploaded to the run's URL from this worker
        result = training.fit_final(kind, settings, data, out)
    get_run_logger().info("final %s model fitted on %s (%d videos)", kind, result["device"], len(data.videos))
    return {**result, "model_path": join(run_dir, get(kind).model_file), "worker": worker_address()}
