import cv2
import numpy as np

from features.crop_descriptors import crop_descriptor, descriptor_names
from tests.conftest import face_scene


def test_descriptor_has_one_named_value_each_and_lbp_histograms_sum_to_one():
    crop = cv2.resize(face_scene(320, 320)[40:280, 20:260], (224, 224))
    values = crop_descriptor(crop, 0.3)
    names = descriptor_names()
    assert values.shape == (len(names),) and np.isfinite(values).all()
    assert np.isclose(values[:10].sum(), 1.0) and np.isclose(values[10:28].sum(), 1.0)


def test_a_blurred_face_in_a_sharp_surround_shows_in_the_seam_and_the_spectrum():
    rng = np.random.default_rng(0)
    crop = cv2.GaussianBlur(rng.integers(0, 256, (224, 224, 3)).astype(np.uint8), (0, 0), 1.0)
    pasted = crop.copy()
    pasted[28:196, 28:196] = cv2.GaussianBlur(crop, (0, 0), 3.0)[28:196, 28:196]  # the whole face box
    names = descriptor_names()
    sharp, soft = (dict(zip(names, crop_descriptor(c, 0.3))) for c in (crop, pasted))
    assert soft["seam_sharpness"] < sharp["seam_sharpness"] - 2.0
    assert soft["spectrum_11"] < sharp["spectrum_11"] - 1.0
