import numpy as np
import pytest
import skimage.data
from skimage.metrics import structural_similarity

from features.video.ssim import ssim_numpy, ssim_pairs, ssim_series, ssim_tf


def _pairs():
    rng = np.random.default_rng(0)
    camera = skimage.data.camera()[::4, ::4]
    noisy = np.clip(camera + rng.normal(0, 12, camera.shape), 0, 255).astype(np.uint8)
    shifted = np.roll(camera, 3, axis=1)
    random_a = rng.integers(0, 256, (40, 57), dtype=np.uint8)
    random_b = rng.integers(0, 256, (40, 57), dtype=np.uint8)
    flat = np.full((16, 16), 128, np.uint8)
    return [(camera, noisy), (camera, shifted), (random_a, random_b), (camera, camera), (flat, flat),
            (camera, (camera * 0.7).astype(np.uint8))]


@pytest.mark.parametrize("pair", range(6))
def test_numpy_backend_matches_skimage(pair):
    a, b = _pairs()[pair]
    expected = structural_similarity(a, b, data_range=255)
    assert abs(float(ssim_numpy(a, b)[0]) - expected) < 1e-3


@pytest.mark.parametrize("pair", range(6))
def test_tf_backend_matches_skimage(pair):
    a, b = _pairs()[pair]
    expected = structural_similarity(a, b, data_range=255)
    assert abs(float(ssim_tf(a, b)[0]) - expected) < 1e-3


def test_batch_gives_one_value_per_pair_in_order():
    rng = np.random.default_rng(1)
    a = rng.integers(0, 256, (5, 32, 32), dtype=np.uint8)
    b = a.copy()
    b[2] = 255 - b[2]
    values = ssim_pairs(a, b)
    assert values.shape == (5,)
    assert np.allclose(values[[0, 1, 3, 4]], 1.0)
    assert values[2] < 0.0  # an inverted image is anti-correlated


def test_rejects_mismatched_or_tiny_images():
    with pytest.raises(ValueError, match="one shape"):
        ssim_numpy(np.zeros((10, 10), np.uint8), np.zeros((10, 11), np.uint8))
    with pytest.raises(ValueError, match="at least 7x7"):
        ssim_numpy(np.zeros((5, 5), np.uint8), np.zeros((5, 5), np.uint8))
    with pytest.raises(ValueError, match="unknown SSIM backend"):
        ssim_pairs(np.zeros((8, 8), np.uint8), np.zeros((8, 8), np.uint8), backend="cuda")


@pytest.mark.parametrize("backend", ["numpy", "tf"])
def test_series_equals_consecutive_pairs_and_skimage(backend):
    rng = np.random.default_rng(3)
    base = rng.integers(0, 256, (40, 56), dtype=np.uint8)
    frames = np.stack([np.clip(base.astype(int) + rng.normal(0, 8 * k, base.shape), 0, 255).astype(np.uint8)
                       for k in range(6)])
    series = ssim_series(frames, backend)
    assert series.shape == (5,)
    assert np.allclose(series, ssim_pairs(frames[:-1], frames[1:], backend), atol=1e-6)
    expected = [structural_similarity(frames[i], frames[i + 1], data_range=255) for i in range(5)]
    assert np.allclose(series, expected, atol=1e-3)
    assert series[0] > series[-1]  # more noise between later frames, lower similarity
    assert ssim_series(frames[:1], backend).shape == (0,)
