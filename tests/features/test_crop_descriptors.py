import cv2
import numpy as np
import pandas as pd

from features.learn.descriptors import (
    COOC_BINS,
    PATCH_BINS,
    crop_descriptor,
    descriptor_names,
    patch_blend_names,
    patch_boxes,
    patch_cooccurrences,
    patch_cover,
    patch_names,
    residual_cooccurrence,
    table_names,
    zone_masks,
)
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
    sharp, soft = (dict(zip(names, crop_descriptor(c, 0.3), strict=True)) for c in (crop, pasted))
    assert soft["seam_sharpness"] < sharp["seam_sharpness"] - 2.0
    assert soft["spectrum_11"] < sharp["spectrum_11"] - 1.0


def test_a_flat_image_puts_every_residual_triple_in_the_zero_bin():
    grey = np.full((40, 40), 128.0, np.float32)
    mask = np.ones((40, 40), bool)
    hist = residual_cooccurrence(grey, mask, 1.0)
    assert hist.shape == (COOC_BINS,) and np.isclose(hist.sum(), 1.0)
    assert hist.max() == 1.0 and np.count_nonzero(hist) == 1
    assert not residual_cooccurrence(grey, np.zeros((40, 40), bool), 1.0).any()  # empty zone: all zeros


def test_cooccurrences_are_symmetric_in_sign_and_direction_and_see_the_step():
    rng = np.random.default_rng(1)
    grey = cv2.GaussianBlur(rng.normal(128, 20, (64, 64)), (0, 0), 0.8).astype(np.float32)
    mask = np.ones((64, 64), bool)
    hist = residual_cooccurrence(grey, mask, 1.0)
    assert np.allclose(hist, residual_cooccurrence(255 - grey, mask, 1.0))
    assert np.allclose(hist, residual_cooccurrence(grey[:, ::-1].copy(), mask, 1.0))
    coarse = residual_cooccurrence(grey, mask, 2.0)
    zero_bin = int(np.argmax(residual_cooccurrence(np.zeros((8, 8), np.float32), np.ones((8, 8), bool), 1.0)))
    assert coarse[zero_bin] > hist[zero_bin]  # a coarser step maps more residuals to zero


def test_noise_blended_into_the_band_changes_only_the_band_statistics():
    rng = np.random.default_rng(2)
    crop = cv2.GaussianBlur(rng.integers(0, 256, (224, 224, 3)).astype(np.uint8), (0, 0), 2.0)
    centre, band, ring = zone_masks(224, 0.3)
    assert not (centre & band).any() and not (band & ring).any() and centre.sum() > 0 and ring.sum() > 0
    noisy = crop.astype(np.int16)
    noisy[band] += rng.integers(-6, 7, (int(band.sum()), 3)).astype(np.int16)
    noisy = np.clip(noisy, 0, 255).astype(np.uint8)
    names = descriptor_names()
    before, after = (dict(zip(names, crop_descriptor(c, 0.3), strict=True)) for c in (crop, noisy))

    def moved(zone):
        keys = [n for n in names if n.startswith(f"cooc_d2_{zone}_q1_")]
        return sum(abs(after[k] - before[k]) for k in keys)

    assert moved("band") > 0.3 and moved("ring") < 0.02 and moved("centre") < 0.05


def test_descriptor_table_keys_every_decodable_crop_and_its_self_blended_twin_alike():
    from features.learn.descriptors import descriptor_table
    from features.video.crops import encode_jpeg, encode_lossless

    crop = cv2.resize(face_scene(320, 320)[40:280, 20:260], (96, 96))
    larger = cv2.resize(face_scene(320, 320)[40:280, 20:260], (150, 150))  # crops of one video differ in side
    crops = pd.DataFrame({"video_id": ["b", "a", "a", "a"], "frame_index": [5, 30, 0, 60],
                          "crop_lossless": [encode_lossless(crop), encode_jpeg(crop, 90), encode_lossless(larger[::-1]),
                                            b"not an image"]})
    plain = descriptor_table(crops, {"a": 0.3, "b": 0.3})
    blended = descriptor_table(crops, {"a": 0.3, "b": 0.3}, self_blended=True)
    assert list(plain.columns) == ["video_id", "frame_index", *table_names()]
    assert plain[["video_id", "frame_index"]].values.tolist() == [["a", 30], ["a", 0], ["b", 5]]  # bad image dropped
    assert not plain[patch_blend_names()].to_numpy().any()  # a crop as stored: no blend anywhere
    covers = blended[patch_blend_names()].to_numpy()
    assert covers.min() >= 0.0 and covers.max() <= 1.0 and (covers[:, 4] > 0).all()  # the centre patch is blended
    assert blended[["video_id", "frame_index"]].equals(plain[["video_id", "frame_index"]])
    assert not np.allclose(blended[descriptor_names()].to_numpy(), plain[descriptor_names()].to_numpy())
    # A video's synthetic fakes depend on its id only, not on the videos computed beside it: cacheable per video.
    alone = descriptor_table(crops[crops.video_id == "b"], {"b": 0.3}, self_blended=True)
    assert np.array_equal(alone[descriptor_names()].to_numpy(), blended[blended.video_id == "b"][descriptor_names()].to_numpy())
    renamed = descriptor_table(crops.replace({"video_id": {"b": "c"}}), {"a": 0.3, "c": 0.3}, self_blended=True)
    assert not np.allclose(renamed[renamed.video_id == "c"][descriptor_names()].to_numpy(), alone[descriptor_names()].to_numpy())


