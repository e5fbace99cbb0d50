"""Operations on real components: a `prefect server start` process and a `dask scheduler` with two `dask worker`
processes on loopback, one of which declares GPU=1."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from features.config import ExtractConfig, TrainConfig
from features.store.delta_cache import DeltaCacheStore
from tests.conftest import committed_videos as _committed
from tests.live_stack import BIN, DaskCluster, PrefectServer

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    live = PrefectServer.start(tmp_path_factory.mktemp("prefect-home"))
    yield live
    live.stop()


@pytest.fixture(scope="module")
def cluster(server, tmp_path_factory):
    live = DaskCluster.start(tmp_path_factory.mktemp("dask"), server.url)
    live.add_worker("cpu-0")
    live.add_worker("gpu-0", "--resources", "GPU=1")
    live.names = {addr: name for name, addr in live.wait_for_workers(2).items()}
    yield live
    live.stop()


@pytest.fixture()
def on_server(server, monkeypatch):
    """Flows called in this process report to the live server."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    monkeypatch.setenv("PREFECT_API_URL", server.url)
    with temporary_settings(updates={PREFECT_API_URL: server.url}):
        yield server.url


def _worker_processes(address: str) -> dict[str, str]:
    """Worker address -> the host:pid our tasks record in the videos table."""
    import socket

    from distributed import Client

    with Client(address, timeout=30) as client:
        return client.run(lambda: f"{socket.gethostname()}:{os.getpid()}")


def _flow_runs(flow_name: str) -> list:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName

    with get_client(sync_client=True) as client:
        return client.read_flow_runs(flow_filter=FlowFilter(name=FlowFilterName(any_=[flow_name])))


def _artifact_keys(flow_run_id) -> set[str]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id])))
    return {a.key for a in artifacts if a.key}


def test_extract_spreads_over_both_workers_and_the_run_shows_on_the_server(cluster, on_server, demo_dir, tmp_path):
    from flows.extract import extract_flow

    cache = tmp_path / "cache"
    summary = extract_flow(ExtractConfig(datasets=[str(demo_dir)], cache=str(cache), dask_address=cluster.address,
                                         detector="haar"))
    assert summary["extracted"] == 8 and summary["failed"] == 0
    videos = DeltaCacheStore(str(cache)).read("videos")
    processes = _worker_processes(cluster.address)
    assert set(videos.worker) == set(processes.values())  # each of the two workers extracted some videos
    runs = [r for r in _flow_runs("extract") if r.parameters["config"]["cache"] == str(cache)]
    assert len(runs) == 1 and runs[0].state.is_completed()
    assert {"extract-summary", "extract-status", "extract-progress"} <= _artifact_keys(runs[0].id)


def test_cnn_training_lands_on_the_gpu_worker(cluster, on_server, demo_dir, tmp_path):
    from flows.extract import extract_flow
    from flows.train import train_flow

    cache = str(tmp_path / "cache")
    extract_flow(ExtractConfig(datasets=[str(demo_dir)], cache=cache, dask_address=cluster.address, detector="haar"))
    metrics = train_flow(TrainConfig(cache=cache, out=str(tmp_path / "run"), model="cnn", folds=2, cnn_epochs=1,
                                     dask_address=cluster.address))
    assert [cluster.names[w] for w in metrics["fit_workers"]] == ["gpu-0"]
    assert (tmp_path / "run" / "model.keras").is_file()
    runs = [r for r in _flow_runs("train") if r.parameters["config"]["out"] == str(tmp_path / "run")]
    assert runs[0].state.is_completed() and "train-metrics" in _artifact_keys(runs[0].id)


def test_a_cluster_worker_that_cannot_see_a_local_cache_is_refused(cluster, on_server, demo_dir, tmp_path, monkeypatch):
    from flows import runtime
    from flows.extract import extract_flow

    # Pretend the workers are on another machine: they look for every path under a root they do not have.
    real = runtime.check_shared_storage

    def elsewhere(client, written, read=()):
        return real(client, [str(tmp_path / "not-shared")], read=[f"/nonexistent{p}" for p in read])

    monkeypatch.setattr("flows.extract.check_shared_storage", elsewhere)
    with pytest.raises(RuntimeError, match=r"Dask workers cannot see local paths.*\n  tcp://127\.0\.0\.1:\d+: "
                                           r"/nonexistent(?s:.*)Use an object-store cache"):
        extract_flow(ExtractConfig(datasets=[str(demo_dir)], cache=str(tmp_path / "cache"),
                                   dask_address=cluster.address, detector="haar"))
    assert not (tmp_path / "cache" / "videos").exists()  # refused before any video was written


def _latest_run_record(cache: Path) -> dict:
    return json.loads(sorted((cache / "runs").glob("extract-*.json"), key=os.path.getmtime)[-1].read_text())


