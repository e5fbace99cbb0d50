"""Frame-level models on crop descriptors: planted signals, self-blend pairs, calibration, safe round trips."""

import json

import numpy as np
import pandas as pd
import pytest

from features.learn.crop_models import (
    blend_differences,
    crop_video_scores,
    fit_crop_gbm,
    fit_crop_linear,
    fit_patch_scorer,
    input_shares,
    load_crop_gbm,
    load_crop_linear,
    save_crop_gbm,
    save_crop_linear,
    video_inputs,
    video_mean_scores,
)
from features.learn.descriptors import (
    COOC_BINS,
    PATCH_BINS,
    descriptor_names,
    patch_blend_names,
    patch_names,
    table_names,
)


def descriptor_rows(n_videos: int, signal: float, seed: int = 0, column: str = "lbp8_1_0", frames: int = 6):
    """Videos alternating REAL/FAKE in pairs per leakage group; `column` is shifted by `signal` in the FAKEs.
    Every descriptor value is N(0, 1) noise otherwise; no patch is covered by a blend."""
    rng = np.random.default_rng(seed)
    names = table_names()
    rows, labels, groups = [], {}, {}
    for i in range(n_videos):
        vid, fake = f"v{i}", i % 2
        labels[vid], groups[vid] = fake, f"g{i // 2}"
        values = rng.normal(0, 1, (frames, len(names)))
        values[:, names.index(column)] += signal * fake
        rows.append(pd.DataFrame(values, columns=names).assign(video_id=vid, frame_index=np.arange(frames) * 10))
    table = pd.concat(rows, ignore_index=True)
    table[patch_blend_names()] = 0.0
    return table[["video_id", "frame_index", *names]], labels, groups


def blends_of(table: pd.DataFrame, labels: dict, column: str | list[str], shift: float, cover: float = 1.0) -> pd.DataFrame:
    """Self-blended stand-ins of the REAL rows: the same keys, `column` shifted, every patch covered `cover`."""
    blended = table[table.video_id.map(labels) == 0].copy()
    blended[column] += shift
    blended[patch_blend_names()] = cover
    return blended


def patch_bin(index: int) -> list[str]:
    """The columns of one histogram bin (position in a patch's PATCH_BINS values) in every patch."""
    return [name for k, name in enumerate(patch_names()) if k % PATCH_BINS == index]


def test_crop_gbm_scores_videos_by_their_frames_and_round_trips(tmp_path):
    train, labels, groups = descriptor_rows(40, signal=3.0)
    test, test_labels, _ = descriptor_rows(12, signal=3.0, seed=1)
    model = fit_crop_gbm(train, labels, groups, seed=0)
    scores = crop_video_scores(model, test, [*sorted(test_labels), "no-crops"])
    fakes = [scores[v] for v, y in test_labels.items() if y]
    reals = [scores[v] for v, y in test_labels.items() if not y]
    assert min(fakes) > max(reals) and np.isnan(scores["no-crops"])
    assert 0.0 < model.scale  # calibrated on held-out logits: larger mean logit, larger P(FAKE)
    save_crop_gbm(model, tmp_path / "model_crops.skops")
    again = crop_video_scores(load_crop_gbm(tmp_path / "model_crops.skops"), test, sorted(test_labels))
    assert again == {v: scores[v] for v in sorted(test_labels)}


def test_self_blended_rows_teach_the_crop_gbm_what_fake_looks_like():
    train, labels, groups = descriptor_rows(40, signal=0.0)  # the real videos' fakes carry nothing
    blended = blends_of(train, labels, "spectrum_1", 4.0)  # ... but self-blended crops show a shifted spectrum
    probe = train[train.video_id.isin(["v0", "v2"])].copy()
    probe.loc[probe.video_id == "v2", "spectrum_1"] += 4.0
    with_sbi = video_mean_scores(fit_crop_gbm(train, labels, groups, seed=0, blended=blended), probe)
    without = video_mean_scores(fit_crop_gbm(train, labels, groups, seed=0), probe)
    assert with_sbi["v2"] > with_sbi["v0"] + 2.0  # frames that look blended get FAKE logits
    assert abs(without["v2"] - without["v0"]) < with_sbi["v2"] - with_sbi["v0"]


