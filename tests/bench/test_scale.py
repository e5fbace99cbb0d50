"""bench/scale.py builds a cache that a real no-op plan accepts, and measures it without opening a video."""

from bench.scale import build, measure


def test_the_synthetic_cache_is_a_noop_for_the_real_planner(tmp_path):
    clips, cache = build(tmp_path, 40)
    assert len(list(clips.rglob("*.mp4"))) == 40
    result = measure(clips, cache)
    assert result["videos"] == 40 and result["files_videos_table"] == 40
    assert result["video_files_opened"] == 0  # stat-first: nothing is hashed on a no-op rerun
    assert result["plan_s"] > 0 and result["videos_read_s"] > 0


def test_the_delta_layout_is_a_noop_for_the_real_planner_and_compacts_to_one_file_per_table(tmp_path):
    clips, cache = build(tmp_path, 40, layout="delta")
    result = measure(clips, cache, layout="delta")
    assert result["videos"] == 40 and result["video_files_opened"] == 0
    assert result["files_videos_table"] == 1 and result["files_features_table"] == 1
    assert result["features_read_s"] > 0 and result["partition_read_ms"] > 0
