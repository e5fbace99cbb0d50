"""Train, evaluate and score flows: features from the cache, grouped CV on Dask, final model, submissions."""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import io
import json
import math
import os
import re
from pathlib import Path

import fsspec
import numpy as np
import pandas as pd
from fsspec.implementations.local import LocalFileSystem
from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from features import FEATURE_CODE_VERSION
from features.config import EvaluateConfig, ExtractConfig, ScoreConfig, TrainConfig, settings_differences
from features.learn import registry
from features.learn.descriptors import DESCRIPTORS_VERSION
from features.learn.evaluation import assign_folds, evaluate, flag_unscorable, fold_splits, prior_predictions
from features.learn.evaluation import metrics as video_metrics
from features.learn.model_files import UnsafeModelFile, check_digest, check_model_file
from features.learn.ood import OOD_FILE, OodGuard
from features.learn.training import ood_scores
from features.learn.video_features import FEATURE_NAMES, FEATURES, FEATURES_VERSION
from features.store.cache import CacheStore
from features.store.delta_cache import DeltaCacheStore, FileRead, MapReads, read_file
from features.store.rundir import fetched, join, prepare_run_dir, read_text, staged_dir
from features.store.training_data import (
    other_extraction_code,
    stale_descriptor_videos,
    stale_feature_videos,
    training_set,
    video_table,
)
from features.visuals.plots import plot_evaluation
from flows import console
from flows.runtime import check_shared_storage, cluster_address, make_task_runner
from tasks.train import compute_descriptors, compute_features, fit_final, fit_fold

TRAINING_VIDEOS = "training_videos.csv"
COMMIT_VIDEOS = 256  # videos' staged features or descriptors per commit
FEATURE_BATCH = 32
DESCRIPTOR_BATCH = 8


def update_features(store: DeltaCacheStore, runner, kind: str | None = None) -> int:
    """Compute the per-video features of every cached video that lacks current ones, and for a crop model `kind`
    the crop descriptors too, in batches on the task runner; returns how many partitions were written."""
    work = [(compute_features, stale_feature_videos(store), "feature computation", FEATURE_BATCH)]
    # Descriptors take about 10 ms per crop and copy: smaller batches spread over the workers.
    if kind is not None and "descriptors" in registry.get(kind).reads:
        work.append((compute_descriptors, stale_descriptor_videos(store), "crop descriptor computation", DESCRIPTOR_BATCH))
    written = 0
    for compute, stale, what, size in work:
        if not stale:
            continue
        with store.run_lock(what):
            batches = [stale[i:i + size] for i in range(0, len(stale), size)]
            futures = [runner.submit(compute, parameters={"cache": store.url, "videos": b}) for b in batches]
            staged = []
            with console.progress(what, len(stale)) as advance:
                for future, batch in zip(futures, batches, strict=True):
                    staged += future.result()
                    if len(staged) >= COMMIT_VIDEOS:  # one commit per table per batch of videos, not per task
                        written += store.commit(staged, operation=what)
                        staged = []
                    for _ in batch:
                        advance()
            written += store.commit(staged, operation=what)
    return written


def gpu_annotation(runner, kind: str):
    """Route the fits of a model kind that uses a GPU (the CNN) to a worker that declares a GPU resource, when the
    cluster has one."""
    import dask  # lazy: only the flow that routes fits talks to Dask itself

    workers = runner.client.scheduler_info(n_workers=-1)["workers"].values()
    if registry.get(kind).uses_gpu and any(w.get("resources", {}).get("GPU") for w in workers):
        get_run_logger().info("cluster has GPU workers: %s fits are annotated resources={'GPU': 1}", kind)
        return dask.annotate(resources={"GPU": 1})
    return contextlib.nullcontext()


def _read_on_worker(read: FileRead) -> tuple[str, object]:
    """read_file on a Dask worker, with the address of the worker that read it."""
    from distributed import get_worker

    return get_worker().address, read_file(read)


