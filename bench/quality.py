"""Detection quality on real clips: grouped cross-validation with repeats, bootstrap intervals and breakdowns.

    python bench/quality.py                                   # ffpp-dev + ffpp-mini + dfdc-mini from ../shared/data
    python bench/quality.py DATASET... --seeds 0 1 2 3 4      # the longer run: more split seeds
    python bench/quality.py demo-output/dfdc-demo --folds 2   # any labelled dataset

Steps: extract every dataset into one cache (`dfp extract`: cached, a rerun only decodes what changed), compute
the per-video features and crop descriptors (cached beside the crops), then for each model and each split seed:
  - grouped K-fold CV over all clips (a leakage group never straddles folds): AUC with a group-bootstrap 95%
    interval, log loss beside the class-prior log loss (prior from the training folds), accuracy, balanced
    accuracy, and breakdowns per dataset, manipulation method, compression and frame height;
  - cross-compression: train on the c23 clips of the training groups, test on the c40 clips of the held-out groups;
  - cross-dataset: train on every FF++ clip, test on every DFDC clip; and FF++ plus the DFDC training groups,
    tested on the held-out DFDC groups.
  - out of distribution (protocol (b)): train on every development clip, score the clips of --ood (default
    ../shared/data/wild-dev: other sources and generators), never trained on; AUC with a group-bootstrap
    interval, and AUC and log loss against the prior for each of its sources.
Variants are chosen on the grouped CV (a) and a change is kept only if (b) does not get worse
(bench/results/decisions.md). No peeking: the models' hyperparameters are fixed in advance (features.learn.models);
nothing is tuned on the folds reported. Unscorable clips (failed decode, no face) are scored 0.5 and counted.
Prints markdown tables and writes JSON (default bench/results/quality.json).
"""

from __future__ import annotations

import argparse
import functools
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from bench.common import table, write_json  # noqa: E402
from features.learn.evaluation import bootstrap_intervals, cross_validated, metrics  # noqa: E402
from features.learn.video_features import LANDMARK_FEATURES  # noqa: E402

SHARED = ROOT.parent / "shared" / "data"
DEFAULT_DATASETS = [SHARED / "ffpp-dev", SHARED / "ffpp-mini", SHARED / "dfdc-mini" / "train_sample_videos"]
DEFAULT_OOD = SHARED / "wild-dev"
TARGETS = {"ffpp_c23_auc": 0.90, "log_loss_below_prior": 0.15, "cross_compression_auc": 0.75, "dfdc_auc": 0.75,
           "wild_dev_auc": 0.85, "wild_dev_worst_source_prior_minus_log_loss": 0.0}


# ----------------------------------------------------------------------------------------------- models
def fit_gbm(train: pd.DataFrame, seed: int, cache: str):
    from features.learn.models import fit_gbm as fit
    from features.learn.video_features import FEATURE_NAMES

    model = fit(train[FEATURE_NAMES], _y(train), train.leakage_group.to_numpy(), seed=seed)
    return lambda test: model.predict_proba(test[FEATURE_NAMES])[:, 1]


def fit_logreg(train: pd.DataFrame, seed: int, cache: str):
    """Standardised L2 logistic regression, C fixed in advance (0.1): a linear baseline beside the boosting."""
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from features.learn.video_features import FEATURE_NAMES

    columns = [c for c in FEATURE_NAMES if train[c].notna().any()]
    model = make_pipeline(SimpleImputer(strategy="median"), StandardScaler(),
                          LogisticRegression(C=0.1, max_iter=2000, random_state=seed))
    model.fit(train[columns].to_numpy(np.float64), _y(train))
    return lambda test: model.predict_proba(test[columns].to_numpy(np.float64))[:, 1]


