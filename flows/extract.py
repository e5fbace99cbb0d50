"""The extraction flow: discover → plan against the cache → extract changed videos on Dask → summarise."""

from __future__ import annotations

import datetime as dt
import os
import time

from prefect import flow, get_run_logger
from prefect.artifacts import (
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)

from features.config import ExtractConfig
from features.store.cache import is_storage_full
from features.store.datasets import listing_warnings
from features.store.delta_cache import DeltaCacheStore, compact
from features.store.plan import VideoJob
from flows.runtime import check_shared_storage, cluster_address, make_task_runner
from tasks.extract import discover_videos, extract_video_task, plan_videos, record_lost_task, refresh_metadata

STATUSES = ("ok", "no_face", "failed")


@flow(name="extract", validate_parameters=True)
def extract_flow(config: ExtractConfig) -> dict:
    """Extract face tracks, crops and SSIM series of every new or changed video into the cache."""
    with DeltaCacheStore(config.cache).run_lock("extract"):
        return _extract(config)


def _extract(config: ExtractConfig) -> dict:
    logger = get_run_logger()
    started = time.perf_counter()
    store = DeltaCacheStore(config.cache)
    store.remove_stale_tmp(older_than_s=0)  # under the run lock no other writer is mid-write
    store.write_config(config.output_settings(), config.config_hash)
    entries = discover_videos(config.datasets)
    warnings = listing_warnings(entries)
    for warning in warnings:
        logger.warning(warning)
    plan = plan_videos(entries, config)
    logger.info("%d videos: %s (config %s)", len(entries), plan.counts(), config.config_hash)
    if plan.refresh or plan.restat:
        refresh_metadata(plan.refresh, config.cache, plan.restat)
    manifests = run_jobs(plan.todo, config)
    if config.compact:
        compacted = compact(store, lock=False)  # under this run's lock
        logger.info("compacted: %s", ", ".join(f"{t} {c['files_before']} -> {c['files_after']} files "
                                               f"({c['rows_pruned']} superseded rows deleted)"
                                               for t, c in compacted.items()))
    summary = summarize(manifests, len(entries), plan.counts(), time.perf_counter() - started, config,
                        warnings=warnings)
    logger.info(summary["line"])
    store.write_run_record("extract", summary)
    create_markdown_artifact(markdown=summary_markdown(summary, manifests), key="extract-summary",
                             description="Extraction run summary")
    create_table_artifact(table=[{"status": s, "videos": summary[s]} for s in STATUSES]
                          + [{"status": "cached (skipped)", "videos": summary["skipped"]}],
                          key="extract-status", description="Videos by status in this run")
    return summary


def nothing_to_do(config: ExtractConfig) -> dict | None:
    """The run's summary when every video is cached and current (no flow needed), else None."""
    started = time.perf_counter()
    entries = discover_videos.fn(config.datasets)
    plan = plan_videos.fn(entries, config)
    if plan.todo or plan.refresh or plan.restat:
        return None
    DeltaCacheStore(config.cache).write_config(config.output_settings(), config.config_hash)
    summary = summarize([], len(entries), plan.counts(), time.perf_counter() - started, config,
                        warnings=listing_warnings(entries))
    DeltaCacheStore(config.cache).write_run_record("extract", summary)
    return summary


def worker_per_core_settings(config: ExtractConfig) -> ExtractConfig:
    """With a local worker on every core, decode single-threaded and without a decode-ahead thread.

    Both only help a video use idle cores; when every core has a worker they cost throughput (measured:
    bench/results/decisions.md). Settings the user chose are kept.
    """
    cores = os.cpu_count() or 1
    if cluster_address(config.dask_address) or (config.workers or cores) < cores:
        return config
    update = {k: v for k, v in (("prefetch_frames", 0), ("decode_threads", 1)) if k not in config.model_fields_set}
    return config.model_copy(update=update)


COMMIT_SECONDS = 60.0  # a commit per ExtractConfig.commit_every videos or this long: the log grows with batches


class BatchCommitter:
    """Commits what the workers staged, in batches (one Delta commit per table per batch, the videos rows
    last), so a killed flow loses at most one batch, which the next run redoes. A batch whose commit fails is
    reported on each of its videos, as failed; its staged files are orphans that `dfp cache vacuum` removes."""

    def __init__(self, store: DeltaCacheStore, videos: int, seconds: float = COMMIT_SECONDS):
        self.store, self.videos, self.seconds = store, videos, seconds
        self.pending: list[tuple[dict, object]] = []
        self.since = time.monotonic()
        self.commits = 0
        self.full = False  # a commit failed for lack of space: every later one would too

    def add(self, manifest: dict) -> None:
        """Take one manifest's staged write (the manifest keeps only its counts)."""
        staged = manifest.pop("staged", None)
        if staged is not None:
            self.pending.append((manifest, staged))
        if len(self.pending) >= self.videos or (self.pending and time.monotonic() - self.since >= self.seconds):
            self.flush()

    def flush(self) -> None:
        batch, self.pending, self.since = self.pending, [], time.monotonic()
        if not batch:
            return
        try:
            self.store.commit([staged for _, staged in batch])
            self.commits += 1
        except Exception as exc:  # noqa: BLE001 - the batch is lost, not the run: its videos are redone next time
            full = self.full = self.full or (isinstance(exc, OSError) and is_storage_full(exc))
            for manifest, _ in batch:
                manifest.update(status="failed", error=f"cache commit failed for {manifest['video_id']} (it is "
                                f"extracted again by the next run): {type(exc).__name__}: {exc}",
                                **({"storage_full": True} if full else {}))