def test_a_served_deployment_triggered_through_the_api_runs_incrementally(server, cluster, demo_dir, tmp_path):
    from prefect.client.orchestration import get_client
    from prefect.deployments import run_deployment
    from prefect.settings import PREFECT_API_URL, temporary_settings

    clips = sorted(demo_dir.glob("*.mp4"))
    inbox, cache = tmp_path / "videos", tmp_path / "cache"
    inbox.mkdir()
    for clip in clips[:4]:
        shutil.copyfile(clip, inbox / clip.name)
    env = {**os.environ, "PREFECT_API_URL": server.url, "PREFECT_RUNNER_POLL_FREQUENCY": "1",
           "DFP_DATASETS": str(inbox), "DFP_CACHE": str(cache), "DFP_RUNS": str(tmp_path / "runs"),
           "DFP_INBOX": str(inbox), "DFP_DASK_ADDRESS": cluster.address}
    log = tmp_path / "serve.log"
    serving = subprocess.Popen([str(BIN / "dfp"), "serve", "--file", str(REPO / "prefect.yaml"), "--only", "extract"],
                               env=env, stdout=open(log, "wb"), stderr=subprocess.STDOUT, start_new_session=True)
    try:
        with temporary_settings(updates={PREFECT_API_URL: server.url}):
            with get_client(sync_client=True) as client:
                deadline = time.monotonic() + 120
                while True:
                    try:
                        deployment = client.read_deployment_by_name("extract/extract")
                        break
                    except Exception:  # noqa: BLE001 - not registered yet
                        assert serving.poll() is None, log.read_text()
                        assert time.monotonic() < deadline, log.read_text()
                        time.sleep(0.5)
            assert deployment.parameters["config"] == {"datasets": [str(inbox)], "cache": str(cache),
                                                         "detector": "mtcnn", "compact": True}
            assert [s.schedule.cron for s in deployment.schedules] == ["0 2 * * *"]

            first = run_deployment("extract/extract", parameters={"config": {"datasets": [str(inbox)], "cache": str(cache),
                                                                              "detector": "haar"}}, timeout=300)
            assert first.state.is_completed(), log.read_text()[-3000:]
            assert _latest_run_record(cache)["added"] == 4

            shutil.copyfile(clips[4], inbox / clips[4].name)  # one new video
            shutil.copyfile(clips[5], inbox / clips[0].name)  # one changed video
            second = run_deployment("extract/extract", parameters={"config": {"datasets": [str(inbox)], "cache": str(cache),
                                                                               "detector": "haar"}}, timeout=300)
            assert second.state.is_completed(), log.read_text()[-3000:]
        record = _latest_run_record(cache)
        assert (record["added"], record["redone"], record["skipped"], record["extracted"]) == (1, 1, 3, 2)
        assert "3 cached; 1 added, 1 redone" in record["line"]
        assert len(DeltaCacheStore(str(cache)).read("videos")) == 5
    finally:
        serving.terminate()
        serving.wait(timeout=30)


def test_killing_a_worker_mid_extraction_loses_and_duplicates_nothing(server, on_server, tmp_path):
    import threading

    from features.video.demo import make_demo_dataset
    from flows.extract import extract_flow

    data = make_demo_dataset(tmp_path / "clips", n_clips=10, frames=150, seed=3)
    cluster = DaskCluster.start(tmp_path / "dask", server.url)
    try:
        cluster.add_worker("a")
        cluster.add_worker("b")
        cluster.wait_for_workers(2)
        cache = tmp_path / "cache"
        config = ExtractConfig(datasets=[str(data)], cache=str(cache), dask_address=cluster.address, detector="haar",
                               commit_every=1)
        outcome: dict = {}
        run = threading.Thread(target=lambda: outcome.update(first=extract_flow(config)))
        run.start()
        deadline = time.monotonic() + 120
        while not (cache / "videos" / "_delta_log").exists() or not _committed(cache):
            assert time.monotonic() < deadline and run.is_alive()
            time.sleep(0.05)
        cluster.kill_worker("a")  # mid-run: its current video is lost in flight
        committed_at_kill = _committed(cache)
        run.join(timeout=300)
        first = outcome["first"]
        assert committed_at_kill < 10 and first["extracted"] == 10
        second = extract_flow(config)  # Dask rescheduled the lost video, or this rerun redoes it
        assert second["extracted"] == first["failed"] and second["failed"] == 0
        assert extract_flow(config)["extracted"] == 0  # and then the cache is complete
    finally:
        cluster.stop()

    store = DeltaCacheStore(str(cache))
    videos = store.read("videos")
    assert len(videos) == 10 and videos.video_id.is_unique and (videos.status != "failed").all()
    for table in ("faces", "ssim"):  # every video's rows come from one committed write: the one its row names
        rows = store.read(table, columns=["video_id", "cache_key"])
        assert rows.video_id.nunique() == 10 and (rows.cache_key == rows.video_id.map(
            videos.set_index("video_id").cache_key)).all()
    ssim = store.read("ssim")
    assert set(ssim.cache_key) == set(videos.cache_key)
    frame_series = ssim[ssim.track_id == -1].groupby("video_id").size()
    assert (frame_series == 149).all() and len(frame_series) == 10  # every frame pair of every clip, once
    assert not ssim.duplicated(["video_id", "track_id", "frame_index"]).any()