def worker_reads(runner, served: set[str]) -> MapReads:
    """A map_reads for training_set that reads each data file on a worker of the runner's cluster (the driver only
    concatenates); the addresses of the workers that served reads are added to `served`."""
    def map_reads(reads: list[FileRead]) -> list:
        results = runner.client.gather(runner.client.map(_read_on_worker, reads, pure=False))
        served.update(address for address, _ in results)
        return [table for _, table in results]

    return map_reads


def data_fingerprint(table: pd.DataFrame) -> str:
    blob = "\n".join(sorted(table.video_id + "|" + table.cache_key + "|" + table.label.fillna(""))).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def _json_safe(value):
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def check_extraction_code(store: CacheStore, cache: str) -> None:
    """Refuse a cache with videos extracted by another version of the extraction code (their stored values may mean
    something else): `dfp extract` over the same datasets redoes exactly those."""
    other = other_extraction_code(store, FEATURE_CODE_VERSION)
    if len(other):
        versions = ", ".join(sorted(other.code_version.fillna("unknown").unique()))
        raise ValueError(f"{cache}: {len(other)} extracted videos (first: {other.video_id.iloc[0]}) were extracted by "
                         f"extraction code version {versions}, and this version of deepfake-pipeline extracts version "
                         f"{FEATURE_CODE_VERSION}: run `dfp extract` on their datasets with --cache {cache} again (it "
                         "redoes only those videos), then rerun this command")


@flow(name="train", validate_parameters=True)
def train_flow(config: TrainConfig) -> dict:
    """Grouped cross-validation on the cache, evaluation into the run directory, then the final model."""
    prepare_run_dir(config.out, config.overwrite)  # first: a refused --out must cost nothing
    store = DeltaCacheStore(config.cache)
    check_extraction_code(store, config.cache)
    settings = extraction_settings(store)  # before anything runs: the card records them after the fits
    with staged_dir(config.out) as run:
        return _train(config, run, settings)


def extraction_settings(store: DeltaCacheStore) -> dict[str, dict]:
    """The extraction settings behind each config hash of the cache's videos (a missing one is a clear error)."""
    hashes = store.read("videos", columns=["config_hash"]).config_hash.dropna().unique()
    return {h: store.read_config(h) for h in sorted(hashes)}


