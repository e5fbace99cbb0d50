import os
import pickle
import threading

import numpy as np
import pandas as pd
import pytest

from features.learn.descriptors import table_names
from features.store import delta_cache
from features.store.cache import DESCRIPTOR_COLUMNS, CacheStore
from features.store.delta_cache import (
    CacheCommitError,
    DeltaCacheStore,
    OldLayoutError,
    compact,
    history,
    info,
    migrate,
    read_file,
    vacuum,
)


def _video(vid="ds/a", key="k1", status="ok", label="REAL"):
    return {"video_id": vid, "cache_key": key, "status": status, "label": label, "dataset": "ds", "n_tracks": 1}


def _faces(n=3, track=0):
    return [{"track_id": track, "frame_index": i, "is_main": True, "x1": 1.0, "y1": 2.0, "x2": 3.0, "y2": 4.0 + i,
             "detected": i == 0, "confidence": 0.99 if i == 0 else None, "landmarks": [1.0, 2.0] if i == 0 else None,
             "crop_jpeg": b"\xff\xd8" * 50 if i == 0 else None} for i in range(n)]


def _ssim(n=2):
    return [{"track_id": -1, "frame_index": i + 1, "is_main": False, "ssim": 0.9, "sharpness": 12.5} for i in range(n)]


def _descriptors(vid, key, n=2, seed=0):
    values = np.random.default_rng(seed).random((n, len(table_names()))).astype(np.float32)
    return [{"video_id": vid, "cache_key": key, "descriptors_version": "3", "frame_index": i, "blended": i % 2 == 1,
             "values": values[i]} for i in range(n)]


def _sorted(frame, keys=("video_id", "frame_index", "track_id")):
    keys = [k for k in keys if k in frame.columns]
    return frame.sort_values(keys).reset_index(drop=True)


def _data_files(root, table):
    return sorted(n for n in os.listdir(os.path.join(root, table)) if n.endswith(".parquet"))


def test_reads_give_the_frames_the_per_video_store_gives(tmp_path):
    old, new = CacheStore(str(tmp_path / "old")), DeltaCacheStore(str(tmp_path / "new"))
    for store in (old, new):
        store.write_video(_video("ds/a"), _faces(3), _ssim(2))
        store.write_video(_video("ds/b", key="k9", status="failed"), [], [])
        store.write_table("descriptors", "ds/a", _descriptors("ds/a", "k1"))
        store.write_table("features", "ds/a", [{"video_id": "ds/a", "cache_key": "k1", "features_version": "2"}])
    for table in ("videos", "faces", "ssim", "features", "descriptors"):
        a, b = _sorted(old.read(table)), _sorted(new.read(table))
        if table == "videos":
            a, b = a.drop(columns="write_s"), b.drop(columns="write_s")
        pd.testing.assert_frame_equal(a, b)
    assert list(new.read("descriptors").columns) == DESCRIPTOR_COLUMNS
    assert new.read("descriptors")[table_names()].dtypes.eq(np.float32).all()
    light = new.read_partition("faces", "ds/a", columns=["frame_index", "crop_jpeg"])
    pd.testing.assert_frame_equal(light, old.read_partition("faces", "ds/a", columns=["frame_index", "crop_jpeg"]))
    pd.testing.assert_frame_equal(new.read_partition("ssim", "ds/a"), old.read_partition("ssim", "ds/a"))
    pd.testing.assert_frame_equal(new.read_partition("descriptors", "ds/a"), old.read_partition("descriptors", "ds/a"))
    assert list(new.read_partition("faces", "ds/none", columns=["frame_index"]).columns) == ["frame_index"]
    assert new.read_video_row("ds/b")["status"] == "failed" and new.read_video_row("ds/none") is None
    assert list(new.read("faces", columns=["video_id", "frame_index"]).columns) == ["video_id", "frame_index"]
    with pytest.raises(ValueError, match="descriptors table is read whole"):
        new.read_partition("descriptors", "ds/a", columns=["frame_index"])


