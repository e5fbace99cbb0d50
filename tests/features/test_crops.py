import cv2
import numpy as np

from features.video.crops import (
    GRID,
    NATIVE_MIN_SIDE,
    crop_native,
    crop_square,
    encode_jpeg,
    encode_lossless,
    grid_blockiness,
    grid_phase,
    square_box,
)


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


def _noise_frame(h=240, w=320, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_native_crop_keeps_the_frame_pixels_unresampled_between_the_limits():
    frame = _noise_frame()
    box = np.array([100, 60, 180, 140], np.float32)  # 80 px: the square is 80 * 1.25 = 100 px
    crop = crop_native(frame, box, margin=0.25, max_side=224)
    assert crop.shape == (100, 100, 3)
    assert np.array_equal(crop, frame[50:150, 90:190])  # the same pixels: no interpolation at all


def test_native_crop_is_shrunk_above_the_maximum_and_enlarged_below_the_minimum():
    frame = _noise_frame(480, 640)
    big = crop_native(frame, np.array([100, 100, 400, 400], np.float32), margin=0.0, max_side=224)
    assert big.shape == (224, 224, 3)
    small = crop_native(frame, np.array([10, 10, 30, 30], np.float32), margin=0.0, max_side=224)
    assert small.shape == (NATIVE_MIN_SIDE, NATIVE_MIN_SIDE, 3)
    outside = crop_native(frame, np.array([-500, -500, -400, -400], np.float32), margin=0.0, max_side=224)
    assert outside.shape == (NATIVE_MIN_SIDE, NATIVE_MIN_SIDE, 3) and outside.max() == 0


def test_native_crop_leaving_the_frame_is_padded_black():
    frame = np.full((100, 100, 3), 200, np.uint8)
    crop = crop_native(frame, np.array([-40, -40, 40, 40], np.float32), margin=0.0, max_side=224)
    assert crop.shape == (80, 80, 3)
    assert crop[:40, :40].max() == 0 and crop[40:, 40:].min() == 200


def test_lossless_round_trip_is_exact_and_smaller_than_raw():
    frame = _noise_frame(96, 96, seed=3) // 8  # some redundancy to compress
    blob = encode_lossless(frame)
    decoded = cv2.imdecode(np.frombuffer(blob, np.uint8), cv2.IMREAD_COLOR)
    assert np.array_equal(decoded, frame)
    assert len(blob) < frame.nbytes


def test_grid_blockiness_sees_block_edges_on_the_frame_grid_only():
    rng = np.random.default_rng(0)
    noise = rng.normal(128, 3, (200, 200)).astype(np.float32)
    blocks = np.kron(rng.normal(0, 6, (26, 26)), np.ones((GRID, GRID))).astype(np.float32)
    box = np.array([20, 20, 180, 180], np.float32)
    on_grid = grid_blockiness(noise + blocks[:200, :200], box)
    off_grid = grid_blockiness(noise + blocks[4:204, 4:204], box)  # the same blocks, half a block off the grid
    assert on_grid > 50 and abs(grid_blockiness(noise, box)) < 5
    assert off_grid < 5  # edges at 4 mod 8 do not count
    assert np.isnan(grid_blockiness(noise, np.array([90, 90, 110, 110], np.float32)))  # centre under 2 blocks


def test_grid_blockiness_measures_only_the_face_centre():
    rng = np.random.default_rng(1)
    frame = rng.normal(128, 3, (240, 240)).astype(np.float32)
    blocks = np.kron(rng.normal(0, 6, (30, 30)), np.ones((GRID, GRID))).astype(np.float32)
    ringed = frame + blocks * (np.maximum(*np.abs(np.mgrid[0:240, 0:240] - 119.5)) > 60)  # blocky outside only
    assert abs(grid_blockiness(ringed, np.array([0, 0, 240, 240], np.float32))) < 5  # centre half-width 60


def _blocky_frame(height, width, seed=2):
    """Noise plus flat GRID x GRID blocks whose edges lie on the coded grid (multiples of GRID from the top-left)."""
    rng = np.random.default_rng(seed)
    blocks = np.kron(rng.normal(0, 6, (height // GRID + 1, width // GRID + 1)), np.ones((GRID, GRID)))
    return (rng.normal(128, 3, (height, width)) + blocks[:height, :width]).astype(np.float32)


def test_grid_phase_follows_the_coded_corner_through_a_rotation():
    frame = _blocky_frame(148, 212)  # both sides 4 mod 8: a turned frame's grid is shifted by half a block
    # OpenCV's display rotation -> how numpy turns the coded frame upright (checked on real files in test_decode)
    for rotation, turns in ((0, 0), (90, -1), (180, 2), (270, 1)):
        upright = np.ascontiguousarray(np.rot90(frame, turns))
        h, w = upright.shape
        box = np.array([0, 0, w, h], np.float32)
        phase = grid_phase(rotation, w, h)
        values = {(px, py): grid_blockiness(upright, box, reach=1.0, phase=(px, py))
                  for px in range(GRID) for py in range(GRID)}
        assert values[phase] > 50 and values[phase] == max(values.values()), rotation
        if rotation:  # the unshifted grid misses the edges along one axis (90, 270) or both (180)
            assert values[(0, 0)] < values[phase] - 30, rotation
    assert grid_phase(270, 480, 854) == (0, 6) and grid_phase(90, 1080, 1920) == (0, 0)