def _train(config: TrainConfig, run: Path, settings: dict[str, dict]) -> dict:
    logger = get_run_logger()
    store = DeltaCacheStore(config.cache)
    with make_task_runner(config.workers, config.dask_address) as runner:
        if cluster_address(config.dask_address):
            check_shared_storage(runner.client, [config.cache, config.out])
        computed = update_features(store, runner, config.model)
        table = video_table(store)
        labelled = table[table.label.notna()].reset_index(drop=True)
        if labelled.empty:
            raise ValueError(f"no labelled videos in {config.cache}")
        fold = assign_folds(labelled, config.folds, config.seed, config.holdout)
        labelled["fold"] = fold
        usable = labelled.status == "ok"
        logger.info("%d labelled videos (%d usable), %d feature/descriptor partitions computed, %d folds", len(labelled),
                    int(usable.sum()), computed, len(np.unique(fold[fold >= 0])))
        kind = registry.get(config.model)
        read_workers: set[str] = set()  # on a cluster its workers read the data files; locally this process does
        map_reads = worker_reads(runner, read_workers) if cluster_address(config.dask_address) else None
        data = training_set(store, labelled[usable], kind.reads, map_reads)  # each table read once, folds get views
        common = {"kind": config.model, "settings": config.model_dump(include={"seed", *kind.options})}
        with gpu_annotation(runner, config.model):
            fold_futures = [runner.submit(fit_fold, parameters={**common, "train": data.subset(train),
                                                                "test": data.subset(test)})
                            for _, train, test in fold_splits(data.videos.fold.to_numpy())]
            final_future = runner.submit(fit_final, parameters={**common, "data": data, "run_dir": config.out})
        predictions, devices, fit_workers = {}, set(), set()
        with console.progress(f"training {config.model}: folds and the final model", len(fold_futures) + 1) as advance:
            for future in fold_futures:
                result = future.result()
                predictions.update(zip(result["video_id"], result["p_fake"], strict=True))
                devices.add(result["device"])
                fit_workers.add(result["worker"])
                advance()
            final = final_future.result()
            advance()
        fit_workers.add(final["worker"])

    y_all = (labelled.label == "FAKE").to_numpy(float)
    labelled["p_prior"] = prior_predictions(y_all, labelled.fold.to_numpy())  # FAKE rate outside each fold
    oof = labelled[labelled.fold >= 0].copy()
    oof["p_fake"] = oof.video_id.map(predictions)
    oof = flag_unscorable(oof)
    evaluation = evaluate(oof, seed=config.seed)
    plots = _published(plot_evaluation(oof, run / "plots", title=f"{config.model}, out of fold"), run, config.out)
    oof[["video_id", "label", "fold", "leakage_group", "dataset", "method", "status", "p_fake", "p_prior",
         "flagged"]].to_csv(run / "oof_predictions.csv", index=False)
    # The content fingerprints the final model saw: dfp evaluate measures only on videos that are not among them.
    labelled[usable][["video_id", "fingerprint"]].to_csv(run / TRAINING_VIDEOS, index=False)

    real = labelled[usable & (labelled.label == "REAL")][FEATURE_NAMES]
    card = {
        "model": config.model,
        "model_file": kind.model_file,
        "model_sha256": final["digests"],  # checked by load_run before a model file is read
        "created_at": dt.datetime.now(dt.timezone.utc).isoformat(),
        "train_config": config.model_dump(),
        "feature_code_version": FEATURE_CODE_VERSION,
        "features_version": FEATURES_VERSION,
        "descriptors_version": DESCRIPTORS_VERSION,  # what the crop models' inputs mean (checked by load_run)
        "features": FEATURES,
        "extract_configs": {h: settings.get(h) or store.read_config(h)  # a run extracting meanwhile may add one
                            for h in labelled.config_hash.dropna().unique()},
        "training_data": {"cache": config.cache, "videos": int(usable.sum()), "fingerprint": data_fingerprint(labelled),
                          "fake_rate": float(y_all.mean())},
        "devices": sorted(devices | {final["device"]}),
        "metrics": _json_safe(evaluation),
        "feature_importance": final["feature_importance"],
        "scorer_shares": final["scorer_shares"],  # crop_linear: share of the final logit's spread per scorer
        # Scores of videos beyond this distance from the training videos are tempered towards the prior (features.learn.ood)
        "ood_threshold": final["ood_threshold"],
        "real_feature_stats": {"mean": real.mean().to_dict(), "std": real.std().to_dict()},
    }
    (run / "model_card.json").write_text(json.dumps(_json_safe(card), indent=2, default=str))
    metrics = {"model": config.model, "validation": "holdout" if config.holdout else f"{config.folds}-fold grouped",
               **_json_safe(evaluation), "plots": plots, "fit_workers": sorted(w for w in fit_workers if w),
               "read_workers": len(read_workers)}
    (run / "metrics.json").write_text(json.dumps(metrics, indent=2))
    summary = metrics_markdown(metrics, title=f"Training run {config.out}")
    create_markdown_artifact(markdown=summary, key="train-metrics", description="Out-of-fold metrics")
    create_table_artifact(table=[{"": name, **{k: metrics[key][k] for k in ("log_loss", "roc_auc", "accuracy", "brier", "n")}}
                                 for name, key in (("model", "overall"), ("class prior", "prior"))],
                          key="train-metrics-table", description="Out-of-fold metrics beside the class prior")
    logger.info("out of fold: log loss %.4f (prior %.4f), AUC %s", evaluation["overall"]["log_loss"],
                evaluation["prior"]["log_loss"], evaluation["overall"]["roc_auc"])
    return metrics