def test_an_empty_delta_cache_reads_as_empty_tables_with_columns(tmp_path):
    store = DeltaCacheStore(str(tmp_path / "none"))
    assert list(store.read("descriptors").columns) == DESCRIPTOR_COLUMNS and len(store.read("videos")) == 0
    assert list(store.read("faces", columns=["video_id", "crop_jpeg"]).columns) == ["video_id", "crop_jpeg"]
    assert store.read_video_row("ds/a") is None and info(store) == {}


def test_a_reextracted_video_never_yields_duplicate_rows(tmp_path):
    store = DeltaCacheStore(str(tmp_path))
    store.write_video(_video(key="k1"), _faces(3), _ssim(2))
    store.write_video(_video(key="k2"), _faces(5), _ssim(1))  # new cache key
    store.write_video(_video(key="k2"), _faces(5), _ssim(1))  # the same key again (forced)
    faces = store.read("faces")
    assert len(faces) == 5 and set(faces.cache_key) == {"k2"} and not faces.frame_index.duplicated().any()
    assert len(store.read("ssim")) == 1 and len(store.read_partition("faces", "ds/a")) == 5
    assert len(store.read("faces", committed_only=False)) == 5 and len(store.read("videos")) == 1
    assert info(store)["faces"]["rows"] == 13  # the superseded writes stay in the files, unread


def test_staged_files_are_invisible_until_committed_and_a_lost_commit_leaves_no_duplicates(tmp_path):
    store = DeltaCacheStore(str(tmp_path))
    store.write_video(_video(key="k1"), _faces(2), _ssim(2))
    lost = store.stage_video(_video(key="k2"), _faces(4), _ssim(3))  # the flow died before committing it
    assert len(store.read("faces")) == 2 and store.read_video_row("ds/a")["cache_key"] == "k1"
    half = store.stage_video(_video(key="k2"), _faces(6), _ssim(3))
    store._commit_files("faces", half.adds["faces"], {})  # faces committed, then the flow died: no videos row
    assert len(store.read("faces")) == 2 and set(store.read_partition("faces", "ds/a").cache_key) == {"k1"}
    retry = store.stage_video(_video(key="k2"), _faces(7), _ssim(3))
    assert store.commit([retry]) == 1
    faces = store.read("faces")
    assert len(faces) == 7 and set(faces.cache_key) == {"k2"} and len(store.read("ssim")) == 3
    assert info(store)["faces"]["rows"] == 2 + 6 + 7  # the lost attempt's file was never added
    staged_before = _data_files(tmp_path, "faces")
    removed = vacuum(store, retention_hours=0)
    assert f"staged-{lost.write_id}.parquet" in removed["faces"]
    assert f"staged-{lost.write_id}.parquet" not in _data_files(tmp_path, "faces")
    assert len(_data_files(tmp_path, "faces")) == len(staged_before) - 1
    assert len(store.read("faces")) == 7  # vacuum took nothing a version needs


def test_a_batch_is_one_commit_per_table_with_the_videos_rows_last_and_small_manifests(tmp_path):
    store = DeltaCacheStore(str(tmp_path))
    staged = [store.stage_video(_video(f"ds/{i}"), _faces(3), _ssim(2)) for i in range(6)]
    manifest = pickle.dumps(staged)
    assert len(manifest) < 6 * 1500 and b"\xff\xd8\xff\xd8" not in manifest  # add actions, never crops
    assert len(store.read("faces")) == 0  # staged, not committed
    assert store.commit(pickle.loads(manifest)) == 6
    assert [info(store)[t]["version"] for t in ("videos", "faces", "ssim")] == [1, 1, 1]  # create + one commit
    faces_commit, videos_commit = history(store, "faces")[0], history(store, "videos")[0]
    assert faces_commit["dfp.videos"] == 6 and videos_commit["operation"] == "MERGE"
    assert faces_commit["timestamp"] <= videos_commit["timestamp"]
    assert len(store.read("faces")) == 18 and len(store.read("videos")) == 6
    assert store.commit(staged) == 6  # committing the same manifests again adds the same files: no duplicates
    assert len(store.read("faces")) == 18 and len(store.read("videos")) == 6