def test_blend_differences_pair_each_blend_with_its_own_source_crop():
    train, labels, _ = descriptor_rows(4, signal=0.0)
    blended = blends_of(train, labels, "cooc_d2_band_q1_0", 0.5).sample(frac=1.0, random_state=0)  # any row order
    blended = blended[blended.frame_index != 20]
    real = train[train.video_id.map(labels) == 0]
    diff = blend_differences(real.iloc[::-1], blended, descriptor_names())
    assert diff.shape == (len(blended), len(descriptor_names()))
    column = descriptor_names().index("cooc_d2_band_q1_0")
    assert np.allclose(diff[:, column], 0.5) and np.allclose(np.delete(diff, column, axis=1), 0.0)


def test_crop_linear_learns_from_blend_pairs_what_identity_noise_hides(tmp_path):
    """Each video has its own large offset on a column (identity, lighting); blending adds a small shift to it.
    Across single crops the shift drowns in the offsets; within a pair it is all that differs."""
    column = "cooc_d2_centre_q1_3"
    train, labels, groups = descriptor_rows(40, signal=0.0)
    rng = np.random.default_rng(3)
    offsets = {v: rng.normal(0, 6.0) for v in labels}
    train[column] += train.video_id.map(offsets)
    blended = blends_of(train, labels, column, 1.0)
    model = fit_crop_linear(train, labels, groups, seed=0, blended=blended)
    weights = dict(zip(model.columns, model.weights, strict=True))
    assert weights[column] == max(weights.values()) and weights[column] > 0
    assert sorted(weights, key=lambda c: abs(weights[c]))[-1] == column

    probe = train[train.video_id == "v0"]
    shifted = probe.assign(**{column: probe[column] + 1.0, "video_id": "v0-blended"})
    means = video_mean_scores(model, pd.concat([probe, shifted]))
    assert means["v0-blended"] > means["v0"] + 0.1  # +1 on a column whose spread is about 6
    scores = crop_video_scores(model, pd.concat([probe, shifted]), ["v0", "v0-blended"])

    save_crop_linear(model, tmp_path / "model_crops_linear.json")
    saved = json.loads((tmp_path / "model_crops_linear.json").read_text())  # plain JSON: nothing to execute
    assert saved["columns"] == descriptor_names() and len(saved["weights"]) == len(descriptor_names())
    assert len(saved["patch"]["weights"]) == PATCH_BINS and saved["patch_scale"] == model.patch_scale
    again = load_crop_linear(tmp_path / "model_crops_linear.json")
    assert crop_video_scores(again, pd.concat([probe, shifted]), ["v0", "v0-blended"]) == scores


def test_crop_linear_separates_planted_fakes_and_calibrates_them():
    # 280 columns of which one carries the label: enough crops that the noise columns average out
    train, labels, groups = descriptor_rows(60, signal=2.0, frames=16)
    test, test_labels, _ = descriptor_rows(12, signal=2.0, seed=1, frames=16)
    model = fit_crop_linear(train, labels, groups, seed=0)
    scores = crop_video_scores(model, test, sorted(test_labels))
    fakes = [scores[v] for v, y in test_labels.items() if y]
    reals = [scores[v] for v, y in test_labels.items() if not y]
    assert min(fakes) > max(reals) and np.mean(fakes) > 0.8 and np.mean(reals) < 0.2 and model.scale > 0


def test_a_model_refuses_descriptors_without_its_columns(tmp_path):
    train, labels, groups = descriptor_rows(20, signal=2.0)
    model = fit_crop_linear(train, labels, groups, seed=0)
    with pytest.raises(ValueError, match="lack 1 columns the model was trained on .first: cooc_d2_ring_q2_5.*retrain"):
        crop_video_scores(model, train.drop(columns="cooc_d2_ring_q2_5"), ["v0"])
    broken = tmp_path / "broken.json"
    save_crop_linear(model, broken)
    saved = json.loads(broken.read_text())
    broken.write_text(json.dumps({**saved, "weights": saved["weights"][:-1]}))
    with pytest.raises(ValueError, match="one value per column"):
        load_crop_linear(broken)
    broken.write_text(json.dumps({**saved, "patch": {k: v[:-3] for k, v in saved["patch"].items()}}))
    with pytest.raises(ValueError, match=f"patch scorer has {PATCH_BINS - 3} weights .* by {PATCH_BINS} values: retrain"):
        load_crop_linear(broken)
    with pytest.raises(ValueError, match="lack 1 columns the model was trained on .first: patch8_d1_q2_38"):
        crop_video_scores(model, train.drop(columns="patch8_d1_q2_38"), ["v0"])


