"""The quality benchmark's evaluation logic on synthetic tables, and one end-to-end run on generated clips."""

import json

import numpy as np
import pandas as pd
import pytest

from bench import quality
from features.learn.evaluation import cross_validated
from features.learn.video_features import VIDEO_INPUTS


def synthetic(n_groups: int = 12, signal: float = 2.0, seed: int = 0) -> pd.DataFrame:
    """Groups of one REAL and two FAKE clips at c23 and c40; `score` separates the labels by `signal`."""
    rng = np.random.default_rng(seed)
    rows = []
    for g in range(n_groups):
        for compression in ("c23", "c40"):
            for label, method in (("REAL", None), ("FAKE", "Deepfakes"), ("FAKE", "FaceSwap")):
                rows.append({"video_id": f"g{g}/{label}/{method}/{compression}", "label": label, "method": method,
                             "compression": compression, "leakage_group": f"g{g}", "status": "ok",
                             "dataset": "ffpp", "family": "ffpp", "is_ffpp": True, "resolution": "720p",
                             "score": rng.normal(signal * (label == "FAKE"), 1.0)})
    return pd.DataFrame(rows)


def score_model(seen: list):
    def fit(train: pd.DataFrame, seed: int):  # cross_validated calls fit(train, seed)
        seen.append(train)
        return lambda test: 1 / (1 + np.exp(-(test.score.to_numpy() - 1.0)))
    return fit


def test_cross_compression_trains_on_c23_of_other_groups_and_tests_on_c40_only():
    frame = synthetic()
    seen: list[pd.DataFrame] = []
    c23 = (frame.compression == "c23").to_numpy()
    scored = cross_validated(frame, score_model(seen), seed=0, folds=4, train_mask=c23, test_mask=~c23)
    assert len(scored) == len(frame) // 2 and set(scored.compression) == {"c40"}
    assert len(seen) == 4 and all(set(t.compression) == {"c23"} for t in seen)
    for train, (_, test) in zip(seen, scored.groupby("fold"), strict=True):
        assert not set(train.leakage_group) & set(test.leakage_group)  # no group on both sides
    assert scored.p_prior.between(0.6, 0.72).all()  # FAKE rate of the training folds (2 of 3)


def test_group_bootstrap_interval_brackets_a_strong_and_a_null_score():
    strong = cross_validated(synthetic(signal=3.0), score_model([]), seed=0, folds=4)
    null = cross_validated(synthetic(signal=0.0), score_model([]), seed=0, folds=4)
    lo, hi = quality.group_bootstrap_auc(strong, 300)
    assert 0.9 < lo <= hi <= 1.0
    lo, hi = quality.group_bootstrap_auc(null, 300)
    assert lo < 0.5 < hi


def test_breakdowns_score_each_method_against_the_reals():
    scored = cross_validated(synthetic(), score_model([]), seed=0, folds=4)
    parts = quality.breakdowns(scored)
    assert set(parts["method"]) == {"Deepfakes", "FaceSwap"}
    assert parts["method"]["Deepfakes"]["n"] == 24 * 2 and parts["method"]["Deepfakes"]["n_fake"] == 24
    assert set(parts["compression"]) == {"c23", "c40"} and parts["compression"]["c40"]["n"] == 36


def test_run_model_runs_only_the_evaluations_asked_for_and_takes_a_fit():
    frame = synthetic()
    seen: list[pd.DataFrame] = []
    only_cv = quality.run_model(frame, "scores", 0, 4, 0, "", fit=score_model(seen), evaluations=("all",))
    assert len(seen) == 4  # the grouped CV over all clips, nothing else
    assert only_cv["all"]["n"] == len(frame) and only_cv["ffpp_c23"]["n"] == len(frame) // 2
    assert only_cv["cross_compression"] == {"n": 0} and only_cv["ffpp_to_dfdc"] == {"n": 0}
    assert len(only_cv["oof"]) == len(frame)
    every = quality.run_model(frame, "scores", 0, 4, 0, "", fit=score_model(seen))
    assert every["cross_compression"]["n"] == len(frame) // 2 and every["all"] == only_cv["all"]
    assert len(seen) == 4 + 4 + 4  # all clips (again) and c23 -> c40; no DFDC clips, so no cross-dataset fit
    assert every["ffpp_to_dfdc"] == {"n": 0} and every["dfdc_held_out"] == {"n": 0}


