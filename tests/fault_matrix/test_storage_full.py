"""Fault matrix, a full disk: one clear error, no retry, no temporary file left, the run stops."""

from __future__ import annotations

import errno
import os

import pytest

from features.config import ExtractConfig
from features.store.cache import is_storage_full
from features.store.datasets import VideoEntry
from features.store.delta_cache import DeltaCacheStore
from features.store.plan import VideoJob
from flows.cli import extract_exit_code
from flows.extract import extract_flow, summarize, summary_markdown
from tasks.extract import extract_video_task


def _full_disk(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def test_a_full_disk_leaves_no_temporary_file_and_keeps_the_old_rows(tmp_path, monkeypatch):
    store = DeltaCacheStore(str(tmp_path / "cache"))
    store.write_video({"video_id": "ds/a", "cache_key": "old"}, [{"track_id": 0, "frame_index": 0}], [])
    before = sorted(os.listdir(store.table_dir("faces")))
    monkeypatch.setattr(os, "fsync", _full_disk)
    with pytest.raises(OSError) as caught:
        store.stage_video({"video_id": "ds/a", "cache_key": "new"}, [{"track_id": 0, "frame_index": 5}], [])
    assert is_storage_full(caught.value)
    assert sorted(os.listdir(store.table_dir("faces"))) == before  # no temporary file, no part of a data file
    monkeypatch.undo()
    assert store.read_video_row("ds/a")["cache_key"] == "old"
    assert store.read("faces").frame_index.tolist() == [0]


def test_the_extract_task_reports_a_full_disk_without_raising(tmp_path, monkeypatch):
    """Raising would make Prefect retry the write twice more; the manifest tells the flow to stop instead."""
    video = tmp_path / "missing.mp4"
    entry = VideoEntry(video_id="ds/missing", dataset="ds", dataset_format="folder", path=str(video),
                       relpath="missing.mp4")
    job = VideoJob(entry, fingerprint=None, cache_key="k", reason="new")
    config = ExtractConfig(datasets=[str(tmp_path)], cache=str(tmp_path / "cache"))
    monkeypatch.setattr(DeltaCacheStore, "stage_video", _full_disk)
    manifest = extract_video_task.fn(job, config)
    assert manifest["storage_full"] and manifest["status"] == "failed"
    assert manifest["error"].startswith(f"cache write failed for ds/missing: {config.cache} is out of space")


def test_other_storage_errors_still_raise_so_prefect_retries(tmp_path, monkeypatch):
    entry = VideoEntry(video_id="ds/x", dataset="ds", dataset_format="folder", path=str(tmp_path / "x.mp4"),
                       relpath="x.mp4")
    config = ExtractConfig(datasets=[str(tmp_path)], cache=str(tmp_path / "cache"))

    def unreachable(*args, **kwargs):
        raise OSError(errno.EIO, "I/O error")

    monkeypatch.setattr(DeltaCacheStore, "stage_video", unreachable)
    with pytest.raises(OSError, match="I/O error"):
        extract_video_task.fn(VideoJob(entry, None, "k", "new"), config)


def test_a_run_stopped_by_a_full_disk_exits_3_with_one_line(capsys):
    summary = {"aborted": "cache write failed for ds/a: c is out of space: [Errno 28]", "failed": 1, "extracted": 1,
               "failed_videos": [{"video_id": "ds/a", "error": "x"}]}
    assert extract_exit_code(summary, fail_on_error=False) == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["dfp extract: error: run stopped: cache write failed for ds/a: c is out of space: [Errno 28] "
                   "(free space, then rerun: what was committed stays cached)"]



def test_the_summary_page_says_why_the_run_stopped_and_lists_the_listing_warnings(tmp_path):
    manifests = [{"video_id": "ds/a", "status": "failed", "seconds": 1.0, "storage_full": True,
                  "error": "cache write failed for ds/a: c is out of space: [Errno 28]"}]
    config = ExtractConfig(datasets=[str(tmp_path)], cache=str(tmp_path / "cache"))
    summary = summarize(manifests, 3, {"new": 3}, 2.0, config, warnings=["ds/b.mp4: not in labels.csv, listed unlabelled"])
    page = summary_markdown(summary, manifests)
    assert "**Run stopped**: cache write failed for ds/a: c is out of space: [Errno 28]" in page
    assert "## Listing warnings (1)" in page and "| ds/b.mp4: not in labels.csv, listed unlabelled |" in page


@pytest.mark.slow
def test_a_full_disk_stops_the_flow_after_the_first_video_and_leaves_no_temporary_file(prefect_harness, demo_dir,
                                                                                         tmp_path, monkeypatch):
    """End to end through run_jobs: the first storage-full manifest cancels every other video, without retries.

    The cluster runs its worker in this process (threads), so the patched write reaches the task."""
    from distributed import LocalCluster

    cache = tmp_path / "cache"
    calls = []

    def full_disk(*args, **kwargs):
        calls.append(args[1] if len(args) > 1 else None)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(DeltaCacheStore, "stage_video", full_disk)
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None) as cluster:
        summary = extract_flow(ExtractConfig(datasets=[str(demo_dir)], cache=str(cache), detector="haar",
                                             dask_address=cluster.scheduler_address, max_frames=10))
    assert summary["videos"] == 8
    assert summary["aborted"].startswith("cache write failed for ") and "is out of space" in summary["aborted"]
    # The first manifest stops the run; at most the one video already running on the worker also tried to write.
    assert summary["extracted"] == 1 and summary["failed"] == 1 and summary["ok"] == 0
    ids = [entry["video_id"] for entry in calls]
    assert 1 <= len(ids) <= 2 and len(set(ids)) == len(ids)  # no video was retried
    assert [p.name for p in cache.rglob(".tmp-*")] == []
