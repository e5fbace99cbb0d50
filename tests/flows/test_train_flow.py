"""Train, evaluate and score end to end on generated demo data, with a real Dask cluster."""

import json
import shutil

import cv2
import numpy as np
import pandas as pd
import pytest

from features.config import EvaluateConfig, ExtractConfig, ScoreConfig, TrainConfig
from features.learn.descriptors import DESCRIPTORS_VERSION, PATCH_BINS
from features.learn.model_files import UnsafeModelFile
from features.learn.models import keras_device
from features.learn.ood import OOD_FILE
from features.learn.video_features import FEATURE_NAMES, VIDEO_INPUTS
from features.store.delta_cache import DeltaCacheStore
from features.store.training_data import stale_descriptor_videos, video_table
from features.video.demo import make_demo_dataset
from flows.extract import extract_flow
from flows.train import evaluate_flow, evaluation_name, load_guard, load_run, score_flow, score_table, train_flow
from tests.conftest import read_table

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def demo_cache(prefect_harness, tmp_path_factory):
    root = tmp_path_factory.mktemp("train")
    data = make_demo_dataset(root / "dfdc-demo", n_clips=20, frames=30, seed=11)
    cache = root / "cache"
    extract_flow(ExtractConfig(datasets=[str(data)], cache=str(cache), workers=2))
    return data, cache


@pytest.fixture(scope="module")
def gbm_run(demo_cache, tmp_path_factory):
    _, cache = demo_cache
    run = tmp_path_factory.mktemp("runs") / "gbm"
    metrics = train_flow(TrainConfig(cache=str(cache), out=str(run), model="gbm", folds=5, workers=2))
    return run, metrics


def test_gbm_cross_validation_beats_the_class_prior_clearly(gbm_run):
    run, metrics = gbm_run
    model, prior = metrics["overall"], metrics["prior"]
    assert model["n"] == 20
    assert model["log_loss"] < prior["log_loss"] - 0.15
    assert model["roc_auc"] >= 0.85 and model["balanced_accuracy"] >= 0.75
    assert model["brier"] < prior["brier"]
    saved = json.loads((run / "metrics.json").read_text())
    assert saved["overall"]["log_loss"] == pytest.approx(model["log_loss"])
    assert set(saved["breakdowns"]) == {"dataset", "method", "status"}


def test_out_of_fold_predictions_keep_every_group_in_one_fold(gbm_run, demo_cache):
    run, _ = gbm_run
    oof = pd.read_csv(run / "oof_predictions.csv")
    assert len(oof) == 20 and oof.video_id.is_unique
    assert (oof.groupby("leakage_group").fold.nunique() == 1).all()
    assert oof.leakage_group.nunique() == 10 and oof.fold.nunique() == 5
    assert oof.p_fake.between(0, 1).all()
    flagged = oof[oof.status != "ok"]
    assert (flagged.p_fake == 0.5).all() and flagged.flagged.all()


def test_run_directory_has_plots_model_and_card(gbm_run):
    run, _ = gbm_run
    for name in ("roc", "calibration", "scores"):
        image = cv2.imread(str(run / "plots" / f"{name}.png"))
        assert image is not None and image.shape[0] > 300 and image.std() > 10
    card = json.loads((run / "model_card.json").read_text())
    assert card["model"] == "gbm" and card["model_file"] == "model.skops"
    assert card["features_version"] and len(card["features"]) == len(card["real_feature_stats"]["mean"])
    assert len(card["training_data"]["fingerprint"]) == 16 and card["training_data"]["videos"] >= 18
    assert card["devices"] == ["CPU"]
    assert card["metrics"]["overall"]["log_loss"] < card["metrics"]["prior"]["log_loss"]
    assert list(card["extract_configs"].values())[0]["detector"] == "mtcnn"


