from pathlib import Path

import pytest
from pydantic import ValidationError

from features.config import ExtractConfig, settings_differences


def test_hash_covers_output_settings_only():
    base = ExtractConfig()
    assert ExtractConfig(workers=3, force=True, datasets=["a"], cache="elsewhere").config_hash == base.config_hash
    assert ExtractConfig(keyframe_interval=5).config_hash != base.config_hash
    assert ExtractConfig(detector="haar").config_hash != base.config_hash


def test_paths_are_accepted_and_bad_values_are_rejected():
    assert ExtractConfig(datasets=[Path("/data/x")]).datasets == ["/data/x"]
    with pytest.raises(ValidationError, match="keyframe_interval"):
        ExtractConfig(keyframe_interval=0)
    with pytest.raises(ValidationError, match="detector"):
        ExtractConfig(detector="yolo")
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        ExtractConfig(keyframe_intervall=5)


def test_settings_differences_name_each_setting_that_changed():
    trained = {"a": {"detector": "mtcnn", "crop_size": 224, "keyframe_interval": 10}}
    same = {"b": {"detector": "mtcnn", "crop_size": 224, "keyframe_interval": 10}}
    assert settings_differences(trained, same) == {}
    other = {"c": {"detector": "haar", "crop_size": 224, "keyframe_interval": 10},
             "d": {"detector": "mtcnn", "crop_size": 224, "keyframe_interval": 10}}
    assert settings_differences(trained, other) == {"detector": {"trained": ["mtcnn"], "evaluated": ["haar", "mtcnn"]}}
    assert settings_differences(trained, {"e": {"detector": "mtcnn", "crop_size": 224}}) == {
        "keyframe_interval": {"trained": [10], "evaluated": []}}
