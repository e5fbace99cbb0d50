import cv2
import numpy as np
import pytest

from features.video.faces import HaarDetector, MtcnnDetector, detection_scale, make_detector, stretch_luminance
from tests.conftest import face_scene


@pytest.fixture(scope="module")
def mtcnn():
    return MtcnnDetector()


def _face_box():
    # face_scene puts the astronaut crop (face centred, 2x the face box) at x=10..202, y=64..256.
    return np.array([10 + 48, 64 + 48, 10 + 144, 64 + 144], np.float32)


def _center_error(box, expected):
    return np.abs((box[:2] + box[2:]) / 2 - (expected[:2] + expected[2:]) / 2).max()


@pytest.mark.parametrize("scale", [1.0, 0.5])
def test_mtcnn_finds_the_face_in_full_frame_coordinates(mtcnn, scale):
    frame = face_scene(faces=1)
    found = mtcnn.detect([mtcnn.prepare(frame, scale)], scale)[0]
    assert len(found) == 1
    assert _center_error(found.boxes[0], _face_box()) < 20
    assert found.confidences[0] > 0.95 and found.landmarks.shape == (1, 10)


def test_mtcnn_batches_frames_of_one_size_and_rejects_mixed_sizes(mtcnn):
    frames = [mtcnn.prepare(face_scene(faces=k), 1.0) for k in (1, 2, 1)]
    found = mtcnn.detect(frames, 1.0)
    assert [len(d) for d in found] == [1, 2, 1]
    with pytest.raises(ValueError, match="one size"):
        mtcnn.detect([frames[0], frames[0][:100]], 1.0)


def test_mtcnn_does_not_modify_the_callers_frame(mtcnn):
    image = mtcnn.prepare(face_scene(), 1.0)
    before = image.copy()
    mtcnn.detect([image], 1.0)
    assert np.array_equal(image, before)


def test_haar_finds_the_face_and_has_no_confidence():
    haar = make_detector("haar", 20, 0.9, 5)
    assert isinstance(haar, HaarDetector)
    found = haar.detect([haar.prepare(face_scene(), 1.0)], 1.0)[0]
    assert len(found) >= 1 and np.isnan(found.confidences).all()
    assert min(_center_error(b, _face_box()) for b in found.boxes) < 20


def test_nothing_found_on_a_blank_frame(mtcnn):
    blank = np.full((240, 320, 3), 128, np.uint8)
    assert len(mtcnn.detect([mtcnn.prepare(blank, 1.0)], 1.0)[0]) == 0


def test_dark_frames_are_stretched_before_detection():
    dark = (face_scene().astype(np.float32) * 0.15).astype(np.uint8)
    lum = cv2.cvtColor(stretch_luminance(dark), cv2.COLOR_BGR2LAB)[..., 0]
    assert cv2.cvtColor(dark, cv2.COLOR_BGR2LAB)[..., 0].max() < 60
    assert np.percentile(lum, 99) > 240 and np.percentile(lum, 1) < 15


def test_detection_scale_never_enlarges():
    assert detection_scale(1920, 1080, 640) == pytest.approx(1 / 3)
    assert detection_scale(320, 240, 640) == 1.0


def test_unknown_detector():
    with pytest.raises(ValueError, match="unknown detector 'yolo'"):
        make_detector("yolo", 20, 0.9, 5)


def test_regions_at_full_resolution_find_the_face_in_frame_coordinates(mtcnn):
    from features.video.faces import detect_in_rois

    frame = face_scene(960, 540)
    expected = mtcnn.detect([mtcnn.prepare(frame, 1.0)], 1.0)[0].boxes[0]
    guess = expected + np.array([15, -10, 15, -10], np.float32)  # where the tracker expects it
    (found, empty) = detect_in_rois(mtcnn, [(frame, [guess]), (frame, [np.array([700, 20, 760, 80], np.float32)])])
    assert len(found) == 1 and np.abs(found.boxes[0] - expected).max() < 12
    lm = found.landmarks[0]
    assert expected[0] < lm[0] < expected[2] and expected[1] < lm[1] < expected[3]  # left eye inside the face
    assert len(empty) == 0


def test_overlapping_detections_from_neighbouring_regions_are_merged():
    from features.video.faces import Detections, non_max_suppression

    dets = Detections(np.array([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60]], np.float32),
                      np.array([0.9, 0.99, 0.95], np.float32), None)
    kept = non_max_suppression(dets, 0.5)
    assert kept.confidences.tolist() == pytest.approx([0.99, 0.95])


def test_mtcnn_with_a_large_minimum_face_still_finds_faces(mtcnn):
    # mtcnn 1.0 returns nothing at all when its pyramid shrinks below 12 px (min_face_size > ~24): guarded.
    frame = face_scene(640, 360)
    reference = mtcnn.detect([mtcnn.prepare(frame, 1.0)], 1.0)[0]
    found = mtcnn.detect([mtcnn.prepare(frame, 1.0)], 1.0, min_face_size=60)[0]
    assert len(found) == 1 and _center_error(found.boxes[0], reference.boxes[0]) < 12
    assert len(mtcnn.detect([mtcnn.prepare(frame, 1.0)], 1.0, min_face_size=400)[0]) == 0  # face is smaller


def test_compiled_networks_find_the_same_faces_as_eager_mtcnn(mtcnn):
    eager = MtcnnDetector(compiled=False)
    assert mtcnn.compiled and not eager.compiled
    frames = [mtcnn.prepare(face_scene(640, 360, faces=n, shift=12 * n), 1.0) for n in (1, 2, 0)]
    for sizes in ([frames[0]], frames):  # one image and a batch: PNet sees many sizes, one trace serves all
        fast, slow = mtcnn.detect(sizes, 1.0), eager.detect(sizes, 1.0)
        assert [len(d) for d in fast] == [len(d) for d in slow]
        for a, b in zip(fast, slow, strict=True):
            np.testing.assert_allclose(a.boxes, b.boxes, atol=0.05)
            np.testing.assert_allclose(a.confidences, b.confidences, atol=1e-4)
            np.testing.assert_allclose(a.landmarks, b.landmarks, atol=0.05)
    assert [len(d) for d in mtcnn.detect(frames, 1.0)] == [1, 2, 0]