def test_score_reload_score_gives_identical_predictions(gbm_run, demo_cache):
    run, _ = gbm_run
    _, cache = demo_cache
    table = video_table(DeltaCacheStore(str(cache)))
    first = score_table(*load_run(str(run)), table, str(cache))
    second = score_table(*load_run(str(run)), table, str(cache))
    assert np.array_equal(first.p_fake.to_numpy(), second.p_fake.to_numpy())


def test_a_video_far_from_the_training_videos_is_flagged_and_its_score_tempered(gbm_run, demo_cache, tmp_path):
    run, _ = gbm_run
    _, cache = demo_cache
    card, model = load_run(str(run))
    guard = load_guard(str(run), card)
    assert OOD_FILE in card["model_sha256"] and card["ood_threshold"] == pytest.approx(guard.threshold)
    table = video_table(DeltaCacheStore(str(cache)))
    table = table[table.status == "ok"].reset_index(drop=True)
    near = score_table(card, model, table, str(cache), guard)
    far = score_table(card, model, table.assign(**{c: table[c] * 40 + 25 for c in FEATURE_NAMES}), str(cache), guard)
    assert near.ood.mean() <= 0.25 and far.ood.all()  # the training videos themselves, then far from all of them
    np.testing.assert_allclose(near.p_fake[~near.ood], near.p_model[~near.ood])
    prior = card["training_data"]["fake_rate"]
    assert (np.abs(far.p_fake - prior) <= np.abs(far.p_model - prior) + 1e-12).all()
    assert np.abs(far.p_fake - prior).max() < 0.05  # so far out that the score is the prior's
    copy = tmp_path / "tampered"
    shutil.copytree(run, copy)
    (copy / OOD_FILE).write_text((copy / OOD_FILE).read_text().replace('"threshold": ', '"threshold": 1e9 + '))
    with pytest.raises(UnsafeModelFile, match=rf"refusing to load .*{OOD_FILE}: its sha256 is not the one recorded"):
        load_guard(str(copy), card)


def test_training_is_reproducible_for_a_seed(gbm_run, demo_cache, tmp_path):
    run, metrics = gbm_run
    _, cache = demo_cache
    again = train_flow(TrainConfig(cache=str(cache), out=str(tmp_path / "again"), model="gbm", folds=5, workers=2))
    assert again["overall"]["log_loss"] == metrics["overall"]["log_loss"]
    a = pd.read_csv(run / "oof_predictions.csv").p_fake
    b = pd.read_csv(tmp_path / "again" / "oof_predictions.csv").p_fake
    assert np.array_equal(a.to_numpy(), b.to_numpy())


def test_score_writes_a_submission_for_every_video_including_a_corrupt_one(gbm_run, demo_cache, tmp_path):
    run, _ = gbm_run
    data, _ = demo_cache
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    names = sorted(p.name for p in data.glob("*.mp4"))[:3]
    for name in names:
        shutil.copyfile(data / name, inbox / name)
    (inbox / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(5000))
    summary = score_flow(ScoreConfig(videos=[str(inbox)], model=str(run), out=str(tmp_path / "out"), workers=2))
    submission = pd.read_csv(tmp_path / "out" / "predictions.csv")
    assert list(submission.columns) == ["filename", "label"]
    assert sorted(submission.filename) == sorted(names + ["broken.mp4"])
    assert submission.label.between(0, 1).all()
    detail = pd.read_csv(tmp_path / "out" / "predictions_detail.csv").set_index("filename")
    assert detail.loc["broken.mp4", "p_fake"] == 0.5 and detail.loc["broken.mp4", "flagged"]
    assert "broken" in detail.loc["broken.mp4", "explanation"] and "failed" in detail.loc["broken.mp4", "explanation"]
    scored = detail.drop("broken.mp4")
    assert not scored.flagged.any() and scored.explanation.str.contains("z=").all()
    assert summary["videos"] == 4 and summary["flagged"] == 1
    assert {"p_model", "ood", "ood_distance"} <= set(detail.columns) and summary["ood"] == int(detail.ood.sum())
    assert scored.ood_distance.notna().all() and np.isnan(detail.loc["broken.mp4", "ood_distance"])