def test_weight_shares_name_the_block_the_model_looks_at():
    from features.learn.crop_models import descriptor_block, weight_shares

    assert descriptor_block("cooc_d1_band_q2_7") == "residual d1 band"
    assert [descriptor_block(c) for c in ("lbp16_2_3", "spectrum_4", "seam_noise", "face_l_std")] == \
        ["LBP", "spectrum", "seam/colour", "seam/colour"]
    train, labels, groups = descriptor_rows(60, signal=3.0, column="cooc_d1_centre_q1_4", frames=16)
    model = fit_crop_linear(train, labels, groups, seed=0)
    shares = weight_shares(model)
    assert np.isclose(sum(shares.values()), 1.0, atol=1e-3)
    weights = np.abs(model.weights)
    assert model.columns[int(np.argmax(weights))] == "cooc_d1_centre_q1_4"  # the model looks at the signal
    in_block = np.array([descriptor_block(c) == "residual d1 centre" for c in model.columns])
    assert in_block.sum() == 2 * COOC_BINS
    assert np.isclose(shares["residual d1 centre"], weights[in_block].sum() / weights.sum(), atol=1e-4)
    assert shares["residual d1 centre"] == max(shares.values())


def test_crop_linear_takes_crops_whose_seam_contrasts_are_missing():
    """A crop stored without margin has no ring: its seam contrasts are NaN. They count as the training mean."""
    train, labels, groups = descriptor_rows(40, signal=3.0)
    train[["seam_sharpness", "seam_noise"]] = np.nan
    train.loc[train.index % 3 == 0, "seam_a"] = np.nan
    model = fit_crop_linear(train, labels, groups, seed=0, blended=blends_of(train, labels, "lbp8_1_1", 1.0))
    assert np.isfinite(model.weights).all() and np.isfinite(model.mean).all() and np.isfinite(model.patch.weights).all()
    scores = crop_video_scores(model, train, sorted(labels))
    assert all(0.0 < p < 1.0 for p in scores.values())
    assert min(scores[v] for v in labels if labels[v]) > max(scores[v] for v in labels if not labels[v])


def test_the_patch_scorer_finds_a_fake_by_its_most_manipulated_patch():
    """The FAKE videos differ in one histogram bin of one central patch only: the patch scorer weights that bin,
    a crop takes its highest patch score, and the final combination leans on the patch score."""
    column = "patch4_d1_q1_7"  # the centre patch
    train, labels, groups = descriptor_rows(60, signal=4.0, column=column, frames=16)
    test, test_labels, _ = descriptor_rows(12, signal=4.0, column=column, seed=1, frames=16)
    model = fit_crop_linear(train, labels, groups, seed=0)
    weights = model.patch.weights
    assert int(np.argmax(weights)) == patch_names().index(column) % PATCH_BINS
    inputs = video_inputs(model, test)
    assert list(inputs.columns) == ["crop", "patch"]
    fakes = inputs.index.map(test_labels).to_numpy() == 1
    assert inputs.patch[fakes].min() > inputs.patch[~fakes].max()
    assert model.patch_scale > 0 and model.patch_scale * inputs.patch.std() > 3 * abs(model.scale) * inputs.crop.std()
    scores = crop_video_scores(model, test, sorted(test_labels))
    assert min(scores[v] for v in test_labels if test_labels[v]) > max(scores[v] for v in test_labels if not test_labels[v])

    plain = fit_crop_linear(train, labels, groups, seed=0, patches=False)
    assert plain.patch is None and list(video_inputs(plain, test).columns) == ["crop"]
    without = crop_video_scores(plain, test.drop(columns=patch_names()), sorted(test_labels))  # needs no patch columns
    assert np.mean([without[v] for v in test_labels if test_labels[v]]) < np.mean([scores[v] for v in test_labels if test_labels[v]])


def test_a_self_blend_teaches_the_patch_scorer_only_where_it_covers_the_patch():
    train, labels, _ = descriptor_rows(30, signal=0.0, frames=8)
    learnt = {}
    for cover in (1.0, 0.3):  # 0.3: under BLENDED_PATCH, the blend hardly touched these patches
        blended = blends_of(train, labels, patch_bin(11), 1.5, cover=cover)
        learnt[cover] = fit_patch_scorer(train, blended, labels, seed=0).weights
    assert int(np.argmax(learnt[1.0])) == 11 and learnt[1.0][11] > 5 * abs(learnt[0.3][11])