def test_label_refreshes_and_derived_tables_keep_what_the_videos_row_points_at(tmp_path):
    store = DeltaCacheStore(str(tmp_path))
    store.write_video(_video(key="k1"), _faces(3), _ssim(2))
    store.write_table("features", "ds/a", [{"video_id": "ds/a", "cache_key": "k1", "features_version": "1"}])
    store.write_table("features", "ds/a", [{"video_id": "ds/a", "cache_key": "k1", "features_version": "2"}])
    assert store.read("features", columns=["features_version"]).features_version.tolist() == ["2"]
    row = store.read_video_row("ds/a")
    store.write_table("videos", "ds/a", [{**row, "label": "FAKE", "split": "test"}])  # no re-extraction
    assert store.read("videos", columns=["label", "split"]).to_dict("records") == [{"label": "FAKE", "split": "test"}]
    assert len(store.read("faces")) == 3 and len(store.read("features")) == 1
    store.write_tables("videos", {"ds/new": [_video("ds/new", key="k5")]})  # a row written without extraction
    assert sorted(store.read("videos").video_id) == ["ds/a", "ds/new"] and len(store.read_partition("faces", "ds/new")) == 0
    store.write_video(_video(key="k2"), _faces(4), [])  # re-extracted: the old key's features are stale
    assert len(store.read("features")) == 0
    assert store.read("features", committed_only=False).cache_key.tolist() == ["k1"]  # what stale_feature_videos reads
    assert store.read("ssim").empty and len(store.read("faces")) == 4
    with pytest.raises(ValueError, match="ds/ghost has no videos row.*write the videos rows first"):
        store.write_table("faces", "ds/ghost", [{**r, "video_id": "ds/ghost", "cache_key": "k"} for r in _faces(2)])
    ghost = store.stage_table("faces", "ds/ghost", [{**r, "video_id": "ds/ghost", "cache_key": "k"} for r in _faces(2)])
    store.commit([ghost])  # committed without one: no videos row points at it
    assert "ds/ghost" not in set(store.read("faces", committed_only=False).video_id)


def _writer(store, name, rounds, shared):
    for r in range(rounds):
        batch = [store.stage_video(_video(f"{name}/{r}-{i}"), _faces(2), _ssim(1)) for i in range(2)]
        batch.append(store.stage_video(_video("shared", key=f"{name}-{r}"), _faces(3 + r), []))
        shared.append(batch[-1].write_id)
        store.commit(batch)


def _check_concurrent(store, names, rounds):
    videos = store.read("videos")
    assert len(videos) == len(names) * rounds * 2 + 1 and not videos.video_id.duplicated().any()
    faces = store.read("faces")
    assert not faces.duplicated(["video_id", "frame_index"]).any()
    own = faces[faces.video_id != "shared"]
    assert len(own) == len(names) * rounds * 2 * 2 and len(store.read("ssim")) == len(names) * rounds * 2
    shared_key = videos.set_index("video_id").cache_key["shared"]
    assert len(faces[faces.video_id == "shared"]) == 3 + int(shared_key.split("-")[1])  # the winner's rows only
    # every batch is exactly one commit per table: none lost, none made twice, whoever lost a race
    for table, operation in (("videos", "MERGE"), ("faces", "WRITE"), ("ssim", "WRITE")):
        assert [c["operation"] for c in history(store, table)].count(operation) == len(names) * rounds


def _race(url: str, names: list[str], rounds: int) -> None:
    """One writer thread per name, all committing to the cache at `url` at once; raises what any of them raised."""
    shared, errors = [], []

    def run(name):
        try:
            _writer(DeltaCacheStore(url), name, rounds, shared)
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(name,)) for name in names]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors


