import cv2
import numpy as np
import pytest

from features.config import ExtractConfig
from features.video.crops import NATIVE_MIN_SIDE, square_box
from features.video.decode import StepError
from features.video.extract import FRAME_TRACK_ID, extract_video, sample_frames
from features.video.faces import HaarDetector, MtcnnDetector
from tests.conftest import face_scene, shared_dataset, write_clip


@pytest.fixture(scope="module")
def haar():
    return HaarDetector()


@pytest.fixture(scope="module")
def mtcnn():
    return MtcnnDetector()


def _moving_face_clip(path, n=25, faces=1):
    return write_clip(path, [face_scene(faces=faces, shift=i) for i in range(n)])


def test_one_face_every_frame_has_a_box_and_ssim_has_frames_minus_one_values(tmp_path, haar):
    clip = _moving_face_clip(tmp_path / "one.mp4", n=25)
    cfg = ExtractConfig(detector="haar", keyframe_interval=5, crops_per_video=8, crop_size=96)
    result = extract_video(str(clip), "one", cfg, haar)
    v = result.video
    assert result.status == "ok" and v["status"] == "ok"
    assert (v["frames_decoded"], v["width"], v["height"], v["n_tracks"], v["main_track_id"]) == (25, 480, 320, 1, 0)
    assert v["keyframes"] == 6 and v["keyframes_with_face"] == 6  # frames 0, 5, 10, 15, 20 and the last, 24
    assert sorted(r["frame_index"] for r in result.faces) == list(range(25))
    assert [r["detected"] for r in result.faces if r["frame_index"] % 5 == 0] == [True] * 5
    frame_series = [r for r in result.ssim if r["track_id"] == FRAME_TRACK_ID]
    face_series = [r for r in result.ssim if r["track_id"] == 0]
    assert len(frame_series) == 24
    assert len(face_series) == len(result.faces) - 1
    assert all(0.0 < r["ssim"] <= 1.0 and r["sharpness"] > 0 for r in face_series)
    crops = [r for r in result.faces if r["crop_jpeg"] is not None]
    assert len(crops) == 8 and v["crops_stored"] == 8
    image = cv2.imdecode(np.frombuffer(crops[0]["crop_jpeg"], np.uint8), cv2.IMREAD_COLOR)
    assert image.shape == (96, 96, 3)
    # Each stored crop also has its lossless twin at the video's own scale: the square around the box, in frame
    # pixels, clipped to [NATIVE_MIN_SIDE, crop_size].
    assert all(r["crop_lossless"] is not None for r in crops)
    assert all(r["crop_lossless"] is None for r in result.faces if r["crop_jpeg"] is None)
    for r in crops:
        native = cv2.imdecode(np.frombuffer(r["crop_lossless"], np.uint8), cv2.IMREAD_COLOR)
        x1, y1, x2, y2 = np.round(square_box(np.array([r["x1"], r["y1"], r["x2"], r["y2"]]), 0.3)).astype(int)
        assert native.shape == (int(np.clip(x2 - x1, NATIVE_MIN_SIDE, 96)),) * 2 + (3,)
    # and its face centre's block-grid measure (a float on crop frames only); the videos row has the file size.
    assert all(isinstance(r["grid_blockiness"], float) for r in crops)
    assert all(r["grid_blockiness"] is None for r in result.faces if r["crop_jpeg"] is None)
    assert v["file_bytes"] == clip.stat().st_size
    # The tracked box follows the face as it moves right one pixel per frame.
    boxes = {r["frame_index"]: r["x1"] for r in result.faces}
    assert boxes[20] - boxes[0] == pytest.approx(20, abs=6)