def test_evaluate_on_another_cache(gbm_run, demo_cache, tmp_path):
    run, _ = gbm_run
    other = make_demo_dataset(tmp_path / "dfdc-other", n_clips=6, frames=30, seed=99)
    other_cache = tmp_path / "other-cache"
    extract_flow(ExtractConfig(datasets=[str(other)], cache=str(other_cache), workers=2, keyframe_interval=5))
    metrics = evaluate_flow(EvaluateConfig(run=str(run), cache=str(other_cache), workers=2))
    assert metrics["overall"]["n"] == 6
    # Allowed, but recorded: the other cache was extracted with other settings than the training data.
    assert metrics["extraction_settings_differ"] == {"keyframe_interval": {"trained": [10], "evaluated": [5]}}
    assert metrics["seen_in_training"] == {"videos": 0, "video_ids": []}
    out = run / "evaluations" / evaluation_name(str(other_cache))
    assert out.name.startswith("other-cache-")
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["overall"]["n"] == 6
    predictions = pd.read_csv(out / "predictions.csv")
    assert len(predictions) == 6 and {"p_model", "ood", "ood_distance"} <= set(predictions.columns)
    flagged = int(predictions.ood.sum())  # AUC and log loss of the flagged and the other clips, each beside the prior
    assert saved["ood"]["flagged"]["n"] == flagged and saved["ood"]["unflagged"]["n"] == 6 - flagged
    assert all("prior_log_loss" in part for part in saved["ood"].values() if part["n"])


def test_evaluation_measures_only_videos_the_model_did_not_train_on(gbm_run, demo_cache, tmp_path):
    """Fault matrix (#20): evaluating on training videos reported AUC 1.0 without a word."""
    run, _ = gbm_run
    _, cache = demo_cache
    mixed = tmp_path / "a" / "cache"
    shutil.copytree(cache, mixed, ignore=shutil.ignore_patterns(".lock*"))
    other = make_demo_dataset(tmp_path / "dfdc-other", n_clips=6, frames=30, seed=99)
    extract_flow(ExtractConfig(datasets=[str(other)], cache=str(mixed), workers=2))
    metrics = evaluate_flow(EvaluateConfig(run=str(run), cache=str(mixed), workers=2))
    assert metrics["overall"]["n"] == 6 and metrics["seen_in_training"]["videos"] == 20
    predictions = pd.read_csv(run / "evaluations" / evaluation_name(str(mixed)) / "predictions.csv")
    assert len(predictions) == 26 and predictions.seen_in_training.sum() == 20
    assert not predictions[~predictions.seen_in_training].video_id.str.startswith("dfdc-demo/").any()
    # Two caches named alike are two evaluations, not one overwriting the other.
    assert evaluation_name(str(mixed)) != evaluation_name(str(tmp_path / "b" / "cache"))
    with pytest.raises(ValueError, match="every labelled video of .* was in the training data"):
        evaluate_flow(EvaluateConfig(run=str(run), cache=str(cache), workers=2))


def test_values_written_by_other_extraction_code_are_refused(gbm_run, demo_cache, tmp_path):
    run, _ = gbm_run
    _, cache = demo_cache
    copy = tmp_path / "older-cache"
    shutil.copytree(cache, copy, ignore=shutil.ignore_patterns(".lock*"))
    store = DeltaCacheStore(str(copy))
    row = store.read_video_row(store.read("videos").query("status == 'ok'").video_id.iloc[0])
    store.write_table("videos", row["video_id"], [{**row, "code_version": "4"}])  # as an older release wrote it
    refusal = (rf"1 extracted videos \(first: {row['video_id']}\) were extracted by extraction code version 4, "
               r"and this version of deepfake-pipeline extracts version \d+: run `dfp extract`")
    with pytest.raises(ValueError, match=refusal):
        train_flow(TrainConfig(cache=str(copy), out=str(tmp_path / "run"), model="gbm", folds=5, workers=2))
    assert not (tmp_path / "run").exists()  # nothing half-written
    with pytest.raises(ValueError, match=refusal):
        evaluate_flow(EvaluateConfig(run=str(run), cache=str(copy), workers=2))
    assert not (run / "evaluations" / evaluation_name(str(copy))).exists()
    # A model trained on values of another extraction code version does not load (dfp evaluate, dfp score).
    old = tmp_path / "older-run"
    shutil.copytree(run, old)
    card = json.loads((old / "model_card.json").read_text())
    (old / "model_card.json").write_text(json.dumps({**card, "feature_code_version": "4"}))
    with pytest.raises(ValueError, match=r"older-run: this gbm model was trained on videos extracted by extraction "
                                         r"code version 4.*Retrain it with `dfp train`"):
        load_run(str(old))


