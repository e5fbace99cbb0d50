import json

import cv2
import pytest

from features.config import ExtractConfig
from features.video.demo import LFW_FACES, hold_out_pair, lfw_faces, make_demo_dataset, plan_clips
from features.video.extract import extract_video
from features.video.faces import make_detector


def test_demo_dataset_is_real_labelled_mp4_in_dfdc_layout(demo_dir):
    metadata = json.loads((demo_dir / "metadata.json").read_text())
    assert len(metadata) == 8
    assert sorted(v["label"] for v in metadata.values()) == ["FAKE"] * 4 + ["REAL"] * 4
    for name, info in metadata.items():
        cap = cv2.VideoCapture(str(demo_dir / name))
        assert cap.isOpened() and int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 30
        if info["label"] == "FAKE":
            assert metadata[info["original"]]["label"] == "REAL"


def test_same_seed_same_files(tmp_path):
    a = make_demo_dataset(tmp_path / "a", n_clips=2, frames=5, seed=3)
    b = make_demo_dataset(tmp_path / "b", n_clips=2, frames=5, seed=3, workers=2)  # rendered in two processes
    assert (a / "metadata.json").read_text() == (b / "metadata.json").read_text()
    for name in json.loads((a / "metadata.json").read_text()):
        assert (a / name).read_bytes() == (b / name).read_bytes()


def test_plan_has_portrait_clips_and_several_donor_kinds():
    plans = plan_clips(20, seed=0)
    assert sum(p.label == "FAKE" for p in plans) == 10
    assert any(p.size[1] > p.size[0] for p in plans)
    assert {p.donor.split(":")[0] for p in plans if p.label == "FAKE"} == {"other", "warp", "lfw"}


def test_lfw_donors_are_faces_never_the_background_crops():
    """skimage's LFW subset is 100 faces, then 100 background crops: lfw:124 made a FAKE clip without a face."""
    assert len(lfw_faces()) == LFW_FACES
    donors = [int(p.donor[4:]) for seed in range(30) for p in plan_clips(20, seed) if p.donor.startswith("lfw:")]
    assert len(donors) == 30 * 3 and max(donors) < LFW_FACES


def test_every_default_demo_clip_has_a_main_face_for_mtcnn(tmp_path):
    """The default demo set (20 clips, seed 0), 11 frames each: MTCNN finds a main face track in every clip, on
    both keyframes (the first and the last frame)."""
    data = make_demo_dataset(tmp_path / "demo", n_clips=20, frames=11, seed=0)
    config = ExtractConfig(cache=str(tmp_path / "unused"))
    assert config.detector == "mtcnn" and config.keyframe_interval == 10
    detector = make_detector(config.detector, config.min_face_size, config.mtcnn_threshold, config.haar_min_neighbors)
    found = {}
    for name in sorted(json.loads((data / "metadata.json").read_text())):
        result = extract_video(str(data / name), name, config, detector)
        main = [f for f in result.faces if f["is_main"]]
        found[name] = (result.status, result.video["keyframes_with_face"], len(main))
    assert found == {name: ("ok", 2, 11) for name in found}


def test_hold_out_pair_moves_a_fake_and_its_original_out_of_the_labels(tmp_path):
    data = make_demo_dataset(tmp_path / "demo", n_clips=6, frames=2, seed=1)
    before = json.loads((data / "metadata.json").read_text())
    held = hold_out_pair(data, tmp_path / "held-out")
    fake = next(n for n, label in held.items() if label == "FAKE")
    assert sorted(held.values()) == ["FAKE", "REAL"] and before[fake]["original"] in held
    after = json.loads((data / "metadata.json").read_text())
    assert set(after) == set(before) - set(held) and len(after) == 4
    assert sorted(p.name for p in (tmp_path / "held-out").iterdir()) == sorted(held)
    assert sorted(p.name for p in data.glob("*.mp4")) == sorted(after)
    with pytest.raises(ValueError, match="no FAKE clip"):
        hold_out_pair(make_demo_dataset(tmp_path / "one", n_clips=1, frames=2, seed=1), tmp_path / "x")