def test_writers_committing_to_one_local_cache_never_lose_or_duplicate_rows(tmp_path):
    url = str(tmp_path / "cache")
    _race(url, ["w1", "w2", "w3"], 4)
    _check_concurrent(DeltaCacheStore(url), ["w1", "w2", "w3"], 4)  # three: they also race to create the tables


def test_two_writers_on_s3_never_lose_or_duplicate_rows(s3_bucket):
    url = f"{s3_bucket}/cache"
    _race(url, ["w1", "w2"], 3)
    store = DeltaCacheStore(url)
    _check_concurrent(store, ["w1", "w2"], 3)
    store.fs.ls(store.table_dir("videos"))  # fsspec now caches a listing of the table...
    DeltaCacheStore(url).write_video(_video("late"), _faces(1), [])  # ...that another writer's commit outdates
    assert "late" in set(store.read("videos").video_id) and len(store.read_partition("faces", "late")) == 1
    faces = _sorted(store.read("faces"))
    assert all(t["files_after"] <= 2 for t in compact(store, lock=False).values())
    assert len(vacuum(store, retention_hours=0)["faces"]) >= 6  # under the object store's lease
    pd.testing.assert_frame_equal(_sorted(DeltaCacheStore(url).read("faces")), faces)
    store.write_config({"crop_margin": 0.3}, "abc")  # CacheStore's files, where CacheStore keeps them
    assert store.read_config("abc") == {"crop_margin": 0.3}
    assert len(store.read_partition("faces", "w1/0-0")) == 2


def test_a_commit_that_keeps_losing_is_refused_naming_the_cache(tmp_path, monkeypatch):
    store = DeltaCacheStore(str(tmp_path / "busy"))
    store.write_video(_video(), _faces(1), [])

    class Losing:
        def __getattr__(self, name):
            return lambda *a, **k: self

        def execute(self):
            raise delta_cache.CommitFailedError("a concurrent transaction added new data")

    monkeypatch.setattr(delta_cache.DeltaTable, "merge", lambda self, *a, **k: Losing())
    monkeypatch.setattr(delta_cache, "COMMIT_ATTEMPTS", 2)
    with pytest.raises(CacheCommitError, match=f"videos rows to {tmp_path / 'busy'} refused: other writers.*rerun the commit"):
        store.write_video(_video(key="k2"), _faces(2), [])


def test_compact_vacuum_info_and_history(tmp_path):
    store = DeltaCacheStore(str(tmp_path))
    for i in range(12):
        store.write_video(_video(f"ds/{i:02d}"), _faces(3), _ssim(2))
    before = info(store)
    assert before["faces"]["files"] == 12 and before["faces"]["rows"] == 36 and before["videos"]["rows"] == 12
    assert before["videos"]["version"] == 12 and before["faces"]["bytes"] > 0
    # per-video reads skip files by the statistics the staged add actions carry
    assert len(store.delta("faces").file_uris(file_pruning_predicate=[("video_id", "=", "ds/03")])) == 1
    result = compact(store)
    after = info(store)
    assert all(t["files_after"] <= 2 for t in result.values()) and after["faces"]["files"] == 1
    assert after["faces"]["rows"] == 36 and len(store.read("faces")) == 36
    removed = vacuum(store, retention_hours=0)
    assert len(removed["faces"]) == 12 and len(_data_files(tmp_path, "faces")) == 1
    assert _sorted(store.read_partition("faces", "ds/03")).frame_index.tolist() == [0, 1, 2]
    operations = [c["operation"] for c in history(store, "faces")]
    assert "OPTIMIZE" in operations and operations.count("WRITE") == 12
    assert history(store, "faces")[-1]["version"] == 0 and history(store, "nothing") == []


