import os
import time

import pandas as pd
import pyarrow.parquet as pq
import pytest

from features.learn.descriptors import table_names
from features.store.cache import (
    DESCRIPTOR_COLUMNS,
    DESCRIPTORS_SCHEMA,
    FACES_SCHEMA,
    SSIM_SCHEMA,
    VIDEOS_SCHEMA,
    CacheStore,
    cache_key,
    file_stat,
    fingerprint_file,
    partition_name,
    reusable_fingerprint,
)


def _video(vid="ds/a", key="k1", status="ok"):
    return {"video_id": vid, "cache_key": key, "status": status, "label": "REAL", "dataset": "ds"}


def _faces(n=3):
    return [{"track_id": 0, "frame_index": i, "is_main": True, "x1": 1.0, "y1": 2.0, "x2": 3.0, "y2": 4.0,
             "detected": i == 0, "confidence": 0.99 if i == 0 else None, "landmarks": None,
             "crop_jpeg": b"\xff\xd8" if i == 0 else None} for i in range(n)]


def _ssim(n=2):
    return [{"track_id": -1, "frame_index": i + 1, "is_main": False, "ssim": 0.9, "sharpness": 12.5} for i in range(n)]


def test_round_trip_with_documented_schemas(tmp_path):
    store = CacheStore(str(tmp_path / "cache"))
    store.write_video(_video(), _faces(3), _ssim(2))
    for table, schema in (("videos", VIDEOS_SCHEMA), ("faces", FACES_SCHEMA), ("ssim", SSIM_SCHEMA)):
        files = os.listdir(tmp_path / "cache" / table)
        assert files == [partition_name("ds/a")]
        assert pq.read_schema(tmp_path / "cache" / table / files[0]).remove_metadata() == schema
    faces = pd.read_parquet(tmp_path / "cache" / "faces")  # plain pandas reads a table folder
    assert len(faces) == 3 and set(faces.cache_key) == {"k1"}
    assert store.read("videos").loc[0, "write_s"] >= 0


def test_a_partition_can_be_read_without_its_crop_images(tmp_path):
    store = CacheStore(str(tmp_path))
    store.write_video(_video(), [{**f, "crop_lossless": b"RIFF" if f["crop_jpeg"] else None} for f in _faces(3)], [])
    whole = store.read_partition("faces", "ds/a")
    assert whole.crop_lossless.tolist() == [b"RIFF", None, None]
    light = store.read_partition("faces", "ds/a", columns=["frame_index", "is_main", "crop_jpeg"])
    assert list(light.columns) == ["frame_index", "is_main", "crop_jpeg"] and light.frame_index.tolist() == [0, 1, 2]
    assert list(store.read_partition("faces", "ds/none", columns=["frame_index"]).columns) == ["frame_index"]
    with pytest.raises(ValueError, match="descriptors table is read whole"):
        store.read_partition("descriptors", "ds/a", columns=["frame_index"])


def test_descriptor_values_are_stored_packed_and_read_back_as_named_float32_columns(tmp_path):
    import numpy as np

    store = CacheStore(str(tmp_path))
    names = DESCRIPTOR_COLUMNS[5:]
    assert names == table_names() and DESCRIPTORS_SCHEMA.names[5:] == ["values"]
    values = np.random.default_rng(0).random((4, len(names))).astype(np.float32)
    values[1, 7] = np.nan
    rows = [{"video_id": "ds/a", "cache_key": "k1", "descriptors_version": "3", "frame_index": i, "blended": i % 2 == 1,
             **dict(zip(names, values[i].tolist(), strict=True))} for i in range(4)]
    store.write_table("descriptors", "ds/a", rows)
    meta = pq.ParquetFile(store.partition("descriptors", "ds/a")).metadata
    assert meta.num_columns == 6 and meta.row_group(0).column(5).statistics is None  # one leaf column of values
    back = store.read_partition("descriptors", "ds/a")
    assert list(back.columns) == DESCRIPTOR_COLUMNS
    assert back.blended.tolist() == [False, True, False, True] and back.frame_index.tolist() == [0, 1, 2, 3]
    assert back[names].dtypes.eq(np.float32).all()
    assert np.array_equal(back[names].to_numpy(), values, equal_nan=True) and np.isnan(back.loc[1, names[7]])
    everything = store.read("descriptors", committed_only=False)
    assert list(everything.columns) == DESCRIPTOR_COLUMNS and everything[names].shape == (4, len(names))
    some = store.read("descriptors", columns=["video_id", names[3], names[0]], committed_only=False)
    assert list(some.columns) == ["video_id", names[3], names[0]]
    assert np.array_equal(some[names[3]].to_numpy(), values[:, 3])
    assert list(store.read("descriptors", columns=["video_id", "blended"], committed_only=False).columns) == [
        "video_id", "blended"]
    empty = CacheStore(str(tmp_path / "none")).read("descriptors")
    assert empty.empty and list(empty.columns) == DESCRIPTOR_COLUMNS


