import numpy as np

from features.video.crops import iou
from features.video.faces import Detections
from features.video.tracking import IouTracker


def dets(*boxes, conf=0.99):
    b = np.array(boxes, np.float32).reshape(-1, 4)
    return Detections(b, np.full(len(b), conf, np.float32), np.zeros((len(b), 10), np.float32))


def test_iou_values():
    assert np.isclose(iou([0, 0, 10, 10], [0, 0, 10, 10])[0, 0], 1.0)
    assert np.isclose(iou([0, 0, 10, 10], [5, 0, 15, 10])[0, 0], 50 / 150)
    assert iou([0, 0, 10, 10], [20, 20, 30, 30])[0, 0] == 0.0


def test_boxes_are_interpolated_between_keyframes():
    tracker = IouTracker()
    first = tracker.update(0, dets([0, 0, 10, 10]))
    second = tracker.update(10, dets([5, 0, 15, 10]))
    assert [fb.frame for fb in first] == [0]
    assert [fb.frame for fb in second] == list(range(1, 11))
    assert all(fb.track_id == 0 for fb in second)
    mid = second[4]  # frame 5
    assert np.allclose(mid.box, [2.5, 0, 12.5, 10])
    assert not mid.detected and second[-1].detected
    assert second[-1].confidence > 0.9


def test_two_faces_make_two_tracks_and_the_main_one_is_the_larger():
    tracker = IouTracker()
    for k in range(0, 50, 10):  # the small face is listed first, so it becomes track 0
        tracker.update(k, dets([100, 100, 110, 110], [0, 0, 40, 40]))
    assert len(tracker.kept_tracks(5)) == 2
    assert tracker.main_track(5) == 1


def test_of_two_equal_faces_the_main_one_is_the_more_persistent():
    tracker = IouTracker(max_missed=10)
    for k in range(0, 50, 10):  # track 0 is found on 3 keyframes, track 1 on all 5
        tracker.update(k, dets([0, 0, 40, 40], [100, 100, 140, 140]) if k in (0, 20, 40) else dets([100, 100, 140, 140]))
    assert len(tracker.kept_tracks(5)) == 2
    assert tracker.main_track(5) == 1


def test_missed_face_is_held_then_the_track_ends():
    tracker = IouTracker(max_missed=1)
    tracker.update(0, dets([0, 0, 10, 10]))
    held = tracker.update(5, dets())
    assert [fb.frame for fb in held] == [1, 2, 3, 4, 5]
    assert all(np.allclose(fb.box, [0, 0, 10, 10]) and not fb.detected for fb in held)
    assert tracker.update(10, dets()) == []
    assert tracker.tracks[0].ended


def test_single_spurious_detection_is_not_kept():
    tracker = IouTracker()
    tracker.update(0, dets([0, 0, 40, 40]))
    tracker.update(10, dets([0, 0, 40, 40], [200, 200, 220, 220]))
    tracker.update(20, dets([0, 0, 40, 40]))
    assert [t.track_id for t in tracker.kept_tracks(3)] == [0]


def test_fast_motion_with_no_overlap_still_continues_the_track():
    tracker = IouTracker()
    tracker.update(0, dets([0, 0, 40, 40]))
    boxes = tracker.update(10, dets([22, 0, 62, 40]))  # IoU 0.29 < 0.3, but moved less than a face width
    assert {fb.track_id for fb in boxes} == {0}