def test_a_cache_without_its_extraction_settings_is_refused_before_anything_runs(demo_cache, tmp_path):
    _, cache = demo_cache
    copy = tmp_path / "copied-cache"
    shutil.copytree(cache, copy, ignore=shutil.ignore_patterns(".lock*", "configs"))  # the tables alone
    (config_hash,) = DeltaCacheStore(str(copy)).read("videos").config_hash.dropna().unique()
    refusal = (rf"cache {copy}: the extraction settings {config_hash} that its videos were extracted with are "
               r"missing \(.*configs/" + config_hash + r"\.json\); copy the cache's configs/ folder")
    with pytest.raises(ValueError, match=refusal):
        train_flow(TrainConfig(cache=str(copy), out=str(tmp_path / "run"), model="gbm", folds=5, workers=2))
    assert not (tmp_path / "run").exists()  # nothing half-written


def test_cnn_fits_land_on_the_gpu_worker(demo_cache, tmp_path):
    from distributed import Nanny, Scheduler, SpecCluster

    _, cache = demo_cache
    workers = {
        "cpu": {"cls": Nanny, "options": {"nthreads": 1}},
        "gpu": {"cls": Nanny, "options": {"nthreads": 1, "resources": {"GPU": 1}}},
    }
    with SpecCluster(workers=workers, scheduler={"cls": Scheduler, "options": {"dashboard_address": None}}) as cluster:
        from distributed import Client

        with Client(cluster) as client:
            client.wait_for_workers(2)
            gpu_address = next(a for a, w in client.scheduler_info()["workers"].items() if w["resources"])
            metrics = train_flow(TrainConfig(cache=str(cache), out=str(tmp_path / "cnn"), model="cnn", folds=2,
                                             cnn_epochs=1, dask_address=cluster.scheduler_address))
    assert metrics["fit_workers"] == [gpu_address]
    assert metrics["read_workers"] >= 1  # the crops were read on the cluster's workers, file by file
    card = json.loads((tmp_path / "cnn" / "model_card.json").read_text())
    assert card["model_file"] == "model.keras" and (tmp_path / "cnn" / "model.keras").exists()
    assert card["devices"] == [keras_device()]  # the workers' device and Keras backend: "CPU (Keras 3..., tensorflow ...)"


def test_user_given_split_validates_on_the_other_split(demo_cache, tmp_path):
    data, cache = demo_cache
    moved_data = shutil.copytree(data, tmp_path / "moved" / "dfdc-demo")
    moved_cache = shutil.copytree(cache, tmp_path / "cache")
    metadata = json.loads((moved_data / "metadata.json").read_text())
    originals = sorted(n for n, m in metadata.items() if m["label"] == "REAL")[:3]
    for name, entry in metadata.items():
        if name in originals or entry["original"] in originals:
            entry["split"] = "validation"
    (moved_data / "metadata.json").write_text(json.dumps(metadata))
    # Same contents at a new path with new splits: the cache rows are refreshed, nothing is decoded again.
    summary = extract_flow(ExtractConfig(datasets=[str(moved_data)], cache=str(moved_cache), workers=2))
    assert (summary["extracted"], summary["refreshed"]) == (0, 20)
    metrics = train_flow(TrainConfig(cache=str(moved_cache), out=str(tmp_path / "run"), model="gbm", holdout=True,
                                         workers=2))
    assert metrics["validation"] == "holdout" and metrics["overall"]["n"] == 6
    oof = pd.read_csv(tmp_path / "run" / "oof_predictions.csv")
    assert set(oof.fold) == {0} and len(oof) == 6


