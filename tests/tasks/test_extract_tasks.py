import pickle

from features.config import ExtractConfig
from features.store.datasets import VideoEntry, discover
from features.store.delta_cache import DeltaCacheStore
from features.store.plan import VideoJob
from tasks.extract import extract_video_task, file_state, record_lost_task, run_extraction
from tests.conftest import count_opens, face_scene, write_clip


def _job(entry, config):
    state = file_state(entry, config)
    return VideoJob(entry, state.fingerprint, state.cache_key, "new", state.read_error)


def test_task_stages_its_files_and_returns_a_small_manifest_that_the_flow_commits(tmp_path):
    clip = write_clip(tmp_path / "clips" / "face.mp4", [face_scene(shift=i) for i in range(12)])
    config = ExtractConfig(cache=str(tmp_path / "cache"), detector="haar", keyframe_interval=4)
    (entry,) = discover([str(clip.parent)])
    manifest = extract_video_task.fn(_job(entry, config), config)
    assert manifest["status"] == "ok" and manifest["video_id"] == "clips/face" and manifest["n_tracks"] == 1
    assert set(manifest) == {"video_id", "status", "error", "n_tracks", "seconds", "worker", "staged"}
    staged = manifest["staged"]
    assert sorted(staged.adds) == ["faces", "ssim"] and staged.video_row["video_id"] == "clips/face"
    assert len(pickle.dumps(staged)) < 4096  # the crops stay in the staged files: only their add actions travel
    store = DeltaCacheStore(config.cache)
    assert store.read_video_row("clips/face") is None and store.read("faces").empty  # staged: not yet visible
    assert store.commit([staged]) == 1
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
    videos = DeltaCacheStore(str(tmp_path / "cache")).read("videos")
    assert videos.status.tolist() == ["failed"] and videos.error_step.tolist() == ["task"]
    assert "clips/face" in videos.error[0] and "KilledWorker" in videos.error[0]


def test_fingerprints_are_reused_in_a_process_until_the_file_changes(tmp_path, monkeypatch):
    import os

    import tasks.extract as extract_tasks

    clip = tmp_path / "a.mp4"
    clip.write_bytes(b"1" * 100)
    entry = VideoEntry(video_id="ds/a", dataset="ds", dataset_format="folder", path=str(clip), relpath="a.mp4")
    config = ExtractConfig(datasets=[str(tmp_path)], cache=str(tmp_path / "cache"))
    calls = []
    real = extract_tasks.fingerprint_file
    monkeypatch.setattr(extract_tasks, "fingerprint_file", lambda p: calls.append(p) or real(p))
    extract_tasks._fingerprint.cache_clear()
    first = file_state(entry, config)
    assert file_state(entry, config) == first and len(calls) == 1  # the CLI's plan and the flow's: one hash
    clip.write_bytes(b"2" * 100)
    os.utime(clip, ns=(1, 10**18))  # a new mtime, as an edit gives
    assert file_state(entry, config).fingerprint != first.fingerprint and len(calls) == 2
    gone = file_state(VideoEntry(video_id="ds/m", dataset="ds", dataset_format="folder",
                                 path=str(tmp_path / "missing.mp4"), relpath="missing.mp4"), config)
    assert gone.fingerprint is None and gone.file_stat is None


def test_a_noop_rerun_plan_opens_no_video_file(tmp_path, monkeypatch):
    """The cached videos rows carry each file's stat: a rerun stats the files and reads zero bytes of them."""
    import os

    import tasks.extract as extract_tasks
    from features.video.extract import VideoResult

    clips = tmp_path / "clips"
    for name in ("a", "b", "c"):
        write_clip(clips / f"{name}.mp4", [face_scene(shift=i) for i in range(3)])
    config = ExtractConfig(datasets=[str(clips)], cache=str(tmp_path / "cache"))
    entries = discover([str(clips)])
    plan = extract_tasks.plan_videos.fn(entries, config)
    assert sorted(j.reason for j in plan.todo) == ["new"] * 3
    store = DeltaCacheStore(config.cache)
    rows = {}
    for job in plan.todo:  # what an extraction writes: the videos row records fingerprint and stat
        row = extract_tasks.video_row(job, config, VideoResult.failed("x"))
        rows[job.entry.video_id] = [{**row, "status": "ok", "error": None, "error_step": None}]
    store.write_tables("videos", rows)

    extract_tasks._fingerprint.cache_clear()  # a new process: no memo
    opened = count_opens(monkeypatch, clips)
    again = extract_tasks.plan_videos.fn(discover([str(clips)]), config)
    assert (len(again.todo), len(again.skipped), again.restat) == (0, 3, {})
    assert opened == []

    os.utime(clips / "b.mp4", ns=(1, (clips / "b.mp4").stat().st_mtime_ns + 10**9))  # touched, same content
    touched = extract_tasks.plan_videos.fn(discover([str(clips)]), config)
    assert touched.todo == [] and list(touched.restat) == [entries[1].video_id]
    assert set(opened) == {str(clips / "b.mp4")}  # hashed to learn that it did not change; no other file
    extract_tasks.refresh_metadata.fn([], config.cache, touched.restat)
    opened.clear()
    extract_tasks._fingerprint.cache_clear()
    after = extract_tasks.plan_videos.fn(discover([str(clips)]), config)
    assert (len(after.todo), after.restat, opened) == (0, {}, [])
    assert store.read_video_row(entries[1].video_id)["status"] == "ok"  # the refresh kept the row
