"""The cache as Delta Lake tables (issue #22, opt-in): the same tables, reads and writes as features.store.cache,
stored as CACHE/<table>/ Delta tables (Parquet data files plus a transaction log, delta-rs, no JVM).

Workers stage their own data files (`stage_video`: invisible until committed) and hand the flow a small manifest;
the flow commits manifests in batches (`commit`): one Delta commit per table per batch, the videos rows last. Every
staged write carries a write id in all its rows; a video's videos row (one per video, kept current by a merge on
video_id) names the write that is current for each of its other tables, and readers keep only those rows. A
re-extraction, or an attempt whose commit was lost, therefore never yields duplicate rows. Configs, run records
and the run lock stay where CacheStore keeps them (this store is one).
"""

from __future__ import annotations

import bisect
import contextlib
import functools
import io
import json
import os
import random
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import fsspec
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pyarrow.parquet as pq
from deltalake import DeltaTable, WriterProperties, write_deltalake
from deltalake.exceptions import CommitFailedError
from deltalake.transaction import AddAction, CommitProperties, RemoveAction
from fsspec.implementations.local import LocalFileSystem

from features.learn.descriptors import table_names
from features.store.cache import DESCRIPTOR_COLUMNS, SCHEMAS, TABLES, CacheStore, _unpacked, to_table
from features.store.rundir import per_video_refused

WRITE_ID = "write_id"
# The tables a videos row commits, in commit order: the videos rows go last, they are the commit record.
DATA_TABLES = ("faces", "ssim", "features", "descriptors")
# Column of the videos table naming the write that is current for one table of that video.
POINTERS = {table: f"{table}_{WRITE_ID}" for table in DATA_TABLES}
# A merge that loses a race to another writer is rerun on the new version, at most this many times.
COMMIT_ATTEMPTS = 12
# Files no version needs are deleted by remove_stale_tmp only after this long: readers of older versions.
READER_GRACE_HOURS = 24
# Key columns that staged data files carry min/max statistics for: what file skipping reads.
_STATS_COLUMNS = ("video_id", "cache_key", WRITE_ID)
# Names of the data files this module writes (staged by workers, or written by delta-rs), never per-video partitions.
_OURS = ("staged-", "pruned-", "part-", ".tmp-")
_POINTER_NAMES = tuple(POINTERS.values())
_HAS_ROW = "dfp_has_row"  # merge source column: the staged write carries a whole videos row
# Files delta-rs writes (compaction, merges, migration): zstd, and row groups small enough that reading one video
# of a compacted file skips the other row groups by their statistics instead of decoding every crop in the file.
_ROW_GROUP_ROWS = 4096


def _writer() -> WriterProperties:
    return WriterProperties(compression="ZSTD", max_row_group_size=_ROW_GROUP_ROWS)


def delta_schema(table: str) -> pa.Schema:
    """A table's schema on disk: the documented one, plus the write id (videos: one pointer per other table).
    Delta has no fixed-size lists, so the packed descriptor values are a plain list of float32."""
    schema = SCHEMAS[table]
    if table == "videos":
        return pa.schema([*schema, *[(name, pa.string()) for name in _POINTER_NAMES]])
    fields = [f.with_type(pa.list_(pa.float32())) if f.name == "values" else f for f in schema]
    # Third, after video_id and cache_key: writers collect statistics on the first 32 columns only.
    return pa.schema([*fields[:2], pa.field(WRITE_ID, pa.string()), *fields[2:]])


class OldLayoutError(ValueError):
    """The cache holds the per-video Parquet layout, not Delta tables."""


class CacheCommitError(RuntimeError):
    """A batch could not be committed (other writers kept winning, or the table refused it)."""


@dataclass
class StagedWrite:
    """What a worker wrote for one video and the flow commits: the data files' add actions per table, the
    pointers (table -> write id) the videos row moves to, and the videos row itself when it changes."""

    video_id: str
    write_id: str
    adds: dict[str, list[AddAction]] = field(default_factory=dict)
    pointers: dict[str, str] = field(default_factory=dict)
    video_row: dict | None = None


def _backoff(attempt: int) -> None:
    """Wait before rerunning a commit that lost a race, longer each time, jittered so racers drift apart."""
    time.sleep(min(2.0, 0.05 * 2 ** attempt) * random.uniform(0.5, 1.5))


def _may_hold(parquet: pq.ParquetFile, group: int, equals: dict[str, str]) -> bool:
    """Whether a row group's statistics allow a row with these key values."""
    meta = parquet.metadata.row_group(group)
    leaves = {meta.column(j).path_in_schema: j for j in range(meta.num_columns)}
    for name, value in equals.items():
        stats = meta.column(leaves[name]).statistics
        if stats is not None and stats.has_min_max and not (stats.min <= value <= stats.max):
            return False
    return True


def _file_stats(arrow: pa.Table) -> str:
    """Delta statistics of a staged file: row count and, for the key columns, min, max and null count."""
    lows, highs, nulls = {}, {}, {}
    for name in _STATS_COLUMNS:
        column = arrow.column(name)
        nulls[name] = column.null_count
        if column.null_count < len(column):
            bounds = pc.min_max(column)
            lows[name], highs[name] = bounds["min"].as_py(), bounds["max"].as_py()
    return json.dumps({"numRecords": len(arrow), "minValues": lows, "maxValues": highs, "nullCount": nulls})