def test_extract_train_and_score_with_the_cache_on_object_storage(prefect_harness, demo_dir, s3_bucket, tmp_path):
    cache = f"{s3_bucket}/cache"
    first = extract_flow(ExtractConfig(datasets=[str(demo_dir)], cache=cache, workers=2, detector="haar"))
    again = extract_flow(ExtractConfig(datasets=[str(demo_dir)], cache=cache, workers=2, detector="haar"))
    assert (first["extracted"], again["extracted"], again["skipped"]) == (8, 0, 8)
    videos = read_table(cache, "videos")
    assert len(videos) == 8 and (videos.status != "failed").all()
    run = f"{s3_bucket}/runs/first"
    metrics = train_flow(TrainConfig(cache=cache, out=run, model="gbm", folds=2, workers=2))
    assert metrics["overall"]["n"] == 8
    assert metrics["plots"]["roc"] == f"{run}/plots/roc.png"
    assert len(read_table(cache, "features")) == 8
    import fsspec

    fs = fsspec.filesystem("s3", skip_instance_cache=True)
    published = {p.split("/runs/first/", 1)[1] for p in fs.find(run)}
    assert {"model.skops", "model_card.json", "metrics.json", "oof_predictions.csv", "plots/roc.png"} <= published
    assert len(pd.read_csv(f"{run}/oof_predictions.csv")) == 8
    assert not (tmp_path / "runs").exists()  # nothing was written locally instead
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    shutil.copyfile(sorted(demo_dir.glob("*.mp4"))[0], inbox / "clip.mp4")
    out = f"{s3_bucket}/scores"
    summary = score_flow(ScoreConfig(videos=[str(inbox)], model=run, out=out, cache=f"{s3_bucket}/score-cache",
                                     workers=2))
    assert summary["videos"] == 1 and len(read_table(f"{s3_bucket}/score-cache", "videos")) == 1
    assert summary["predictions"] == f"{out}/predictions.csv"
    predictions = pd.read_csv(summary["predictions"])
    assert predictions.filename.tolist() == ["clip.mp4"] and 0.0 <= predictions.label[0] <= 1.0


@pytest.mark.parametrize("kind, files", [("crop_gbm", {"model_crops.skops", "model_crops.skops.calibration.json"}),
                                         ("crop_linear", {"model_crops_linear.json"})])