def fit_cnn(train: pd.DataFrame, seed: int, cache: str, self_blend: bool = False, epochs: int = 8):
    """The small Keras CNN on main-face crops (mean frame logit per video), optionally with self-blended fakes."""
    from features.learn import models
    from features.store.delta_cache import DeltaCacheStore
    from features.store.training_data import crop_margin, main_crops

    store = DeltaCacheStore(cache)
    crops = main_crops(store, list(train.video_id), dict(zip(train.video_id, train.cache_key, strict=True)))
    margin = crop_margin(cache, train.config_hash.iloc[0]) if self_blend else None
    model = models.fit_cnn(crops, dict(zip(train.video_id, _y(train), strict=True)), dict(zip(train.video_id, train.leakage_group, strict=True)),
                           epochs=epochs, seed=seed, self_blend_margin=margin)

    def predict(test: pd.DataFrame) -> np.ndarray:
        test_crops = main_crops(store, list(test.video_id), dict(zip(test.video_id, test.cache_key, strict=True)))
        scores = models.cnn_video_scores(model, test_crops, list(test.video_id))
        return test.video_id.map(scores).fillna(0.5).to_numpy(np.float64)

    return predict


@functools.lru_cache(maxsize=4)
def _crop_descriptors(cache: str, self_blended: bool = False) -> pd.DataFrame:
    """Cached descriptors of every stored main-face crop of the cache (or their self-blended copies), read once per run."""
    from features.store.delta_cache import DeltaCacheStore
    from features.store.training_data import crop_descriptors

    videos = DeltaCacheStore(cache).read("videos", columns=["video_id", "cache_key", "config_hash", "status", "label"])
    ok = videos[videos.status == "ok"]
    return crop_descriptors(ok[ok.label == "REAL"] if self_blended else ok, cache, blended=self_blended)


def _fitted_crop_model(train: pd.DataFrame, seed: int, cache: str, kind: str, self_blend: bool,
                       landmarks: bool = True, **options):
    """features.learn.crop_models' fit of `kind` on the training clips' crops (what `dfp train --model KIND` fits,
    there always with self-blending, crop_linear with its landmark inputs, and default options)."""
    from features.learn import crop_models

    fits = {"crop_gbm": crop_models.fit_crop_gbm, "crop_linear": crop_models.fit_crop_linear}
    if kind == "crop_linear" and landmarks:
        options["videos"] = train
    descriptors = _crop_descriptors(cache)
    return fits[kind](descriptors[descriptors.video_id.isin(set(train.video_id))],
                           dict(zip(train.video_id, _y(train), strict=True)), dict(zip(train.video_id, train.leakage_group, strict=True)),
                           seed=seed, blended=_crop_descriptors(cache, True) if self_blend else None, **options)


def fit_crop_model(train: pd.DataFrame, seed: int, cache: str, kind: str = "crop_gbm", self_blend: bool = False,
                   **options):
    """The fitted crop model as a predict(test clips) -> P(FAKE) function (unscorable clips 0.5)."""
    from features.learn import crop_models

    model = _fitted_crop_model(train, seed, cache, kind, self_blend, **options)
    descriptors = _crop_descriptors(cache)

    def predict(test: pd.DataFrame) -> np.ndarray:
        scores = crop_models.crop_video_scores(model, descriptors, list(test.video_id), test)
        return test.video_id.map(scores).fillna(0.5).to_numpy(np.float64)

    return predict


def fit_cnn_sbi(train: pd.DataFrame, seed: int, cache: str):
    return fit_cnn(train, seed, cache, self_blend=True)


MODELS = {
    "gbm": fit_gbm, "logreg": fit_logreg,
    "crop_gbm": functools.partial(fit_crop_model, kind="crop_gbm"),  # ablation: no self-blended fakes
    "crop_gbm_sbi": functools.partial(fit_crop_model, kind="crop_gbm", self_blend=True),
    # ablations: the crop-level scorer alone; crop and patch scorers without any per-video input; with the
    # landmark-dynamics inputs but not the block-grid one
    "crop_linear_no_patches": functools.partial(fit_crop_model, kind="crop_linear", self_blend=True, patches=False,
                                                landmarks=False),
    "crop_linear_no_landmarks": functools.partial(fit_crop_model, kind="crop_linear", self_blend=True,
                                                  landmarks=False),
    # crop_linear with the block-grid trace as a further per-video input: better on the development folds (a),
    # much worse on wild-dev (b), so not the default (bench/results/decisions.md)
    "crop_linear_grid": functools.partial(fit_crop_model, kind="crop_linear", self_blend=True,
                                          video_columns=[*LANDMARK_FEATURES, "face_grid_blockiness"]),
    "crop_linear": functools.partial(fit_crop_model, kind="crop_linear", self_blend=True),
    "cnn": fit_cnn, "cnn_sbi": fit_cnn_sbi,
}
# The CNNs take minutes per fold on a CPU: ask for them with --models.
DEFAULT_MODELS = ["gbm", "logreg", "crop_gbm", "crop_gbm_sbi", "crop_linear_no_patches", "crop_linear_no_landmarks",
                  "crop_linear_grid", "crop_linear"]