def _with_write_ids(table: str, arrow: pa.Table, write_ids: pa.Array) -> pa.Table:
    """Rows of the documented schema as the Delta table stores them."""
    schema = delta_schema(table)
    columns = {name: arrow.column(name) for name in arrow.column_names}
    columns[WRITE_ID] = write_ids
    if "values" in columns:
        columns["values"] = columns["values"].cast(pa.list_(pa.float32()))
    return pa.Table.from_pydict({name: columns[name] for name in schema.names}, schema=schema)


def _protocol(store: CacheStore) -> str:
    return store.fs.protocol if isinstance(store.fs.protocol, str) else store.fs.protocol[0]


def _table_uri(store: CacheStore, table: str) -> str:
    """Where delta-rs finds a table of the cache: an absolute path, or the object store URL."""
    return os.path.abspath(store.table_dir(table)) if store.local else f"{_protocol(store)}://{store.table_dir(table)}"


def _delta_options(store: CacheStore) -> dict:
    """delta-rs storage options for the cache: none locally; on S3 the endpoint and region of the AWS_* environment
    (object_store reads some of them only from options) and conditional puts for commits."""
    if store.local:
        return {}
    if _protocol(store) not in ("s3", "s3a"):
        raise ValueError(f"a Delta cache lives on a local path or s3://, not {store.url}")
    options = {"aws_conditional_put": "etag"}
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    if endpoint:
        options["AWS_ENDPOINT_URL"] = endpoint
        if endpoint.startswith("http://"):
            options["AWS_ALLOW_HTTP"] = "true"
    # object_store reads AWS_REGION only; boto3 users set AWS_DEFAULT_REGION
    options["AWS_REGION"] = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    return options


def _table_filesystem(fs: fsspec.AbstractFileSystem, directory: str) -> pafs.FileSystem:
    """A pyarrow filesystem rooted at a table's directory: native locally (delta-rs's own handler is a Python one,
    a hundred times slower per file), the store's fsspec one elsewhere."""
    if isinstance(fs, LocalFileSystem):
        return pafs.SubTreeFileSystem(os.path.abspath(directory), pafs.LocalFileSystem())
    # fsspec caches listings: one made before another writer's commit would hide that commit's files
    fs.invalidate_cache(directory)
    return pafs.SubTreeFileSystem(directory, pafs.PyFileSystem(pafs.FSSpecHandler(fs)))


def _within(ids: Sequence[str], low: str | None, high: str | None) -> Sequence[str]:
    """The ones of the sorted `ids` that min/max statistics [low, high] allow (all of them without statistics)."""
    start = 0 if low is None else bisect.bisect_left(ids, low)
    stop = len(ids) if high is None else bisect.bisect_right(ids, high)
    return ids[start:stop]


@dataclass(frozen=True)
class FileRead:
    """One data file's share of a read_videos, as a Dask worker reads it without the driver's store: the table's
    location, the file (relative to the table), the columns and the wanted write ids its statistics allow (sorted)."""

    table: str
    table_uri: str  # an absolute local path or an object-store URL: workers have other working directories
    path: str
    columns: tuple[str, ...]
    write_ids: tuple[str, ...]
    storage_options: dict = field(default_factory=dict, hash=False)  # fsspec's, as the store was opened with


# Reads FileReads somewhere else (a Dask cluster's workers, say): read_file's tables out, in the same order.
MapReads = Callable[[list[FileRead]], list[pa.Table]]


def read_file(read: FileRead) -> pa.Table:
    """The rows of one data file that carry a wanted write id, its `columns` typed as the table's schema types
    them (string_view in files that delta-rs merges write becomes the schema's strings); row groups are skipped
    by their statistics. Opens the file itself: what read_videos(map_reads=...) has a worker run."""
    fs, directory = fsspec.core.url_to_fs(read.table_uri, **read.storage_options)
    schema = delta_schema(read.table)
    wanted = pa.schema([schema.field(name) for name in read.columns])
    with _table_filesystem(fs, directory).open_input_file(read.path) as fh:
        parquet = pq.ParquetFile(fh)
        meta = parquet.metadata
        groups = []
        for i in range(meta.num_row_groups):
            group = meta.row_group(i)
            leaf = next(j for j in range(group.num_columns) if group.column(j).path_in_schema == WRITE_ID)
            stats = group.column(leaf).statistics
            if stats is None or not stats.has_min_max or _within(read.write_ids, stats.min, stats.max):
                groups.append(i)
        if not groups:
            return wanted.empty_table()
        present = [name for name in wanted.names if name in parquet.schema_arrow.names]
        rows = parquet.read_row_groups(groups, columns=present)
    columns = [rows.column(f.name) if f.name in present else pa.nulls(rows.num_rows, f.type) for f in wanted]
    rows = pa.Table.from_arrays(columns, names=wanted.names).cast(wanted)
    return rows.filter(pc.is_in(rows.column(WRITE_ID), value_set=pa.array(read.write_ids, pa.string())))