def test_crop_texture_model_trains_saves_and_scores_end_to_end(demo_cache, tmp_path, kind, files):
    _, cache = demo_cache
    run = tmp_path / "crop"
    metrics = train_flow(TrainConfig(cache=str(cache), out=str(run), model=kind, folds=2, workers=2))
    assert metrics["model"] == kind and metrics["overall"]["n"] == 20
    assert metrics["overall"]["log_loss"] < 1.0 and 0.0 <= metrics["overall"]["roc_auc"] <= 1.0
    assert {p.name for p in run.iterdir()} >= files | {"model_card.json", "metrics.json", "oof_predictions.csv"}
    card, model = load_run(str(run))
    if kind == "crop_linear":  # what the model looks at, per descriptor block, in the model card
        shares = card["feature_importance"]
        assert {"LBP", "residual d1 band", "residual d2 ring"} <= set(shares) and abs(sum(shares.values()) - 1) < 1e-3
        assert set(card["scorer_shares"]) == {"crop", "patch", *VIDEO_INPUTS} and abs(sum(card["scorer_shares"].values()) - 1) < 1e-3
        fitted = model.fitted_  # load_run gives the registered kind; fitted_ is its crop_models.CropLinearModel
        assert fitted.patch is not None and len(fitted.patch.weights) == PATCH_BINS
    else:
        assert card["scorer_shares"] == {}
    store = DeltaCacheStore(str(cache))
    # Descriptors were computed once per video into the cache (self-blended copies for REAL videos only).
    videos = store.read("videos")
    with_crops = videos[(videos.status == "ok") & (videos.crops_stored > 0)]
    stored = store.read("descriptors", columns=["video_id", "blended"])
    assert set(stored.video_id) == set(with_crops.video_id) and stale_descriptor_videos(store) == []
    assert set(stored.video_id[stored.blended]) == set(with_crops.video_id[with_crops.label == "REAL"])
    table = video_table(store)
    scored = score_table(card, model, table, str(cache))
    ok = scored.status == "ok"
    assert scored.p_fake[ok].between(0, 1).all() and (scored.p_fake[~ok] == 0.5).all()
    assert scored.explanation[ok].str.contains("texture model on main-face crops").all()
    again = score_table(*load_run(str(run)), table, str(cache))
    assert np.array_equal(scored.p_fake.to_numpy(), again.p_fake.to_numpy())
    if kind == "crop_linear":  # evaluating on a cache without descriptors computes and stores them there first
        copy = tmp_path / "copy-cache"
        shutil.copytree(cache, copy, ignore=shutil.ignore_patterns("descriptors", ".lock*"))
        with pytest.raises(ValueError, match="was in the training data"):  # the run's own training videos
            evaluate_flow(EvaluateConfig(run=str(run), cache=str(copy), workers=2))
        assert stale_descriptor_videos(DeltaCacheStore(str(copy))) == []
        unrecorded = tmp_path / "unrecorded-run"  # a run written before training videos were recorded
        shutil.copytree(run, unrecorded, ignore=shutil.ignore_patterns("training_videos.csv"))
        metrics = evaluate_flow(EvaluateConfig(run=str(unrecorded), cache=str(copy), workers=2))
        assert metrics["overall"]["n"] == 20 and metrics["extraction_settings_differ"] == {}
        evaluated = pd.read_csv(unrecorded / "evaluations" / evaluation_name(str(copy)) / "predictions.csv")
        evaluated = evaluated.set_index("video_id").p_fake
        assert np.allclose(evaluated.loc[scored.video_id].to_numpy(), scored.p_fake.to_numpy())
        # A model trained on another version of the descriptors (e.g. from the JPEG crops) refuses to load.
        assert card["descriptors_version"] == DESCRIPTORS_VERSION
        old = tmp_path / "old-run"
        shutil.copytree(run, old)
        (old / "model_card.json").write_text(json.dumps({k: v for k, v in card.items() if k != "descriptors_version"}))
        with pytest.raises(ValueError, match=r"old-run: this crop_linear model was trained on crop descriptors version "
                                             r"3 or older.*Retrain"):
            load_run(str(old))


def test_scoring_clips_of_the_training_cache_keeps_their_labels(gbm_run, demo_cache, tmp_path):
    """Fault matrix (#20): `dfp score CLIPS --cache TRAINING_CACHE` once erased the clips' labels and groups."""
    run, _ = gbm_run
    data, cache = demo_cache
    training_cache = tmp_path / "cache"
    shutil.copytree(cache, training_cache)
    columns = ["video_id", "label", "split", "leakage_group"]
    before = DeltaCacheStore(str(training_cache)).read("videos", columns=columns).set_index("video_id").sort_index()
    clips = sorted(str(p) for p in data.glob("*.mp4"))[:3]  # single files: listed without labels
    summary = score_flow(ScoreConfig(videos=clips, model=str(run), out=str(tmp_path / "out"),
                                     cache=str(training_cache), workers=2))
    assert summary["videos"] == 3
    after = DeltaCacheStore(str(training_cache)).read("videos", columns=columns).set_index("video_id").sort_index()
    assert before.label.notna().all()
    pd.testing.assert_frame_equal(after, before)
