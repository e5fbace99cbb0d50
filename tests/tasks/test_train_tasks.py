"""The training tasks are one call each: the partitions they write are features.store.training_data's."""

from features.store.training_data import stale_descriptor_videos, stale_feature_videos
from tasks.train import compute_descriptors, compute_features
from tests.features.test_training_data import _cache


def test_the_partition_tasks_write_what_the_reader_finds_stale(tmp_path):
    store, _ = _cache(tmp_path)
    assert compute_descriptors.fn(store.url, stale_descriptor_videos(store)) == 2
    assert stale_descriptor_videos(store) == []
    assert compute_features.fn(store.url, stale_feature_videos(store)) == 3
    assert stale_feature_videos(store) == []