class DeltaCacheStore(CacheStore):
    """The cache as Delta tables, on a local path or s3:// (CacheStore's interface, same DataFrames out).

    `delta_options` go to delta-rs (object_store keys); on S3 the endpoint and credentials come from the standard
    AWS_* environment variables, and commits use conditional puts (S3 and most S3-compatible stores have them),
    so concurrent writers need no lock table."""

    refuses_delta = False

    def __init__(self, url: str, storage_options: dict | None = None, delta_options: dict | None = None):
        super().__init__(url, storage_options)
        self.storage_options = dict(storage_options or {})  # fsspec's: what a worker reading a data file opens it with
        self.delta_options = {**_delta_options(self), **(delta_options or {})}
        self._tables: dict[str, DeltaTable] = {}
        self._pointer_cache: tuple[int, pa.Table] | None = None
        if not self.fs.exists(f"{self.table_dir('videos')}/_delta_log"):
            self._refuse_old_layout("videos")  # a per-video cache is refused when opened, not at a first read

    # --- tables --------------------------------------------------------------------------------------------

    def table_uri(self, table: str) -> str:
        return _table_uri(self, table)

    def _refuse_old_layout(self, table: str) -> None:
        directory = self.table_dir(table)
        try:
            names = self.fs.ls(directory, detail=False)
        except FileNotFoundError:
            return
        if any(name.endswith(".parquet") and not name.rsplit("/", 1)[-1].startswith(_OURS) for name in names):
            raise OldLayoutError(per_video_refused(self.url))

    def delta(self, table: str, create: bool = False) -> DeltaTable | None:
        """The table at its latest version (None when it does not exist and `create` is not set)."""
        dt = self._tables.get(table)
        if dt is not None:
            dt.update_incremental()
            return dt
        uri = self.table_uri(table)
        if not DeltaTable.is_deltatable(uri, self.delta_options):
            self._refuse_old_layout(table)
            if not create:
                return None
            try:  # version 0 or nothing: a retried create would commit the table's metadata a second time
                DeltaTable.create(uri, schema=delta_schema(table), mode="error", storage_options=self.delta_options,
                                  name=table, commit_properties=CommitProperties(max_commit_retries=0))
            except Exception:  # noqa: BLE001 - another writer created it first: use theirs
                if not DeltaTable.is_deltatable(uri, self.delta_options):
                    raise
        dt = self._tables[table] = DeltaTable(uri, storage_options=self.delta_options)
        return dt

    def _filesystem(self, table: str) -> pafs.FileSystem:
        return _table_filesystem(self.fs, self.table_dir(table))

    def _scan(self, table: str, columns: list[str], row_filter: ds.Expression | None = None) -> pa.Table:
        """Columns of the table's current version, `row_filter` skipping row groups and rows."""
        dt = self.delta(table)
        schema = delta_schema(table)
        if dt is None:
            return schema.empty_table().select(columns)
        dataset = dt.to_pyarrow_dataset(schema=schema, filesystem=self._filesystem(table))
        try:
            return dataset.to_table(columns=columns, filter=row_filter)
        except pa.ArrowNotImplementedError:
            # Files that delta-rs merges write hold strings as string_view, which pyarrow cannot filter yet:
            # read them whole, as the schema's strings, with the key columns the filters name, and filter after.
            read = list(dict.fromkeys([*columns, *(c for c in _STATS_COLUMNS if c in schema.names)]))
            return dataset.to_table(columns=read).filter(row_filter).select(columns)

    def _lookup(self, table: str, columns: list[str], equals: dict[str, str]) -> pa.Table:
        """The rows whose key columns equal `equals` (one video's rows): files are skipped by their Delta
        statistics, row groups by their Parquet ones, and only what is left is read."""
        dt = self.delta(table)
        schema = delta_schema(table)
        if dt is None:
            return schema.empty_table().select(columns)
        fs, root = self._filesystem(table), self.table_uri(table).rstrip("/") + "/"
        wanted = pa.schema([schema.field(name) for name in dict.fromkeys([*columns, *equals])])
        parts = []
        for uri in dt.file_uris(file_pruning_predicate=[(k, "=", v) for k, v in equals.items()]):
            with fs.open_input_file(uri.removeprefix(root)) as fh:
                parquet = pq.ParquetFile(fh)
                groups = [i for i in range(parquet.metadata.num_row_groups) if _may_hold(parquet, i, equals)]
                if groups:
                    # string_view in files that delta-rs merges write: cast to the schema's strings first
                    rows = parquet.read_row_groups(groups, columns=wanted.names).cast(wanted)
                    mask = functools.reduce(pc.and_, [pc.equal(rows.column(k), v) for k, v in equals.items()])
                    parts.append(rows.filter(mask).select(columns))
        return pa.concat_tables(parts) if parts else schema.empty_table().select(columns)

    # --- staging (workers) and committing (the flow) --------------------------------------------------------

    def _stage_file(self, table: str, rows: list[dict], write_ids: list[str]) -> AddAction | None:
        """Write one data file of a table, not yet part of it (each row with its write's id); None when there
        are no rows."""
        if not rows:
            return None
        arrow = to_table(table, rows)
        stored = _with_write_ids(table, arrow, pa.array(write_ids, pa.string()))
        buf = io.BytesIO()
        pq.write_table(stored, buf, compression="zstd", **({"use_dictionary": False} if table == "descriptors" else {}))
        name = f"staged-{write_ids[0]}.parquet"
        self._put(f"{self.table_dir(table)}/{name}", buf.getvalue())
        return AddAction(name, buf.tell(), {}, int(time.time() * 1000), True, _file_stats(stored))

    def stage_rows(self, table: str, rows_by_video: dict[str, list[dict]]) -> list[StagedWrite]:
        """Stage many videos' rows of one table in one data file, each video its own write (the videos table:
        their rows, to be merged)."""
        writes = [StagedWrite(vid, uuid.uuid4().hex) for vid in rows_by_video]
        if table == "videos":
            for w in writes:
                w.video_row = rows_by_video[w.video_id][-1] if rows_by_video[w.video_id] else None
            return writes
        rows = [row for w in writes for row in rows_by_video[w.video_id]]
        ids = [w.write_id for w in writes for _ in rows_by_video[w.video_id]]
        add = self._stage_file(table, rows, ids)
        for w in writes:
            w.pointers = {table: w.write_id}
        if add and writes:
            writes[0].adds = {table: [add]}
        return writes

    def stage_table(self, table: str, video_id: str, rows: list[dict]) -> StagedWrite:
        """Stage one video's rows of one table."""
        return self.stage_rows(table, {video_id: rows})[0]

    def stage_video(self, video_row: dict, faces: list[dict], ssim: list[dict]) -> StagedWrite:
        """Worker side: write one extraction's faces and ssim files (invisible until committed); the returned
        manifest is small and picklable (the add actions and the videos row), never the crops."""
        started = time.perf_counter()
        video_id, write_id = video_row["video_id"], uuid.uuid4().hex
        extra = {"video_id": video_id, "cache_key": video_row["cache_key"]}
        adds = {}
        for table, rows in (("faces", faces), ("ssim", ssim)):
            add = self._stage_file(table, [{**r, **extra} for r in rows], [write_id] * len(rows))
            if add:
                adds[table] = [add]
        row = {**video_row, "write_s": round(time.perf_counter() - started, 4)}
        return StagedWrite(video_id, write_id, adds, {"faces": write_id, "ssim": write_id}, row)

    def commit(self, staged: Sequence[StagedWrite], operation: str = "extract") -> int:
        """Flow side: commit staged writes as one batch, one Delta commit per table: the data files first, then
        one merge of the videos rows (one per video) that makes them current. Returns how many videos."""
        staged = [s for s in staged if s is not None]
        if not staged:
            return 0
        meta = {"dfp.operation": operation, "dfp.videos": len({s.video_id for s in staged})}
        for table in DATA_TABLES:
            adds = [add for s in staged for add in s.adds.get(table, [])]
            if adds:
                self._commit_files(table, adds, meta)
        self._merge_videos(staged, meta)
        return meta["dfp.videos"]

    def _commit_files(self, table: str, adds: list[AddAction], meta: dict) -> None:
        """Append data files; appends commute, so delta-rs retries them on a newer version itself, and a commit
        it gives up on (another writer changed the table's metadata) is rerun here on the latest version."""
        props = CommitProperties(custom_metadata=meta, max_commit_retries=COMMIT_ATTEMPTS * 4)
        for attempt in range(COMMIT_ATTEMPTS):
            try:
                self.delta(table, create=True).create_write_transaction(adds, "append", delta_schema(table),
                                                                        commit_properties=props)
                return
            except CommitFailedError as exc:
                last = exc
                _backoff(attempt)
        raise CacheCommitError(f"commit of {len(adds)} {table} files to {self.url} refused {COMMIT_ATTEMPTS} times "
                               f"({last}); rerun the commit")

    def _merge_source(self, staged: Sequence[StagedWrite]) -> pa.Table:
        """One source row per video: the last staged videos row wins, pointers combine (the last one per table)."""
        merged: dict[str, dict] = {}
        for s in staged:
            entry = merged.setdefault(s.video_id, {"video_id": s.video_id, _HAS_ROW: False})
            if s.video_row is not None:
                entry.update({k: v for k, v in s.video_row.items() if k not in _POINTER_NAMES}, **{_HAS_ROW: True})
            entry.update({POINTERS[table]: write_id for table, write_id in s.pointers.items()})
        rows = list(merged.values())
        source = to_table("videos", rows)
        for name in _POINTER_NAMES:
            source = source.append_column(name, pa.array([r.get(name) for r in rows], pa.string()))
        return source.append_column(_HAS_ROW, pa.array([r[_HAS_ROW] for r in rows], pa.bool_()))

    def _merge_videos(self, staged: Sequence[StagedWrite], meta: dict) -> None:
        """Upsert the batch's videos rows: a new video is inserted, a known one updated in place, so the table
        holds one current row per video. A merge that lost a race is rerun on the winner's version."""
        source = self._merge_source(staged)
        columns = SCHEMAS["videos"].names
        pointers = {p: f"COALESCE(s.{p}, t.{p})" for p in _POINTER_NAMES}
        for attempt in range(COMMIT_ATTEMPTS):
            dt = self.delta("videos", create=True)
            try:
                (dt.merge(source, "t.video_id = s.video_id", source_alias="s", target_alias="t", writer_properties=_writer(),
                          commit_properties=CommitProperties(custom_metadata=meta, max_commit_retries=0))
                 .when_matched_update({**{c: f"s.{c}" for c in columns}, **pointers}, predicate=f"s.{_HAS_ROW}")
                 .when_matched_update(pointers, predicate=f"NOT s.{_HAS_ROW}")
                 .when_not_matched_insert({c: f"s.{c}" for c in [*columns, *_POINTER_NAMES]},
                                          predicate=f"s.{_HAS_ROW}")
                 .execute())
                self._pointer_cache = None
                return
            except CommitFailedError as exc:
                last = exc
                _backoff(attempt)
        raise CacheCommitError(f"commit of {source.num_rows} videos rows to {self.url} refused: other writers "
                               f"committed first {COMMIT_ATTEMPTS} times in a row ({last}); rerun the commit")

    # --- CacheStore's interface ---------------------------------------------------------------------------------

    def write_video(self, video_row: dict, faces: list[dict], ssim: list[dict]) -> None:
        """Stage and commit one extraction (a batch of one)."""
        self.commit([self.stage_video(video_row, faces, ssim)])

    def write_table(self, table: str, video_id: str, rows: list[dict]) -> None:
        """Replace one video's rows of a table (the videos table: its row, keeping what it points at)."""
        self.write_tables(table, {video_id: rows})

    def write_tables(self, table: str, rows_by_video: dict[str, list[dict]]) -> int:
        """write_table for many videos in one batch: one data file and one commit per table, not one per video.
        A video's rows of the other tables need its videos row first (it is what makes them current)."""
        if table != "videos":
            known = set(self._pointers().column("video_id").to_pylist())
            if missing := [vid for vid in rows_by_video if vid not in known]:
                raise ValueError(f"write_table({table}) to {self.url}: {missing[0]} has no videos row "
                                 f"({len(missing)} videos have none); write the videos rows first")
        return self.commit(self.stage_rows(table, rows_by_video), operation=f"write {table}")

    def _pointers(self) -> pa.Table:
        """video_id, cache_key and the pointer columns of every videos row, read once per videos version."""
        dt = self.delta("videos")
        columns = ["video_id", "cache_key", *_POINTER_NAMES]
        if dt is None:
            return delta_schema("videos").empty_table().select(columns)
        if self._pointer_cache is None or self._pointer_cache[0] != dt.version():
            self._pointer_cache = (dt.version(), self._scan("videos", columns))
        return self._pointer_cache[1]

    def _pointer(self, table: str, video_id: str) -> str | None:
        pointers = self._pointers()
        found = pointers.filter(pc.equal(pointers.column("video_id"), video_id))
        return found.column(POINTERS[table])[0].as_py() if found.num_rows else None

    @staticmethod
    def _current(table: str, arrow: pa.Table, pointers: pa.Table, committed: bool) -> pa.Table:
        """The rows of `arrow` that their videos rows point at (and, `committed`, that carry their cache key)."""
        def key(t: pa.Table, write_id: str) -> pa.Array:
            parts = [t.column("video_id"), t.column(write_id)]
            if committed:
                parts.append(pc.fill_null(t.column("cache_key"), ""))
            return pc.binary_join_element_wise(*parts, "\x1f")

        wanted = key(pointers, POINTERS[table]).drop_null()
        return arrow.filter(pc.fill_null(pc.is_in(key(arrow, WRITE_ID), value_set=wanted), False))

    def read(self, table: str, columns: list[str] | None = None, committed_only: bool = True) -> pd.DataFrame:
        """A whole table as a DataFrame: the current write of each video; by default only rows whose cache key
        is their videos row's (committed_only=False: also those of an older extraction)."""
        names = DESCRIPTOR_COLUMNS if table == "descriptors" else SCHEMAS[table].names
        wanted = columns or names
        if table == "videos":
            return self._scan("videos", wanted).to_pandas()[wanted]
        read_cols = list(dict.fromkeys([*wanted, "video_id", "cache_key", WRITE_ID]))
        if table == "descriptors":
            packed = set(table_names())
            read_cols = [c for c in read_cols if c not in packed] + (["values"] if packed & set(read_cols) else [])
        pointers = self._pointers()
        ids = pointers.column(POINTERS[table]).drop_null()
        arrow = self._scan(table, read_cols, ds.field(WRITE_ID).isin(ids)) if len(ids) else \
            delta_schema(table).empty_table().select(read_cols)
        return _unpacked(table, self._current(table, arrow, pointers, committed_only), wanted)[wanted]

    def read_partition(self, table: str, video_id: str, columns: list[str] | None = None) -> pd.DataFrame:
        """One video's current rows of a table (empty with the schema's columns when none); `columns` reads only
        those, not for the descriptors table. Files and row groups are skipped by their statistics."""
        if columns is not None and table == "descriptors":
            raise ValueError("read_partition: the descriptors table is read whole (its values are one packed column)")
        read_cols = list(columns or SCHEMAS[table].names)
        if table == "videos":
            return self._lookup("videos", read_cols, {"video_id": video_id}).to_pandas()
        write_id = self._pointer(table, video_id)
        if write_id is None:
            return _unpacked(table, delta_schema(table).empty_table().select(read_cols))
        return _unpacked(table, self._lookup(table, read_cols, {"video_id": video_id, WRITE_ID: write_id}))

    def read_videos(self, table: str, video_ids: list[str], columns: list[str] | None = None,
                    map_reads: MapReads | None = None) -> pd.DataFrame:
        """read_partition for many videos in one scan of the table: files and row groups are skipped by the
        statistics of the write ids their videos rows point at, so no loop over videos touches storage.

        With `map_reads` (FileReads in, their read_file tables out, in order: a Dask map, say), each data file
        that may hold a wanted write id is one FileRead, read where map_reads runs them; the result is the same.
        The videos table is always read here."""
        if columns is not None and table == "descriptors":
            raise ValueError("read_videos: the descriptors table is read whole (its values are one packed column)")
        wanted = list(columns or (DESCRIPTOR_COLUMNS if table == "descriptors" else SCHEMAS[table].names))
        ids = pa.array(list(dict.fromkeys(video_ids)), pa.string())
        if table == "videos":
            return self._scan("videos", wanted, ds.field("video_id").isin(ids)).to_pandas()[wanted]
        pointers = self._pointers()
        pointers = pointers.filter(pc.is_in(pointers.column("video_id"), value_set=ids))
        write_ids = pointers.column(POINTERS[table]).drop_null()
        read_cols = list(dict.fromkeys([*wanted, "video_id", "cache_key", WRITE_ID]))
        if table == "descriptors":
            packed = set(table_names())
            read_cols = [c for c in read_cols if c not in packed] + ["values"]
        empty = delta_schema(table).empty_table().select(read_cols)
        if not len(write_ids):
            arrow = empty
        elif map_reads is None:
            arrow = self._scan(table, read_cols, ds.field(WRITE_ID).isin(write_ids))
        else:
            parts = map_reads(self.file_reads(table, read_cols, write_ids))
            arrow = pa.concat_tables(parts) if parts else empty
        return _unpacked(table, self._current(table, arrow, pointers, committed=False), wanted)[wanted]

    def file_reads(self, table: str, columns: list[str], write_ids: pa.Array) -> list[FileRead]:
        """One FileRead per data file of the table's current version whose Delta statistics of the write id allow
        one of `write_ids` (with those of them it may hold); the other files are never opened."""
        dt = self.delta(table)
        ids = sorted(set(write_ids.to_pylist()) - {None})
        if dt is None or not ids:
            return []
        adds = pa.table(dt.get_add_actions(flatten=True))

        def stats(name: str) -> list:
            return adds.column(name).to_pylist() if name in adds.column_names else [None] * adds.num_rows

        uri = self.table_uri(table)
        reads = []
        for path, low, high in zip(adds.column("path").to_pylist(), stats(f"min.{WRITE_ID}"), stats(f"max.{WRITE_ID}"),
                                   strict=True):
            if inside := _within(ids, low, high):
                reads.append(FileRead(table, uri, path.removeprefix(uri).lstrip("/"), tuple(columns), tuple(inside),
                                      self.storage_options))
        return reads

    def read_video_rows(self, video_ids: list[str]) -> list[dict]:
        """The videos rows of the given videos (those that have one), as Python values, in one scan."""
        ids = pa.array(list(dict.fromkeys(video_ids)), pa.string())
        return self._scan("videos", SCHEMAS["videos"].names, ds.field("video_id").isin(ids)).to_pylist()

    def read_video_row(self, video_id: str) -> dict | None:
        rows = self._lookup("videos", SCHEMAS["videos"].names, {"video_id": video_id}).to_pylist()
        return rows[0] if rows else None

    def remove_stale_tmp(self, older_than_s: float = 3600) -> int:
        """Delete what killed writers left: CacheStore's temporary files, and data files no commit took up
        (`vacuum`) once older than a day, so that a reader still on a version from before a compaction keeps
        its files. The caller holds the run lock (flows.extract does): no writer is between stage and commit."""
        removed = super().remove_stale_tmp(older_than_s)
        hours = max(older_than_s / 3600, READER_GRACE_HOURS)
        return removed + sum(len(v) for v in vacuum(self, retention_hours=hours, lock=False).values())