def test_the_out_of_distribution_clips_are_scored_by_a_model_fitted_on_every_development_clip():
    frame = synthetic()
    ood = synthetic(n_groups=4, signal=2.0, seed=1).assign(
        dataset=lambda f: np.where(f.leakage_group.isin(["g0", "g1"]), "generated", "in-the-wild"),
        video_id=lambda f: "wild/" + f.video_id, leakage_group=lambda f: "wild-" + f.leakage_group)
    seen: list[pd.DataFrame] = []
    result = quality.run_model(frame, "scores", 0, 4, 100, "", fit=score_model(seen), evaluations=("all",), ood=ood)
    assert len(seen) == 4 + 1 and len(seen[-1]) == len(frame)  # the CV folds, then one fit on every dev clip
    assert not set(seen[-1].video_id) & set(ood.video_id)  # never trained on
    assert result["wild_dev"]["n"] == len(ood) == 24 and result["wild_dev"]["groups"] == 4
    assert result["wild_dev"]["roc_auc"] > 0.8 and len(result["wild_dev"]["auc_ci95"]) == 2
    assert set(result["wild_dev_by_source"]) == {"generated", "in-the-wild"}
    assert {p["n"] for p in result["wild_dev_by_source"].values()} == {12}
    assert {r["p_prior"] for r in result["oof_wild_dev"]} == {2 / 3}  # the dev clips' FAKE rate
    assert result["wild_dev_tempered"] == {"n": 0}  # no per-video features here: nothing to measure a distance on
    text, verdicts = quality.report([result], ["scores"])
    assert "all dev -> wild-dev (b)" in text
    assert verdicts["scores"]["wild_dev_auc"]["measured"] == pytest.approx(result["wild_dev"]["roc_auc"])
    worst = min(p["prior_log_loss"] - p["log_loss"] for p in result["wild_dev_by_source"].values())
    assert verdicts["scores"]["wild_dev_worst_source_prior_minus_log_loss"]["measured"] == pytest.approx(worst)


def test_a_folder_of_labelled_sources_stands_for_its_sources_and_its_clips_are_kept_out_of_training(tmp_path):
    for source in ("talking", "uadfv"):
        (tmp_path / "wild" / source).mkdir(parents=True)
        (tmp_path / "wild" / source / "labels.csv").write_text("path,label,original\n")
    (tmp_path / "wild" / "notes").mkdir()
    assert quality.ood_sources([str(tmp_path / "wild")]) == [tmp_path / "wild" / "talking", tmp_path / "wild" / "uadfv"]
    assert quality.ood_sources([str(tmp_path / "wild" / "uadfv")]) == [tmp_path / "wild" / "uadfv"]
    frame = pd.DataFrame({"path": [str(tmp_path / "dev" / "a.mp4"), str(tmp_path / "wild" / "uadfv" / "b.mp4")],
                          "family": ["dfdc", "dfdc"], "is_ffpp": [False, False]})
    dev, wild = quality.split_ood(frame, [str(tmp_path / "wild" / "uadfv")])
    assert list(dev.path) == [frame.path[0]] and list(wild.path) == [frame.path[1]]
    assert list(wild.family) == ["wild"]
    dev, wild = quality.split_ood(frame, [])
    assert len(dev) == 2 and wild.empty
    dev, wild = quality.split_ood(frame, [], never_train=[tmp_path / "wild"])  # wild-dev clips left in a cache
    assert list(dev.path) == [frame.path[0]] and wild.empty


@pytest.fixture(scope="module")
def benchmark_run(demo_dir, tmp_path_factory):
    """bench/quality.py on the generated clips (Haar, 2 folds, split seeds 0 and 1): its result, JSON and cache."""
    from features.video.demo import make_demo_dataset

    tmp = tmp_path_factory.mktemp("quality")
    out = tmp / "quality.json"
    wild = make_demo_dataset(tmp / "wild" / "demo-wild", n_clips=4, frames=30, seed=11)  # scored, never trained on
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DFP_HOME", str(tmp / "home"))
        result = quality.main([str(demo_dir), "--cache", str(tmp / "cache"), "--detector", "haar", "--folds", "2",
                               "--seeds", "0", "1", "--bootstrap", "50", "--ood", str(wild), "--out", str(out)])
    return result, out, tmp / "cache"


