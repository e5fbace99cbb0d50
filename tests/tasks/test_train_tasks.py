"""The training tasks are one call each: they stage the partitions features.store.training_data computes, and
nothing is current until the flow commits what they staged."""

from features.store.training_data import stale_descriptor_videos, stale_feature_videos
from tasks.train import compute_descriptors, compute_features
from tests.features.test_training_data import _cache


def test_the_partition_tasks_stage_what_the_reader_finds_stale_and_a_commit_makes_it_current(tmp_path):
    store, _ = _cache(tmp_path)
    staged = compute_descriptors.fn(store.url, stale_descriptor_videos(store))
    assert sorted(s.video_id for s in staged) == ["fake", "real"]  # the faceless video has no crops
    assert len(stale_descriptor_videos(store)) == 2  # staged, not yet committed
    assert store.commit(staged, operation="crop descriptor computation") == 2
    assert stale_descriptor_videos(store) == []
    assert sorted(store.read("descriptors").video_id.unique()) == ["fake", "real"]

    staged = compute_features.fn(store.url, stale_feature_videos(store))
    assert sorted(s.video_id for s in staged) == ["faceless", "fake", "real"]
    assert store.commit(staged, operation="feature computation") == 3
    assert stale_feature_videos(store) == []
    assert sorted(store.read("features").video_id) == ["faceless", "fake", "real"]
