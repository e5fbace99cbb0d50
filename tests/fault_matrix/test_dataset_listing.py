"""Careless dataset listings (issue #20): each is refused with a message, or listed with a warning or a failed row."""

import os
from pathlib import Path
from types import SimpleNamespace

import pytest

from features.store.datasets import DatasetError, discover, listing_warnings


def _touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")
    return path


def test_misspelt_label_header_is_refused_naming_file_and_columns(tmp_path):
    root = tmp_path / "clips"
    _touch(root / "a.mp4")
    (root / "labels.csv").write_text("path,lable\na.mp4,REAL\n")
    with pytest.raises(DatasetError, match=r"clips/labels.csv.*path,lable.*path,label\[,original\]"):
        discover([str(root)])
    given = tmp_path / "list.csv"
    given.write_text("path,lable\nclips/a.mp4,REAL\n")
    with pytest.raises(DatasetError, match="list.csv"):
        discover([str(given)])


def test_empty_label_cells_stay_allowed(tmp_path):
    root = tmp_path / "clips"
    _touch(root / "a.mp4")
    _touch(root / "b.mp4")
    (root / "labels.csv").write_text("path,label\na.mp4,REAL\nb.mp4,\n")
    entries = {e.relpath: e for e in discover([str(root)])}
    assert entries["a.mp4"].label == "REAL" and entries["b.mp4"].label is None
    assert not listing_warnings(list(entries.values()))


def test_video_missing_from_labels_csv_is_listed_unlabelled_with_a_warning(tmp_path):
    root = tmp_path / "clips"
    _touch(root / "a.mp4")
    _touch(root / "sub" / "video.mp4")
    (root / "labels.csv").write_text("path,label\na.mp4,REAL\n")
    entries = {e.relpath: e for e in discover([str(root)])}
    assert set(entries) == {"a.mp4", "sub/video.mp4"}
    extra = entries["sub/video.mp4"]
    assert extra.label is None and extra.discovery_error is None
    assert "video.mp4 is in the folder but not in labels.csv" in extra.warning
    assert listing_warnings(list(entries.values())) == [extra.warning]


def test_video_missing_from_dfdc_metadata_warns(tmp_path):
    root = tmp_path / "part"
    _touch(root / "a.mp4")
    _touch(root / "extra.mp4")
    (root / "metadata.json").write_text('{"a.mp4": {"label": "REAL"}}')
    warnings = listing_warnings(discover([str(root)]))
    assert len(warnings) == 1 and "extra.mp4 is in the folder but not in metadata.json" in warnings[0]


def test_dangling_symlink_becomes_a_failed_row_naming_its_target(tmp_path):
    root = tmp_path / "inbox"
    _touch(root / "a.mp4")
    os.symlink(tmp_path / "gone.mp4", root / "link.mp4")
    entries = {e.relpath: e for e in discover([str(root)])}
    assert set(entries) == {"a.mp4", "link.mp4"}
    assert entries["link.mp4"].discovery_error == f"link.mp4 is a symbolic link to {tmp_path / 'gone.mp4'}, which does not exist"
    assert entries["a.mp4"].discovery_error is None


def test_video_ids_do_not_depend_on_argument_order(tmp_path):
    a = tmp_path / "a" / "clips"
    b = tmp_path / "b" / "clips"
    _touch(a / "x.mp4")
    _touch(b / "x.mp4")
    forward = {e.path: e.video_id for e in discover([str(a), str(b)])}
    backward = {e.path: e.video_id for e in discover([str(b), str(a)])}
    assert forward == backward
    assert len(set(forward.values())) == 2
    # Parents that share a name too are told apart by a hash of the root.
    c = tmp_path / "c" / "a" / "clips"
    _touch(c / "x.mp4")
    ids = [e.video_id for e in discover([str(a), str(c)])]
    assert len(set(ids)) == 2 and ids == [e.video_id for e in discover([str(c), str(a)])][::-1]
    # No collision: ids unchanged.
    assert [e.video_id for e in discover([str(a)])] == ["clips/x"]


def test_summary_counts_and_lists_listing_warnings():
    from flows.extract import summarize

    config = SimpleNamespace(config_hash="h", cache="/c")
    summary = summarize([], 2, {"skipped": 2}, 0.1, config, warnings=["x.mp4 is in the folder but not in labels.csv"])
    assert summary["warned"] == 1 and summary["warnings"] == ["x.mp4 is in the folder but not in labels.csv"]
    assert summary["line"].endswith("; 1 listing warnings")
    assert "listing warnings" not in summarize([], 2, {"skipped": 2}, 0.1, config)["line"]


def test_a_bad_label_or_original_for_a_cached_video_keeps_its_extracted_data(tmp_path):
    """`MAYBE` in metadata.json, or an original outside the folder, once turned a cached video to failed and wiped its
    faces and ssim rows: now the video keeps its cache key (it is skipped, not redone) and only loses its labels."""
    import json

    import pandas as pd

    from features.config import ExtractConfig
    from features.store.plan import plan_extraction
    from tasks.extract import file_state

    root = tmp_path / "dfdc"
    root.mkdir()
    for name in ("a.mp4", "b.mp4"):
        (root / name).write_bytes(name.encode() * 100)
    config = ExtractConfig(datasets=[str(root)], cache=str(tmp_path / "cache"))

    def listing(meta):
        (root / "metadata.json").write_text(json.dumps(meta))
        entries = discover([str(root)])
        return entries, {e.video_id: file_state(e, config) for e in entries}

    good, good_states = listing({"a.mp4": {"label": "REAL"}, "b.mp4": {"label": "FAKE", "original": "a.mp4"}})
    cached = pd.DataFrame([{**e.metadata(), "cache_key": good_states[e.video_id].cache_key, "status": "ok",
                            "error_step": None} for e in good])
    bad, bad_states = listing({"a.mp4": {"label": "MAYBE"}, "b.mp4": {"label": "FAKE", "original": "../x.mp4"}})
    assert all(bad_states[v].cache_key == good_states[v].cache_key for v in good_states)
    plan = plan_extraction(bad, bad_states, cached)
    assert plan.todo == [] and sorted(plan.skipped) == ["dfdc/a", "dfdc/b"]
    assert {e.video_id: e.label for e in plan.refresh} == {"dfdc/a": None, "dfdc/b": None}
    assert [w.split(":")[0] for w in listing_warnings(bad)] == ["metadata.json entry 'a.mp4' is malformed",
                                                                "metadata.json entry 'b.mp4' is malformed"]
