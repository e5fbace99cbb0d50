import json

import cv2

from features.video.demo import make_demo_dataset, plan_clips


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
    b = make_demo_dataset(tmp_path / "b", n_clips=2, frames=5, seed=3)
    assert (a / "metadata.json").read_text() == (b / "metadata.json").read_text()
    for name in json.loads((a / "metadata.json").read_text()):
        assert (a / name).read_bytes() == (b / name).read_bytes()


def test_plan_has_portrait_clips_and_several_donor_kinds():
    plans = plan_clips(20, seed=0)
    assert sum(p.label == "FAKE" for p in plans) == 10
    assert any(p.size[1] > p.size[0] for p in plans)
    assert {p.donor.split(":")[0] for p in plans if p.label == "FAKE"} == {"other", "warp", "lfw"}