def test_lossless_crops_are_the_frame_pixels_when_the_face_is_smaller_than_crop_size(tmp_path, haar):
    clip = _moving_face_clip(tmp_path / "lossless.mp4", n=6)
    cfg = ExtractConfig(detector="haar", keyframe_interval=5, crops_per_video=3, crop_size=400)
    result = extract_video(str(clip), "lossless", cfg, haar)
    crops = [r for r in result.faces if r["crop_lossless"] is not None]
    assert len(crops) == 3
    for r in crops:
        native = cv2.imdecode(np.frombuffer(r["crop_lossless"], np.uint8), cv2.IMREAD_COLOR)
        x1, y1, x2, y2 = np.round(square_box(np.array([r["x1"], r["y1"], r["x2"], r["y2"]]), 0.3)).astype(int)
        assert NATIVE_MIN_SIDE < native.shape[0] == x2 - x1 < 400  # neither enlarged to 400 nor shrunk
        jpeg = cv2.imdecode(np.frombuffer(r["crop_jpeg"], np.uint8), cv2.IMREAD_COLOR)
        assert jpeg.shape == (400, 400, 3)  # the JPEG crop is resized to crop_size as before


def test_mtcnn_gives_confidence_and_landmarks_and_two_faces_make_two_tracks(tmp_path, mtcnn):
    clip = _moving_face_clip(tmp_path / "two.mp4", n=12, faces=2)
    cfg = ExtractConfig(detector="mtcnn", keyframe_interval=4, crops_per_video=4)
    result = extract_video(str(clip), "two", cfg, mtcnn)
    assert result.status == "ok"
    assert result.video["n_tracks"] == 2
    detected = [r for r in result.faces if r["detected"]]
    assert all(r["confidence"] > 0.9 and len(r["landmarks"]) == 10 for r in detected)
    tracked = [r for r in result.faces if not r["detected"]]
    assert tracked and all(r["confidence"] is None and r["landmarks"] is None for r in tracked)
    assert sum(r["is_main"] for r in result.faces) == 12  # the main track covers every frame
    for lm in (r["landmarks"] for r in detected):
        eyes_y, mouth_y = (lm[1] + lm[3]) / 2, (lm[7] + lm[9]) / 2
        assert eyes_y < mouth_y  # upright faces


def test_sharpness_drops_when_the_face_is_blurred(tmp_path, mtcnn):
    import cv2 as _cv2

    frames = [face_scene() if i < 6 else _cv2.GaussianBlur(face_scene(), (0, 0), 2) for i in range(12)]
    result = extract_video(str(write_clip(tmp_path / "blur.mp4", frames)), "blur",
                           ExtractConfig(keyframe_interval=3), mtcnn)
    face = {r["frame_index"]: r["sharpness"] for r in result.ssim if r["track_id"] == 0}
    assert face[10] < 0.5 * face[3]


def test_no_face_keeps_the_frame_series(tmp_path, haar):
    frames = [np.full((120, 160, 3), 40 + i, np.uint8) for i in range(10)]
    clip = write_clip(tmp_path / "blank.mp4", frames)
    result = extract_video(str(clip), "blank", ExtractConfig(detector="haar"), haar)
    assert result.status == "no_face"
    assert result.faces == []
    assert len(result.ssim) == 9 and {r["track_id"] for r in result.ssim} == {FRAME_TRACK_ID}
    assert result.video["face_detection_rate"] == 0.0


def test_frame_cap(tmp_path, haar):
    clip = _moving_face_clip(tmp_path / "one.mp4", n=25)
    result = extract_video(str(clip), "one", ExtractConfig(detector="haar", max_frames=10), haar)
    assert result.video["frames_decoded"] == 10
    assert len([r for r in result.ssim if r["track_id"] == FRAME_TRACK_ID]) == 9


