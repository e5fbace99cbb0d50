import pandas as pd

from features.config import ExtractConfig
from features.store.cache import CacheStore
from features.store.datasets import discover
from features.store.plan import VideoJob
from tasks.extract import extract_video_task, file_state, record_lost_task, run_extraction
from tests.conftest import face_scene, write_clip


def _job(entry, config):
    state = file_state(entry, config)
    return VideoJob(entry, state.fingerprint, state.cache_key, "new", state.read_error)


def test_task_writes_three_partitions_and_returns_a_small_manifest(tmp_path):
    clip = write_clip(tmp_path / "clips" / "face.mp4", [face_scene(shift=i) for i in range(12)])
    config = ExtractConfig(cache=str(tmp_path / "cache"), detector="haar", keyframe_interval=4)
    (entry,) = discover([str(clip.parent)])
    manifest = extract_video_task.fn(_job(entry, config), config)
    assert manifest["status"] == "ok" and manifest["video_id"] == "clips/face" and manifest["n_tracks"] == 1
    assert set(manifest) == {"video_id", "status", "error", "n_tracks", "seconds", "worker"}
    store = CacheStore(config.cache)
    row = store.read_video_row("clips/face")
    assert row["config_hash"] == config.config_hash and row["fingerprint"] == file_state(entry, config).fingerprint
    assert row["total_s"] > 0 and row["write_s"] >= 0
    assert len(store.read("ssim")) == 11 + 11 and len(store.read("faces")) == 12


def test_unreadable_listing_entries_fail_at_the_right_step(tmp_path):
    root = tmp_path / "d"
    (root / "dir.mp4").mkdir(parents=True)  # a folder where a listed video should be: cannot be read
    (root / "metadata.json").write_text('{"dir.mp4": {"label": "REAL", "split": "train", "original": null}}')
    config = ExtractConfig(cache=str(tmp_path / "cache"))
    (entry,) = discover([str(root)])
    job = _job(entry, config)
    assert job.read_error and "IsADirectoryError" in job.read_error
    result = run_extraction(job, config)
    assert result.status == "failed" and result.video["error_step"] == "probe"
    assert result.video["error"].startswith("probe failed for d/dir: cannot read the file: IsADirectoryError")


def test_a_task_that_died_still_leaves_a_failed_row(tmp_path):
    clip = write_clip(tmp_path / "clips" / "face.mp4", [face_scene() for _ in range(3)])
    config = ExtractConfig(cache=str(tmp_path / "cache"))
    (entry,) = discover([str(clip.parent)])
    manifest = record_lost_task(_job(entry, config), config, RuntimeError("KilledWorker: worker died 3 times"))
    assert manifest["status"] == "failed"
    videos = pd.read_parquet(tmp_path / "cache" / "videos")
    assert videos.status.tolist() == ["failed"] and videos.error_step.tolist() == ["task"]
    assert "clips/face" in videos.error[0] and "KilledWorker" in videos.error[0]


def test_fingerprints_are_reused_until_the_file_changes(tmp_path, monkeypatch):
    import os

    import tasks.extract as extract_tasks

    clip = tmp_path / "a.mp4"
    clip.write_bytes(b"1" * 100)
    calls = []
    real = extract_tasks.fingerprint_file
    monkeypatch.setattr(extract_tasks, "fingerprint_file", lambda p: calls.append(p) or real(p))
    extract_tasks._fingerprint_of.cache_clear()
    first = extract_tasks._fingerprint(str(clip))
    assert extract_tasks._fingerprint(str(clip)) == first and len(calls) == 1
    clip.write_bytes(b"2" * 100)
    os.utime(clip, ns=(1, 10**18))  # a new mtime, as an edit gives
    assert extract_tasks._fingerprint(str(clip)) != first and len(calls) == 2
    assert extract_tasks._fingerprint(str(tmp_path / "missing.mp4")) is None