# ----------------------------------------------------------------------------------------------- data
def _y(frame: pd.DataFrame) -> np.ndarray:
    return (frame.label == "FAKE").to_numpy(int)


def extract(datasets: list[str], cache: str, detector: str, max_seconds: float | None = None) -> float:
    """`dfp extract` every dataset into the cache (the first `max_seconds` of each clip when given); returns the
    wall time (a rerun only decodes what changed)."""
    started = time.perf_counter()
    limit = ["--max-seconds", str(max_seconds)] if max_seconds else []
    subprocess.run([str(Path(sys.executable).parent / "dfp"), "extract", *datasets, "--cache", cache,
                    "--detector", detector, *limit], check=True)
    return time.perf_counter() - started


def feature_table(cache: str) -> pd.DataFrame:
    """Labelled videos with their features, computed here (with the crop descriptors) for any that lack current ones."""
    from features.store.delta_cache import DeltaCacheStore
    from features.store.training_data import (
        stale_descriptor_videos,
        stale_feature_videos,
        video_table,
        write_descriptors,
        write_features,
    )

    store = DeltaCacheStore(cache)
    write_features(store, stale_feature_videos(store))
    write_descriptors(store, stale_descriptor_videos(store))
    table_ = video_table(store)
    labelled = table_[table_.label.notna()].reset_index(drop=True)
    heights = store.read("videos", columns=["video_id", "height"])
    labelled = labelled.merge(heights, on="video_id", how="left")
    labelled["is_ffpp"] = labelled.path.str.contains("original_sequences|manipulated_sequences", regex=True)
    labelled["family"] = np.where(labelled.is_ffpp, "ffpp", "dfdc")
    labelled["resolution"] = pd.cut(labelled.height.fillna(0), [-1, 500, 800, 1e9],
                                    labels=["<=480p", "720p", ">=1080p"]).astype(str)
    return labelled


# ----------------------------------------------------------------------------------------------- evaluation
def fixed_split(frame: pd.DataFrame, fit, seed: int, train_mask, test_mask) -> pd.DataFrame:
    """Train on one set of clips, test on another (disjoint datasets, so no leakage group is shared)."""
    train, test = frame[np.asarray(train_mask)], frame[np.asarray(test_mask)]
    if test.empty or len(np.unique(_y(train))) < 2:
        return test.assign(p_fake=np.nan, p_prior=np.nan).iloc[0:0]
    predict = fit(train[train.status == "ok"], seed)
    p = np.full(len(test), 0.5)
    ok = (test.status == "ok").to_numpy()
    if ok.any():
        p[ok] = predict(test[ok])
    return test.assign(p_fake=p, p_prior=_y(train).mean())


def group_bootstrap_auc(scored: pd.DataFrame, n: int, seed: int = 0) -> tuple[float, float]:
    """95% interval of the AUC, resampling leakage groups (not clips) with replacement (the harness's bootstrap)."""
    return bootstrap_intervals(_y(scored), scored.p_fake, n, seed, groups=scored.leakage_group.to_numpy())["roc_auc"]


def summarise(scored: pd.DataFrame, bootstrap: int = 0, seed: int = 0) -> dict:
    if scored.empty:
        return {"n": 0}
    y = _y(scored)
    out = {**metrics(y, scored.p_fake), "prior_log_loss": metrics(y, scored.p_prior)["log_loss"],
           "groups": int(scored.leakage_group.nunique())}
    if bootstrap:
        out["auc_ci95"] = group_bootstrap_auc(scored, bootstrap, seed)
    return out


def breakdowns(scored: pd.DataFrame) -> dict:
    """AUC and log loss per dataset, compression and resolution; per method, that method's fakes vs the reals."""
    result: dict[str, dict] = {}
    for column in ("family", "dataset", "compression", "resolution"):
        values = scored[column].fillna("none").astype(str)
        result[column] = {v: summarise(part) for v, part in scored.groupby(values)}
    reals = scored[scored.label == "REAL"]
    result["method"] = {}
    for method, fakes in scored[scored.label == "FAKE"].groupby(scored.method.fillna("unknown")):
        same_family = reals[reals.family.isin(fakes.family.unique())]
        result["method"][method] = summarise(pd.concat([same_family, fakes]))
    return result