def metrics_markdown(metrics: dict, title: str) -> str:
    rows = ["| | log loss | ROC AUC | accuracy | balanced acc. | Brier | n |", "|---|---|---|---|---|---|---|"]
    for name in ("overall", "prior"):
        m = metrics[name]
        label = "model" if name == "overall" else "class-prior baseline"
        rows.append(f"| {label} | {m['log_loss']:.4f} | {_f(m['roc_auc'])} | {m['accuracy']:.3f} | "
                    f"{_f(m['balanced_accuracy'])} | {m['brier']:.4f} | {m['n']} |")
    interval = metrics.get("bootstrap")
    if interval:
        (auc_lo, auc_hi), (loss_lo, loss_hi) = interval["roc_auc"], interval["log_loss"]
        rows += ["", f"95% bootstrap intervals ({interval['resamples']} resamples of the videos): ROC AUC "
                     f"[{_f(auc_lo)}, {_f(auc_hi)}], log loss [{_f(loss_lo)}, {_f(loss_hi)}]"]
    return f"# {title}\n\n" + "\n".join(rows)


def _published(paths: dict[str, str], staged: Path, url: str) -> dict[str, str]:
    """Paths of files written in a staged directory, as they are named where the run is published."""
    return {k: join(url, Path(v).relative_to(staged).as_posix()) for k, v in paths.items()}


def _f(value) -> str:
    return "n/a" if value is None or (isinstance(value, float) and not math.isfinite(value)) else f"{value:.3f}"


def _checked_card(run_dir: str) -> dict:
    """A run's model card, refused when its model cannot apply to what this version extracts."""
    try:
        card = json.loads(read_text(join(run_dir, "model_card.json")))
    except FileNotFoundError:
        raise ValueError(f"{run_dir} is not a training run: it has no model_card.json (`dfp train CACHE --out RUN` "
                         "writes one)") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UnsafeModelFile(f"{join(run_dir, 'model_card.json')} is not a model card written by dfp train: "
                              f"{type(exc).__name__}: {exc}") from exc
    if card.get("model") not in registry.MODEL_KINDS:
        raise UnsafeModelFile(f"{run_dir}: its model_card.json names model {card.get('model')!r}, which this version "
                              f"of deepfake-pipeline does not load (known: {', '.join(registry.model_names())})")
    kind = registry.get(card["model"])
    if card.get("model_file") != kind.model_file:  # the file checked below is the one its kind loads
        raise UnsafeModelFile(f"{run_dir}: its model_card.json names the model file {card.get('model_file')!r}, and "
                              f"a {kind.name} model is saved as {kind.model_file}")
    extracted_by = card.get("feature_code_version", "unknown")
    if extracted_by != FEATURE_CODE_VERSION:
        raise ValueError(f"{run_dir}: this {card['model']} model was trained on videos extracted by extraction code "
                         f"version {extracted_by}, and this version of deepfake-pipeline extracts version "
                         f"{FEATURE_CODE_VERSION}: the values it reads may mean something else. Retrain it with `dfp "
                         "train` on a cache brought up to date with `dfp extract`.")
    trained_on = card.get("descriptors_version", "3 or older")
    if "descriptors" in kind.reads and trained_on != DESCRIPTORS_VERSION:
        raise ValueError(f"{run_dir}: this {card['model']} model was trained on crop descriptors version {trained_on}, "
                         f"and this version of deepfake-pipeline computes version {DESCRIPTORS_VERSION} (from the "
                         "lossless native-scale crops): its weights do not apply. Retrain it with `dfp train`.")
    return card


def _check_model_files(card: dict, local: Path, run_dir: str) -> None:
    """Every model file of the run is present, has the digest its card recorded and holds only what dfp saves."""
    name = card["model_file"]
    digests = card.get("model_sha256") or {}
    for file in sorted({name, *digests}):
        if not (local / file).is_file():
            raise ValueError(f"{run_dir}: the model file {file} named by its model_card.json is missing")
        check_digest(local / file, digests.get(file))
    for path in (local / name, local / f"{name}.calibration.json"):
        if path.is_file():
            check_model_file(path)


