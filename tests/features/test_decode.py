import subprocess

import numpy as np
import pytest

from features.video.crops import GRID, grid_blockiness, grid_phase
from features.video.decode import StepError, check_complete, frame_limit, iter_frames, open_video, probe
from tests.conftest import shared_dataset, write_clip


def _numbered_clip(path, n=20, size=(64, 48)):
    frames = []
    for i in range(n):
        f = np.zeros((size[1], size[0], 3), np.uint8)
        f[:, :] = i * 10
        f[:10, :10] = 255  # marker in the top-left corner
        frames.append(f)
    return write_clip(path, frames, fps=20.0)


def test_streams_every_frame_in_order(tmp_path):
    path = _numbered_clip(tmp_path / "a.mp4", n=20)
    cap = open_video(str(path), "a")
    info = probe(cap)
    assert (info.width, info.height, info.frame_count, info.fps) == (64, 48, 20, 20.0)
    frames = list(iter_frames(cap, "a"))
    assert [i for i, _ in frames] == list(range(20))
    levels = [int(f[30, 30, 0]) for _, f in frames]
    assert all(abs(level - 10 * i) <= 8 for i, level in enumerate(levels))  # lossy codec, but in order


def test_frame_and_seconds_caps(tmp_path):
    path = _numbered_clip(tmp_path / "a.mp4", n=20)
    cap = open_video(str(path), "a")
    info = probe(cap)
    assert frame_limit(info, 5, None) == 5
    assert frame_limit(info, None, 0.5) == 10  # 0.5 s at 20 fps
    assert frame_limit(info, 8, 0.5) == 8
    assert len(list(iter_frames(cap, "a", limit=7))) == 7


def test_iter_frames_is_lazy(tmp_path):
    path = _numbered_clip(tmp_path / "a.mp4", n=20)
    frames = iter_frames(open_video(str(path), "a"), "a")
    assert next(frames)[0] == 0  # a generator: frames are decoded one at a time, never all at once


def test_rotation_metadata_gives_upright_frames(tmp_path):
    imageio_ffmpeg = pytest.importorskip("imageio_ffmpeg", reason="needs imageio-ffmpeg to write rotation metadata")
    src = _numbered_clip(tmp_path / "landscape.mp4", n=5)
    rotated = tmp_path / "portrait.mp4"
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-loglevel", "error", "-display_rotation:v:0", "90",
                    "-i", str(src), "-c", "copy", str(rotated)], check=True)
    cap = open_video(str(rotated), "portrait")
    info = probe(cap)
    _, frame = next(iter_frames(cap, "portrait"))
    assert info.rotation in (90, 270)
    assert frame.shape[:2] == (64, 48)  # displayed as portrait
    marker = np.argwhere(frame[..., 0] > 200)
    # Rotated 90 degrees counter-clockwise: the top-left marker is now bottom-left.
    assert marker[:, 0].min() >= 50 and marker[:, 1].max() <= 12


def test_grid_phase_matches_opencvs_rotation_on_real_files(tmp_path):
    """The coded block grid of a rotated file, decoded upright, lies where crops.grid_phase says."""
    imageio_ffmpeg = pytest.importorskip("imageio_ffmpeg", reason="needs imageio-ffmpeg to write rotation metadata")
    rng = np.random.default_rng(0)
    height, width = 148, 212  # both 4 mod 8
    blocks = rng.integers(40, 220, (height // GRID + 1, width // GRID + 1)).astype(np.uint8)
    grey = np.kron(blocks, np.ones((GRID, GRID), np.uint8))[:height, :width]
    src = write_clip(tmp_path / "blocks.mp4", [np.dstack([grey] * 3)] * 3, fps=10.0)
    seen = set()
    for flag in ("90", "180", "-90"):
        rotated = tmp_path / f"r{flag}.mp4"
        subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-loglevel", "error", "-display_rotation:v:0", flag,
                        "-i", str(src), "-c", "copy", str(rotated)], check=True)
        cap = open_video(str(rotated), rotated.name)
        info = probe(cap)
        frame = next(iter_frames(cap, rotated.name))[1][..., 0].astype(np.float32)
        h, w = frame.shape
        box = np.array([0, 0, w, h], np.float32)
        seen.add(info.rotation)
        values = {(px, py): grid_blockiness(frame, box, reach=1.0, phase=(px, py))
                  for px in range(GRID) for py in range(GRID)}
        phase = grid_phase(info.rotation, w, h)
        assert values[phase] == max(values.values()) and values[phase] > values[(0, 0)] + 30, flag
    assert seen == {90, 180, 270}


def test_zero_byte_file(tmp_path):
    path = tmp_path / "empty.mp4"
    path.write_bytes(b"")
    with pytest.raises(StepError, match=r"probe failed for empty.mp4: file is empty \(0 bytes\)"):
        open_video(str(path), "empty.mp4")


def test_not_a_video(tmp_path):
    path = tmp_path / "notes.mp4"
    path.write_text("this is a text file, not a video\n" * 50)
    with pytest.raises(StepError, match="probe failed for notes.mp4: OpenCV/FFmpeg cannot open it"):
        open_video(str(path), "notes.mp4")


def test_missing_file(tmp_path):
    with pytest.raises(StepError, match="probe failed for gone.mp4: file not found"):
        open_video(str(tmp_path / "gone.mp4"), "gone.mp4")


def test_truncated_stream_is_reported(tmp_path):
    with pytest.raises(StepError, match=r"decode failed for t.mp4 at frame 150: stream ended early: 150 of 300"):
        check_complete(probe_stub(300), 150, None, "t.mp4")
    check_complete(probe_stub(300), 299, None, "t.mp4")  # containers round: one frame short is fine
    check_complete(probe_stub(300), 40, 40, "t.mp4")  # a cap is not a truncation


def probe_stub(count):
    from features.video.decode import VideoProbe

    return VideoProbe(64, 48, 30.0, count, 0, "mp4v")


def test_portrait_dfdc_clip_decodes_upright():
    clip = shared_dataset("dfdc-mini") / "train_sample_videos" / "afoovlsmtx.mp4"
    cap = open_video(str(clip), "afoovlsmtx")
    info = probe(cap)
    _, frame = next(iter_frames(cap, "afoovlsmtx"))
    assert (info.width, info.height) == (1080, 1920)
    assert frame.shape[:2] == (1920, 1080)


def test_prefetch_keeps_order_and_reraises_decoder_errors():
    from features.video.decode import prefetch

    def frames():
        for i in range(20):
            yield i, np.full((4, 4), i, np.uint8)
        raise StepError("v", "decode", "boom", frame=20)

    seen = []
    with pytest.raises(StepError, match="decode failed for v at frame 20: boom"):
        for i, f in prefetch(frames(), depth=3):
            seen.append((i, int(f[0, 0])))
    assert seen == [(i, i) for i in range(20)]


def test_prefetch_stops_its_thread_when_the_consumer_stops(tmp_path):
    import threading

    from features.video.decode import prefetch

    path = _numbered_clip(tmp_path / "a.mp4", n=20)
    stream = prefetch(iter_frames(open_video(str(path), "a"), "a"), depth=2)
    assert next(stream)[0] == 0
    stream.close()
    assert not any(t.name == "dfp-decode" and t.is_alive() for t in threading.enumerate())