def test_a_descriptor_partition_in_the_old_wide_layout_reads_as_missing_values(tmp_path):
    import numpy as np
    import pyarrow as pa

    store = CacheStore(str(tmp_path))
    names = table_names()
    old = pa.table({"video_id": ["a"], "cache_key": ["k1"], "descriptors_version": ["2"], "frame_index": [0],
                    "blended": [False], **{name: pa.array([0.5], pa.float32()) for name in names}})
    store.fs.makedirs(os.path.dirname(store.partition("descriptors", "a")), exist_ok=True)
    pq.write_table(old, store.partition("descriptors", "a"))
    back = store.read_partition("descriptors", "a")
    assert back.descriptors_version.tolist() == ["2"] and np.isnan(back[names].to_numpy()).all()


def test_rewrite_replaces_never_appends(tmp_path):
    store = CacheStore(str(tmp_path))
    store.write_video(_video(key="k1"), _faces(3), _ssim(2))
    store.write_video(_video(key="k2"), _faces(5), _ssim(4))
    assert len(store.read("faces")) == 5
    assert set(store.read("ssim").cache_key) == {"k2"}


def test_uncommitted_rows_are_hidden_until_the_videos_row_is_written(tmp_path):
    store = CacheStore(str(tmp_path))
    store.write_video(_video(key="k1"), _faces(3), _ssim(2))
    # A writer killed after faces but before its videos row: the new faces carry a key nobody committed.
    store.write_table("faces", "ds/a", [{**r, "video_id": "ds/a", "cache_key": "k2"} for r in _faces(7)])
    assert len(store.read("faces")) == 0
    assert len(store.read("faces", committed_only=False)) == 7


def test_temporary_files_are_invisible_to_readers_and_cleaned(tmp_path):
    store = CacheStore(str(tmp_path))
    store.write_video(_video(), _faces(2), _ssim(1))
    stray = tmp_path / "faces" / ".tmp-deadbeef-x.parquet"
    stray.write_bytes(b"half a parquet file")
    assert len(pd.read_parquet(tmp_path / "faces")) == 2
    assert len(store.read("faces")) == 2
    os.utime(stray, (0, 0))
    assert store.remove_stale_tmp() == 1 and not stray.exists()


def test_empty_cache_reads_as_empty_tables_with_columns(tmp_path):
    frame = CacheStore(str(tmp_path / "none")).read("videos", columns=["video_id", "status"])
    assert list(frame.columns) == ["video_id", "status"] and len(frame) == 0


def test_fsspec_memory_filesystem():
    store = CacheStore("memory://dfp-test-cache")
    store.write_video(_video("ds/m"), _faces(2), _ssim(1))
    assert store.read("videos").video_id.tolist() == ["ds/m"]
    assert store.read_video_row("ds/m")["status"] == "ok"
    assert store.read_video_row("ds/none") is None


def test_fingerprint_follows_content_not_name(tmp_path):
    a, b = tmp_path / "a.mp4", tmp_path / "b.mp4"
    a.write_bytes(b"1" * 1000)
    b.write_bytes(b"1" * 1000)
    assert fingerprint_file(str(a)) == fingerprint_file(str(b))
    b.write_bytes(b"1" * 999 + b"2")
    assert fingerprint_file(str(a)) != fingerprint_file(str(b))
    assert fingerprint_file(str(tmp_path / "missing.mp4")) is None


