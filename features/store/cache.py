"""The on-disk cache: table schemas, partition paths, content fingerprints, cache keys and atomic writes.

Layout under the cache root (a local path or any fsspec URL), one Parquet file per video and table:

    CACHE/videos/<partition>.parquet   one row: manifest, probe, status, timings (written last: the commit record)
    CACHE/faces/<partition>.parquet    one row per frame per face track, with JPEG crops on sampled frames
    CACHE/ssim/<partition>.parquet     one row per consecutive frame pair per series (track_id -1 = whole frame)
    CACHE/features/<partition>.parquet one row: the per-video feature vector (computed from the three above)
    CACHE/descriptors/<partition>.parquet  one row per stored main-face crop (and per self-blended copy of it)

Every row carries the video's cache_key. A video counts as cached only when its videos row carries the
current key; faces and ssim rows of an interrupted write are replaced on the rerun, never appended to.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import io
import json
import os
import re
import socket
import threading
import time
import uuid

import fsspec
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
from fsspec.implementations.local import LocalFileSystem

from features.learn.descriptors import table_names
from features.learn.video_features import FEATURE_NAMES
from features.store.rundir import delta_cache_refused

TABLES = ("videos", "faces", "ssim", "features", "descriptors")

VIDEOS_SCHEMA = pa.schema([
    ("video_id", pa.string()), ("dataset", pa.string()), ("dataset_format", pa.string()),
    ("path", pa.string()), ("relpath", pa.string()),
    ("label", pa.string()), ("split", pa.string()), ("original", pa.string()),
    ("method", pa.string()), ("compression", pa.string()), ("leakage_group", pa.string()),
    ("fingerprint", pa.string()), ("file_stat", pa.string()), ("config_hash", pa.string()), ("code_version", pa.string()), ("cache_key", pa.string()),
    ("status", pa.string()), ("error", pa.string()), ("error_step", pa.string()),
    ("width", pa.int32()), ("height", pa.int32()), ("fps", pa.float64()), ("frame_count", pa.int64()),
    ("rotation", pa.int32()), ("codec", pa.string()), ("frames_decoded", pa.int64()), ("duration_s", pa.float64()),
    ("file_bytes", pa.int64()),
    ("n_tracks", pa.int32()), ("main_track_id", pa.int32()), ("keyframes", pa.int32()),
    ("keyframes_with_face", pa.int32()), ("face_detection_rate", pa.float64()), ("crops_stored", pa.int32()),
    ("decode_s", pa.float64()), ("detect_s", pa.float64()), ("track_crop_s", pa.float64()), ("ssim_s", pa.float64()),
    ("write_s", pa.float64()), ("total_s", pa.float64()),
    ("worker", pa.string()), ("extracted_at", pa.timestamp("us", tz="UTC")),
])

FACES_SCHEMA = pa.schema([
    ("video_id", pa.string()), ("cache_key", pa.string()),
    ("track_id", pa.int32()), ("frame_index", pa.int32()), ("is_main", pa.bool_()),
    ("x1", pa.float32()), ("y1", pa.float32()), ("x2", pa.float32()), ("y2", pa.float32()),
    ("detected", pa.bool_()), ("confidence", pa.float32()),
    ("landmarks", pa.list_(pa.float32())), ("crop_jpeg", pa.binary()),
    # The same crop at the video's own pixel scale, lossless (features.video.crops.crop_native): what the descriptors read.
    ("crop_lossless", pa.binary()),
    # Block-grid traces in the face centre of the full-resolution frame, on crop frames (crops.grid_blockiness).
    ("grid_blockiness", pa.float32()),
])

SSIM_SCHEMA = pa.schema([
    ("video_id", pa.string()), ("cache_key", pa.string()),
    ("track_id", pa.int32()), ("frame_index", pa.int32()), ("is_main", pa.bool_()), ("ssim", pa.float32()),
    ("sharpness", pa.float32()),
])

FEATURES_SCHEMA = pa.schema([
    ("video_id", pa.string()), ("cache_key", pa.string()), ("features_version", pa.string()),
    *[(name, pa.float64()) for name in FEATURE_NAMES],
])

# Per-crop descriptors of the main face (features.learn.descriptors), and of its self-blended fake (blended) for
# REAL videos: computed once per video and extraction, read by every fold of every crop model fit.
# On disk the ~2,000 descriptor values of a row are one fixed-size list column (`values`, in table_names() order):
# as ~2,000 Parquet columns, every file's footer outweighed its data and reading 130 partitions took 5 s of
# per-column-chunk overhead. Readers get them back as named float32 columns (DESCRIPTOR_COLUMNS).
_DESCRIPTOR_KEYS = [("video_id", pa.string()), ("cache_key", pa.string()), ("descriptors_version", pa.string()),
                    ("frame_index", pa.int32()), ("blended", pa.bool_())]
DESCRIPTORS_SCHEMA = pa.schema([*_DESCRIPTOR_KEYS, ("values", pa.list_(pa.float32(), len(table_names())))])
DESCRIPTOR_COLUMNS = [name for name, _ in _DESCRIPTOR_KEYS] + table_names()

# No column statistics (useless for the packed values) and no stored Arrow schema: readers pass the schema.
_WRITE_OPTIONS = {"descriptors": {"write_statistics": False, "use_dictionary": False, "store_schema": False}}

SCHEMAS = {"videos": VIDEOS_SCHEMA, "faces": FACES_SCHEMA, "ssim": SSIM_SCHEMA, "features": FEATURES_SCHEMA,
           "descriptors": DESCRIPTORS_SCHEMA}

# Files up to this size are hashed whole; larger ones by size plus head, middle and tail blocks.
_BLOCK = 4 << 20
# A file_stat that names no version (an object store that gives neither ETag nor modification time) is never
# trusted: that file is hashed on every run.
UNVERSIONED = "unversioned"


def fingerprint_file(path: str) -> str | None:
    """Content fingerprint of a video file (its size and every byte), or None when it does not exist."""
    fs, p = fsspec.core.url_to_fs(path)
    try:
        size = fs.size(p)
    except FileNotFoundError:
        return None
    h = hashlib.blake2b(digest_size=16)
    h.update(str(size).encode())
    with fs.open(p, "rb") as fh:
        while block := fh.read(_BLOCK):
            h.update(block)
    return h.hexdigest()


def file_stat(path: str) -> str | None:
    """What the filesystem says about a file without opening it, or None when it does not exist: size, mtime_ns
    and inode locally; size and ETag (else the modification time) on object stores.

    A videos row records it beside the fingerprint; a later run whose stat of the file matches reuses that
    fingerprint and never opens the file. Any edit changes the mtime, a replaced file also the inode."""
    if _is_plain_local(path):  # what url_to_fs would resolve to a LocalFileSystem path as it is, without its cost
        fs, p = None, path
    else:
        fs, p = fsspec.core.url_to_fs(path)
    if fs is None or isinstance(fs, LocalFileSystem):
        try:
            st = os.stat(p)
        except FileNotFoundError:
            return None
        return f"local:{st.st_size}:{st.st_mtime_ns}:{st.st_ino}"
    try:
        info = fs.info(p)
    except FileNotFoundError:
        return None
    version = next((info[k] for k in ("ETag", "etag", "LastModified", "last_modified", "mtime", "updated")
                    if info.get(k)), UNVERSIONED)
    return f"{fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]}:{info.get('size')}:{version}"


def _is_plain_local(path: str) -> bool:
    """An absolute POSIX path with no protocol or chaining, which fsspec would hand to the local filesystem."""
    return os.sep == "/" and path.startswith("/") and "://" not in path and "::" not in path


def reusable_fingerprint(stat: str | None, row: dict | None) -> str | None:
    """The fingerprint a cached videos row recorded, when the file's stat still matches the row's, else None."""
    if not stat or UNVERSIONED in stat or not row or not row.get("fingerprint"):
        return None
    return row["fingerprint"] if row.get("file_stat") == stat else None


def cache_key(fingerprint: str | None, config_hash: str, code_version: str) -> str:
    """The key a cached video must carry to count as current."""
    blob = f"{fingerprint or 'missing'}|{config_hash}|{code_version}".encode()
    return hashlib.sha256(blob).hexdigest()[:20]


def partition_name(video_id: str) -> str:
    """A file name that is safe on every filesystem, readable, and unique per video id."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", video_id.replace("/", "__")).strip("._")[:120]
    return f"{slug}-{hashlib.sha1(video_id.encode()).hexdigest()[:8]}.parquet"


