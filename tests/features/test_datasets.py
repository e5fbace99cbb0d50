import json
from dataclasses import replace
from pathlib import Path, PurePosixPath

import pytest

from features.store.datasets import (
    VIDEO_EXTENSIONS,
    DatasetError,
    VideoEntry,
    _entry,
    _video_files,
    _with_group,
    assign_leakage_groups,
    discover,
)
from tests.conftest import shared_dataset


def _touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")
    return path


def _dfdc(root: Path, metadata: dict) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name in metadata:
        if "/" not in name:
            _touch(root / name)
    (root / "metadata.json").write_text(json.dumps(metadata))
    return root


def test_dfdc_labels_splits_and_groups(tmp_path):
    root = _dfdc(tmp_path / "part_0", {
        "real.mp4": {"label": "REAL", "split": "train", "original": None},
        "fake1.mp4": {"label": "FAKE", "split": "train", "original": "real.mp4"},
        "fake2.mp4": {"label": "FAKE", "split": "train", "original": "real.mp4"},
        "alone.mp4": {"label": "FAKE", "split": "train", "original": "missing.mp4"},
    })
    entries = {e.video_id: e for e in discover([str(root)])}
    assert set(entries) == {"part_0/real", "part_0/fake1", "part_0/fake2", "part_0/alone"}
    assert entries["part_0/fake1"].label == "FAKE" and entries["part_0/fake1"].original == "real.mp4"
    groups = {e.leakage_group for k, e in entries.items() if k != "part_0/alone"}
    assert len(groups) == 1
    assert entries["part_0/alone"].leakage_group not in groups


def test_same_file_name_in_two_dfdc_parts_does_not_collide(tmp_path):
    a = _dfdc(tmp_path / "dfdc_train_part_0", {"x.mp4": {"label": "REAL", "split": "train", "original": None}})
    b = _dfdc(tmp_path / "dfdc_train_part_1", {"x.mp4": {"label": "FAKE", "split": "train", "original": "y.mp4"}})
    entries = discover([str(a), str(b)])
    assert sorted(e.video_id for e in entries) == ["dfdc_train_part_0/x", "dfdc_train_part_1/x"]
    assert len({e.path for e in entries}) == 2
    # A parent folder of DFDC parts expands into its parts.
    assert sorted(e.video_id for e in discover([str(tmp_path)])) == ["dfdc_train_part_0/x", "dfdc_train_part_1/x"]


def test_same_folder_name_in_two_places_is_qualified(tmp_path):
    a = _dfdc(tmp_path / "a" / "videos", {"x.mp4": {"label": "REAL", "split": "train", "original": None}})
    b = _dfdc(tmp_path / "b" / "videos", {"x.mp4": {"label": "REAL", "split": "train", "original": None}})
    ids = sorted(e.video_id for e in discover([str(a), str(b)]))
    assert ids == ["a-videos/x", "b-videos/x"]  # both qualified, whatever the order


def test_metadata_entries_outside_the_folder_or_malformed_are_rejected_with_a_message(tmp_path):
    root = _dfdc(tmp_path / "d", {
        "ok.mp4": {"label": "REAL", "split": "train", "original": None},
        "../x.mp4": {"label": "REAL", "split": "train", "original": None},
        "/etc/passwd": {"label": "REAL"},
        "bad_label.mp4": {"label": "MAYBE"},
        "not_a_dict.mp4": "REAL",
    })
    entries = {e.relpath: e for e in discover([str(root)])}
    assert entries["ok.mp4"].discovery_error is None
    assert "points outside" in entries["../x.mp4"].discovery_error
    assert "points outside" in entries["/etc/passwd"].discovery_error
    # A bad labelling rejects the labels, not the video (fault matrix #20: it once wiped the cached rows).
    assert "label 'MAYBE' is not REAL or FAKE" in entries["bad_label.mp4"].warning
    assert "malformed" in entries["not_a_dict.mp4"].warning
    assert all(entries[n].discovery_error is None and entries[n].label is None
               for n in ("bad_label.mp4", "not_a_dict.mp4"))
    assert entries["../x.mp4"].path == "../x.mp4"  # never resolved to a path outside the dataset


def test_unreadable_metadata_json_names_the_file(tmp_path):
    root = tmp_path / "broken"
    root.mkdir()
    (root / "metadata.json").write_text("{not json")
    with pytest.raises(DatasetError, match="broken/metadata.json"):
        discover([str(root)])