def test_a_large_file_edited_in_place_anywhere_at_the_same_size_gets_a_new_fingerprint(tmp_path):
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(40 << 20))  # 37 MB was counted as cached when only three blocks were hashed
    before = fingerprint_file(str(big))
    with open(big, "r+b") as fh:  # one byte between the old sampled blocks (head, middle, tail)
        fh.seek(10 << 20)
        fh.write(b"!")
    assert big.stat().st_size == 40 << 20 and fingerprint_file(str(big)) != before


def test_a_small_file_keeps_the_fingerprint_earlier_versions_gave_it(tmp_path):
    """Streaming in blocks hashes the same bytes as one read did: caches of files up to 32 MB stay valid."""
    import hashlib

    clip = tmp_path / "a.mp4"
    clip.write_bytes(os.urandom((9 << 20) + 7))  # more than two blocks
    old = hashlib.blake2b(digest_size=16)
    old.update(str(clip.stat().st_size).encode())
    old.update(clip.read_bytes())
    assert fingerprint_file(str(clip)) == old.hexdigest()


def test_file_stat_changes_with_an_edit_or_a_replacement_and_not_otherwise(tmp_path):
    clip = tmp_path / "a.mp4"
    clip.write_bytes(b"1" * 100)
    first = file_stat(str(clip))
    assert first.startswith("local:100:") and file_stat(str(clip)) == first
    os.utime(clip, ns=(1, clip.stat().st_mtime_ns + 10**9))  # touched (or edited at the same size)
    touched = file_stat(str(clip))
    assert touched != first
    other = tmp_path / "b.mp4"
    other.write_bytes(b"2" * 100)
    os.utime(other, ns=(1, clip.stat().st_mtime_ns))
    os.replace(other, clip)  # another file moved in place, with the same size and mtime: a new inode
    assert file_stat(str(clip)) != touched
    assert file_stat(str(tmp_path / "missing.mp4")) is None


def test_a_fingerprint_is_reused_only_when_the_recorded_stat_matches():
    row = {"fingerprint": "f1", "file_stat": "local:1:2:3"}
    assert reusable_fingerprint("local:1:2:3", row) == "f1"
    assert reusable_fingerprint("local:1:2:4", row) is None
    assert reusable_fingerprint("local:1:2:3", {"fingerprint": "f1", "file_stat": None}) is None  # cached before stats
    assert reusable_fingerprint("local:1:2:3", None) is None
    assert reusable_fingerprint("s3:1:unversioned", {"fingerprint": "f1", "file_stat": "s3:1:unversioned"}) is None


def test_file_stat_on_an_object_store_is_size_and_etag(s3_bucket):
    import fsspec

    url = f"{s3_bucket}/clips/a.mp4"
    fs = fsspec.filesystem("s3", skip_instance_cache=True)
    fs.pipe(url, b"1" * 100)
    first = file_stat(url)
    assert first.startswith("s3:100:") and "unversioned" not in first and file_stat(url) == first
    fs.pipe(url, b"2" * 100)  # same size, new content: a new ETag
    assert file_stat(url) != first
    assert file_stat(f"{s3_bucket}/clips/missing.mp4") is None


def test_cache_key_depends_on_each_part():
    keys = {cache_key("f", "c", "1"), cache_key("g", "c", "1"), cache_key("f", "d", "1"), cache_key("f", "c", "2")}
    assert len(keys) == 4


@pytest.mark.parametrize("vid", ["ds/a", "ds/../x", "ds/sub dir/ü.mp4", "a/b/c"])
def test_partition_names_are_safe_and_distinct(vid):
    name = partition_name(vid)
    assert "/" not in name and not name.startswith(".") and name.endswith(".parquet")
    assert partition_name("ds/a") != partition_name("ds__a")