EVALUATIONS = ("all", "cross_compression", "ffpp_to_dfdc", "dfdc_held_out")


def run_model(frame: pd.DataFrame, name: str, seed: int, folds: int, bootstrap: int, cache: str, fit=None,
              evaluations=EVALUATIONS, ood: pd.DataFrame | None = None) -> dict:
    """Every evaluation of one model and split seed; `fit(train, seed)` defaults to MODELS[name] on the cache, and
    the evaluations left out of `evaluations` are recorded as {"n": 0} (the grouped CV over all clips always runs).
    `ood`: clips never trained on, scored by the model fitted on every clip of `frame` (protocol (b))."""
    fit = fit or functools.partial(MODELS[name], cache=cache)
    ffpp = frame.is_ffpp.to_numpy()
    dfdc = ~ffpp
    result = {"model": name, "seed": seed, "cross_compression": {"n": 0}, "ffpp_to_dfdc": {"n": 0},
              "dfdc_held_out": {"n": 0}, "wild_dev": {"n": 0}, "wild_dev_by_source": {},
              "wild_dev_tempered": {"n": 0}, "wild_dev_tempered_by_source": {}, "wild_dev_flagged": None}
    all_clips = cross_validated(frame, fit, seed, folds)
    result["all"] = summarise(all_clips, bootstrap, seed)
    result["ffpp_c23"] = summarise(all_clips[all_clips.is_ffpp & (all_clips.compression == "c23")], bootstrap, seed)
    result["ffpp_c40"] = summarise(all_clips[all_clips.is_ffpp & (all_clips.compression == "c40")], bootstrap, seed)
    result["breakdowns"] = breakdowns(all_clips)
    result["oof"] = all_clips[["video_id", "label", "fold", "p_fake", "p_prior"]].to_dict("records")
    c23 = (frame.compression == "c23").to_numpy() & ffpp
    c40 = (frame.compression == "c40").to_numpy() & ffpp
    if "cross_compression" in evaluations and c23.any() and c40.any():
        result["cross_compression"] = summarise(cross_validated(frame, fit, seed, folds, train_mask=c23,
                                                                test_mask=c40), bootstrap, seed)
    if "ffpp_to_dfdc" in evaluations:
        result["ffpp_to_dfdc"] = summarise(fixed_split(frame, fit, seed, ffpp, dfdc), bootstrap, seed)
    if "dfdc_held_out" in evaluations and dfdc.any() and frame[dfdc].leakage_group.nunique() >= 2:
        sub = frame[dfdc | ffpp].reset_index(drop=True)
        sub_dfdc = ~sub.is_ffpp.to_numpy()
        held_out = cross_validated(sub, fit, seed, min(folds, sub[sub_dfdc].leakage_group.nunique()),
                                   test_mask=sub_dfdc)
        result["dfdc_held_out"] = summarise(held_out, bootstrap, seed)
    if ood is not None and len(ood):
        scored = fixed_split(pd.concat([frame, ood], ignore_index=True), fit, seed,
                             np.r_[np.ones(len(frame), bool), np.zeros(len(ood), bool)],
                             np.r_[np.zeros(len(frame), bool), np.ones(len(ood), bool)])
        result["wild_dev"] = summarise(scored, bootstrap, seed)
        result["wild_dev_by_source"] = {source: summarise(part) for source, part in scored.groupby("dataset")}
        guard = guarded(frame, scored, cache, seed)
        if guard is not None:
            result["wild_dev_tempered"] = summarise(guard, bootstrap, seed)
            result["wild_dev_tempered_by_source"] = {s: summarise(part) for s, part in guard.groupby("dataset")}
            result["wild_dev_flagged"] = float(guard.ood.mean())
            scored = scored.assign(p_tempered=guard.p_fake.to_numpy(), ood_distance=guard.ood_distance.to_numpy(),
                                   ood=guard.ood.to_numpy())
        result["oof_wild_dev"] = scored[[c for c in ("video_id", "dataset", "label", "p_fake", "p_prior", "p_tempered",
                                                     "ood_distance", "ood") if c in scored]].to_dict("records")
    return result


