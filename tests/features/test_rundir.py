import pytest

from features.store.rundir import fetched, join, read_text, staged_dir


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