def test_object_storage_round_trip(s3_bucket):
    store = CacheStore(f"{s3_bucket}/cache")
    store.write_video(_video("ds/s3"), _faces(3), _ssim(2))
    store.write_config({"crop_margin": 0.3}, "abc")
    assert store.read("videos").video_id.tolist() == ["ds/s3"]
    assert len(store.read("faces")) == 3 and len(store.read_partition("ssim", "ds/s3")) == 2
    assert store.read_config("abc") == {"crop_margin": 0.3}
    assert store.write_run_record("extract", {"ok": 1}).startswith(f"{s3_bucket.removeprefix('s3://')}/cache/runs/")
    # plain pandas reads the same table through s3fs
    assert len(pd.read_parquet(f"{s3_bucket}/cache/faces")) == 3


def test_a_second_run_on_the_same_cache_refuses_clearly(tmp_path):
    from features.store.cache import CacheBusyError

    store = CacheStore(str(tmp_path / "cache"))
    with store.run_lock("extract"):
        with pytest.raises(CacheBusyError, match=r"train refused: another run is writing to .*\(extract, pid \d+"):
            with CacheStore(str(tmp_path / "cache")).run_lock("train"):
                pass
    with store.run_lock("extract again"):  # released after the first run
        pass


def test_object_store_runs_hold_a_lease_a_second_run_refuses(s3_bucket):
    import json

    from features.store.cache import CacheBusyError

    url = f"{s3_bucket}/cache"
    store = CacheStore(url)
    with store.run_lock("extract", settle_s=0.05):
        lease = json.loads(store.fs.cat_file(f"{store.root}/.lock.json"))
        assert lease["holder"].startswith("extract, pid ") and lease["expires"] > time.time() + 200
        with pytest.raises(CacheBusyError, match=r"train refused: another run is writing to s3://.*\(extract, pid \d+"):
            with CacheStore(url).run_lock("train", settle_s=0.05):
                pass
    assert not store.fs.exists(f"{store.root}/.lock.json")  # released
    with CacheStore(url).run_lock("train", settle_s=0.05):
        pass


def test_an_expired_object_store_lease_is_taken_over_and_a_live_one_is_renewed():
    import json

    store = CacheStore("memory://dfp-lease-test")
    path = f"{store.root}/.lock.json"
    store.fs.pipe_file(path, json.dumps({"token": "dead", "holder": "killed run", "expires": time.time() - 1}).encode())
    with store.run_lock("extract", lease_s=0.3, settle_s=0.01):
        first = json.loads(store.fs.cat_file(path))
        assert first["token"] != "dead"
        time.sleep(0.35)  # the heartbeat renews every lease_s / 3
        renewed = json.loads(store.fs.cat_file(path))
        assert renewed["token"] == first["token"] and renewed["expires"] > first["expires"]


def test_of_two_runs_starting_together_on_an_object_store_exactly_one_proceeds():
    import threading

    from features.store.cache import CacheBusyError

    url = "memory://dfp-lease-race"
    outcomes: list[str] = []
    inside = threading.Barrier(2)

    def run(name: str) -> None:
        inside.wait()
        try:
            with CacheStore(url).run_lock(name, settle_s=0.3):
                outcomes.append("ran")
                time.sleep(0.3)
        except CacheBusyError:
            outcomes.append("refused")

    threads = [threading.Thread(target=run, args=(n,)) for n in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["ran", "refused"]


def test_file_stat_of_a_plain_local_path_skips_fsspec_and_matches_it(tmp_path, monkeypatch):
    from features.store.cache import _is_plain_local

    assert _is_plain_local("/data/clips/a.mp4")
    assert not any(_is_plain_local(p) for p in ("s3://bucket/a.mp4", "clips/a.mp4", "file:///data/a.mp4",
                                                "/data/a.mp4::zip://x", "~/a.mp4"))
    clip = tmp_path / "a.mp4"
    clip.write_bytes(b"1" * 10)
    monkeypatch.chdir(tmp_path)
    assert file_stat(str(clip)) == file_stat("a.mp4") == file_stat(f"file://{clip}")  # the fsspec route agrees