def check_run(run_dir: str) -> dict:
    """The card of a run whose model files load without running code; raises, naming the file, otherwise. Cheap:
    the CLI calls it before any server, cluster or TensorFlow starts."""
    card = _checked_card(run_dir)
    with fetched(run_dir, [card["model_file"], f"{card['model_file']}.calibration.json", OOD_FILE]) as local:
        _check_model_files(card, local, run_dir)
    return card


def load_run(run_dir: str):
    """The model card and the model of a run directory, loaded without running code from the files."""
    card = _checked_card(run_dir)
    name = card["model_file"]
    with fetched(run_dir, [name, f"{name}.calibration.json", OOD_FILE]) as local:
        _check_model_files(card, local, run_dir)
        try:
            model = registry.get(card["model"]).load(local)
        except UnsafeModelFile:
            raise
        except Exception as exc:  # noqa: BLE001 - a damaged file is named, not shown as a loader's traceback
            raise UnsafeModelFile(f"cannot load the {card['model']} model {join(run_dir, name)}: "
                                  f"{type(exc).__name__}: {exc}") from exc
    return card, model


# Videos read and scored per step: memory stays bounded on a large dataset, and the progress bar moves.
SCORE_CHUNK = 256


def load_guard(run_dir: str, card: dict) -> OodGuard | None:
    """The run's out-of-distribution guard (its digest checked), or None for a run trained without one."""
    if OOD_FILE not in (card.get("model_sha256") or {}):
        return None
    with fetched(run_dir, [OOD_FILE]) as local:
        check_digest(local / OOD_FILE, card["model_sha256"][OOD_FILE])
        return OodGuard.load(local / OOD_FILE)


def score_table(card: dict, model, table: pd.DataFrame, cache: str, guard: OodGuard | None = None) -> pd.DataFrame:
    """P(FAKE) for each video row, 0.5 and a flag where it cannot be scored, and an explanation. With the run's
    guard, p_fake is tempered towards the training prior beyond its threshold (p_model: the model's own score)
    and each video gets its ood_distance and ood flag."""
    table = table.copy()
    table["p_fake"] = table["p_model"] = table["ood_distance"] = np.nan
    table["ood"] = False
    rows = table.index[table.status == "ok"]
    store, reads = DeltaCacheStore(cache), registry.get(card["model"]).reads
    prior = card.get("training_data", {}).get("fake_rate", 0.5)
    chunks = [rows[i:i + SCORE_CHUNK] for i in range(0, len(rows), SCORE_CHUNK)]
    with console.progress(f"scoring {len(rows)} videos", len(chunks)) as advance:
        for chunk in chunks:
            data = training_set(store, table.loc[chunk], reads)
            p = model.predict_proba(data)
            table.loc[chunk, "p_model"] = p
            if guard is None:
                table.loc[chunk, "p_fake"] = p
            else:
                for column, values in ood_scores(guard, data, p, prior).items():
                    table.loc[chunk, column] = values
            advance()
    table["ood"] = table.ood.astype(bool)
    table = flag_unscorable(table)
    table["explanation"] = [explain(card, row) for row in table.to_dict("records")]
    return table


