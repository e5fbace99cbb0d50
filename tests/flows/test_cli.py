"""The dfp command as a user runs it: its own local Prefect server, a LocalCluster, real clips, a kill."""

import os
import re
import signal
import subprocess
import sys
import time

import psutil
import pytest

from features.config import TrainConfig
from flows.cli import main
from tests.conftest import REPO, committed_videos, read_table, shared_dataset

pytestmark = pytest.mark.slow


def _env(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update({"DFP_HOME": str(tmp_path / "dfp-home"), "PYTHONPATH": str(REPO)})
    return env


def _dfp(*args, env, timeout=600):
    return subprocess.run([sys.executable, "-m", "flows.cli", *args], env=env, cwd=REPO, capture_output=True,
                          text=True, timeout=timeout)


@pytest.mark.parametrize("command, option", [("extract", "--keyframe-interval"), ("demo", "--clips"),
                                             ("train", "--folds"), ("evaluate", "--cache"), ("score", "--run")])
def test_every_subcommand_has_help(command, option, capsys):
    assert main([command, "--help"]) == 0
    out = capsys.readouterr().out
    assert f"Usage: dfp {command}" in out and option in out


def test_bad_dataset_is_one_clear_line(tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "metadata.json").write_text("{oops")
    result = _dfp("extract", str(broken), "--cache", str(tmp_path / "c"), env=_env(tmp_path), timeout=120)
    assert result.returncode == 2
    assert "dfp extract: error: cannot read" in result.stderr and "metadata.json" in result.stderr


def test_shared_dfdc_and_ffpp_mini_extract_with_right_groups(tmp_path):
    dfdc = shared_dataset("dfdc-mini") / "train_sample_videos"
    ffpp = shared_dataset("ffpp-mini")
    cache = tmp_path / "cache"
    result = _dfp("extract", str(dfdc), str(ffpp), "--cache", str(cache), "--max-seconds", "2", env=_env(tmp_path))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "20 ok, 0 no face, 0 failed, 0 cached" in result.stdout
    videos = read_table(cache, "videos").set_index("video_id")
    assert len(videos) == 20 and (videos.status == "ok").all()
    assert videos.loc["train_sample_videos/acqfdwsrhi", "leakage_group"] == \
        videos.loc["train_sample_videos/ccfoszqabv", "leakage_group"]
    ff = videos[videos.dataset == "ffpp-mini"]
    fake = ff[ff.relpath.str.endswith("Deepfakes/c23/videos/183_253.mp4")].leakage_group.item()
    assert set(ff[ff.label == "REAL"].leakage_group) == {fake}
    assert set(ff.method.dropna()) == {"Deepfakes", "Face2Face", "FaceSwap", "NeuralTextures", "FaceShifter"}
    portrait = videos.loc["train_sample_videos/afoovlsmtx"]
    assert (portrait.width, portrait.height) == (1080, 1920)
    ssim = read_table(cache, "ssim")
    frames = ssim[ssim.track_id == -1].groupby("video_id").size()
    assert (frames == videos.loc[frames.index, "frames_decoded"] - 1).all()
    assert set(read_table(cache, "faces").video_id) == set(videos.index)

    server_log = tmp_path / "dfp-home" / "prefect" / "server.log"
    log_size = server_log.stat().st_size
    rerun = _dfp("extract", str(dfdc), str(ffpp), "--cache", str(cache), "--max-seconds", "2", env=_env(tmp_path))
    assert "0 ok, 0 no face, 0 failed, 20 cached" in rerun.stdout
    assert server_log.stat().st_size == log_size  # nothing to do: no server, no cluster was started
    assert len(list((cache / "runs").glob("extract-*.json"))) == 2


def _kill_tree(pid):
    parent = psutil.Process(pid)
    procs = [parent, *parent.children(recursive=True)]
    for proc in procs:
        try:
            proc.send_signal(signal.SIGKILL)
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(procs, timeout=10)


def test_killed_run_resumes_with_no_duplicates(demo_dir, tmp_path):
    """SIGKILL of the CLI, its Prefect server and its workers mid-run: what was committed stays, the staged files of
    the uncommitted videos stay invisible, and the rerun extracts exactly the others."""
    from features.store.delta_cache import DeltaCacheStore

    cache = tmp_path / "cache"
    env = _env(tmp_path)
    args = [sys.executable, "-m", "flows.cli", "extract", str(demo_dir), "--cache", str(cache), "--workers", "1",
            "--commit-every", "2"]
    process = subprocess.Popen(args, env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            if (cache / "videos" / "_delta_log").exists() and committed_videos(cache) >= 2:
                break
            time.sleep(0.05)
        _kill_tree(process.pid)
    finally:
        if process.poll() is None:
            process.kill()
    committed_at_kill = committed_videos(cache)
    assert 2 <= committed_at_kill < 8, "the kill must land mid-run for this test to mean anything"
    assert committed_at_kill % 2 == 0  # whole batches of two

    result = _dfp("extract", str(demo_dir), "--cache", str(cache), "--workers", "1", env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"{committed_at_kill} cached" in result.stdout

    store = DeltaCacheStore(str(cache))
    videos = store.read("videos")
    assert len(videos) == 8 and videos.video_id.is_unique and (videos.status != "failed").all()
    faces = store.read("faces")
    assert faces.groupby(["video_id", "track_id", "frame_index"]).size().max() == 1
    ssim = store.read("ssim")
    assert ssim.groupby(["video_id", "track_id", "frame_index"]).size().max() == 1
    keys = videos.set_index("video_id").cache_key
    assert (faces.cache_key == faces.video_id.map(keys)).all()


def test_a_second_run_on_a_busy_cache_refuses_with_a_clear_message(demo_dir, tmp_path):
    from features.store.delta_cache import DeltaCacheStore

    cache = tmp_path / "cache"
    with DeltaCacheStore(str(cache)).run_lock("extract"):
        result = _dfp("extract", str(demo_dir), "--cache", str(cache), "--detector", "haar", env=_env(tmp_path),
                      timeout=300)
    assert result.returncode == 2
    assert "dfp extract: error: extract refused: another run is writing to" in result.stderr
    assert not (cache / "videos").exists()  # nothing was written


def test_two_extracts_started_together_on_one_cache_lose_and_duplicate_nothing(demo_dir, tmp_path):
    """Two `dfp extract` runs of one dataset started at once on one cache, as two cron jobs would: each either
    extracts or is refused in one line, and the Delta tables hold every video once, with no row written twice."""
    from deltalake import DeltaTable

    cache = tmp_path / "cache"
    args = [sys.executable, "-m", "flows.cli", "extract", str(demo_dir), "--cache", str(cache), "--detector", "haar",
            "--workers", "1"]
    runs = [subprocess.Popen(args, env=_env(tmp_path), cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True) for _ in range(2)]
    outcomes = [(run.wait(timeout=600), *run.communicate()) for run in runs]
    codes = sorted(code for code, _, _ in outcomes)
    assert codes in ([0, 0], [0, 2]), outcomes
    for code, out, err in outcomes:
        if code == 2:  # refused: it wrote nothing
            assert "dfp extract: error: extract refused: another run is writing to" in err
        else:
            assert "0 failed" in out, out
    done = [re.search(r"(\d+) ok, (\d+) no face", out) for code, out, _ in outcomes if code == 0]
    assert sum(int(m[1]) + int(m[2]) for m in done) == 8  # each video extracted by exactly one of the two runs

    videos = read_table(cache, "videos")
    assert len(videos) == 8 and videos.video_id.is_unique and (videos.status != "failed").all()
    for table in ("faces", "ssim"):
        current = read_table(cache, table)
        assert len(current) > 0
        assert len(DeltaTable(str(cache / table)).to_pyarrow_table()) == len(current), table  # no row twice


def test_train_defaults_to_the_best_measured_model(tmp_path, monkeypatch):
    from flows import cli

    (tmp_path / "cache" / "videos").mkdir(parents=True)
    configs = []
    monkeypatch.setattr(cli, "_run_flow", lambda name, config: configs.append(config) or {})
    monkeypatch.setattr(cli, "_print_metrics", lambda metrics: None)
    assert main(["train", str(tmp_path / "cache"), "--out", str(tmp_path / "run")]) == 0
    assert configs[0].model == "crop_linear" and configs[0].folds == 5
    assert TrainConfig(cache="cache", out="run").model == "crop_linear"
