"""Run directories (training runs, evaluations, scores) on a local path or any fsspec URL (s3://, gs://).

Files are written to a local directory first. For a remote URL each file is uploaded when the writing block
ends without error, one object per file, so a crashed run leaves no half-written file behind.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import fsspec
from fsspec.implementations.local import LocalFileSystem


def is_local(url: str) -> bool:
    return isinstance(fsspec.core.url_to_fs(url)[0], LocalFileSystem)


def join(url: str, *parts: str) -> str:
    """`url/part/...` for a local path or an fsspec URL."""
    return "/".join([url.rstrip("/"), *(p.strip("/") for p in parts)])


@contextlib.contextmanager
def staged_dir(url: str) -> Iterator[Path]:
    """A local directory whose files end up under `url` (the directory itself when `url` is local)."""
    fs, root = fsspec.core.url_to_fs(url)
    if isinstance(fs, LocalFileSystem):
        path = Path(root)
        path.mkdir(parents=True, exist_ok=True)
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="dfp-run-") as tmp:
        yield Path(tmp)
        for local in sorted(p for p in Path(tmp).rglob("*") if p.is_file()):
            fs.put_file(str(local), f"{root.rstrip('/')}/{local.relative_to(tmp).as_posix()}")


@contextlib.contextmanager
def fetched(url: str, names: list[str]) -> Iterator[Path]:
    """A local directory holding the named files of `url` (the directory itself when `url` is local)."""
    fs, root = fsspec.core.url_to_fs(url)
    if isinstance(fs, LocalFileSystem):
        yield Path(root)
        return
    with tempfile.TemporaryDirectory(prefix="dfp-fetch-") as tmp:
        for name in names:
            remote = f"{root.rstrip('/')}/{name}"
            if fs.exists(remote):
                target = Path(tmp) / name
                target.parent.mkdir(parents=True, exist_ok=True)
                fs.get_file(remote, str(target))
        yield Path(tmp)


def read_text(url: str) -> str:
    """A whole text file from a local path or an fsspec URL."""
    with fsspec.open(url, "r", encoding="utf-8") as fh:
        return fh.read()


# A directory holding either file is a training run: writing into it would mix two models' results.
RUN_MARKERS = ("model_card.json", "metrics.json")


def run_marker(url: str) -> str | None:
    """The first file of RUN_MARKERS that `url` holds, or None when it holds no training run."""
    fs, root = fsspec.core.url_to_fs(url)
    return next((name for name in RUN_MARKERS if fs.exists(f"{root.rstrip('/')}/{name}")), None)


def clear_dir(url: str) -> None:
    """Delete `url` and everything under it (evaluations included), if it exists."""
    fs, root = fsspec.core.url_to_fs(url)
    if fs.exists(root):
        fs.rm(root, recursive=True)


def prepare_run_dir(url: str, overwrite: bool) -> None:
    """Refuse a run directory that already holds a training run unless `overwrite`, which empties it first
    (the old model's evaluations would otherwise sit beside the new model)."""
    marker = run_marker(url)
    if marker is None:
        return
    if not overwrite:
        raise ValueError(f"{url} already holds a training run ({marker}): pass --overwrite to replace it, "
                         "or choose another --out")
    clear_dir(url)


def _is_remote(url: str) -> bool:
    return "://" in url and not url.startswith("file://")


def check_run_dir(url: str) -> dict:
    """The model card of a training run folder, checked cheaply before anything heavy starts: the folder exists, it
    holds a model_card.json and the model files that card names. Raises ValueError naming what is wrong and what to
    do. The deeper checks (digests, safe formats, versions) stay with the loader."""
    if not _is_remote(url) and not Path(url).is_dir():
        raise ValueError(f"run folder {url} does not exist: give the --out folder of a `dfp train` run "
                         "(`dfp runs FOLDER` lists them)")
    try:
        card = json.loads(read_text(join(url, "model_card.json")))
    except FileNotFoundError:
        raise ValueError(f"{url} is not a training run: it has no model_card.json (`dfp train CACHE --out RUN` "
                         "writes one)") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{join(url, 'model_card.json')} is not a model card written by dfp train: "
                         f"{type(exc).__name__}: {exc}") from None
    if not isinstance(card, dict) or not isinstance(card.get("model_file"), str):
        raise ValueError(f"{join(url, 'model_card.json')} is not a model card written by dfp train: it names no "
                         "model_file")
    fs, root = fsspec.core.url_to_fs(url)
    for name in sorted({card["model_file"], *(card.get("model_sha256") or {})}):
        if not fs.isfile(f"{root.rstrip('/')}/{name}"):
            raise ValueError(f"{url}: the model file {name} named by its model_card.json is missing (retrain with "
                             f"`dfp train CACHE --out {url} --overwrite`)")
    return card


