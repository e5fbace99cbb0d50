"""`dfp cache`: look after a cache in Delta tables (features.store.delta_cache, issue #22) and convert a per-video
one into it. Each command checks the cache cheaply first; deltalake, pandas and pyarrow are imported in its body.
"""

from __future__ import annotations

import datetime
from typing import Annotated, Literal

from cyclopts import App, Parameter

cache_app = App(name="cache", help="Delta Lake cache tables: info, compact, vacuum, history, migrate (opt-in: the "
                "flows still write the per-video layout).", help_on_error=False)

CacheUrl = Annotated[str, Parameter(name="CACHE", help="Cache folder or s3:// URL.")]
# features.store.cache.TABLES, spelled out so that an unknown --table is refused before pyarrow is imported
# (tests/flows/test_cache_cli.py keeps the two equal).
TableName = Literal["videos", "faces", "ssim", "features", "descriptors"]


def print_table(headers: list[str], rows: list[list]) -> None:
    """Rows as plain aligned columns on stdout: numbers right-aligned, text left-aligned."""
    cells = [[str(v) for v in row] for row in rows]
    widths = [max(len(h), *(len(row[i]) for row in cells)) if cells else len(h) for i, h in enumerate(headers)]
    numeric = [bool(rows) and all(isinstance(row[i], int) for row in rows) for i in range(len(headers))]

    def line(values: list[str]) -> str:
        return "  ".join(v.rjust(w) if num else v.ljust(w) for v, w, num in zip(values, widths, numeric, strict=True))

    print(line(headers).rstrip())
    for row in cells:
        print(line(row).rstrip())


def _open(url: str):
    """The cache's DeltaCacheStore; a usage error when it is missing, no cache or in the per-video layout."""
    from features.store.rundir import check_cache_dir

    check_cache_dir(url)
    from features.store.delta_cache import DeltaCacheStore, OldLayoutError

    try:
        store = DeltaCacheStore(url)
    except OldLayoutError as exc:  # an object-store cache, which the cheap check leaves to the store
        raise ValueError(str(exc)) from None
    if store.delta("videos") is None:
        raise ValueError(f"{url} holds no cache in Delta tables (no videos/_delta_log): convert a per-video cache "
                         "with `dfp cache migrate CACHE`")
    return store


def _print_info(store) -> None:
    from features.store.delta_cache import info

    figures = info(store)
    print_table(["table", "rows", "files", "version", "bytes"],
                [[t, f["rows"], f["files"], f["version"], f["bytes"]] for t, f in figures.items()])


@cache_app.command(name="info")
def cmd_info(cache: CacheUrl, /) -> int:
    """Rows, data files, version and bytes of each table (rows of superseded writes included)."""
    _print_info(_open(cache))
    return 0


@cache_app.command(name="compact")
def cmd_compact(
    cache: CacheUrl, /, *,
    keep_superseded: Annotated[bool, Parameter(negative="", help="Keep the rows of superseded writes (earlier "
                                               "extractions of a video); by default they are deleted first, so "
                                               "any Delta reader sees only current rows.")] = False,
) -> int:
    """Delete superseded rows, rewrite each table's small files into large ones and checkpoint its log, under the
    cache's run lock."""
    store = _open(cache)
    from features.store.delta_cache import compact

    result = compact(store, superseded=keep_superseded)
    print_table(["table", "rows pruned", "files before", "files after", "version"],
                [[t, r["rows_pruned"], r["files_before"], r["files_after"], r["version"]] for t, r in result.items()])
    print(f"the files compacted away stay for readers of older versions: `dfp cache vacuum {cache}` deletes them "
          "once older than its --retention-hours")
    return 0


@cache_app.command(name="prune")
def cmd_prune(cache: CacheUrl, /) -> int:
    """Delete the rows no videos row points at (superseded by a re-extraction or a rewrite), under the run lock."""
    store = _open(cache)
    from features.store.delta_cache import prune

    print_table(["table", "rows deleted"], [[t, n] for t, n in prune(store).items()])
    return 0


@cache_app.command(name="vacuum")
def cmd_vacuum(
    cache: CacheUrl, /, *,
    retention_hours: Annotated[int, Parameter(help="Delete only files removed (or, for files no commit took up, "
                                              "written) at least this many hours ago; 0 deletes them all, and "
                                              "readers can no longer time-travel to versions before now.")] = 168,
    dry_run: Annotated[bool, Parameter(negative="", help="List the files it would delete; delete nothing.")] = False,
) -> int:
    """Delete the data files no current version needs: compacted away, or staged by a killed writer."""
    if retention_hours < 0:
        raise ValueError(f"--retention-hours: must be at least 0, got {retention_hours}")
    store = _open(cache)
    from features.store.delta_cache import vacuum

    removed = vacuum(store, retention_hours=retention_hours, dry_run=dry_run)
    print_table(["table", "files to delete" if dry_run else "files deleted"],
                [[t, len(files)] for t, files in removed.items()])
    if dry_run:
        for table, files in removed.items():
            for name in files:
                print(f"  {table}/{name}")
    return 0


def _when(milliseconds: int | None) -> str:
    if milliseconds is None:
        return "?"
    return datetime.datetime.fromtimestamp(milliseconds / 1000, tz=datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def _history_rows(store, table: str, limit: int | None) -> list[list]:
    from features.store.delta_cache import commit_changes, history

    rows = []
    for commit in history(store, table, limit):
        operation = commit.get("operation", "?")
        if commit.get("dfp.operation"):
            operation += f" ({commit['dfp.operation']})"
        changes = commit_changes(store, table, commit["version"]) or {}
        rows.append([commit["version"], _when(commit.get("timestamp")), operation,
                     *(changes.get(k, "?") for k in ("files_added", "files_removed", "rows_added"))])
    return rows


@cache_app.command(name="history")
def cmd_history(
    cache: CacheUrl, /, *,
    table: Annotated[TableName | None, Parameter(help="Only this table (default: every table).")] = None,
    limit: Annotated[int | None, Parameter(help="Only the newest N commits of each table.")] = None,
) -> int:
    """The commits of each table, newest first: version, time, operation, files and rows added."""
    if limit is not None and limit < 1:
        raise ValueError(f"--limit: must be at least 1, got {limit}")
    store = _open(cache)
    from features.store.cache import TABLES

    for i, name in enumerate([table] if table else [t for t in TABLES if store.delta(t) is not None]):
        print(("\n" if i else "") + f"{name} (newest first)")
        print_table(["version", "time (UTC)", "operation", "files added", "files removed", "rows added"],
                    _history_rows(store, name, limit))
    return 0


@cache_app.command(name="migrate")
def cmd_migrate(
    cache: CacheUrl, /, *,
    to: Annotated[str | None, Parameter(help="Write the Delta tables to this new folder or URL and keep CACHE as it "
                                        "is (default: convert CACHE in place).")] = None,
) -> int:
    """Convert a cache in the per-video layout into Delta tables, in place or at --to; rerun an interrupted one.

    In place, the tables are built in CACHE/.delta-migrate and swapped in when all are written; the per-video files
    are deleted last. With --to, configs and run records are copied too."""
    from features.store.rundir import check_per_video_cache_dir

    check_per_video_cache_dir(cache)
    from features.store.delta_cache import DeltaCacheStore, migrate

    migrate(cache, to)
    print(f"migrated {cache} to Delta tables " + (f"at {to}" if to else "in place") + ":")
    _print_info(DeltaCacheStore(to or cache))
    return 0
