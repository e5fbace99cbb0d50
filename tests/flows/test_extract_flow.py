"""The extraction flow end to end: Prefect test harness, a real LocalCluster with two process workers."""

import json
import os
import shutil

import pandas as pd
import pytest

from features.config import ExtractConfig
from features.store.delta_cache import DeltaCacheStore, history
from flows.extract import extract_flow
from tests.conftest import count_opens

pytestmark = pytest.mark.slow


def _read(cache, table: str) -> pd.DataFrame:
    return DeltaCacheStore(str(cache)).read(table)


def _versions(cache) -> dict[str, int]:
    store = DeltaCacheStore(str(cache))
    return {table: store.delta(table).version() for table in ("videos", "faces", "ssim")}


@pytest.fixture()
def dataset_with_bad_files(demo_dir, tmp_path):
    root = shutil.copytree(demo_dir, tmp_path / "dfdc-demo")
    metadata = json.loads((root / "metadata.json").read_text())
    good = sorted(metadata)
    (root / "zero.mp4").write_bytes(b"")
    (root / "notvideo.mp4").write_text("not a video\n" * 100)
    data = (root / good[0]).read_bytes()
    (root / "trunc.mp4").write_bytes(data[: len(data) // 2])
    corrupt = bytearray(data)
    corrupt[len(data) // 3: len(data) // 3 + 20000] = os.urandom(20000)
    (root / "corrupt.mp4").write_bytes(bytes(corrupt))
    for name in ("zero.mp4", "notvideo.mp4", "trunc.mp4", "corrupt.mp4", "gone.mp4", "../outside.mp4"):
        metadata[name] = {"label": "REAL", "split": "train", "original": None}
    (root / "metadata.json").write_text(json.dumps(metadata))
    return root, good


def test_flow_writes_all_tables_and_every_bad_video_gets_a_failed_row(prefect_harness, dataset_with_bad_files,
                                                                    tmp_path):
    root, good = dataset_with_bad_files
    cache = tmp_path / "cache"
    summary = extract_flow(ExtractConfig(datasets=[str(root)], cache=str(cache), workers=2))

    videos = _read(cache, "videos").set_index("video_id")
    assert len(videos) == len(good) + 6
    bad = videos.loc[[f"dfdc-demo/{n}" for n in ("zero", "notvideo", "trunc", "gone", "../outside.mp4")]]
    assert (bad.status == "failed").all()
    assert "file is empty (0 bytes)" in videos.loc["dfdc-demo/zero", "error"]
    assert "cannot open it as a video" in videos.loc["dfdc-demo/notvideo", "error"]
    assert "failed for dfdc-demo/trunc" in videos.loc["dfdc-demo/trunc", "error"]
    assert "file not found" in videos.loc["dfdc-demo/gone", "error"]
    assert "points outside" in videos.loc["dfdc-demo/../outside.mp4", "error"]
    assert videos.loc["dfdc-demo/zero", "error_step"] == "probe"
    # A corrupted middle is either concealed by the decoder or reported; it never stops the run.
    assert videos.loc["dfdc-demo/corrupt", "status"] in ("ok", "no_face", "failed")

    ok = videos[videos.index.isin([f"dfdc-demo/{n[:-4]}" for n in good])]
    assert (ok.status != "failed").all() and (ok.status == "ok").sum() >= len(good) - 1
    assert (ok.frames_decoded == 30).all()
    assert ok.leakage_group.nunique() == len(good) // 2  # each fake shares its original's group

    ssim = _read(cache, "ssim")
    frame_series = ssim[ssim.track_id == -1].groupby("video_id").size()
    assert (frame_series.loc[ok.index] == 29).all()
    faces = _read(cache, "faces")
    assert set(faces.video_id) == set(ok.index[ok.status == "ok"])
    assert faces.groupby("video_id").crop_jpeg.count().min() == 30  # crops_per_video=32 > 30 frames: all kept
    assert not set(faces.video_id) & set(bad.index)

    assert summary["failed"] == 5 + (videos.loc["dfdc-demo/corrupt", "status"] == "failed")
    assert summary["ok"] + summary["no_face"] + summary["failed"] == len(videos)
    assert summary["skipped"] == 0
    assert videos.worker.nunique() == 2  # spread over both Dask workers
    assert len(os.listdir(cache / "runs")) == 1
    # The workers staged their files and the flow committed them as one batch: one append per data table, one
    # merge of the 14 videos rows (after each table's creation).
    assert [h["operation"] for h in history(str(cache), "videos")] == ["MERGE", "CREATE TABLE"]
    assert [h["operation"] for h in history(str(cache), "faces")] == ["WRITE", "CREATE TABLE"]


def test_rerun_is_a_noop_and_changes_redo_exactly_the_affected_videos(prefect_harness, demo_dir, tmp_path,
                                                                       monkeypatch):
    root = shutil.copytree(demo_dir, tmp_path / "dfdc-demo")
    cache = tmp_path / "cache"
    config = ExtractConfig(datasets=[str(root)], cache=str(cache), workers=2, detector="haar")
    first = extract_flow(config)
    assert first["extracted"] == 8
    versions = _versions(cache)
    stamps = {p.name: p.stat().st_mtime_ns for p in (cache / "videos").rglob("*")}

    opened = count_opens(monkeypatch, root)
    again = extract_flow(config)
    assert (again["extracted"], again["skipped"]) == (0, 8)
    assert opened == []  # stat-first: the no-op rerun read no byte of any video
    monkeypatch.undo()
    assert _versions(cache) == versions  # nothing committed
    assert {p.name: p.stat().st_mtime_ns for p in (cache / "videos").rglob("*")} == stamps  # nor written

    names = sorted(json.loads((root / "metadata.json").read_text()))
    shutil.copyfile(root / names[1], root / names[0])  # one file's content changes
    changed = extract_flow(config)
    assert (changed["extracted"], changed["skipped"], changed["reasons"]) == (1, 7, {"changed": 1})
    videos = _read(cache, "videos").set_index("video_id")
    assert videos.loc[f"dfdc-demo/{names[0][:-4]}", "fingerprint"] == videos.loc[f"dfdc-demo/{names[1][:-4]}",
                                                                                    "fingerprint"]

    new_config = extract_flow(config.model_copy(update={"keyframe_interval": 7}))
    assert new_config["extracted"] == 8
    assert _read(cache, "videos").config_hash.nunique() == 1

    forced = extract_flow(config.model_copy(update={"keyframe_interval": 7, "force": True}))
    assert forced["reasons"] == {"forced": 8}
    faces = _read(cache, "faces")
    assert faces.groupby(["video_id", "track_id", "frame_index"]).size().max() == 1  # never duplicated

    # What a scheduled run does: after the run, superseded rows are deleted and each table is one file, so a plain
    # Delta reader (duckdb, polars, Spark) sees exactly the current rows.
    from deltalake import DeltaTable

    assert len(DeltaTable(str(cache / "faces")).to_pandas()) > len(faces)  # two configs' and a forced run's rows
    compacted = extract_flow(config.model_copy(update={"keyframe_interval": 7, "compact": True}))
    assert compacted["extracted"] == 0
    raw = DeltaTable(str(cache / "faces")).to_pandas()
    assert len(raw) == len(faces) and not raw.duplicated(["video_id", "track_id", "frame_index"]).any()
    assert {t: len(DeltaTable(str(cache / t)).file_uris()) for t in ("videos", "faces", "ssim")} == {
        "videos": 1, "faces": 1, "ssim": 1}


def test_existing_dask_cluster_via_address(prefect_harness, demo_dir, tmp_path):
    from distributed import LocalCluster

    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        summary = extract_flow(ExtractConfig(datasets=[str(demo_dir)], cache=str(tmp_path / "cache"),
                                             dask_address=cluster.scheduler_address, detector="haar"))
    assert summary["extracted"] == 8
    videos = _read(tmp_path / "cache", "videos")
    assert videos.worker.nunique() == 1
    assert not videos.worker.str.endswith(f":{os.getpid()}").any()  # ran in the cluster, not in the test process