# --- maintenance -------------------------------------------------------------------------------------------------

def _store(cache: str | DeltaCacheStore) -> DeltaCacheStore:
    return cache if isinstance(cache, DeltaCacheStore) else DeltaCacheStore(cache)


def _tables(store: DeltaCacheStore) -> dict[str, DeltaTable]:
    return {t: dt for t in TABLES if (dt := store.delta(t)) is not None}


def info(cache: str | DeltaCacheStore) -> dict[str, dict]:
    """Per table: rows (in committed files, superseded writes included), data files, version, bytes."""
    out = {}
    for table, dt in _tables(_store(cache)).items():
        adds = pa.table(dt.get_add_actions(flatten=True))
        out[table] = {"rows": int(pc.sum(adds.column("num_records")).as_py() or 0), "files": adds.num_rows,
                      "version": dt.version(), "bytes": int(pc.sum(adds.column("size_bytes")).as_py() or 0)}
    return out


def compact(cache: str | DeltaCacheStore, target_size: int | None = None, lock: bool = True,
            superseded: bool = False) -> dict[str, dict]:
    """Delete the rows of superseded writes (`prune`; kept with `superseded`), then bin-pack each table's small
    files into large ones (file order kept, so a file holds neighbouring videos) and checkpoint its log, under the
    cache's run lock; returns files before and after, and rows pruned, per table. After it, every Delta reader
    (duckdb, polars, Spark) sees exactly each video's current rows."""
    store = _store(cache)
    out = {}
    with store.run_lock("cache compact") if lock else contextlib.nullcontext():
        before = {table: len(dt.file_uris()) for table, dt in _tables(store).items()}
        pruned = {} if superseded else prune(store, lock=False)
        for table, dt in _tables(store).items():
            dt.update_incremental()
            dt.optimize.compact(target_size=target_size, writer_properties=_writer())
            dt.create_checkpoint()
            out[table] = {"files_before": before.get(table, 0), "files_after": len(dt.file_uris()),
                          "version": dt.version(), "rows_pruned": pruned.get(table, 0)}
    return out