def test_a_ramp_is_flat_to_second_differences_but_not_to_first():
    ramp = np.tile(np.arange(40, dtype=np.float32), (40, 1))  # +1 grey level per pixel, left to right
    ramp = ramp + ramp.T  # and top to bottom
    mask = np.ones((40, 40), bool)
    flat_bin = int(np.argmax(residual_cooccurrence(np.zeros((8, 8), np.float32), np.ones((8, 8), bool), 1.0)))
    second, first = (residual_cooccurrence(ramp, mask, 1.0, order) for order in (2, 1))
    assert second[flat_bin] == 1.0
    assert first[flat_bin] == 0.0 and first.max() == 1.0  # every triple is (1, 1, 1): one other class
    assert residual_cooccurrence(ramp, mask, 4.0, 1)[flat_bin] == 1.0  # a step of 4 rounds 1/4 to 0


def test_cooccurrence_histograms_hold_the_square_roots_of_the_class_shares():
    across = np.tile(np.arange(40, dtype=np.float32), (40, 1))  # +1 per pixel left to right, flat top to bottom
    mask = np.ones((40, 40), bool)
    hist = residual_cooccurrence(across, mask, 1.0, 1)
    # As many horizontal triples (1, 1, 1) as vertical ones (0, 0, 0): two classes with share 1/2 each.
    assert np.count_nonzero(hist) == 2 and np.allclose(hist[hist > 0], np.sqrt(0.5))
    rng = np.random.default_rng(3)
    noisy = rng.normal(128, 3, (64, 64)).astype(np.float32)
    hist = residual_cooccurrence(noisy, np.ones((64, 64), bool), 1.0)
    assert np.isclose((hist ** 2).sum(), 1.0) and hist.sum() > 2.0  # unit L2 norm, spread over many classes


def test_the_kb_residual_predicts_a_plane_exactly_but_not_noise():
    plane = np.add.outer(np.arange(40.0), 2 * np.arange(40.0)).astype(np.float32)  # a + x + 2y: any ramp
    mask = np.zeros((40, 40), bool)
    mask[5:35, 5:35] = True  # away from the replicated border
    flat_bin = int(np.argmax(residual_cooccurrence(np.zeros((8, 8), np.float32), np.ones((8, 8), bool), 1.0)))
    kb = residual_cooccurrence(plane, mask, 1.0, "kb")
    assert kb[flat_bin] == 1.0 and np.count_nonzero(kb) == 1
    assert residual_cooccurrence(plane, mask, 1.0, 1)[flat_bin] == 0.0  # first differences see the slope
    noisy = plane + np.random.default_rng(4).normal(0, 2, plane.shape).astype(np.float32)
    assert residual_cooccurrence(noisy, mask, 1.0, "kb")[flat_bin] < 0.5
    names = descriptor_names()
    assert names[-2 * COOC_BINS:] == [f"cooc_kb_centre_q{s}_{i}" for s in (1, 2) for i in range(COOC_BINS)]


def test_patches_are_the_central_three_by_three_of_a_seven_by_seven_grid():
    assert patch_boxes(224) == [(64 + 32 * r, 96 + 32 * r, 64 + 32 * c, 96 + 32 * c) for r in range(3) for c in range(3)]
    assert patch_boxes(96)[0] == (27, 41, 27, 41) and patch_boxes(96)[-1] == (55, 69, 55, 69)  # 96 / 7 rounded
    assert len(patch_names()) == 9 * PATCH_BINS and PATCH_BINS == 4 * COOC_BINS
    assert table_names() == descriptor_names() + patch_names() + patch_blend_names()


def test_patch_cooccurrences_are_flat_on_a_flat_image_and_local_to_the_patch_that_changed():
    flat = patch_cooccurrences(np.full((224, 224), 128.0, np.float32))
    assert flat.shape == (9, PATCH_BINS)
    assert np.allclose(flat.reshape(9, 4, COOC_BINS).sum(axis=2), 1.0)  # one histogram per order and step
    assert (flat.reshape(9, 4, COOC_BINS).max(axis=2) == 1.0).all()  # every triple in the zero bin
    rng = np.random.default_rng(2)
    grey = cv2.GaussianBlur(rng.normal(128, 20, (224, 224)), (0, 0), 0.8).astype(np.float32)
    before = patch_cooccurrences(grey)
    noisy = grey.copy()
    noisy[96:128, 128:160] += rng.normal(0, 8, (32, 32)).astype(np.float32)  # patch row 1, column 2: index 5
    after = patch_cooccurrences(noisy)
    moved = np.abs(after - before).sum(axis=1)
    assert moved[5] > 0.5 and np.allclose(np.delete(moved, 5), 0.0)
    # Each patch's histograms are residual_cooccurrence over exactly that patch.
    top, bottom, left, right = patch_boxes(224)[5]
    mask = np.zeros((224, 224), bool)
    mask[top:bottom, left:right] = True
    assert np.allclose(after[5, :COOC_BINS], residual_cooccurrence(noisy, mask, 1.0, 2))


def test_patch_cover_is_the_share_of_each_patch_under_the_mask():
    mask = np.zeros((224, 224), np.float32)
    mask[64:96, 64:80] = 1.0  # left half of the top-left central patch
    mask[112, 112] = 1.0
    cover = patch_cover(mask)
    assert cover[0] == 0.5 and np.isclose(cover[4], 1 / 1024) and not np.delete(cover, [0, 4]).any()