def _old_cache(url):
    old = CacheStore(url)
    old.write_video(_video("ds/a", key="k1"), _faces(3), _ssim(2))
    old.write_video(_video("ds/a", key="k2"), _faces(4), _ssim(1))  # re-extracted: replaced the partitions
    old.write_video(_video("ds/b", key="k3", label="FAKE"), _faces(2, track=1), [])
    old.write_table("features", "ds/a", [{"video_id": "ds/a", "cache_key": "k1", "features_version": "1"}])  # stale
    old.write_table("features", "ds/b", [{"video_id": "ds/b", "cache_key": "k3", "features_version": "1"}])
    old.write_table("descriptors", "ds/b", _descriptors("ds/b", "k3", n=3))
    old.write_config({"crop_margin": 0.3}, "cfg")
    return old


def _assert_same(old, new):
    for table in ("videos", "faces", "ssim", "features", "descriptors"):
        for committed in (True, False):
            pd.testing.assert_frame_equal(_sorted(old.read(table, committed_only=committed)),
                                          _sorted(new.read(table, committed_only=committed)))
    for vid in ("ds/a", "ds/b"):
        assert new.read_video_row(vid) == old.read_video_row(vid)
        for table in ("faces", "ssim", "descriptors"):
            pd.testing.assert_frame_equal(_sorted(old.read_partition(table, vid)), _sorted(new.read_partition(table, vid)))


def test_migrate_to_a_new_url_gives_identical_frames(tmp_path):
    old = _old_cache(str(tmp_path / "old"))
    counts = migrate(old.url, str(tmp_path / "new"))
    assert counts == {"faces": 6, "ssim": 1, "features": 2, "descriptors": 3, "videos": 2}
    new = DeltaCacheStore(str(tmp_path / "new"))
    _assert_same(old, new)
    assert new.read_config("cfg") == {"crop_margin": 0.3}
    assert all(v["files"] == 1 for v in info(new).values())
    assert history(new, "faces")[0]["dfp.operation"] == "migrate"
    with pytest.raises(ValueError, match="already holds a Delta"):
        migrate(old.url, str(tmp_path / "new"))


def test_migrate_in_place_replaces_the_per_video_files_and_an_interrupted_swap_is_finished(tmp_path, monkeypatch):
    url = str(tmp_path / "cache")
    _old_cache(url)
    expected = {table: _sorted(CacheStore(url).read(table)) for table in ("videos", "faces", "descriptors")}
    with pytest.raises(OldLayoutError, match=rf"{url} holds a cache in the per-video layout.*dfp cache migrate {url}"):
        DeltaCacheStore(url)
    real_mv, moves = CacheStore(url).fs.mv, []

    def killed_after_three_moves(self, *args, **kwargs):
        if len(moves) == 3:
            raise KeyboardInterrupt("killed mid-swap")
        moves.append(args)
        return real_mv(*args, **kwargs)

    monkeypatch.setattr(type(CacheStore(url).fs), "mv", killed_after_three_moves)
    with pytest.raises(KeyboardInterrupt):
        migrate(url)
    monkeypatch.undo()
    assert migrate(url) == {"videos": 2, "faces": 6, "ssim": 1, "features": 2, "descriptors": 3}
    store = DeltaCacheStore(url)
    for table, frame in expected.items():
        pd.testing.assert_frame_equal(frame, _sorted(store.read(table)))
    assert all(name.startswith("part-") for name in _data_files(url, "faces"))
    assert sorted(n for n in os.listdir(url) if not n.startswith(".lock")) == [
        "configs", "descriptors", "faces", "features", "ssim", "videos"]
    assert store.read_config("cfg") == {"crop_margin": 0.3}


