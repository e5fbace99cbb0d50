"""Shared fixtures: telemetry off, one Prefect test harness per session, generated clips, the shared real clips."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from flows.runtime import configure_environment

configure_environment()
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

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
    from features.demo import make_demo_dataset

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
    from features.demo import load_portraits

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