def guarded(train: pd.DataFrame, scored: pd.DataFrame, cache: str, seed: int) -> pd.DataFrame | None:
    """`scored` with p_fake tempered by features.learn.ood's guard fitted on the training clips (grouped folds),
    its distance and flag; None when the clips have no representation (no per-video features)."""
    from features.learn import ood
    from features.learn.evaluation import grouped_folds

    descriptors = _crop_descriptors(cache) if cache else None
    every = ood.video_representation(pd.concat([train, scored]), descriptors)
    if every.shape[1] == 0:
        return None
    train_ok = train[train.status == "ok"]
    fold = grouped_folds(_y(train_ok), train_ok.leakage_group.to_numpy(), 5, seed)
    guard = ood.fit_guard(every.loc[train_ok.video_id], fold, seed)
    distance = guard.distance(every.loc[scored.video_id])
    return scored.assign(p_fake=guard.temper(scored.p_fake.to_numpy(), float(_y(train).mean()), distance),
                         ood_distance=distance, ood=distance > guard.threshold)


def linear_weight_shares(frame: pd.DataFrame, cache: str, seed: int) -> tuple[dict[str, float], dict[str, float]]:
    """What crop_linear looks at, fitted on every usable clip: its crop scorer's weight per descriptor block, and
    the share of its final logit's spread over those clips due to the crop and patch scorers and the landmarks."""
    from features.learn import crop_models

    usable = frame[frame.status == "ok"]
    model = _fitted_crop_model(usable, seed, cache, "crop_linear", self_blend=True)
    descriptors = _crop_descriptors(cache)
    return (crop_models.weight_shares(model),
            crop_models.input_shares(model, descriptors[descriptors.video_id.isin(set(usable.video_id))], usable))


# ----------------------------------------------------------------------------------------------- report
SECTIONS = [("all", "all clips, grouped CV"), ("ffpp_c23", "FF++ c23"), ("ffpp_c40", "FF++ c40"),
            ("cross_compression", "c23 -> c40"), ("ffpp_to_dfdc", "FF++ -> DFDC"),
            ("dfdc_held_out", "FF++ + DFDC -> held-out DFDC"), ("wild_dev", "all dev -> wild-dev (b)"),
            ("wild_dev_tempered", "all dev -> wild-dev (b), tempered beyond the OOD threshold")]


def _spread(values: list[float]) -> str:
    values = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    if not values:
        return "n/a"
    return f"{np.mean(values):.3f} ± {np.std(values):.3f}" if len(values) > 1 else f"{values[0]:.3f}"


