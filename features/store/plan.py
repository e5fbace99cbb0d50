"""Decide, per video, whether a run must extract it, can skip it, or only needs its metadata refreshed."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import pandas as pd

from features.store.datasets import VideoEntry

# Columns that come from the dataset listing, not from extraction: a change there needs no decoding.
METADATA_COLUMNS = ("dataset", "dataset_format", "path", "relpath", "label", "split", "original",
                    "method", "compression", "leakage_group")
# What a user's labelling says about a video: kept as cached when a run only scores (keep_labels).
LABEL_COLUMNS = ("label", "split", "original", "method", "compression", "leakage_group")


@dataclass(frozen=True)
class FileState:
    """What the driver learned about a video file before extraction."""

    fingerprint: str | None  # None when the file is missing or unreadable
    cache_key: str
    read_error: str | None = None  # why the file could not be fingerprinted
    file_stat: str | None = None  # cache.file_stat: when a later run sees the same, it reuses the fingerprint


@dataclass(frozen=True)
class VideoJob:
    """One video to extract, with the key its cache entry will carry."""

    entry: VideoEntry
    fingerprint: str | None
    cache_key: str
    reason: str  # new | changed | forced | retry | lost
    read_error: str | None = None
    file_stat: str | None = None


LOST_TASK_STEP = "task"  # error_step of a videos row written for a task that did not finish


@dataclass
class ExtractionPlan:
    todo: list[VideoJob] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    refresh: list[VideoEntry] = field(default_factory=list)  # cached and current, but labels or groups changed
    # Cached and current videos whose file stat changed (touched, copied, or cached before stats were kept):
    # video_id -> the new stat, written to their videos rows so the next run need not open them.
    restat: dict[str, str] = field(default_factory=dict)

    def counts(self) -> dict[str, int]:
        reasons = {}
        for job in self.todo:
            reasons[job.reason] = reasons.get(job.reason, 0) + 1
        return {"todo": len(self.todo), "skipped": len(self.skipped), "refresh": len(self.refresh),
                "restat": len(self.restat), **reasons}


def _same(a, b) -> bool:
    return a == b or (a is None or a != a) and (b is None or b != b)  # NaN and None are both "missing"


def cached_rows(cached: pd.DataFrame) -> dict[str, dict]:
    """The videos rows by video id, as `to_dict("records")` gives them (NaN where missing), built column by
    column: to_dict boxes every cell and is most of a no-op plan's time at 100,000 videos."""
    if not len(cached):
        return {}
    columns = list(cached.columns)
    values = zip(*(cached[c].tolist() for c in columns), strict=True)
    records = (dict(zip(columns, row, strict=True)) for row in values)
    return {row["video_id"]: row for row in records}


def plan_extraction(
    entries: list[VideoEntry],
    states: dict[str, FileState],
    cached: pd.DataFrame | dict[str, dict],
    force: bool = False,
    retry_failed: bool = False,
    keep_labels: bool = False,
) -> ExtractionPlan:
    """Compare each entry's cache key with the cached videos rows. With `keep_labels` (scoring), a cached video
    keeps its cached labels, split, original and leakage group, whatever the listing says. `cached` is the videos
    table, or its rows by video id (cached_rows) where the caller has them already."""
    plan = ExtractionPlan()
    rows = cached if isinstance(cached, dict) else cached_rows(cached)
    for entry in entries:
        state = states[entry.video_id]
        key = state.cache_key
        row = rows.get(entry.video_id)
        if keep_labels and row is not None:
            entry = replace(entry, **{c: None if _same(row.get(c), None) else row.get(c) for c in LABEL_COLUMNS})
        if force:
            reason = "forced"
        elif row is None:
            reason = "new"
        elif row["cache_key"] != key:
            reason = "changed"
        elif row["status"] == "failed" and row.get("error_step") == LOST_TASK_STEP:
            reason = "lost"  # the task died (worker killed, storage down), not the video: always redone
        elif row["status"] == "failed" and retry_failed:
            reason = "retry"
        else:
            plan.skipped.append(entry.video_id)
            meta = entry.metadata()
            if not all(_same(meta[c], row.get(c)) for c in METADATA_COLUMNS):
                plan.refresh.append(entry)
            if state.file_stat and row.get("file_stat") != state.file_stat:
                plan.restat[entry.video_id] = state.file_stat
            continue
        plan.todo.append(VideoJob(entry, state.fingerprint, key, reason, state.read_error, state.file_stat))
    return plan