def vacuum(cache: str | DeltaCacheStore, retention_hours: float = 168, dry_run: bool = False,
           lock: bool = True) -> dict[str, list[str]]:
    """Delete the data files no current version needs that are older than `retention_hours`: files compacted
    away, and orphans (staged by a killed worker, or whose commit was lost). Runs under the cache's run lock:
    an extraction holding it may have staged files it has yet to commit."""
    store = _store(cache)
    out = {}
    with store.run_lock("cache vacuum") if lock else contextlib.nullcontext():
        for table, dt in _tables(store).items():
            out[table] = dt.vacuum(retention_hours=max(0, int(retention_hours)), dry_run=dry_run,
                                   enforce_retention_duration=False, full=True)
    return out


def prune(cache: str | DeltaCacheStore, lock: bool = True) -> dict[str, int]:
    """Delete the rows no videos row points at (superseded by a re-extraction or a rewrite, or committed by a
    flow that died before its videos rows): files holding only such rows are dropped, mixed ones rewritten,
    in one commit per table. Returns rows deleted per table.

    Under the run lock, since a writer commits its data files before its videos rows point at them."""
    store = _store(cache)
    out = {}
    with store.run_lock("cache prune") if lock else contextlib.nullcontext():
        pointers = store._pointers()
        for table, dt in _tables(store).items():
            if table != "videos":
                out[table] = _prune_table(store, table, dt, pointers)
    return out