def report(runs: list[dict], models: list[str]) -> tuple[str, dict]:
    rows, verdicts = [], {}
    for name in models:
        mine = [r for r in runs if r["model"] == name]
        for key, label in SECTIONS:
            parts = [r[key] for r in mine if r[key].get("n")]
            if not parts:
                rows.append({"model": name, "evaluation": label, "n": 0})
                continue
            ci = parts[0].get("auc_ci95", (math.nan, math.nan))
            rows.append({
                "model": name, "evaluation": label, "n": parts[0]["n"], "groups": parts[0]["groups"],
                "AUC (mean ± sd over seeds)": _spread([p["roc_auc"] for p in parts]),
                "AUC 95% CI (seed 0, groups)": "n/a" if math.isnan(ci[0]) else f"[{ci[0]:.2f}, {ci[1]:.2f}]",
                "log loss": _spread([p["log_loss"] for p in parts]),
                "prior log loss": _spread([p["prior_log_loss"] for p in parts]),
                "accuracy": _spread([p["accuracy"] for p in parts]),
                "balanced acc.": _spread([p["balanced_accuracy"] for p in parts]),
            })

        def mean(key, field, mine=mine):
            values = [r[key].get(field, math.nan) for r in mine if r[key].get("n")]
            values = [v for v in values if not math.isnan(v)]
            return float(np.mean(values)) if values else math.nan

        gap = mean("all", "prior_log_loss") - mean("all", "log_loss")
        # (b) trains on every clip, so its result does not depend on the split seed: the first run's.
        sources = (mine[0].get("wild_dev_tempered_by_source") or mine[0]["wild_dev_by_source"]) if mine else {}
        worst = min((p["prior_log_loss"] - p["log_loss"] for p in sources.values() if p.get("n")), default=math.nan)
        verdicts[name] = {
            "ffpp_c23_auc": (mean("ffpp_c23", "roc_auc"), TARGETS["ffpp_c23_auc"]),
            "log_loss_below_prior": (gap, TARGETS["log_loss_below_prior"]),
            "cross_compression_auc": (mean("cross_compression", "roc_auc"), TARGETS["cross_compression_auc"]),
            "dfdc_auc": (mean("dfdc_held_out", "roc_auc"), TARGETS["dfdc_auc"]),
            "wild_dev_auc": (mean("wild_dev", "roc_auc"), TARGETS["wild_dev_auc"]),
            "wild_dev_worst_source_prior_minus_log_loss": (worst, TARGETS["wild_dev_worst_source_prior_minus_log_loss"]),
        }
    columns = ["model", "evaluation", "n", "groups", "AUC (mean ± sd over seeds)", "AUC 95% CI (seed 0, groups)",
               "log loss", "prior log loss", "accuracy", "balanced acc."]
    lines = [table(rows, columns), "", "Targets (mean over seeds):", ""]
    target_rows = [{"model": m, "target": t, "measured": v, "bar": bar,
                    "met": "n/a" if math.isnan(v) else ("yes" if v >= bar else "no")}
                   for m, items in verdicts.items() for t, (v, bar) in items.items()]
    lines.append(table(target_rows, ["model", "target", "measured", "bar", "met"]))
    return "\n".join(lines), {m: {t: {"measured": v, "bar": b, "met": (not math.isnan(v)) and v >= b}
                                  for t, (v, b) in items.items()} for m, items in verdicts.items()}


def breakdown_tables(runs: list[dict], model: str) -> str:
    first = next(r for r in runs if r["model"] == model)
    out = []
    for column, parts in [*first["breakdowns"].items(), ("wild-dev source (b)", first["wild_dev_by_source"]),
                          ("wild-dev source (b), tempered", first.get("wild_dev_tempered_by_source", {}))]:
        if not parts:
            continue
        rows = [{column: k, "n": v["n"], "fakes": v.get("n_fake"), "AUC": v.get("roc_auc"), "log loss": v.get("log_loss"),
                 "prior log loss": v.get("prior_log_loss")} for k, v in parts.items() if v.get("n")]
        out += [f"{model}, seed {first['seed']}, by {column}:", "",
                table(rows, [column, "n", "fakes", "AUC", "log loss", "prior log loss"]), ""]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("datasets", nargs="*", help="labelled datasets (default: the three shared development sets)")
    parser.add_argument("--cache", default=str(ROOT / "bench" / ".cache" / "quality"), help="extraction cache")
    parser.add_argument("--detector", default="mtcnn", choices=["mtcnn", "haar"])
    parser.add_argument("--max-seconds", type=float, default=None,
                        help="extract only the first S seconds of each clip (the CI tier; give it its own --cache: "
                             "the setting is part of the cache key, so one cache holds one setting's rows)")
    parser.add_argument("--models", nargs="+", default=DEFAULT_MODELS, choices=list(MODELS))
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="split seeds (the spread)")
    parser.add_argument("--bootstrap", type=int, default=1000, help="group-bootstrap resamples for the AUC interval")
    parser.add_argument("--ood", nargs="*", default=None,
                        help="out-of-distribution clips, never trained on: folders of labels.csv sources or datasets "
                             "(default: ../shared/data/wild-dev when present; --ood with nothing: none)")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "quality.json"))
    args = parser.parse_args(argv)

    datasets = [str(d) for d in (args.datasets or DEFAULT_DATASETS)]
    if args.ood is None:
        args.ood = [str(DEFAULT_OOD)] if DEFAULT_OOD.is_dir() else []
    args.ood = [str(d) for d in ood_sources(args.ood)]
    missing = [d for d in [*datasets, *args.ood] if not Path(d).exists()]
    if missing:
        parser.error(f"datasets not found: {', '.join(missing)}")
    extract_s = extract(datasets + args.ood, args.cache, args.detector, args.max_seconds)
    with threadpool_limits(limits=1):  # one BLAS thread: the many small fits run ~10x faster than with one per core
        return evaluate(args, datasets, extract_s)