def explain(card: dict, row: dict) -> str:
    """Why a video got its score: its status, faces, and the features furthest from REAL training videos."""
    if row["status"] != "ok":
        reason = row.get("error") or "no face found"
        return f"not scored ({row['status']}: {reason}): 0.5"
    text = f"{int(row.get('n_tracks') or 0)} face track(s)"
    scores_from = registry.get(card["model"]).scores_from
    if scores_from:
        return f"{text}; {scores_from}"
    mean, std = card["real_feature_stats"]["mean"], card["real_feature_stats"]["std"]
    weight = card.get("feature_importance") or {}
    scored = []
    for name in FEATURE_NAMES:
        value, m, s = row.get(name), mean.get(name), std.get(name)
        if value is None or m is None or not s or (isinstance(value, float) and not math.isfinite(value)):
            continue
        z = (value - m) / s
        scored.append((abs(z) * max(weight.get(name, 0.0), 1e-3), name, value, z))
    top = sorted(scored, reverse=True)[:3]
    return text + "; " + ", ".join(f"{n}={v:.4g} (z={z:+.1f} vs REAL)" for _, n, v, z in top)


@flow(name="evaluate", validate_parameters=True)
def evaluate_flow(config: EvaluateConfig) -> dict:
    """Score a trained run on another labelled cache and write its metrics beside the run."""
    card, model = load_run(config.run)
    guard = load_guard(config.run, card)
    store = DeltaCacheStore(config.cache)
    check_extraction_code(store, config.cache)
    with make_task_runner(config.workers, config.dask_address) as runner:
        update_features(store, runner, card["model"])
    table = video_table(store)
    labelled = table[table.label.notna()]
    if labelled.empty:
        raise ValueError(f"no labelled videos in {config.cache}")
    differences = settings_differences(card["extract_configs"],
                                       {h: store.read_config(h) for h in labelled.config_hash.dropna().unique()})
    if differences:  # allowed (e.g. to measure robustness to a setting), but never silent
        get_run_logger().warning("%s was extracted with other settings than the model's training data: %s",
                                 config.cache, "; ".join(f"{k} {v['evaluated']} (trained: {v['trained']})"
                                                         for k, v in differences.items()))
    scored = score_table(card, model, labelled, config.cache, guard)
    scored["p_prior"] = card["training_data"]["fake_rate"]
    scored["seen_in_training"] = scored.fingerprint.isin(training_fingerprints(config.run)) & scored.fingerprint.notna()
    seen = scored[scored.seen_in_training]
    if len(seen) == len(scored):
        raise ValueError(f"every labelled video of {config.cache} ({len(scored)}, same file content) was in the training "
                         f"data of {config.run}: there is nothing unseen to evaluate on")
    if len(seen):  # metrics on training videos would say nothing about unseen ones
        get_run_logger().warning("%d of %d videos of %s (first: %s) were in the model's training data (same file "
                                 "content): the metrics are measured on the %d others", len(seen), len(scored),
                                 config.cache, seen.video_id.iloc[0], len(scored) - len(seen))
    name = evaluation_name(config.cache)
    with staged_dir(join(config.run, "evaluations", name)) as out:
        return _write_evaluation(card, scored, out, name, config, differences)


def training_fingerprints(run_dir: str) -> set[str]:
    """The content fingerprints of a run's training videos (empty for a run written before they were recorded)."""
    try:
        text = read_text(join(run_dir, TRAINING_VIDEOS))
    except FileNotFoundError:
        return set()
    return set(pd.read_csv(io.StringIO(text)).fingerprint.dropna())


def evaluation_name(cache: str) -> str:
    """The folder of a cache's evaluation under RUN/evaluations: its last path component, readable, plus a hash of
    its full location (a local path made absolute, or the URL), so that a/cache and b/cache never share one."""
    fs, root = fsspec.core.url_to_fs(cache)
    identity = os.path.realpath(root) if isinstance(fs, LocalFileSystem) else f"{fs.protocol}://{root}"
    base = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(root.rstrip("/")).name).strip("._") or "cache"
    return f"{base}-{hashlib.sha256(str(identity).encode()).hexdigest()[:8]}"


def ood_breakdown(scored: pd.DataFrame) -> dict:
    """Metrics of the videos the guard flagged out of distribution and of the others, each beside the prior."""
    out = {}
    for name, part in (("flagged", scored[scored.ood]), ("unflagged", scored[~scored.ood])):
        y = (part.label == "FAKE").to_numpy(int)
        out[name] = {"n": len(part)} if part.empty else {
            **video_metrics(y, part.p_fake.to_numpy()),
            "prior_log_loss": video_metrics(y, part.p_prior.to_numpy())["log_loss"]}
    return out