def test_missing_dataset_is_an_error(tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        discover([str(tmp_path / "nope")])


def test_ffpp_layout_labels_methods_compression_and_groups(tmp_path):
    root = tmp_path / "ffpp"
    for rel in [
        "original_sequences/youtube/c23/videos/183.mp4",
        "original_sequences/youtube/c23/videos/253.mp4",
        "original_sequences/youtube/c40/videos/183.mp4",
        "original_sequences/youtube/c23/videos/999.mp4",
        "manipulated_sequences/Deepfakes/c23/videos/183_253.mp4",
        "manipulated_sequences/FaceSwap/c40/videos/253_183.mp4",
        "original_sequences/actors/c23/videos/01__kitchen_pan.mp4",
        "original_sequences/actors/c23/videos/11__walking.mp4",
        "manipulated_sequences/DeepFakeDetection/c23/videos/01_11__talking_against_wall__9229VVZ3.mp4",
    ]:
        _touch(root / rel)
    entries = {e.relpath: e for e in discover([str(root)])}
    fake = entries["manipulated_sequences/Deepfakes/c23/videos/183_253.mp4"]
    assert (fake.label, fake.method, fake.compression, fake.original) == ("FAKE", "Deepfakes", "c23", "183")
    real = entries["original_sequences/youtube/c40/videos/183.mp4"]
    assert (real.label, real.method, real.compression) == ("REAL", None, "c40")
    yt_group = {entries[r].leakage_group for r in entries if "183" in r or "253" in r}
    assert len(yt_group) == 1
    assert entries["original_sequences/youtube/c23/videos/999.mp4"].leakage_group not in yt_group
    dfd = {entries[r].leakage_group for r in entries if "actors" in r or "DeepFakeDetection" in r}
    assert len(dfd) == 1 and not dfd & yt_group


def test_plain_folder_with_labels_csv(tmp_path):
    root = tmp_path / "clips"
    _touch(root / "a.mp4")
    _touch(root / "sub" / "b.mp4")
    (root / "labels.csv").write_text("path,label,original\na.mp4,REAL,\nsub/b.mp4,FAKE,a.mp4\n../c.mp4,REAL,\n")
    entries = {e.relpath: e for e in discover([str(root)])}
    assert entries["a.mp4"].label == "REAL" and entries["sub/b.mp4"].label == "FAKE"
    assert entries["a.mp4"].leakage_group == entries["sub/b.mp4"].leakage_group
    assert "points outside" in entries["../c.mp4"].discovery_error


def test_plain_folder_without_labels_is_unlabelled_and_one_group_per_video(tmp_path):
    root = tmp_path / "inbox"
    for name in ("a.mp4", "b.MOV", "notes.txt"):
        _touch(root / name)
    entries = discover([str(root)])
    assert sorted(e.relpath for e in entries) == ["a.mp4", "b.MOV"]
    assert all(e.label is None for e in entries)
    assert len({e.leakage_group for e in entries}) == 2


def test_shared_clips_groups_are_right():
    dfdc = shared_dataset("dfdc-mini") / "train_sample_videos"
    ffpp = shared_dataset("ffpp-mini")
    entries = {e.video_id: e for e in discover([str(dfdc), str(ffpp)])}
    group = {k.split("/")[-1]: e.leakage_group for k, e in entries.items()}
    assert group["acqfdwsrhi"] == group["ccfoszqabv"]
    assert group["abqwwspghj"] == group["clihsshdkq"]
    ff = {e.relpath: e.leakage_group for e in entries.values() if e.dataset == "ffpp-mini"}
    assert len(set(ff.values())) == 1  # 183, 253 and every fake made from the pair
    assert ff["manipulated_sequences/Deepfakes/c23/videos/183_253.mp4"] == ff["original_sequences/youtube/c23/videos/183.mp4"]
    assert ff["manipulated_sequences/Deepfakes/c23/videos/183_253.mp4"] == ff["original_sequences/youtube/c23/videos/253.mp4"]


def test_ffpp_dev_has_nineteen_leakage_groups():
    root = shared_dataset("ffpp-dev")
    entries = discover([str(root)])
    assert len(entries) == 110
    assert len({e.leakage_group for e in entries}) == 19


def test_video_files_lists_what_rglob_finds_from_directory_entries(tmp_path):
    for rel in ("a/x.mp4", "a-b/x.MOV", "a/c/y.avi", ".hidden/z.mp4", "real/r.mp4", "dir.mp4/in.mkv", "notes.txt",
                ".mp4", "b."):
        _touch(tmp_path / rel)
    (tmp_path / "dangling.mp4").symlink_to(tmp_path / "nowhere.mp4")
    (tmp_path / "link.mp4").symlink_to(tmp_path / "a" / "x.mp4")
    (tmp_path / "linked_dir").symlink_to(tmp_path / "real")  # not followed, as rglob does not
    found = _video_files(str(tmp_path))
    assert found == {"a/x.mp4": False, "a-b/x.MOV": False, "a/c/y.avi": False, ".hidden/z.mp4": False,
                     "real/r.mp4": False, "dir.mp4/in.mkv": False, "dangling.mp4": True, "link.mp4": True}
    expected = {p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*")
                if (p.is_file() or p.is_symlink()) and p.suffix.lower() in VIDEO_EXTENSIONS}
    assert set(found) == expected


def test_entries_of_plain_and_unusual_relative_paths_match_pathlib(tmp_path):
    for rel in ("a/x.mp4", "x.tar.mp4", "./a/x.mp4", "a//x.mp4", "a/.mp4", "a/b.", "noext"):
        made = _entry("ds", "folder", tmp_path, rel)
        assert made.path == str(tmp_path / rel) and made.relpath == rel
        assert made.video_id == f"ds/{PurePosixPath(rel).with_suffix('')}"
    outside = _entry("ds", "folder", tmp_path, "../x.mp4")
    assert outside.path == "../x.mp4" and outside.video_id == "ds/../x.mp4"
    assert _entry("ds", "folder", Path("/"), "x.mp4").path == "/x.mp4"


def test_folder_videos_come_in_path_order_part_by_part(tmp_path):
    for rel in ("a-b/x.mp4", "a/x.mp4", "a/b/y.mp4", "A/z.mp4"):
        _touch(tmp_path / "ds" / rel)
    assert [e.relpath for e in discover([str(tmp_path / "ds")])] == ["A/z.mp4", "a/b/y.mp4", "a/x.mp4", "a-b/x.mp4"]


def test_a_leakage_group_is_set_on_a_copy():
    entry = VideoEntry(video_id="ds/a", dataset="ds", dataset_format="folder", path="/d/a.mp4", relpath="a.mp4",
                       label="FAKE", identities=("file:ds/a.mp4",))
    grouped = _with_group(entry, "g1")
    assert grouped == replace(entry, leakage_group="g1") and entry.leakage_group == ""
    assert _with_group(grouped, "g1") is grouped
    assert assign_leakage_groups([entry])[0].leakage_group == "file:ds/a.mp4"
