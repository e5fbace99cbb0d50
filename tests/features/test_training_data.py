"""The training-data reader: the crop-descriptor cache (what is computed, when it goes stale, what is read back),
the training set a model kind reads, read once, and its fold views."""

import cv2
import numpy as np
import pandas as pd

from features.learn.descriptors import descriptor_table, table_names
from features.store.delta_cache import DeltaCacheStore, read_file
from features.store.training_data import (
    crop_descriptors,
    other_extraction_code,
    stale_descriptor_videos,
    training_set,
    write_descriptors,
)
from features.video.crops import encode_jpeg, encode_lossless
from tests.conftest import face_scene


def _write_video(store: DeltaCacheStore, vid: str, label: str, key: str, frames=(0, 10, 20)) -> dict:
    row = {"video_id": vid, "cache_key": key, "config_hash": "nohash", "label": label, "status": "ok",
           "leakage_group": vid, "crops_stored": len(frames)}
    def crop(i, side):
        return cv2.resize(face_scene(320, 320, shift=3 * i)[40:280, 20:260], (side, side))

    # The descriptors read the lossless crop; the JPEG one is made different (flipped) so a test can tell which.
    faces = [{"track_id": 0, "frame_index": i, "is_main": True, "x1": 0.0, "y1": 0.0, "x2": 1.0, "y2": 1.0,
              "detected": True, "crop_jpeg": encode_jpeg(crop(i, 96)[:, ::-1], 95),
              "crop_lossless": encode_lossless(crop(i, 80 + i))} for i in frames]
    store.write_video(row, faces, [])
    return row


def _cache(tmp_path):
    store = DeltaCacheStore(str(tmp_path / "cache"))
    videos = [_write_video(store, "real", "REAL", "k1"), _write_video(store, "fake", "FAKE", "k2"),
              _write_video(store, "faceless", "FAKE", "k3", frames=())]
    return store, pd.DataFrame(videos)


def test_descriptors_are_computed_once_with_self_blends_for_real_videos_only(tmp_path):
    store, videos = _cache(tmp_path)
    assert sorted(v["video_id"] for v in stale_descriptor_videos(store)) == ["fake", "real"]  # no crops, no work
    assert write_descriptors(store, stale_descriptor_videos(store)) == 2
    assert stale_descriptor_videos(store) == []
    stored = store.read("descriptors")
    assert stored.groupby(["video_id", "blended"]).size().to_dict() == {("fake", False): 3, ("real", False): 3,
                                                                       ("real", True): 3}
    assert list(stored.columns[5:]) == table_names()

    crops = pd.DataFrame({"video_id": "real", "frame_index": [0, 10, 20],
                          "crop_lossless": list(store.read_partition("faces", "real").crop_lossless)})
    for blended in (False, True):
        read = crop_descriptors(videos[videos.video_id == "real"], store.url, blended=blended)
        direct = descriptor_table(crops, {"real": 0.3}, self_blended=blended)
        assert read[["video_id", "frame_index"]].values.tolist() == direct[["video_id", "frame_index"]].values.tolist()
        assert np.allclose(read[table_names()].to_numpy(np.float64), direct[table_names()].to_numpy(np.float64),
                           rtol=1e-5, atol=1e-6, equal_nan=True)  # float32 in the cache


def test_descriptors_go_stale_on_reextraction_new_code_and_a_video_relabelled_real(tmp_path, monkeypatch):
    store, _ = _cache(tmp_path)
    write_descriptors(store, stale_descriptor_videos(store))
    _write_video(store, "fake", "FAKE", "k2-new")  # extracted again: its rows carry the old key
    assert [v["video_id"] for v in stale_descriptor_videos(store)] == ["fake"]
    _write_video(store, "fake", "REAL", "k2-new")  # now REAL, and no self-blended copies yet
    write_descriptors(store, stale_descriptor_videos(store))
    assert store.read_partition("descriptors", "fake").blended.sum() == 3 and stale_descriptor_videos(store) == []
    monkeypatch.setattr("features.learn.descriptors.DESCRIPTORS_VERSION", "next")
    assert sorted(v["video_id"] for v in stale_descriptor_videos(store)) == ["fake", "real"]


