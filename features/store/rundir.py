"""Run directories (training runs, evaluations, scores) on a local path or any fsspec URL (s3://, gs://).

Files are written to a local directory first. For a remote URL each file is uploaded when the writing block
ends without error, one object per file, so a crashed run leaves no half-written file behind.
"""

from __future__ import annotations

import contextlib
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