def _write_evaluation(card: dict, scored: pd.DataFrame, out: Path, name: str, config: EvaluateConfig,
                      differences: dict) -> dict:
    seen, unseen = scored[scored.seen_in_training], scored[~scored.seen_in_training]
    evaluation = evaluate(unseen, seed=0)
    plots = _published(plot_evaluation(unseen, out, title=f"{card['model']} on {name}"), out,
                       join(config.run, "evaluations", name))
    scored[["video_id", "label", "dataset", "method", "status", "p_fake", "p_model", "ood", "ood_distance", "flagged",
            "seen_in_training", "explanation"]].to_csv(out / "predictions.csv", index=False)
    metrics = {"model": card["model"], "cache": config.cache, "extraction_settings_differ": _json_safe(differences),
               "seen_in_training": {"videos": len(seen), "video_ids": seen.video_id.head(20).tolist()},
               **_json_safe(evaluation), "ood": _json_safe(ood_breakdown(unseen)), "plots": plots}
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    create_markdown_artifact(markdown=metrics_markdown(metrics, f"Evaluation on {name}"), key="evaluate-metrics")
    return metrics


@flow(name="score", validate_parameters=True)
def score_flow(config: ScoreConfig) -> dict:
    """Extract whatever is not cached yet, then write a DFDC-style submission and a detailed explanation file."""
    from flows.extract import extract_flow

    card, model = load_run(config.model)
    guard = load_guard(config.model, card)
    cache = config.cache or join(config.out, "cache")
    settings = next(iter(card["extract_configs"].values()))
    # Scoring never relabels: clips that are already in the cache (a training cache, say) keep their labels.
    extract_config = ExtractConfig(**settings, datasets=config.videos, cache=cache, workers=config.workers,
                                   dask_address=config.dask_address, keep_labels=True)
    extract_flow(extract_config)
    store = DeltaCacheStore(cache)
    with make_task_runner(config.workers, config.dask_address) as runner:
        update_features(store, runner, card["model"])
    from features.store.datasets import discover

    wanted = [e.video_id for e in discover(config.videos)]
    table = video_table(store).set_index("video_id").loc[wanted].reset_index()
    scored = score_table(card, model, table, cache, guard)
    names = scored.path.map(lambda p: Path(p).name)
    clash = names.duplicated(keep=False)
    # Two clips with one file name (two folders given): each is named by its path under its folder instead, and
    # if even those clash, by its video id, which is unique.
    scored["filename"] = names.where(~clash, scored.relpath)
    scored["filename"] = scored.filename.where(~scored.filename.duplicated(keep=False), scored.video_id)
    if clash.any():
        get_run_logger().warning("%d scored videos share a file name (first: %s): predictions.csv names them by "
                                 "their path under their dataset folder, or their video id", int(clash.sum()),
                                 names[clash].iloc[0])
    scored["label"] = scored.p_fake
    with staged_dir(config.out) as out:
        scored[["filename", "label"]].to_csv(out / "predictions.csv", index=False)
        detail = scored[["filename", "video_id", "p_fake", "p_model", "ood", "ood_distance", "status", "flagged",
                         "n_tracks", "explanation"]]
        detail.to_csv(out / "predictions_detail.csv", index=False)
    summary = {"videos": len(scored), "flagged": int(scored.flagged.sum()), "ood": int(scored.ood.sum()),
               "predictions": join(config.out, "predictions.csv"), "detail": join(config.out, "predictions_detail.csv")}
    create_markdown_artifact(markdown=f"# Scored {len(scored)} videos\n\n{int(scored.flagged.sum())} flagged "
                                      f"(no face or failed decode, scored 0.5)", key="score-summary")
    return summary