def test_prune_drops_the_rows_no_videos_row_points_at_and_stale_files_are_swept(tmp_path):
    store = DeltaCacheStore(str(tmp_path))
    for i in range(4):
        store.write_video(_video(f"ds/{i}", key="k1"), _faces(3), _ssim(1))
    store.write_video(_video("ds/0", key="k2"), _faces(5), _ssim(1))  # supersedes 3 faces rows, 1 ssim row
    half = store.stage_video(_video("ds/1", key="k2"), _faces(2), [])
    store._commit_files("faces", half.adds["faces"], {})  # committed by a flow that died before its videos rows
    assert info(store)["faces"]["rows"] == 12 + 5 + 2
    assert delta_cache.prune(store) == {"faces": 5, "ssim": 1}
    assert info(store)["faces"]["rows"] == 14 and len(store.read("faces")) == 14
    assert _sorted(store.read_partition("faces", "ds/0")).frame_index.tolist() == [0, 1, 2, 3, 4]
    feature = {"cache_key": "k1", "features_version": "1"}
    store.write_tables("features", {f"ds/{i}": [{**feature, "video_id": f"ds/{i}"}] for i in range(4)})  # one file
    store.write_table("features", "ds/2", [{**feature, "video_id": "ds/2", "features_version": "2"}])
    assert info(store)["features"] == {**info(store)["features"], "rows": 5, "files": 2}
    assert delta_cache.prune(store) == {"faces": 0, "ssim": 0, "features": 1}
    assert info(store)["features"]["rows"] == 4 and info(store)["features"]["files"] == 2  # the mixed file rewritten
    features = store.read("features", columns=["video_id", "features_version"], committed_only=False)
    assert features.sort_values("video_id").features_version.tolist() == ["1", "1", "2", "1"]
    assert sorted(store.read("features").video_id) == ["ds/1", "ds/2", "ds/3"]  # ds/0's key moved on to k2
    assert store.read_partition("features", "ds/3").features_version.tolist() == ["1"]
    stray = tmp_path / "faces" / ".tmp-0123-killed.parquet"
    stray.write_bytes(b"half a file")
    orphan = store.stage_video(_video("ds/9"), _faces(1), [])  # staged, never committed
    assert store.remove_stale_tmp(older_than_s=0) == 1 and not stray.exists()  # the orphan is under a day old
    assert f"staged-{orphan.write_id}.parquet" in _data_files(tmp_path, "faces")
    assert len(store.read("faces")) == 14


def _process_writer(url, name):
    _writer(DeltaCacheStore(url), name, 3, [])


def test_two_writer_processes_committing_to_one_local_cache_never_lose_or_duplicate_rows(tmp_path):
    import multiprocessing

    url = str(tmp_path / "cache")
    context = multiprocessing.get_context("spawn")  # delta-rs runs threads of its own: no fork
    workers = [context.Process(target=_process_writer, args=(url, name)) for name in ("p1", "p2")]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=120)
    assert [w.exitcode for w in workers] == [0, 0]
    _check_concurrent(DeltaCacheStore(url), ["p1", "p2"], 3)


def test_one_videos_rows_of_a_compacted_file_are_read_from_its_row_groups_only(tmp_path, monkeypatch):
    monkeypatch.setattr(delta_cache, "_ROW_GROUP_ROWS", 3)  # one video's three faces rows per row group
    store = DeltaCacheStore(str(tmp_path))
    for i in range(12):
        store.write_video(_video(f"ds/{i:02d}"), _faces(3), [])
    compact(store, lock=False)
    assert info(store)["faces"]["files"] == 1
    read = []
    real = delta_cache.pq.ParquetFile.read_row_groups
    monkeypatch.setattr(delta_cache.pq.ParquetFile, "read_row_groups",
                        lambda self, groups, **kw: read.append((self.metadata.num_row_groups, list(groups))) or
                        real(self, groups, **kw))
    part = store.read_partition("faces", "ds/05", columns=["video_id", "frame_index"])
    assert part.video_id.tolist() == ["ds/05"] * 3 and sorted(part.frame_index) == [0, 1, 2]
    assert len(read) == 1 and read[0][0] >= 12 and len(read[0][1]) == 1  # one row group of the file's twelve


