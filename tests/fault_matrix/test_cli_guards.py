"""Careless command lines: a non-finite --max-seconds, a run whose every video failed, an --out holding a run."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from flows import cli
from tests.conftest import REPO


@pytest.mark.parametrize("value", ["inf", "nan", "-inf"])
def test_non_finite_max_seconds_is_refused_up_front(value, tmp_path, capsys):
    code = cli.main(["extract", str(tmp_path), "--cache", str(tmp_path / "c"), f"--max-seconds={value}"])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1
    assert err.startswith("dfp extract: error: --max-seconds (max_seconds): must be a finite number of seconds")
    assert not (tmp_path / "c").exists()  # refused before anything was written


def _summary(extracted: int, failed: int) -> dict:
    return {"line": f"{extracted - failed} ok, 0 no face, {failed} failed", "extracted": extracted, "failed": failed,
            "failed_videos": [{"video_id": f"v{i}", "error": "moov atom not found"} for i in range(failed)]}


@pytest.mark.parametrize("extracted, failed, flag, expected", [
    (3, 3, [], 3), (3, 3, ["--fail-on-error"], 3), (3, 1, [], 0), (3, 1, ["--fail-on-error"], 3), (3, 0, [], 0),
    (0, 0, ["--fail-on-error"], 0),  # everything cached: nothing failed in this run
])
def test_extract_exit_code_says_whether_videos_failed(extracted, failed, flag, expected, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(cli, "_run_extract", lambda config: _summary(extracted, failed))
    code = cli.main(["extract", str(tmp_path), "--cache", str(tmp_path / "c"), *flag])
    err = capsys.readouterr().err
    assert code == expected
    if failed == extracted > 0:
        assert err.strip() == f"dfp extract: error: all {failed} videos failed (first: v0: moov atom not found)"
    elif expected == 3:
        assert err.strip() == f"dfp extract: error: {failed} of {extracted} videos failed (first: v0: moov atom not found)"
    else:
        assert err == ""


def test_extract_help_documents_exit_codes(capsys):
    assert cli.main(["extract", "--help"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "Exit codes: 0 ok, 2 usage error, 3 videos failed" in out and "--fail-on-error" in out


@pytest.mark.slow
def test_folder_of_corrupt_videos_exits_3(tmp_path):
    videos = tmp_path / "videos"
    videos.mkdir()
    rng = np.random.default_rng(0)
    for name in ("a.mp4", "b.mp4"):
        (videos / name).write_bytes(rng.integers(0, 256, 4096, dtype=np.uint8).tobytes())
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update({"DFP_HOME": str(tmp_path / "dfp-home"), "PYTHONPATH": str(REPO)})
    result = subprocess.run([sys.executable, "-m", "flows.cli", "extract", str(videos), "--cache", str(tmp_path / "c"),
                             "--workers", "1"], env=env, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert result.returncode == 3, result.stderr[-3000:]
    assert "0 ok, 0 no face, 2 failed" in result.stdout
    assert "dfp extract: error: all 2 videos failed (first: " in result.stderr


def _existing_run(tmp_path, marker="model_card.json"):
    cache, out = tmp_path / "cache", tmp_path / "run"
    (cache / "videos").mkdir(parents=True)  # what `dfp train` checks before it starts: a cache's videos table
    (out / "evaluations" / "other").mkdir(parents=True)
    (out / marker).write_text(json.dumps({"model": "old"}))
    (out / "evaluations" / "other" / "metrics.json").write_text("{}")
    return cache, out


@pytest.mark.parametrize("marker", ["model_card.json", "metrics.json"])
def test_train_refuses_an_existing_run_without_overwrite(marker, tmp_path, monkeypatch, capsys):
    cache, out = _existing_run(tmp_path, marker)
    started = []
    monkeypatch.setattr(cli, "_run_flow", lambda name, config: started.append(name))  # must never be reached
    code = cli.main(["train", str(cache), "--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and started == []
    assert err == (f"dfp train: error: {out} already holds a training run ({marker}): pass --overwrite to replace "
                   "it, or choose another --out")
    assert (out / marker).exists() and (out / "evaluations" / "other" / "metrics.json").exists()


def test_train_overwrite_clears_the_old_run_and_its_evaluations(tmp_path, monkeypatch):
    cache, out = _existing_run(tmp_path)
    configs = []
    monkeypatch.setattr(cli, "_run_flow", lambda name, config: configs.append(config) or {})
    monkeypatch.setattr(cli, "_print_metrics", lambda metrics: None)
    assert cli.main(["train", str(cache), "--out", str(out), "--overwrite"]) == 0
    assert configs[0].overwrite and not out.exists()


def test_train_flow_refuses_before_reading_the_cache(tmp_path, monkeypatch):
    from features.config import TrainConfig
    from flows import train

    cache, out = _existing_run(tmp_path)
    monkeypatch.setattr(train, "check_extraction_code", lambda *a: pytest.fail("cache read before the --out check"))
    with pytest.raises(ValueError, match="already holds a training run"):
        train.train_flow.fn(TrainConfig(cache=str(cache), out=str(out)))
