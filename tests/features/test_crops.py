import cv2
import numpy as np

from features.crops import crop_square, encode_jpeg, square_box


def test_square_box_adds_margin_around_the_longer_side():
    box = square_box(np.array([10, 20, 50, 100], np.float32), margin=0.3)
    side = 80 * 1.3
    assert np.allclose(box, [30 - side / 2, 60 - side / 2, 30 + side / 2, 60 + side / 2])


def test_crop_inside_the_frame_keeps_content():
    image = np.zeros((100, 100), np.uint8)
    image[40:60, 40:60] = 255
    crop = crop_square(image, np.array([40, 40, 60, 60]), margin=0.0, size=20)
    assert crop.shape == (20, 20)
    assert crop.min() == 255


def test_crop_leaving_the_frame_is_padded_black_and_keeps_its_size():
    image = np.full((50, 80, 3), 200, np.uint8)
    crop = crop_square(image, np.array([-20, -20, 20, 20]), margin=0.0, size=40)
    assert crop.shape == (40, 40, 3)
    assert crop[:20, :20].max() == 0  # outside the frame
    assert crop[25:, 25:].min() == 200  # inside the frame


def test_jpeg_round_trip():
    image = np.full((32, 32, 3), (10, 120, 240), np.uint8)
    decoded = cv2.imdecode(np.frombuffer(encode_jpeg(image, 95), np.uint8), cv2.IMREAD_COLOR)
    assert decoded.shape == (32, 32, 3)
    assert np.abs(decoded.astype(int) - image).max() <= 3