def ood_sources(paths: list[str]) -> list[Path]:
    """Each path as the datasets `dfp extract` gets: a folder without labels.csv whose sub-folders have one (the
    wild-dev layout) stands for those sub-folders."""
    out = []
    for path in map(Path, paths):
        subs = sorted(p for p in path.iterdir() if (p / "labels.csv").is_file()) if path.is_dir() else []
        out += subs if subs and not (path / "labels.csv").is_file() else [path]
    return out


def _under(paths: pd.Series, folders) -> np.ndarray:
    roots = tuple(str(Path(d).resolve()) + os.sep for d in folders)
    if not roots:
        return np.zeros(len(paths), bool)
    return paths.map(lambda p: str(Path(p).resolve()).startswith(roots)).to_numpy(bool)


def split_ood(frame: pd.DataFrame, ood: list[str], never_train=(DEFAULT_OOD,)) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The development clips and the out-of-distribution ones (those under an --ood folder), by path. Clips under
    `never_train` (wild-dev) are never development clips, whether this run scores them or not: a cache that
    holds them from an earlier run must not train on them."""
    is_ood = _under(frame.path, ood)
    barred = _under(frame.path, never_train)
    wild = frame[is_ood].assign(family="wild", is_ffpp=False)
    return frame[~is_ood & ~barred].reset_index(drop=True), wild.reset_index(drop=True)


def evaluate(args: argparse.Namespace, datasets: list[str], extract_s: float) -> dict:
    started = time.perf_counter()
    frame, ood = split_ood(feature_table(args.cache), getattr(args, "ood", []))
    counts = frame.groupby(["family", "label"]).size().to_dict()
    print(f"{len(frame)} labelled clips, {frame.leakage_group.nunique()} leakage groups: "
          + ", ".join(f"{f} {lab} {n}" for (f, lab), n in counts.items())
          + (f"; out of distribution (never trained on): {len(ood)} clips, {ood.dataset.nunique()} sources, "
             f"{int((ood.label == 'FAKE').sum())} FAKE" if len(ood) else ""), flush=True)
    runs = [run_model(frame, name, seed, args.folds, args.bootstrap if seed == args.seeds[0] else 0, args.cache,
                      ood=ood if seed == args.seeds[0] else None)  # (b) trains on every clip: once per model
            for name in args.models for seed in args.seeds]
    text, verdicts = report(runs, args.models)
    print(text)
    print()
    for name in args.models:
        print(breakdown_tables(runs, name))
    shares, inputs = linear_weight_shares(frame, args.cache, args.seeds[0]) if "crop_linear" in args.models else ({}, {})
    if shares:
        print("crop_linear fitted on every usable clip: share of |weight| per descriptor block of its crop scorer\n")
        print(table([{"block": k, "share": v} for k, v in shares.items()], ["block", "share"]))
        print("\nand share of its final logit's spread over the clips from each scorer\n")
        print(table([{"scorer": k, "share": v} for k, v in inputs.items()], ["scorer", "share"]))
    path = write_json(args.out, {
        "datasets": datasets, "cache": args.cache, "detector": args.detector,
        "max_seconds": getattr(args, "max_seconds", None), "folds": args.folds,
        "seeds": args.seeds, "bootstrap": args.bootstrap, "clips": len(frame), "ood": getattr(args, "ood", []),
        "ood_clips": len(ood),
        "groups": int(frame.leakage_group.nunique()), "extract_s": round(extract_s, 1),
        "evaluate_s": round(time.perf_counter() - started, 1), "targets": verdicts,
        "runs": [{k: v for k, v in r.items() if k not in ("oof", "oof_wild_dev")} for r in runs],
        "oof_seed0": {r["model"]: r["oof"] for r in runs if r["seed"] == args.seeds[0]},
        "scores_wild_dev": {r["model"]: r["oof_wild_dev"] for r in runs if "oof_wild_dev" in r},
        "crop_linear_weight_shares": shares, "crop_linear_input_shares": inputs,
    })
    print(f"\nwrote {path}")
    return {"runs": runs, "targets": verdicts, "json": str(path)}


if __name__ == "__main__":
    main()
