import pandas as pd

from features.store.datasets import VideoEntry
from features.store.plan import FileState, cached_rows, plan_extraction


def entry(vid, label="REAL", group=None):
    return VideoEntry(video_id=vid, dataset="ds", dataset_format="dfdc", path=f"/d/{vid}", relpath=vid,
                      label=label, leakage_group=group or vid)


def cached(*rows):
    return pd.DataFrame([{"video_id": v, "cache_key": k, "status": s.split(":")[0],
                          "error_step": s.split(":")[1] if ":" in s else None, "dataset": "ds", "dataset_format": "dfdc",
                          "path": f"/d/{v}", "relpath": v, "label": "REAL", "split": None, "original": None,
                          "method": None, "compression": None, "leakage_group": v} for v, k, s in rows])


def states(**keys):
    return {vid: FileState(f"f{vid}", key) for vid, key in keys.items()}


def test_new_changed_skipped_and_failed():
    entries = [entry("a"), entry("b"), entry("c"), entry("d")]
    keys = states(a="ka", b="kb-new", c="kc", d="kd")
    plan = plan_extraction(entries, keys, cached(("b", "kb-old", "ok"), ("c", "kc", "ok"), ("d", "kd", "failed")))
    assert {j.entry.video_id: j.reason for j in plan.todo} == {"a": "new", "b": "changed"}
    assert sorted(plan.skipped) == ["c", "d"]
    retry = plan_extraction(entries, keys, cached(("d", "kd", "failed")), retry_failed=True)
    assert {j.entry.video_id: j.reason for j in retry.todo}["d"] == "retry"


def test_force_redoes_everything():
    entries = [entry("a"), entry("b")]
    keys = states(a="ka", b="kb")
    plan = plan_extraction(entries, keys, cached(("a", "ka", "ok"), ("b", "kb", "ok")), force=True)
    assert [j.reason for j in plan.todo] == ["forced", "forced"]


def test_label_or_group_change_refreshes_metadata_without_extracting():
    entries = [entry("a", label="FAKE"), entry("b", group="g")]
    keys = states(a="ka", b="kb")
    plan = plan_extraction(entries, keys, cached(("a", "ka", "ok"), ("b", "kb", "ok")))
    assert plan.todo == []
    assert sorted(e.video_id for e in plan.refresh) == ["a", "b"]
    assert plan.counts() == {"todo": 0, "skipped": 2, "refresh": 2, "restat": 0}


def test_a_cached_video_whose_stat_changed_gets_its_new_stat_recorded_without_extracting():
    entries = [entry("a"), entry("b"), entry("c")]
    keys = {"a": FileState("fa", "ka", file_stat="local:1:2:3"), "b": FileState("fb", "kb", file_stat="local:1:9:3"),
            "c": FileState("fc", "kc", file_stat="local:5:5:5")}
    rows = cached(("a", "ka", "ok"), ("b", "kb", "ok")).assign(file_stat=["local:1:2:3", "local:1:2:3"])
    plan = plan_extraction(entries, keys, rows)
    assert plan.restat == {"b": "local:1:9:3"}  # touched: same content, new mtime
    assert [(j.entry.video_id, j.reason, j.file_stat) for j in plan.todo] == [("c", "new", "local:5:5:5")]
    assert plan.skipped == ["a", "b"] and plan.refresh == []


def test_a_task_that_died_is_redone_without_asking_a_failed_video_is_not():
    entries = [entry("lost"), entry("bad")]
    keys = states(lost="kl", bad="kb")
    plan = plan_extraction(entries, keys, cached(("lost", "kl", "failed:task"), ("bad", "kb", "failed:decode")))
    assert {j.entry.video_id: j.reason for j in plan.todo} == {"lost": "lost"}
    assert plan.skipped == ["bad"]


def test_keep_labels_keeps_the_cached_labelling_of_a_cached_video():
    unlabelled = [entry("c", label=None, group="video:c"), entry("new", label=None)]
    keys = states(c="kc", new="kn")
    relabel = plan_extraction(unlabelled, keys, cached(("c", "kc", "ok")))
    assert [e.video_id for e in relabel.refresh] == ["c"]  # an extract run relabels from its listing
    keep = plan_extraction(unlabelled, keys, cached(("c", "kc", "ok")), keep_labels=True)
    assert keep.refresh == [] and keep.skipped == ["c"]
    assert [(j.entry.video_id, j.entry.label) for j in keep.todo] == [("new", None)]
    changed = plan_extraction(unlabelled, states(c="kc-new", new="kn"), cached(("c", "kc", "ok")), keep_labels=True)
    redo = {j.entry.video_id: j.entry for j in changed.todo}["c"]
    assert (redo.label, redo.leakage_group) == ("REAL", "c")  # re-extracted, still labelled as cached


def test_cached_rows_are_the_records_by_video_id_with_nan_where_missing():
    table = cached(("a", "ka", "ok"), ("b", "kb", "failed:decode")).assign(file_stat=["local:1:2:3", None])
    rows = cached_rows(table)
    assert list(rows) == ["a", "b"]
    assert rows["b"]["cache_key"] == "kb" and rows["b"]["error_step"] == "decode" and pd.isna(rows["a"]["error_step"])

    def missing_as_none(row):
        return {k: None if pd.isna(v) else v for k, v in row.items()}

    before = {r["video_id"]: missing_as_none(r) for r in table.to_dict("records")}  # what the planner used before
    assert {vid: missing_as_none(row) for vid, row in rows.items()} == before
    assert before["b"]["file_stat"] is None and before["a"]["file_stat"] == "local:1:2:3"
    assert cached_rows(table.iloc[:0]) == {}


def test_the_plan_is_the_same_from_the_table_or_from_its_rows():
    entries = [entry("a", label="FAKE"), entry("b"), entry("c")]
    keys = {"a": FileState("fa", "ka", file_stat="local:1:2:3"), "b": FileState("fb", "kb-new"), "c": FileState("fc", "kc")}
    table = cached(("a", "ka", "ok"), ("b", "kb", "ok")).assign(file_stat=["local:1:2:9", None])
    from_table, from_rows = plan_extraction(entries, keys, table), plan_extraction(entries, keys, cached_rows(table))
    assert from_rows == from_table
    assert from_rows.counts() == {"todo": 2, "skipped": 1, "refresh": 1, "restat": 1, "changed": 1, "new": 1}