def _prune_table(store: DeltaCacheStore, table: str, dt: DeltaTable, pointers: pa.Table) -> int:
    schema, fs = delta_schema(table), store._filesystem(table)
    files = pa.table(dt.get_add_actions(flatten=True)).select(["path", "size_bytes"]).to_pylist()
    actions, deleted, now = [], 0, int(time.time() * 1000)
    for file in files:
        path = file["path"].removeprefix(store.table_uri(table)).lstrip("/")
        keys = pq.read_table(path, filesystem=fs, columns=["video_id", "cache_key", WRITE_ID], schema=schema)
        keep = DeltaCacheStore._current(table, keys.append_column("_row", pa.array(range(len(keys)))), pointers,
                                        committed=False)
        if keep.num_rows == keys.num_rows:
            continue
        actions.append(RemoveAction(file["path"], True, now, file["size_bytes"]))
        deleted += keys.num_rows - keep.num_rows
        if keep.num_rows:
            rows = pq.read_table(path, filesystem=fs, schema=schema).take(keep.column("_row"))
            buf = io.BytesIO()
            pq.write_table(rows, buf, compression="zstd", row_group_size=_ROW_GROUP_ROWS)
            name = f"pruned-{uuid.uuid4().hex}.parquet"
            store._put(f"{store.table_dir(table)}/{name}", buf.getvalue())
            actions.append(AddAction(name, buf.tell(), {}, now, True, _file_stats(rows)))
    if actions:
        dt.create_write_transaction(actions, "append", schema, commit_properties=CommitProperties(
            custom_metadata={"dfp.operation": "prune", "dfp.rows_deleted": deleted}))
    return deleted


