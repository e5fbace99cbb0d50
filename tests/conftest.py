"""Shared fixtures: telemetry off, one Prefect test harness per session, generated clips, the shared real clips."""

from __future__ import annotations

import os

# One thread per pool unless a test says otherwise (@pytest.mark.threads(n)): set before numpy, OpenCV or
# TensorFlow load their pools. On 2 shared cores, oversubscribed pools made the features tests 5x slower.
THREAD_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "TF_NUM_INTRAOP_THREADS",
              "TF_NUM_INTEROP_THREADS")
for _name in THREAD_ENV:
    os.environ[_name] = "1"

from pathlib import Path  # noqa: E402 - after the thread caps

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

from flows.runtime import configure_environment  # noqa: E402

configure_environment()
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
cv2.setNumThreads(1)


def pytest_configure(config):
    config.addinivalue_line("markers", "threads(n): run this test with n OpenCV and BLAS/OpenMP threads, not 1")


@pytest.fixture(autouse=True)
def thread_caps(request):
    """Hold every test to one OpenCV and BLAS/OpenMP thread, or to the n of its `threads` marker."""
    marker = request.node.get_closest_marker("threads")
    n = int(marker.args[0]) if marker else 1
    cv2.setNumThreads(n)
    with threadpool_limits(limits=n):
        yield
    cv2.setNumThreads(1)


@pytest.fixture(autouse=True)
def restore_environment():
    """Undo what a test's in-process `dfp` call wrote to os.environ (log levels, DFP_WORKER_LOG).

    Left set, DASK_LOGGING__DISTRIBUTED=error reached the `dask scheduler` of a later live-stack test, which then
    never printed the line its start-up check waited for.
    """
    saved = dict(os.environ)
    yield
    for key in set(os.environ) - set(saved):
        del os.environ[key]
    os.environ.update(saved)


REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("DFP_SHARED_DATA", REPO.parent / "shared" / "data"))


def shared_dataset(name: str) -> Path:
    """A folder of ../shared/data, or skip the test saying why."""
    path = SHARED_DATA / name
    if not path.is_dir():
        pytest.skip(f"real clips not available: {path} is absent (set DFP_SHARED_DATA to the shared data folder)")
    return path


@pytest.fixture(scope="session")
def prefect_harness():
    """One temporary Prefect API for every flow test of the session."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture(scope="session")
def demo_dir(tmp_path_factory) -> Path:
    """Eight small generated DFDC-style clips (4 REAL, 4 FAKE), made once per session."""
    from features.video.demo import make_demo_dataset

    return make_demo_dataset(tmp_path_factory.mktemp("demo") / "dfdc-demo", n_clips=8, frames=30, seed=7)


def write_clip(path: Path, frames: list[np.ndarray], fps: float = 25.0) -> Path:
    """Write BGR frames as an MP4 with OpenCV."""
    h, w = frames[0].shape[:2]
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    assert writer.isOpened()
    for frame in frames:
        writer.write(frame)
    writer.release()
    return path


def face_scene(width: int = 480, height: int = 320, faces: int = 1, shift: int = 0) -> np.ndarray:
    """A BGR frame with one or two real faces (astronaut, Grace Hopper) on a grey background."""
    from features.video.demo import load_portraits

    frame = np.full((height, width, 3), 90, np.uint8)
    for i, portrait in enumerate(load_portraits()[:faces]):
        x, y, w, h = portrait.face
        pad = w // 2
        crop = portrait.image[max(y - pad, 0):y + h + pad, max(x - pad, 0):x + w + pad]
        side = int(height * 0.6)
        crop = cv2.resize(crop, (side, side))
        ox = 10 + shift + i * (width // 2)
        oy = (height - side) // 2
        frame[oy:oy + side, ox:ox + side] = cv2.cvtColor(crop, cv2.COLOR_RGB2BGR)
    return frame


def count_opens(monkeypatch, folder) -> list[str]:
    """Every open of a file under `folder`, through fsspec's local filesystem and through builtins.open."""
    import builtins

    from fsspec.implementations.local import LocalFileSystem

    opened = []
    real_open, real_fs_open = builtins.open, LocalFileSystem._open

    def counting_open(file, *args, **kwargs):
        if str(file).startswith(str(folder)):
            opened.append(str(file))
        return real_open(file, *args, **kwargs)

    def counting_fs_open(self, path, *args, **kwargs):
        if str(path).startswith(str(folder)):
            opened.append(str(path))
        return real_fs_open(self, path, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", counting_open)
    monkeypatch.setattr(LocalFileSystem, "_open", counting_fs_open)
    return opened


@pytest.fixture(scope="session")
def s3_endpoint():
    """A local S3-compatible server (moto) on 127.0.0.1, with credentials in the standard environment variables."""
    import socket
    import subprocess
    import sys
    import time
    import urllib.request

    pytest.importorskip("moto", reason="needs moto[server] for a local S3 endpoint")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(url, timeout=1)
            break
        except OSError:
            if time.monotonic() > deadline or server.poll() is not None:
                server.kill()
                pytest.fail("the local moto S3 server did not start")
            time.sleep(0.2)
    saved = {k: os.environ.get(k) for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL",
                                            "AWS_DEFAULT_REGION")}
    os.environ.update({"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_ENDPOINT_URL": url, "AWS_DEFAULT_REGION": "us-east-1"})
    try:
        yield url
    finally:
        server.terminate()
        server.wait(timeout=10)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture()
def s3_bucket(s3_endpoint, request):
    """A fresh bucket on the local S3 server; returns its s3:// URL."""
    import uuid

    import fsspec

    name = f"dfp-{uuid.uuid4().hex[:12]}"
    fs = fsspec.filesystem("s3", skip_instance_cache=True)
    fs.mkdir(name)
    return f"s3://{name}"


def committed_videos(cache) -> int:
    """Videos rows a cache's Delta videos table holds now (0 before its first commit)."""
    from features.store.delta_cache import DeltaCacheStore

    return len(DeltaCacheStore(str(cache)).read("videos", columns=["video_id"]))


def read_table(cache, table: str):
    """A cache table as the flows read it: each video's current rows."""
    from features.store.delta_cache import DeltaCacheStore

    return DeltaCacheStore(str(cache)).read(table)
