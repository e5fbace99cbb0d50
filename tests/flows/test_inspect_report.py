"""dfp inspect and dfp report: every output exists, decodes, has the expected size, and renders in Chromium."""

import base64
import os
import re
import shutil
import subprocess

import cv2
import numpy as np
import pytest
from PIL import Image

from features.config import ExtractConfig
from features.store.datasets import discover
from features.store.delta_cache import DeltaCacheStore
from features.store.plan import VideoJob
from flows.inspect import inspect_video
from flows.report import write_report
from tasks.extract import file_state, run_extraction, video_row
from tests.conftest import shared_dataset


@pytest.fixture(scope="module")
def small_cache(demo_dir, tmp_path_factory):
    """The session's demo clips extracted into a cache without Prefect (tasks called as plain functions)."""
    cache = str(tmp_path_factory.mktemp("report") / "cache")
    config = ExtractConfig(cache=cache, detector="haar")
    store = DeltaCacheStore(cache)
    staged = []
    for entry in discover([str(demo_dir)]):
        state = file_state(entry, config)
        job = VideoJob(entry, state.fingerprint, state.cache_key, "new")
        result = run_extraction(job, config)
        staged.append(store.stage_video(video_row(job, config, result, total_s=1.0), result.faces, result.ssim))
    store.commit(staged)
    return cache


def _check_png(path, min_w=300, min_h=200):
    image = cv2.imread(path)
    assert image is not None and image.shape[1] >= min_w and image.shape[0] >= min_h
    assert image.std() > 10
    return image


def test_inspect_computes_what_is_not_cached(demo_dir, tmp_path):
    video = sorted(demo_dir.glob("*.mp4"))[0]
    paths = inspect_video(str(video), str(tmp_path / "out"), step=10, columns=3, rows=1)
    assert set(paths) == {"detections", "frames", "face", "ssim"}
    detections = _check_png(paths["detections"])
    assert detections.shape[0] == int(3.6 * 2 * 80)  # two rows: MTCNN and Haar
    frames = _check_png(paths["frames"], min_h=150)
    assert frames.shape[1] == int(3.2 * 3 * 80)
    gif = Image.open(paths["face"])
    assert gif.n_frames == 30 and gif.size == (160, 160)
    _check_png(paths["ssim"])


def test_inspect_reads_the_cache(small_cache, demo_dir, tmp_path):
    video = sorted(demo_dir.glob("*.mp4"))[1]
    paths = inspect_video(str(video), str(tmp_path / "out"), cache=small_cache, frame=5)
    assert os.path.exists(paths["ssim"]) and Image.open(paths["face"]).n_frames == 30


def test_inspect_a_real_portrait_clip(tmp_path):
    clip = shared_dataset("dfdc-mini") / "train_sample_videos" / "afoovlsmtx.mp4"
    paths = inspect_video(str(clip), str(tmp_path / "out"), step=60, columns=5, rows=1)
    frames = _check_png(paths["frames"])
    assert frames.shape[0] > frames.shape[1] / 5 * 1.3  # portrait panels are taller than wide
    assert Image.open(paths["face"]).n_frames == 300


def test_report_is_one_self_contained_html_file(small_cache, tmp_path):
    path = write_report(small_cache, str(tmp_path / "report.html"), sample=6)
    page = open(path, encoding="utf-8").read()
    for section in ("dataset", "health", "videos"):
        assert f"<section id='{section}'>" in page
    assert "http://" not in page and "https://" not in page  # nothing to fetch: readable offline
    images = re.findall(r"src='data:image/(png|jpeg);base64,([^']+)'", page)
    assert len(images) >= 1 + 6  # the pie chart and a face per sampled video
    for _, data in images:
        decoded = cv2.imdecode(np.frombuffer(base64.b64decode(data), np.uint8), cv2.IMREAD_COLOR)
        assert decoded is not None and decoded.std() > 5
    assert page.count("data-label='REAL'") == 3 and page.count("data-label='FAKE'") == 3


def test_report_renders_in_headless_chromium(small_cache, tmp_path):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        if os.environ.get("DFP_REQUIRE_CHROMIUM"):
            pytest.fail("chromium is required here (DFP_REQUIRE_CHROMIUM is set) but not installed")
        pytest.skip("chromium is not installed (the CI script installs Debian's chromium)")
    path = write_report(small_cache, str(tmp_path / "report.html"), sample=4)
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp_path / 'profile'}", "--hide-scrollbars", "--window-size=1280,2000"]
    shot = tmp_path / "report.png"
    subprocess.run([chromium, *flags, f"--screenshot={shot}", f"file://{path}"], check=True, timeout=120,
                   capture_output=True)
    image = _check_png(str(shot), 1280, 2000)
    assert (image < 250).mean() > 0.02  # text, charts and faces drawn, not an empty page
    dom = subprocess.run([chromium, *flags, "--dump-dom", f"file://{path}"], check=True, timeout=120,
                         capture_output=True, text=True).stdout
    for heading in ("Dataset", "Extraction health", "Videos (sample)"):
        assert f"<h2>{heading}</h2>" in dom
    assert dom.count("<img") >= 5


def test_a_fake_and_its_original_side_by_side(small_cache, demo_dir, tmp_path):
    import json

    from flows.inspect import inspect_videos

    metadata = json.loads((demo_dir / "metadata.json").read_text())
    fake = next(n for n, m in metadata.items() if m["label"] == "FAKE" and m["original"])
    pair = [str(demo_dir / metadata[fake]["original"]), str(demo_dir / fake)]
    results = inspect_videos(pair, str(tmp_path / "cmp"), cache=small_cache)
    assert set(results) == {*pair, "comparison"}
    image = _check_png(results["comparison"])
    assert image.shape[0] > image.shape[1] * 0.4
    page = open(write_report(small_cache, str(tmp_path / "r.html")), encoding="utf-8").read()
    assert "<section id='pairs'>" in page and page.count("<tr><td><img") == 4  # every fake beside its original