@pytest.mark.slow
def test_the_benchmark_runs_end_to_end_on_generated_clips(benchmark_run):
    result, out, _ = benchmark_run
    saved = json.loads(out.read_text())
    assert saved["clips"] == 8 and saved["seeds"] == [0, 1]
    assert [(r["model"], r["seed"]) for r in saved["runs"]] == [(m, s) for m in quality.DEFAULT_MODELS for s in (0, 1)]
    assert quality.DEFAULT_MODELS == ["gbm", "logreg", "crop_gbm", "crop_gbm_sbi", "crop_linear_no_patches",
                                     "crop_linear_no_landmarks", "crop_linear_grid", "crop_linear"]
    first = saved["runs"][0]
    assert first["all"]["n"] == 8 and first["ffpp_c23"] == {"n": 0}
    lo, hi = first["all"]["auc_ci95"]
    assert 0.0 <= lo <= hi <= 1.0
    assert len(saved["oof_seed0"]["gbm"]) == 8 and len(saved["oof_seed0"]["crop_linear"]) == 8
    assert abs(sum(saved["crop_linear_weight_shares"].values()) - 1) < 1e-3
    assert set(saved["crop_linear_input_shares"]) == {"crop", "patch", *VIDEO_INPUTS}
    assert abs(sum(saved["crop_linear_input_shares"].values()) - 1) < 1e-3
    assert saved["ood_clips"] == 4 and first["wild_dev"]["n"] == 4 and saved["runs"][1]["wild_dev"] == {"n": 0}
    assert first["wild_dev_tempered"]["n"] == 4 and 0.0 <= first["wild_dev_flagged"] <= 1.0
    tempered = saved["scores_wild_dev"]["crop_linear"]
    for r in tempered:  # an unflagged clip keeps its score; a flagged one's moves towards the prior
        if r["ood"]:
            assert abs(r["p_tempered"] - r["p_prior"]) <= abs(r["p_fake"] - r["p_prior"]) + 1e-9
        else:
            assert r["p_tempered"] == pytest.approx(r["p_fake"])
    assert set(first["wild_dev_by_source"]) == {"demo-wild"} and len(saved["scores_wild_dev"]["crop_linear"]) == 4
    assert not {r["video_id"] for r in saved["scores_wild_dev"]["gbm"]} & {r["video_id"] for r in saved["oof_seed0"]["gbm"]}
    assert set(result["targets"]["gbm"]) == {"ffpp_c23_auc", "log_loss_below_prior", "cross_compression_auc", "dfdc_auc",
                                             "wild_dev_auc", "wild_dev_worst_source_prior_minus_log_loss"}
    assert result["targets"]["gbm"]["ffpp_c23_auc"]["met"] is False  # no FF++ clips: not measured, never "met"


@pytest.mark.slow
def test_the_cnn_benchmark_trains_on_its_export_alone_and_its_model_scores_the_same_here(benchmark_run, tmp_path):
    from bench import cnn_gpu

    _, _, cache = benchmark_run
    export = tmp_path / "export"
    meta = cnn_gpu.main(["export", str(export), "--cache", str(cache), "--ood", str(cache.parent / "wild")])
    clips = pd.read_parquet(export / "clips.parquet")
    crops = pd.read_parquet(export / "crops.parquet")
    assert meta["clips"] == len(clips) == 8 and meta["crops"] == len(crops) > 8 and meta["crop_margin"] == 0.3
    assert set(crops.columns) == {"video_id", "frame_index", "crop_jpeg"}
    assert set(crops.video_id) == set(clips[clips.status == "ok"].video_id)

    out = tmp_path / "cnn_gpu.json"
    cnn_gpu.main(["run", str(export), "--size", "small", "--epochs", "1", "--folds", "2", "--bootstrap", "0",
                  "--batch-size", "16", "--augmentation", "flip", "contrast", "--out", str(out)])
    saved = json.loads(out.read_text())
    assert saved["batch_size"] == 16 and saved["augmentation"] == ["flip", "contrast"]
    assert [t["batch"] for t in saved["timing"]] == [16, 16]
    here, without_gpu = saved["timing"]  # this process, and a subprocess that sees no GPU
    assert here["crops"] == without_gpu["crops"] == len(crops) and here["side"] == 64
    assert here["device"].startswith("CPU (Keras 3.") and "tensorflow" in here["device"]  # no GPU on a CI machine
    assert without_gpu["device"].startswith("CPU (Keras 3.")
    assert here["epoch_s"] > 0 and without_gpu["epoch_s"] > 0
    run = saved["runs"][0]
    assert (run["model"], run["seed"], run["all"]["n"]) == ("cnn_sbi", 0, 8)
    assert run["cross_compression"] == {"n": 0}  # only the grouped CV was asked for
    assert 0.0 <= run["all"]["roc_auc"] <= 1.0 and len(saved["oof_seed0"]["cnn_sbi"]) == 8

    rows = cnn_gpu.augmentation_time(str(export), 24, [8])
    assert [r["network"] for r in rows] == ["build_cnn large (flip, contrast, translation)", "no augmentation",
                                           "flip only", "contrast only", "translation only"]
    assert all(r["batch"] == 8 and r["crops_per_s"] == pytest.approx(24 / r["epoch_s"]) for r in rows)

    checked = cnn_gpu.main(["check", str(export)])
    assert checked["videos"] == len(clips[clips.status == "ok"])
    assert checked["max_abs_logit_difference"] < 1e-4