def test_a_crop_linear_model_saved_without_a_patch_scorer_still_loads_and_scores(tmp_path):
    train, labels, groups = descriptor_rows(20, signal=2.0)
    model = fit_crop_linear(train, labels, groups, seed=0, patches=False)
    path = tmp_path / "model_crops_linear.json"
    save_crop_linear(model, path)
    saved = json.loads(path.read_text())
    assert saved["patch"] is None
    older = ("patch", "patch_scale", "video_columns", "video_weights", "video_fill")
    path.write_text(json.dumps({k: v for k, v in saved.items() if k not in older}))  # the format before both
    again = load_crop_linear(path)
    assert again.patch is None and again.patch_scale == 0.0 and again.video_columns == []
    assert crop_video_scores(again, train, sorted(labels)) == crop_video_scores(model, train, sorted(labels))


def _landmark_table(labels: dict, seed: int) -> pd.DataFrame:
    """Per-video landmark dynamics where only the mouth carries the label (FAKEs' expressions move less)."""
    rng = np.random.default_rng(seed)
    videos = pd.DataFrame({"video_id": sorted(labels)})
    fake = videos.video_id.map(labels).to_numpy()
    videos["landmark_mouth_sd"] = rng.normal(-3.0, 0.3, len(videos)) - 1.0 * fake
    videos["landmark_nose_sd"] = rng.normal(-3.0, 0.3, len(videos))
    videos["landmark_vertical_sd"] = rng.normal(-3.0, 0.3, len(videos))
    videos["face_grid_blockiness"] = rng.normal(1.0, 2.0, len(videos))
    videos.loc[::4, "face_grid_blockiness"] = np.nan  # heavily compressed videos have none
    return videos


def test_crop_linear_combines_landmark_dynamics_with_its_crop_scores_and_round_trips(tmp_path):
    # The crops carry nothing; a per-video column does: the learnt combination must weigh it, and only it.
    train, labels, groups = descriptor_rows(60, signal=0.0, frames=4)
    videos = _landmark_table(labels, seed=3)
    default = fit_crop_linear(train, labels, groups, seed=0, videos=videos)
    assert default.video_columns == ["landmark_mouth_sd", "landmark_nose_sd", "landmark_vertical_sd"]
    # A column with gaps (the block-grid trace, bench/quality.py's crop_linear_grid) as a further input:
    model = fit_crop_linear(train, labels, groups, seed=0, videos=videos,
                            video_columns=[*default.video_columns, "face_grid_blockiness"])
    assert model.video_columns == ["landmark_mouth_sd", "landmark_nose_sd", "landmark_vertical_sd", "face_grid_blockiness"]
    weights = dict(zip(model.video_columns, model.video_weights, strict=True))
    assert weights["landmark_mouth_sd"] < -1.0 and abs(weights["landmark_nose_sd"]) < abs(weights["landmark_mouth_sd"]) / 3
    assert abs(weights["face_grid_blockiness"]) * 2.0 < abs(weights["landmark_mouth_sd"]) * 0.3  # noise: less say
    assert np.allclose(model.video_fill, videos[model.video_columns].median().to_numpy())
    assert list(video_inputs(model, train, videos).columns) == ["crop", "patch", *model.video_columns]

    test, test_labels, _ = descriptor_rows(40, signal=0.0, seed=1, frames=4)
    test_videos = _landmark_table(test_labels, seed=4)
    scores = crop_video_scores(model, test, sorted(test_labels), test_videos)
    fakes = np.array([scores[v] for v, y in test_labels.items() if y])
    reals = np.array([scores[v] for v, y in test_labels.items() if not y])
    assert fakes.mean() - reals.mean() > 0.3 and np.mean(fakes[:, None] > reals) > 0.85  # AUC
    missing = test_videos.assign(landmark_mouth_sd=np.nan, face_grid_blockiness=np.nan)  # as the training median
    at_median = crop_video_scores(model, test, sorted(test_labels), missing)
    assert np.std(list(at_median.values())) < np.std(list(scores.values())) / 3
    with pytest.raises(ValueError, match="landmark_mouth_sd"):
        crop_video_scores(model, test, sorted(test_labels))

    path = tmp_path / "model_crops_linear.json"
    save_crop_linear(model, path)
    again = load_crop_linear(path)
    assert again.video_columns == model.video_columns and np.array_equal(again.video_weights, model.video_weights)
    assert crop_video_scores(again, test, sorted(test_labels), test_videos) == scores
    shares = input_shares(model, test, test_videos)
    assert set(shares) == {"crop", "patch", *model.video_columns} and max(shares, key=shares.get) == "landmark_mouth_sd"