def history(cache: str | DeltaCacheStore, table: str, limit: int | None = None) -> list[dict]:
    """The table's commits, newest first: version, timestamp, operation and this project's metadata."""
    dt = _store(cache).delta(table)
    return [] if dt is None else dt.history(limit)


def commit_changes(cache: str | DeltaCacheStore, table: str, version: int) -> dict[str, int] | None:
    """What one commit of a table did to its files: files added and removed, rows added (the add actions'
    statistics). Read from the commit's log entry, which holds what delta-rs's operation metrics leave out for
    the commits of staged files; None once the log entry is cleaned up."""
    store = _store(cache)
    path = f"{store.table_dir(table)}/_delta_log/{version:020d}.json"
    try:
        lines = store.fs.cat_file(path).decode().splitlines()
    except FileNotFoundError:
        return None
    actions = [json.loads(line) for line in lines if line.strip()]
    adds = [a["add"] for a in actions if "add" in a]
    rows = sum(json.loads(add.get("stats") or "{}").get("numRecords", 0) for add in adds)
    return {"files_added": len(adds), "files_removed": sum("remove" in a for a in actions), "rows_added": rows}


# --- migration from the per-video layout ---------------------------------------------------------------------

def _old_dataset(old: CacheStore, table: str) -> ds.Dataset:
    return ds.dataset(old.table_dir(table), schema=SCHEMAS[table], format="parquet", filesystem=old.fs)


