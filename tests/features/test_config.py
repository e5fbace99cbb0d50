from pathlib import Path

import pytest
from pydantic import ValidationError

from features.config import ExtractConfig


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