def test_a_video_without_cached_descriptors_is_computed_on_read_and_not_written(tmp_path):
    store, videos = _cache(tmp_path)
    read = crop_descriptors(videos, store.url, blended=True)
    assert read.groupby("video_id").size().to_dict() == {"fake": 3, "real": 3}  # asked for blends of both
    assert read.frame_index.dtype == np.int64 and not store.fs.exists(store.table_dir("descriptors"))
    empty = crop_descriptors(videos[videos.video_id == "faceless"], store.url)
    assert empty.empty and list(empty.columns) == ["video_id", "frame_index", *table_names()]


def test_videos_extracted_by_other_code_are_found(tmp_path):
    store = DeltaCacheStore(str(tmp_path / "cache"))
    for vid, status, version in (("new", "ok", "5"), ("old", "ok", "4"), ("unknown", "ok", None),
                                 ("broken", "failed", "4")):
        store.write_video({"video_id": vid, "cache_key": vid, "status": status, "path": f"/data/{vid}.mp4",
                           "code_version": version}, [], [])
    other = other_extraction_code(store, "5")
    assert sorted(other.video_id) == ["old", "unknown"]  # a failed decode holds no values to misread
    assert sorted(other_extraction_code(store, "4").video_id) == ["new", "unknown"]


def test_the_training_set_read_file_by_file_through_map_reads_is_the_one_read_in_one_scan(tmp_path):
    store, videos = _cache(tmp_path)
    write_descriptors(store, stale_descriptor_videos(store))
    files = []

    def in_process(reads):  # a cluster's workers would run these
        files.extend(reads)
        return [read_file(r) for r in reads]

    here = training_set(store, videos, {"descriptors", "crops"})
    mapped = training_set(store, videos, {"descriptors", "crops"}, map_reads=in_process)
    for name in ("descriptors", "blended", "crops"):
        pd.testing.assert_frame_equal(getattr(mapped, name), getattr(here, name))
    assert len(mapped.crops) == 6 and len(mapped.descriptors) == 6 and len(mapped.blended) == 3
    assert sorted(r.table for r in files) == ["descriptors", "faces", "faces"]  # the faceless video has no file


def test_the_training_set_reads_the_descriptor_table_once_and_hands_out_fold_views(tmp_path, monkeypatch):
    store, videos = _cache(tmp_path)
    write_descriptors(store, stale_descriptor_videos(store))
    reads = []
    read_videos, read_partition = DeltaCacheStore.read_videos, DeltaCacheStore.read_partition
    monkeypatch.setattr(DeltaCacheStore, "read_videos",
                        lambda self, table, ids, **kw: reads.append((table, *ids)) or read_videos(self, table, ids, **kw))
    monkeypatch.setattr(DeltaCacheStore, "read_partition",
                        lambda self, table, vid, **kw: reads.append(("partition", table)) or read_partition(self, table, vid, **kw))
    data = training_set(store, videos, {"descriptors", "features"})
    # One scan of the descriptors table for all three videos; the faceless video has no cached descriptors, so
    # its (no) crops are looked at; no per-video partition read.
    assert reads == [("descriptors", "real", "fake", "faceless"), ("faces", "faceless")]
    assert data.descriptors.groupby("video_id").size().to_dict() == {"fake": 3, "real": 3}
    assert data.blended.groupby("video_id").size().to_dict() == {"real": 3}  # self-blends of the REAL video only
    assert data.crops is None
    assert data.descriptors.equals(crop_descriptors(videos, store.url))
    assert data.blended.equals(crop_descriptors(videos[videos.label == "REAL"], store.url, blended=True))

    fake_only = data.subset((videos.video_id == "fake").to_numpy())
    assert fake_only.video_ids == ["fake"] and set(fake_only.descriptors.video_id) == {"fake"}
    assert fake_only.blended.empty and fake_only.labels() == {"fake": 1} and fake_only.groups() == {"fake": "fake"}


def test_the_training_set_of_a_crop_model_reads_the_jpeg_crops(tmp_path):
    store, videos = _cache(tmp_path)
    data = training_set(store, videos, {"crops"})
    assert data.descriptors is None and data.blended is None
    assert data.crops.groupby("video_id").size().to_dict() == {"fake": 3, "real": 3}
    assert list(data.crops.columns) == ["video_id", "frame_index", "crop_jpeg"]