def to_table(table: str, rows: list[dict]) -> pa.Table:
    """Rows as an Arrow table with the table's documented schema (missing columns become null). Descriptor rows
    carry their values either packed (`values`, in table_names() order) or named (DESCRIPTOR_COLUMNS)."""
    schema = SCHEMAS[table]
    columns = {name: [row.get(name) for row in rows] for name in schema.names if name != "values"}
    if table == "descriptors":
        names = table_names()
        values = np.array([row["values"] if "values" in row else [row.get(name, np.nan) for name in names]
                           for row in rows], np.float32).reshape(-1, len(names))
        columns["values"] = pa.FixedSizeListArray.from_arrays(pa.array(values.ravel(), pa.float32()), len(names))
    return pa.Table.from_pydict(columns, schema=schema)


def _unpacked(table: str, arrow: pa.Table, columns: list[str] | None = None) -> pd.DataFrame:
    """An Arrow table read from `table` as the DataFrame readers see: descriptor values as named float32 columns
    (NaN where a row has none: a partition written before the values were packed)."""
    if table != "descriptors" or "values" not in arrow.column_names:
        return arrow.to_pandas()
    names = table_names()
    packed = arrow.column("values").combine_chunks()
    values = np.full((len(arrow), len(names)), np.nan, np.float32)
    valid = packed.is_valid().to_numpy(zero_copy_only=False)
    if valid.any():
        values[valid] = packed.filter(pa.array(valid)).flatten().to_numpy().reshape(-1, len(names))
    index = {name: i for i, name in enumerate(names)}
    wanted = [c for c in (columns or names) if c in index]
    keys = arrow.drop_columns(["values"]).to_pandas()
    frame = pd.DataFrame(values[:, [index[c] for c in wanted]], columns=wanted, index=keys.index)
    return pd.concat([keys, frame], axis=1)


