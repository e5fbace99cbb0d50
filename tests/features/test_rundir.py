import json

import pytest

from features.store.rundir import check_cache_dir, check_run_dir, fetched, join, list_runs, read_text, staged_dir


def test_join_handles_paths_and_urls():
    assert join("s3://b/runs/", "evaluations", "/x/") == "s3://b/runs/evaluations/x"
    assert join("/tmp/run", "model.skops") == "/tmp/run/model.skops"


def test_a_local_run_dir_is_written_in_place(tmp_path):
    with staged_dir(str(tmp_path / "run")) as out:
        (out / "metrics.json").write_text("{}")
    assert (tmp_path / "run" / "metrics.json").read_text() == "{}"
    with fetched(str(tmp_path / "run"), ["metrics.json"]) as local:
        assert local == tmp_path / "run"


def test_a_remote_run_dir_is_uploaded_only_when_the_block_succeeds():
    import fsspec

    fs = fsspec.filesystem("memory")
    with staged_dir("memory://dfp-run/ok") as out:
        (out / "plots").mkdir()
        (out / "plots" / "roc.png").write_bytes(b"png")
        (out / "model_card.json").write_text('{"model": "gbm"}')
        assert not fs.exists("/dfp-run/ok/model_card.json")  # not before the block ends
    assert fs.cat_file("/dfp-run/ok/plots/roc.png") == b"png"
    assert read_text("memory://dfp-run/ok/model_card.json") == '{"model": "gbm"}'
    with pytest.raises(RuntimeError):
        with staged_dir("memory://dfp-run/crashed") as out:
            (out / "metrics.json").write_text("{}")
            raise RuntimeError("training failed")
    assert not fs.exists("/dfp-run/crashed")
    with fetched("memory://dfp-run/ok", ["model_card.json", "missing.json"]) as local:
        assert (local / "model_card.json").read_text() == '{"model": "gbm"}'
        assert not (local / "missing.json").exists()


def test_prepare_run_dir_refuses_or_clears_an_existing_run(tmp_path):
    import fsspec

    from features.store.rundir import clear_dir, prepare_run_dir, run_marker

    for url in (str(tmp_path / "run"), "memory://dfp-test-run"):
        prepare_run_dir(url, overwrite=False)  # nothing there yet: fine
        with fsspec.open(join(url, "metrics.json"), "w") as fh:
            fh.write("{}")
        with fsspec.open(join(url, "evaluations", "other", "metrics.json"), "w") as fh:
            fh.write("{}")
        assert run_marker(url) == "metrics.json"
        with pytest.raises(ValueError, match=r"already holds a training run \(metrics.json\): pass --overwrite"):
            prepare_run_dir(url, overwrite=False)
        prepare_run_dir(url, overwrite=True)
        fs, root = fsspec.core.url_to_fs(url)
        assert run_marker(url) is None and not fs.exists(join(root, "evaluations", "other", "metrics.json"))
        clear_dir(url)  # clearing what is not there is a no-op


def _card(run, **card):
    run.mkdir(parents=True, exist_ok=True)
    (run / "model_card.json").write_text(json.dumps(card))
    return run


def test_check_run_dir_names_what_is_missing(tmp_path):
    with pytest.raises(ValueError, match=r"^run folder .*nope does not exist: give the --out folder of a `dfp train`"):
        check_run_dir(str(tmp_path / "nope"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=r"empty is not a training run: it has no model_card.json"):
        check_run_dir(str(tmp_path / "empty"))
    (tmp_path / "garbled").mkdir()
    (tmp_path / "garbled" / "model_card.json").write_text("{oops")
    with pytest.raises(ValueError, match=r"model_card.json is not a model card written by dfp train: JSONDecodeError"):
        check_run_dir(str(tmp_path / "garbled"))
    run = _card(tmp_path / "run", model="gbm", model_file="model.skops",
                model_sha256={"model.skops": "x", "model.skops.calibration.json": "y"})
    with pytest.raises(ValueError, match=r"the model file model.skops named by its model_card.json is missing"):
        check_run_dir(str(run))
    (run / "model.skops").write_bytes(b"m")
    with pytest.raises(ValueError, match=r"model.skops.calibration.json named by its model_card.json is missing"):
        check_run_dir(str(run))
    (run / "model.skops.calibration.json").write_text("{}")
    assert check_run_dir(str(run))["model"] == "gbm"


def test_check_cache_dir_refuses_a_missing_folder_or_one_without_videos(tmp_path):
    with pytest.raises(ValueError, match=r"^cache .*MISSING does not exist: write one with `dfp extract DATASET"):
        check_cache_dir(str(tmp_path / "MISSING"))
    with pytest.raises(ValueError, match=r"is not a cache written by `dfp extract` \(it has no videos table\)"):
        check_cache_dir(str(tmp_path))
    (tmp_path / "videos").mkdir()
    check_cache_dir(str(tmp_path))
    check_cache_dir("s3://bucket/cache")  # left to the cache itself: no network call here


def test_list_runs_reads_cards_metrics_and_evaluations(tmp_path):
    old = _card(tmp_path / "a" / "old", model="gbm", created_at="2026-01-01T10:00:00+00:00",
                training_data={"cache": "c1", "videos": 20})
    (old / "metrics.json").write_text(json.dumps({"validation": "5-fold grouped",
                                                  "overall": {"roc_auc": 0.75, "log_loss": 0.61, "n": 20}}))
    evaluation = old / "evaluations" / "ffpp-1234"
    evaluation.mkdir(parents=True)
    (evaluation / "metrics.json").write_text(json.dumps({"cache": "c2", "overall": {"roc_auc": 0.6, "log_loss": 0.7,
                                                                                     "n": 8}}))
    _card(tmp_path / "new", model="crop_linear", created_at="2026-02-01T10:00:00+00:00")
    runs = list_runs(str(tmp_path))
    assert [r["run"] for r in runs] == [str(tmp_path / "new"), str(old)]  # newest first, evaluations not runs
    assert {k: runs[1][k] for k in ("model", "cache", "videos", "roc_auc", "log_loss", "validation")} == {
        "model": "gbm", "cache": "c1", "videos": 20, "roc_auc": 0.75, "log_loss": 0.61, "validation": "5-fold grouped"}
    assert runs[1]["evaluations"] == [{"name": "ffpp-1234", "cache": "c2", "roc_auc": 0.6, "log_loss": 0.7, "n": 8}]
    assert runs[0]["roc_auc"] is None and runs[0]["evaluations"] == []