def check_cache_dir(url: str) -> None:
    """Refuse a local cache folder that does not exist, holds no videos table, or is in the per-video layout of
    earlier versions, before anything heavy starts (an object-store URL is left to the cache itself)."""
    _check_is_cache(url)
    check_cache_layout(url)


def _check_is_cache(url: str) -> None:
    if _is_remote(url):
        return
    path = Path(url)
    if not path.exists():
        raise ValueError(f"cache {url} does not exist: write one with `dfp extract DATASET --cache {url}`")
    if not path.is_dir() or not (path / "videos").is_dir():
        raise ValueError(f"{url} is not a cache written by `dfp extract` (it has no videos table): write one with "
                         f"`dfp extract DATASET --cache {url}`")


def check_cache_layout(url: str) -> None:
    """Refuse, cheaply, a local cache in the per-video layout (one Parquet file per video and table, before the
    Delta tables): a new or missing folder, or one in Delta tables, passes."""
    videos = Path(url) / "videos"
    if _is_remote(url) or not videos.is_dir() or (videos / "_delta_log").is_dir():
        return
    with os.scandir(videos) as names:
        if any(entry.name.endswith(".parquet") and not entry.name.startswith(".") for entry in names):
            raise ValueError(per_video_refused(url))


def per_video_refused(url: str) -> str:
    """Why a cache in the per-video layout is refused, and the one command that converts it."""
    return (f"{url} holds a cache in the per-video layout of earlier versions (one Parquet file per video), and "
            f"this version keeps its cache in Delta Lake tables: convert it once with `dfp cache migrate {url}` "
            "(in place; `--to URL` keeps the original)")


def delta_cache_refused(url: str) -> str:
    """Why the per-video store (features.store.cache.CacheStore, kept to read caches of earlier versions) refuses
    a cache in Delta tables."""
    return (f"{url} holds Delta Lake tables: read it with features.store.delta_cache.DeltaCacheStore "
            "(features.store.cache.CacheStore reads only the per-video layout of earlier versions)")


def check_per_video_cache_dir(url: str) -> None:
    """Refuse, cheaply, a local folder that `dfp cache migrate` cannot convert: a missing one, one that is no
    cache, one already in Delta tables (unless an in-place migration of it was interrupted mid-swap)."""
    if _is_remote(url) or (Path(url) / ".delta-migrate").is_dir():
        return  # an interrupted in-place migration: rerunning it finishes it
    if (Path(url) / "videos" / "_delta_log").is_dir():
        raise ValueError(f"{url} already holds Delta tables: nothing to migrate (`dfp cache info {url}` shows them)")
    _check_is_cache(url)


def _read_json(path: Path) -> dict:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return {}
    return value if isinstance(value, dict) else {}


def _auc_and_loss(metrics: dict) -> tuple[float | None, float | None]:
    overall = metrics.get("overall") or {}
    return overall.get("roc_auc"), overall.get("log_loss")


def list_runs(folder: str) -> list[dict]:
    """The training runs under a local folder (itself, or any folder below holding model_card.json or
    metrics.json), newest first: run, model kind, date, data, CV AUC and log loss, and each evaluation's."""
    root = Path(folder)
    found = {p.parent for marker in RUN_MARKERS for p in root.rglob(marker) if "evaluations" not in
             p.relative_to(root).parts}
    runs = []
    for run in found:
        card, metrics = _read_json(run / "model_card.json"), _read_json(run / "metrics.json")
        data = card.get("training_data") or {}
        auc, loss = _auc_and_loss(metrics or card.get("metrics") or {})
        evaluations = []
        for path in sorted((run / "evaluations").glob("*/metrics.json")):
            evaluation = _read_json(path)
            e_auc, e_loss = _auc_and_loss(evaluation)
            evaluations.append({"name": path.parent.name, "cache": evaluation.get("cache"), "roc_auc": e_auc,
                                "log_loss": e_loss, "n": (evaluation.get("overall") or {}).get("n")})
        runs.append({
            "run": str(run), "model": card.get("model") or metrics.get("model"),
            "created_at": card.get("created_at"), "cache": data.get("cache"), "videos": data.get("videos"),
            "validation": metrics.get("validation"), "roc_auc": auc, "log_loss": loss, "evaluations": evaluations,
        })
    return sorted(runs, key=lambda r: (r["created_at"] or "", r["run"]), reverse=True)
