"""bench/train_score.py's development cache: the quality cache's extraction, without the clips never trained on
and without the tables dfp train computes."""

from bench.train_score import development_cache
from features.store.delta_cache import DeltaCacheStore
from features.store.training_data import write_features
from tests.features.test_training_data import _write_video


def test_the_development_cache_drops_the_barred_clips_and_the_computed_tables(tmp_path):
    store = DeltaCacheStore(str(tmp_path / "quality"))
    wild = tmp_path / "shared" / "wild-dev"
    rows = [_write_video(store, vid, label, f"k-{vid}") for vid, label in (("a", "REAL"), ("b", "FAKE"), ("w", "FAKE"))]
    paths = {"a": tmp_path / "ffpp" / "a.mp4", "b": tmp_path / "ffpp" / "b.mp4", "w": wild / "src" / "w.mp4"}
    for row in rows:  # again, with the paths the clips were extracted from
        faces = store.read_partition("faces", row["video_id"]).drop(columns=["video_id", "cache_key"])
        store.write_video({**row, "path": str(paths[row["video_id"]])}, faces.to_dict("records"), [])
    write_features(store, store.read("videos").to_dict("records"))
    store.write_config({"detector": "haar"}, "nohash")  # what dfp train records in the model card
    assert (tmp_path / "quality" / "features").is_dir()

    assert development_cache(tmp_path / "quality", tmp_path / "dev", barred=wild) == 2
    dev = DeltaCacheStore(str(tmp_path / "dev"))
    assert sorted(dev.read("videos").video_id) == ["a", "b"]
    assert sorted(dev.read("faces").video_id.unique()) == ["a", "b"]  # w's crops are in the files, pointed at by none
    assert len(dev.read("faces")) == 6
    assert sorted(p.name for p in (tmp_path / "dev").iterdir()) == ["configs", "faces", "videos"]  # no ssim rows
    assert dev.read_config("nohash") == {"detector": "haar"}
    assert dev.read("features").empty and dev.read("descriptors").empty  # dfp train computes them
    assert sorted(DeltaCacheStore(str(tmp_path / "quality")).read("videos").video_id) == ["a", "b", "w"]  # untouched