def test_reads_mapped_over_the_data_files_give_the_single_scan_frames_and_skip_files_without_wanted_writes(tmp_path):
    store = DeltaCacheStore(str(tmp_path))
    vids = [f"ds/{i}" for i in range(6)]
    for vid in vids:  # one commit, so one faces file, per video
        store.write_video(_video(vid), _faces(3), _ssim(1))
    store.write_tables("descriptors", {vid: _descriptors(vid, "k1", n=4, seed=i) for i, vid in enumerate(vids)})
    store.write_video(_video("ds/1", key="k2"), _faces(5), [])  # re-extracted: its k1 rows are superseded
    store.write_table("descriptors", "ds/1", _descriptors("ds/1", "k2", n=3, seed=9))
    store.write_table("descriptors", "ds/5", _descriptors("ds/5", "k1", n=2, seed=5))  # a file no read wants
    wanted = ["ds/1", "ds/2", "ds/4", "ds/none"]
    made = []

    def in_process(reads):  # what a Dask map does: each FileRead pickled to a worker, read there
        made.append(reads)
        return [read_file(pickle.loads(pickle.dumps(r))) for r in reads]

    faces_columns = ["video_id", "cache_key", "frame_index", "is_main", "crop_jpeg"]
    for table, columns, files_read in (("faces", faces_columns, 3), ("faces", None, 3), ("descriptors", None, 2)):
        plain = store.read_videos(table, wanted, columns=columns)
        mapped = store.read_videos(table, wanted, columns=columns, map_reads=in_process)
        pd.testing.assert_frame_equal(_sorted(mapped), _sorted(plain))
        reads = made.pop()
        # faces: the current files of ds/1, ds/2 and ds/4 of seven; descriptors: ds/1's rewrite and the batch
        # file holding ds/2's and ds/4's, not ds/5's rewrite
        assert len(reads) == files_read < len(_data_files(tmp_path, table))
        assert set(mapped.video_id) == {"ds/1", "ds/2", "ds/4"} and set(mapped.cache_key[mapped.video_id == "ds/1"]) == {"k2"}
    faces = _sorted(store.read_videos("faces", wanted, columns=faces_columns, map_reads=in_process))
    assert faces.groupby("video_id").size().to_dict() == {"ds/1": 5, "ds/2": 3, "ds/4": 3}
    assert faces.crop_jpeg.tolist() == [b"\xff\xd8" * 50, None, None, None, None] + [b"\xff\xd8" * 50, None, None] * 2
    descriptors = _sorted(store.read_videos("descriptors", wanted, map_reads=in_process))
    expected = pd.DataFrame([*_descriptors("ds/1", "k2", n=3, seed=9), *_descriptors("ds/2", "k1", n=4, seed=2),
                             *_descriptors("ds/4", "k1", n=4, seed=4)])
    assert descriptors.frame_index.tolist() == expected.frame_index.tolist()
    assert descriptors.blended.tolist() == expected.blended.tolist()
    np.testing.assert_array_equal(descriptors[table_names()].to_numpy(), np.stack(expected["values"]))
    # the batch file is read, and its rows of ds/1's superseded write are left out there
    batch = next(r for r in made[-1] if store._pointer("descriptors", "ds/2") in r.write_ids)
    assert set(read_file(batch).column("video_id").to_pylist()) == {"ds/2", "ds/4"}
    assert store.read_videos("faces", ["ds/none"], map_reads=in_process).empty and len(made) == 2
    compact(store, lock=False, superseded=True)  # one file per table, written by delta-rs, superseded rows kept
    for table in ("faces", "descriptors"):
        mapped = store.read_videos(table, wanted, map_reads=in_process)
        pd.testing.assert_frame_equal(_sorted(mapped), _sorted(store.read_videos(table, wanted)))
        assert len(made.pop()) == 1 and set(mapped.cache_key[mapped.video_id == "ds/1"]) == {"k2"}
