import numpy as np
import pytest

from features.learn.self_blend import face_mask, self_blend, self_blend_with_mask
from tests.conftest import face_scene


def test_mask_covers_the_inner_face_and_leaves_the_border_alone():
    rng = np.random.default_rng(0)
    for _ in range(20):
        mask = face_mask(224, 0.3, rng)
        assert mask.shape == (224, 224) and mask.min() >= 0.0 and 0.25 <= mask.max() <= 1.0
        assert mask[112, 112] > 0.5 * mask.max()  # the face centre is blended
        assert mask[:8].max() < 0.05 and mask[:, :8].max() < 0.05  # the crop border hardly


def test_self_blend_changes_the_face_only_and_is_reproducible():
    crop = face_scene(224, 224)
    fake = self_blend(crop, 0.3, np.random.default_rng(5))
    again = self_blend(crop, 0.3, np.random.default_rng(5))
    assert fake.shape == crop.shape and fake.dtype == np.uint8
    assert np.array_equal(fake, again)
    diff = np.abs(fake.astype(int) - crop.astype(int)).sum(axis=2)
    assert diff[80:150, 80:150].mean() > 3 * max(diff[:10].mean(), 0.1)
    assert not np.array_equal(fake, self_blend(crop, 0.3, np.random.default_rng(6)))
    with pytest.raises(ValueError, match="square colour crop"):
        self_blend(crop[:, :100], 0.3, np.random.default_rng(0))


def test_the_blend_mask_says_where_the_fake_differs():
    crop = face_scene(224, 224)
    fake, mask = self_blend_with_mask(crop, 0.3, np.random.default_rng(5))
    assert np.array_equal(fake, self_blend(crop, 0.3, np.random.default_rng(5)))
    assert mask.shape == (224, 224) and mask.min() >= 0.0 and mask.max() <= 1.0
    diff = np.abs(fake.astype(int) - crop.astype(int)).max(axis=2)
    assert diff[mask == 0].max() == 0  # outside the mask the fake is the crop
    assert diff[mask > 0.5 * mask.max()].mean() > 1.0