def run_jobs(jobs: list[VideoJob], config: ExtractConfig) -> list[dict]:
    """One Dask task per video, with a terminal progress bar and a Prefect progress artifact; the staged results
    are committed in batches as they come in, and what is done is committed when the run stops early."""
    if not jobs:
        return []  # nothing to do: no cluster is started
    from distributed import as_completed
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    config = worker_per_core_settings(config)
    artifact_id = create_progress_artifact(progress=0.0, key="extract-progress",
                                           description=f"Extracting {len(jobs)} videos")
    manifests: list[dict] = []
    committer = BatchCommitter(DeltaCacheStore(config.cache), config.commit_every)
    with make_task_runner(config.workers, config.dask_address) as runner:
        if cluster_address(config.dask_address):
            check_shared_storage(runner.client, [config.cache], read=config.datasets)
        futures = {}
        for job in jobs:
            future = runner.submit(extract_video_task, parameters={"job": job, "config": config})
            futures[future.wrapped_future.key] = (future, job)
        columns = (TextColumn("extract"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                   TextColumn("{task.description}"))
        try:
            with Progress(*columns, transient=False) as bar:
                progress = bar.add_task("", total=len(jobs))
                for done in as_completed([f.wrapped_future for f, _ in futures.values()], loop=runner.client.loop):
                    future, job = futures[done.key]
                    try:
                        manifest = future.result()
                    except Exception as exc:  # noqa: BLE001 - the task itself died (lost worker, storage down)
                        manifest = record_lost_task(job, config, exc)
                    manifests.append(manifest)
                    committer.add(manifest)
                    bar.update(progress, advance=1, description=f"{manifest['status']:8s} {manifest['video_id']}")
                    if manifest.get("storage_full") or committer.full:  # every later write would fail too: stop
                        for other, _ in futures.values():
                            other.wrapped_future.cancel()
                        break
                    if artifact_id is not None:
                        update_progress_artifact(artifact_id, progress=100.0 * len(manifests) / len(jobs))
        finally:
            committer.flush()  # also when interrupted: what the workers finished is kept
    return manifests


def summarize(manifests: list[dict], n_videos: int, plan_counts: dict, elapsed: float, config: ExtractConfig,
              warnings: list[str] = ()) -> dict:
    """Counts by status for this run, with the time per processed video and the listing's warnings."""
    counts = {s: sum(m["status"] == s for m in manifests) for s in STATUSES}
    seconds = [m["seconds"] for m in manifests if m.get("seconds") is not None]
    per_video = sum(seconds) / len(seconds) if seconds else 0.0
    redone = sum(plan_counts.get(k, 0) for k in ("changed", "forced", "retry", "lost"))
    line = (f"{counts['ok']} ok, {counts['no_face']} no face, {counts['failed']} failed, "
            f"{plan_counts.get('skipped', 0)} cached; {plan_counts.get('new', 0)} added, {redone} redone; "
            f"{per_video:.2f} s per video ({len(manifests)} extracted in {elapsed:.1f} s wall)")
    if warnings:
        line += f"; {len(warnings)} listing warnings"
    return {
        "line": line,
        "videos": n_videos,
        "extracted": len(manifests),
        **counts,
        "skipped": plan_counts.get("skipped", 0),
        "added": plan_counts.get("new", 0),
        "redone": redone,
        "refreshed": plan_counts.get("refresh", 0),
        "restat": plan_counts.get("restat", 0),  # cached videos whose new file stat was recorded (touched files)
        "reasons": {k: v for k, v in plan_counts.items() if k not in ("todo", "skipped", "refresh", "restat")},
        "seconds_per_video": round(per_video, 3),
        "wall_s": round(elapsed, 2),
        "config_hash": config.config_hash,
        "cache": config.cache,
        "warnings": list(warnings),
        "warned": len(warnings),
        "failed_videos": [{"video_id": m["video_id"], "error": m["error"]} for m in manifests if m["status"] == "failed"],
        # Why the run stopped before every planned video was done (the cache's storage is full), else None.
        "aborted": next((m["error"] for m in manifests if m.get("storage_full")), None),
        "finished_at": dt.datetime.now(dt.timezone.utc).isoformat(),
    }


def summary_markdown(summary: dict, manifests: list[dict]) -> str:
    lines = [
        "# Extraction summary", "", f"**{summary['line']}**", "",
        f"Cache: `{summary['cache']}`, config hash `{summary['config_hash']}`", "",
        "| status | videos |", "|---|---|",
        *(f"| {s} | {summary[s]} |" for s in STATUSES), f"| cached (skipped) | {summary['skipped']} |",
        "", "| this run | videos |", "|---|---|", f"| added (new) | {summary['added']} |",
        f"| redone (changed, forced, retried, lost) | {summary['redone']} |",
    ]
    if summary.get("aborted"):
        lines[3:3] = [f"**Run stopped**: {summary['aborted']}", ""]
    if summary.get("warnings"):
        lines += ["", f"## Listing warnings ({len(summary['warnings'])})", "", "| warning |", "|---|"]
        lines += [f"| {w.replace('|', '/')} |" for w in summary["warnings"]]
    if summary["failed_videos"]:
        lines += ["", "## Failed", "", "| video | error |", "|---|---|"]
        lines += [f"| {f['video_id']} | {(f['error'] or '').replace('|', '/')} |" for f in summary["failed_videos"]]
    return "\n".join(lines)