def _migrated(table: str, old: CacheStore, write_ids: dict[str, dict[str, str]]) -> pa.RecordBatchReader:
    """The old table's rows as the Delta table stores them, streamed: each video's rows of a data table carry
    its migration write id, and its videos row points at the write ids of the tables it has rows in."""
    schema = delta_schema(table)
    own = write_ids.get(table, {})
    ids, values = pa.array(list(own), pa.string()), pa.array(list(own.values()), pa.string())

    def batches():
        for batch in _old_dataset(old, table).to_batches(batch_size=4096):
            arrow = pa.Table.from_batches([batch])
            if table != "videos":
                stored = _with_write_ids(table, arrow, pc.take(values, pc.index_in(arrow.column("video_id"), ids)))
            else:
                video_ids = arrow.column("video_id").to_pylist()
                for t, pointer in POINTERS.items():
                    arrow = arrow.append_column(pointer, pa.array([write_ids.get(t, {}).get(v) for v in video_ids],
                                                                  pa.string()))
                stored = arrow.select(schema.names).cast(schema)
            yield from stored.to_batches()

    return pa.RecordBatchReader.from_batches(schema, batches())


class _AnyLayout(CacheStore):
    """The per-video store's paths and lock on a cache in either layout: what migrate reads and swaps."""

    refuses_delta = False


def migrate(old_url: str, new_url: str | None = None, storage_options: dict | None = None,
            target_file_size: int | None = None) -> dict[str, int]:
    """Convert a per-video-layout cache (features.store.cache) into Delta tables, at `new_url` or in place: one
    commit per table of large files, every video's rows made current. Returns rows per table.

    In place, the Delta tables are built beside the old folders (CACHE/.delta-migrate) and swapped in only when
    all are written; the per-video folders are deleted last. Rerun an interrupted migration: it builds again, or
    finishes an interrupted swap."""
    old = _AnyLayout(old_url, storage_options)
    target = _AnyLayout(new_url or old_url, storage_options)
    staging_url = new_url or f"{old_url.rstrip('/')}/.delta-migrate"
    new = DeltaCacheStore(staging_url, storage_options)
    done = [t for t in TABLES if DeltaTable.is_deltatable(_table_uri(target, t), _delta_options(target))]
    if done and new_url is None and new.fs.exists(f"{new.root}/videos/_delta_log"):
        with old.run_lock("cache migrate"):
            _swap_in(old, new, [t for t in TABLES if new.fs.exists(new.table_dir(t))] + done)
        return {t: int(DeltaCacheStore(old_url, storage_options).delta(t).count()) for t in TABLES
                if DeltaTable.is_deltatable(_table_uri(old, t), _delta_options(old))}
    if done:
        raise ValueError(f"{target.url} already holds a Delta {done[0]} table: nothing to migrate")
    with old.run_lock("cache migrate"):
        if new_url is None and new.fs.exists(new.root):
            new.fs.rm(new.root, recursive=True)
        tables = [t for t in (*DATA_TABLES, "videos") if old.fs.exists(old.table_dir(t))]
        write_ids = {}  # table -> video_id -> the write id of its migrated rows
        for table in tables:
            if table != "videos":
                vids = pc.unique(_old_dataset(old, table).to_table(columns=["video_id"]).column("video_id"))
                write_ids[table] = {v: f"migrated-{uuid.uuid4().hex}" for v in vids.to_pylist()}
        counts = {}
        for table in tables:  # the videos table last: it is the commit record
            write_deltalake(new.table_uri(table), _migrated(table, old, write_ids), mode="error",
                            storage_options=new.delta_options,
                            target_file_size=target_file_size, name=table, writer_properties=_writer(),
                            commit_properties=CommitProperties(custom_metadata={"dfp.operation": "migrate",
                                                                                "dfp.source": old_url}))
            counts[table] = int(new.delta(table).count())
        for name in ("configs", "runs"):
            source = f"{old.root.rstrip('/')}/{name}"
            if new_url is not None and old.fs.exists(source):
                for path in old.fs.find(source):
                    new._put(f"{new.root.rstrip('/')}/{name}/{path[len(source) + 1:]}", old.fs.cat_file(path))
        if new_url is None:
            _swap_in(old, new, list(counts))
    return counts


def _swap_in(old: CacheStore, new: DeltaCacheStore, tables: list[str]) -> None:
    """Move the built Delta tables over the per-video folders, then delete those; each step is skipped when an
    interrupted earlier run made it."""
    fs = old.fs
    asides = {table: f"{old.root.rstrip('/')}/.per-video-{table}" for table in dict.fromkeys(tables)}
    for table, aside in asides.items():
        if fs.exists(old.table_dir(table)) and not fs.exists(aside) and fs.exists(new.table_dir(table)):
            fs.mv(old.table_dir(table), aside, recursive=True)
        if fs.exists(new.table_dir(table)):
            fs.mv(new.table_dir(table), old.table_dir(table), recursive=True)
    for aside in asides.values():
        if fs.exists(aside):
            fs.rm(aside, recursive=True)
    if fs.exists(new.root):
        fs.rm(new.root, recursive=True)

