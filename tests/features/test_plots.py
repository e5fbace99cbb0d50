import cv2
import numpy as np
from PIL import Image

from features.visuals.plots import detections_png, face_gif, frames_png, sharp_drops, ssim_png
from tests.conftest import face_scene


def _rgb():
    return cv2.cvtColor(face_scene(), cv2.COLOR_BGR2RGB)


def _read(path):
    image = cv2.imread(str(path))
    assert image is not None
    assert image.std() > 10  # not blank
    return image


def test_detections_has_one_row_per_detector(tmp_path):
    frame = _rgb()
    rows = [("MTCNN", frame, np.array([[58, 112, 154, 208]]), frame[100:220, 50:170]),
            ("Haar cascade", frame, np.zeros((0, 4)), None)]
    image = _read(detections_png(rows, "clip.mp4 — FAKE", tmp_path / "d.png"))
    assert image.shape[:2] == (int(3.6 * 2 * 80), 13 * 80)
    single = _read(detections_png(rows[:1], "clip.mp4", tmp_path / "one.png"))
    assert single.shape[0] == int(3.6 * 80)


def test_frame_grid_size_follows_columns(tmp_path):
    frames = [(i * 30, _rgb()) for i in range(6)]
    image = _read(frames_png(frames, 3, "grid", tmp_path / "f.png"))
    assert image.shape[1] == int(3.2 * 3 * 80)
    wide = _read(frames_png(frames, 6, "grid", tmp_path / "w.png"))
    assert wide.shape[1] == int(3.2 * 6 * 80) and wide.shape[0] < image.shape[0]


def test_face_gif_has_every_crop_at_the_video_frame_rate(tmp_path):
    crops = [np.full((32, 32, 3), 20 * i, np.uint8) for i in range(10)]
    gif = Image.open(face_gif(crops, 25.0, tmp_path / "face.gif"))
    assert gif.n_frames == 10 and gif.size == (32, 32) and gif.info["duration"] == 40


def test_ssim_plot_and_drops(tmp_path):
    frames = np.arange(1, 60)
    values = np.full(59, 0.97)
    values[[10, 40]] = 0.7
    drops = sharp_drops(values, frames)
    assert drops.tolist() == [11, 41]
    image = _read(ssim_png((frames, values + 0.01), (frames, values), 30.0, drops, "t", "FAKE", tmp_path / "s.png"))
    assert image.shape[:2] == (4 * 90, 10 * 90)