class MissingSettingsError(ValueError):
    """A cache's videos name extraction settings (configs/<hash>.json) that the cache does not hold."""


class CacheBusyError(RuntimeError):
    """Another run holds the cache's write lock."""


def is_storage_full(exc: BaseException) -> bool:
    """Whether a write failed because the cache's storage is out of space or quota (retrying cannot help)."""
    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)


def _holder(what: str) -> str:
    return (f"{what}, pid {os.getpid()} on {socket.gethostname()}, since "
            f"{time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime())} UTC")


class CacheStore:
    """The cache behind one interface, on a local path or any fsspec URL (s3://, gs://, memory://)."""

    refuses_delta = True  # a local cache already converted to Delta tables (features.store.delta_cache) is refused

    def __init__(self, url: str, storage_options: dict | None = None):
        self.url = url
        self.fs, self.root = fsspec.core.url_to_fs(url, **(storage_options or {}))
        self.local = isinstance(self.fs, LocalFileSystem)
        if self.refuses_delta and self.local and os.path.isdir(f"{self.table_dir('videos')}/_delta_log"):
            # Read as per-video files, a Delta table's superseded rows would count: refuse it instead.
            raise ValueError(delta_cache_refused(url))

    def table_dir(self, table: str) -> str:
        return f"{self.root.rstrip('/')}/{table}"

    def partition(self, table: str, video_id: str) -> str:
        return f"{self.table_dir(table)}/{partition_name(video_id)}"

    def _put(self, path: str, data: bytes) -> None:
        """Write a whole file so readers see the old file or the new one, never a part."""
        if self.local:
            directory = os.path.dirname(path)
            os.makedirs(directory, exist_ok=True)
            tmp = os.path.join(directory, f".tmp-{uuid.uuid4().hex}-{os.path.basename(path)}")
            try:
                with open(tmp, "wb") as fh:
                    fh.write(data)
                    fh.flush()
                    os.fsync(fh.fileno())
                os.replace(tmp, path)
            except BaseException:
                with contextlib.suppress(OSError):  # a full disk, say: leave no partial file behind
                    os.remove(tmp)
                raise
        else:
            # Object stores create an object in one PUT: it appears whole or not at all.
            self.fs.pipe_file(path, data)

    def write_table(self, table: str, video_id: str, rows: list[dict]) -> None:
        buf = io.BytesIO()
        pq.write_table(to_table(table, rows), buf, compression="zstd", **_WRITE_OPTIONS.get(table, {}))
        self._put(self.partition(table, video_id), buf.getvalue())

    def write_tables(self, table: str, rows_by_video: dict[str, list[dict]]) -> int:
        """write_table for many videos; returns how many."""
        for video_id, rows in rows_by_video.items():
            self.write_table(table, video_id, rows)
        return len(rows_by_video)

    def write_video(self, video_row: dict, faces: list[dict], ssim: list[dict]) -> None:
        """Replace one video's partitions; the videos row goes last and commits the other two."""
        started = time.perf_counter()
        extra = {"video_id": video_row["video_id"], "cache_key": video_row["cache_key"]}
        self.write_table("faces", video_row["video_id"], [{**r, **extra} for r in faces])
        self.write_table("ssim", video_row["video_id"], [{**r, **extra} for r in ssim])
        video_row = {**video_row, "write_s": round(time.perf_counter() - started, 4)}
        self.write_table("videos", video_row["video_id"], [video_row])

    def read(self, table: str, columns: list[str] | None = None, committed_only: bool = True) -> pd.DataFrame:
        """A whole table as a DataFrame; by default only rows whose video's current videos row commits them."""
        schema = SCHEMAS[table]
        names = DESCRIPTOR_COLUMNS if table == "descriptors" else schema.names
        wanted = columns or names
        path = self.table_dir(table)
        if not self.fs.exists(path):
            return _unpacked(table, schema.empty_table(), wanted)[wanted]
        dataset = ds.dataset(path, schema=schema, format="parquet", filesystem=self.fs)
        committed = table != "videos" and committed_only
        read_cols = list(dict.fromkeys([*wanted, *(["video_id", "cache_key"] if committed else [])]))
        if table == "descriptors":
            packed = set(table_names())
            read_cols = [c for c in read_cols if c not in packed] + (["values"] if packed & set(read_cols) else [])
        frame = _unpacked(table, dataset.to_table(columns=read_cols), wanted)
        if not committed:
            return frame[wanted]
        keys = self.read("videos", columns=["video_id", "cache_key"])
        return frame.merge(keys, on=["video_id", "cache_key"], how="inner")[wanted]

    def read_partition(self, table: str, video_id: str, columns: list[str] | None = None) -> pd.DataFrame:
        """One video's partition of a table (empty with the schema's columns when absent); `columns` reads only
        those (e.g. leaving out the crop images of a faces partition), not for the descriptors table."""
        if columns is not None and table == "descriptors":
            raise ValueError("read_partition: the descriptors table is read whole (its values are one packed column)")
        path = self.partition(table, video_id)
        if not self.fs.exists(path):
            empty = _unpacked(table, SCHEMAS[table].empty_table())
            return empty if columns is None else empty[columns]
        with self.fs.open(path, "rb") as fh:
            return _unpacked(table, pq.read_table(fh, columns=columns, schema=SCHEMAS[table]))

    def read_videos(self, table: str, video_ids: list[str], columns: list[str] | None = None,
                    map_reads=None) -> pd.DataFrame:
        """read_partition for many videos at once, their rows in one DataFrame (one file per video here, read in
        this process: `map_reads` is for the Delta store's data files)."""
        parts = [self.read_partition(table, vid, columns=columns) for vid in video_ids]
        if parts:
            return pd.concat(parts, ignore_index=True)
        empty = _unpacked(table, SCHEMAS[table].empty_table())
        return empty if columns is None else empty[columns]

    def read_video_rows(self, video_ids: list[str]) -> list[dict]:
        """The videos rows of the given videos (those that have one)."""
        return [row for vid in video_ids if (row := self.read_video_row(vid)) is not None]

    def read_video_row(self, video_id: str) -> dict | None:
        path = self.partition("videos", video_id)
        if not self.fs.exists(path):
            return None
        with self.fs.open(path, "rb") as fh:
            rows = pq.read_table(fh, schema=VIDEOS_SCHEMA).to_pylist()
        return rows[0] if rows else None

    @contextlib.contextmanager
    def run_lock(self, what: str, lease_s: float = 300.0, settle_s: float = 2.0):
        """Hold the cache's write lock for one run; a second run refuses at once with a clear message.

        Local caches use an OS lock (released even when the holder is killed). Object stores have no lock, so
        there the lock is a lease object renewed by a heartbeat; a run killed without releasing it blocks others
        for at most `lease_s` seconds.
        """
        if not self.local:
            with self._lease(what, lease_s, settle_s):
                yield
            return
        os.makedirs(self.root, exist_ok=True)
        path = os.path.join(self.root, ".lock")
        with open(path, "a+") as fh:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                fh.seek(0)
                raise self._busy(what, fh.read().strip()) from None
            fh.seek(0)
            fh.truncate()
            fh.write(_holder(what))
            fh.flush()
            try:
                yield
            finally:
                fh.seek(0)
                fh.truncate()
                fcntl.flock(fh, fcntl.LOCK_UN)

    def _busy(self, what: str, holder: str) -> CacheBusyError:
        return CacheBusyError(f"{what} refused: another run is writing to {self.url} ({holder or 'unknown'}); "
                              "wait for it to finish or use another cache")

    def _read_lease(self, path: str) -> dict | None:
        try:
            with self.fs.open(path, "rb") as fh:
                return json.loads(fh.read())
        except (FileNotFoundError, ValueError):
            return None

    @contextlib.contextmanager
    def _lease(self, what: str, lease_s: float, settle_s: float):
        """Write-then-confirm lease on an object store.

        A run checks that no live lease exists, writes its own, waits `settle_s` and reads it back: of two runs
        that start together, only the one whose lease was written last still reads its own token and goes on.
        """
        path = f"{self.root.rstrip('/')}/.lock.json"
        lease = self._read_lease(path)
        if lease and lease.get("expires", 0) > time.time():
            raise self._busy(what, lease.get("holder", ""))
        token = uuid.uuid4().hex

        def write() -> None:
            self._put(path, json.dumps({"token": token, "holder": _holder(what),
                                        "expires": time.time() + lease_s}).encode())

        write()
        time.sleep(settle_s)
        lease = self._read_lease(path)
        if not lease or lease.get("token") != token:
            raise self._busy(what, (lease or {}).get("holder", ""))
        stop = threading.Event()

        def renew() -> None:
            while not stop.wait(lease_s / 3):
                current = self._read_lease(path)
                if current and current.get("token") == token:
                    write()

        heartbeat = threading.Thread(target=renew, name="dfp-cache-lease", daemon=True)
        heartbeat.start()
        try:
            yield
        finally:
            stop.set()
            heartbeat.join(timeout=10)
            current = self._read_lease(path)
            if current and current.get("token") == token:
                self.fs.rm_file(path)

    def write_run_record(self, kind: str, record: dict) -> str:
        """Keep a JSON record of each run under CACHE/runs/ for audit and incremental-run reports."""
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        path = f"{self.root.rstrip('/')}/runs/{kind}-{stamp}-{uuid.uuid4().hex[:6]}.json"
        self._put(path, json.dumps(record, indent=2, default=str).encode())
        return path

    def write_config(self, settings: dict, config_hash: str) -> None:
        """Record the extraction settings behind a config hash, so later steps know how crops were made."""
        path = f"{self.root.rstrip('/')}/configs/{config_hash}.json"
        if not self.fs.exists(path):
            self._put(path, json.dumps(settings, indent=2, sort_keys=True).encode())

    def read_config(self, config_hash: str) -> dict:
        path = f"{self.root.rstrip('/')}/configs/{config_hash}.json"
        try:
            with self.fs.open(path, "rb") as fh:
                return json.loads(fh.read())
        except FileNotFoundError:
            raise MissingSettingsError(f"cache {self.url}: the extraction settings {config_hash} that its videos were "
                             f"extracted with are missing ({path}); copy the cache's configs/ folder with its "
                             "tables, or extract the videos again with `dfp extract --force`") from None

    def remove_stale_tmp(self, older_than_s: float = 3600) -> int:
        """Delete temporary files left by killed writers (readers already ignore them)."""
        if not self.local:
            return 0
        removed = 0
        now = time.time()
        for table in TABLES:
            directory = self.table_dir(table)
            if not os.path.isdir(directory):
                continue
            for name in os.listdir(directory):
                full = os.path.join(directory, name)
                if name.startswith(".tmp-") and now - os.path.getmtime(full) > older_than_s:
                    os.remove(full)
                    removed += 1
        return removed