def test_corrupt_file_raises_a_step_error_naming_the_video(tmp_path, haar):
    clip = _moving_face_clip(tmp_path / "one.mp4", n=25)
    data = bytearray(clip.read_bytes())
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(bytes(data[: len(data) // 2]))
    with pytest.raises(StepError) as err:
        extract_video(str(truncated), "truncated.mp4", ExtractConfig(detector="haar"), haar)
    assert "truncated.mp4" in str(err.value) and err.value.step in ("probe", "decode")


def test_sample_frames_are_evenly_spaced():
    assert sample_frames(300, 4, 10) == {0, 100, 199, 299}
    assert sample_frames(3, 32, 10) == {0, 1, 2}
    assert sample_frames(None, 3, 10) == {0, 10, 20}
    assert sample_frames(100, 0, 10) == set()


@pytest.mark.parametrize("name", ["afoovlsmtx", "caifxvsozs", "ccfoszqabv", "abofeumbvv"])
def test_dfdc_clips_faces_on_90_percent_of_keyframes(name, mtcnn):
    """The three REAL clips of dfdc-mini, and a very dark fake, full length, default settings."""
    clip = shared_dataset("dfdc-mini") / "train_sample_videos" / f"{name}.mp4"
    result = extract_video(str(clip), name, ExtractConfig(), mtcnn)
    v = result.video
    assert result.status == "ok"
    assert v["keyframes_with_face"] / v["keyframes"] >= 0.9
    assert v["frames_decoded"] == 300
    assert len([r for r in result.ssim if r["track_id"] == FRAME_TRACK_ID]) == v["frames_decoded"] - 1
    main = [r for r in result.faces if r["is_main"]]
    main_ssim = [r for r in result.ssim if r["is_main"]]
    assert len(main_ssim) == len(main) - 1
    for r in main:
        if r["detected"]:
            lm = r["landmarks"]
            assert (lm[1] + lm[3]) / 2 < (lm[7] + lm[9]) / 2  # eyes above the mouth: upright


def test_tf_ssim_backend_gives_the_same_series(tmp_path, haar):
    clip = _moving_face_clip(tmp_path / "one.mp4", n=12)
    numpy_rows = extract_video(str(clip), "one", ExtractConfig(detector="haar"), haar).ssim
    tf_rows = extract_video(str(clip), "one", ExtractConfig(detector="haar", ssim_backend="tf"), haar).ssim
    assert [(r["track_id"], r["frame_index"]) for r in numpy_rows] == [(r["track_id"], r["frame_index"]) for r in tf_rows]
    assert max(abs(a["ssim"] - b["ssim"]) for a, b in zip(numpy_rows, tf_rows, strict=True)) < 1e-3


def test_grid_blockiness_is_measured_on_the_coded_grid_of_a_rotated_video(tmp_path, haar):
    imageio_ffmpeg = pytest.importorskip("imageio_ffmpeg", reason="needs imageio-ffmpeg to write rotation metadata")
    import subprocess

    from features.video.crops import grid_blockiness, grid_phase
    from features.video.decode import iter_frames, open_video

    # Stored upside down, with block steps on the coded grid, and flagged to be turned by 180 degrees: decoded
    # upright, with sides of 4 mod 8, so the coded grid sits at (4, 4) in the upright frames.
    rng = np.random.default_rng(0)
    steps = np.kron(rng.integers(-8, 9, (40, 60)), np.ones((8, 8), int))[:316, :476, None]
    frames = [np.clip(face_scene(width=476, height=316)[::-1, ::-1] + steps, 0, 255).astype(np.uint8)
              for _ in range(6)]
    stored = write_clip(tmp_path / "stored.mp4", frames)
    clip = tmp_path / "turned.mp4"
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-loglevel", "error", "-display_rotation:v:0", "180",
                    "-i", str(stored), "-c", "copy", str(clip)], check=True)
    cfg = ExtractConfig(detector="haar", keyframe_interval=5, crops_per_video=2, crop_size=96)
    result = extract_video(str(clip), "turned", cfg, haar)
    assert result.status == "ok" and result.video["rotation"] == 180
    upright = dict(iter_frames(open_video(str(clip), "turned"), "turned"))
    crops = [r for r in result.faces if r["grid_blockiness"] is not None]
    assert len(crops) == 2
    for r in crops:
        grey = cv2.cvtColor(upright[r["frame_index"]], cv2.COLOR_BGR2GRAY)
        box = np.array([r["x1"], r["y1"], r["x2"], r["y2"]], np.float32)
        assert grid_phase(180, 476, 316) == (4, 4)
        assert r["grid_blockiness"] == pytest.approx(grid_blockiness(grey, box, phase=(4, 4)), abs=1e-4)
        assert r["grid_blockiness"] > grid_blockiness(grey, box) + 10  # the unshifted grid misses the steps
