"""The Keras CNN on a GPU machine that has none of the pipeline's stack (no Prefect, Dask or TensorFlow).

    python bench/cnn_gpu.py export DIR [--cache bench/.cache/quality]     # here: clips table + main-face crops
    KERAS_BACKEND=torch python bench/cnn_gpu.py run DIR [--size large] [--epochs 20] [--models cnn_sbi] [--out F]
    python bench/cnn_gpu.py check DIR                                     # here: the model `run` saved, on TF
    KERAS_BACKEND=torch python bench/cnn_gpu.py profile DIR [--crops 2048] [--batches 32 256]

`export` writes the labelled clips of the quality cache (bench/quality.py's table, no feature values) and the JPEG
crops of their main faces to DIR (about 30 MB for the development set). `run` needs only Keras 3 (any backend),
OpenCV, pandas, pyarrow and scikit-learn. It
  - times one training epoch of the CNN on the GPU and, in a subprocess that sees no GPU, on the CPU (same crops);
  - runs bench/quality.py's grouped K-fold CV over all clips for each model (features.learn.models.fit_cnn, with
    self-blended fakes for cnn_sbi), or with --evaluations also its cross-compression and cross-dataset splits;
  - fits the model on every usable clip, saves it as DIR/model.keras (features.learn.models.save_cnn) with the video
    logits it gives there (DIR/logits.json).
`profile` times an epoch of the large CNN with its augmentation layers, without them, and with each alone.
`check` loads that model here through features.learn.models.load_cnn (TensorFlow backend, safe_mode) and compares its
video logits with the ones the GPU machine wrote: a model trained on a GPU worker scores the same on a CPU one.
Prints markdown tables and writes JSON (default bench/results/cnn_gpu.json).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from bench.common import table, write_json  # noqa: E402
from features.learn.models import CNN_AUGMENTATION, keras_device  # noqa: E402

CLIP_COLUMNS = ["video_id", "label", "leakage_group", "status", "is_ffpp", "family", "dataset", "compression",
                "method", "resolution"]


# ----------------------------------------------------------------------------------------------- export (here)
def export(directory: str, cache: str, ood: list[str] | None = None) -> dict:
    """The quality cache's labelled development clips (not wild-dev, nor the `ood` folders' clips: never trained
    on) and their main-face JPEG crops, as two Parquet files and a JSON."""
    from bench.quality import feature_table, split_ood
    from features.store.delta_cache import DeltaCacheStore
    from features.store.training_data import crop_margin, main_crops

    frame, _ = split_ood(feature_table(cache), ood or [])
    usable = frame[frame.status == "ok"]
    crops = main_crops(DeltaCacheStore(cache), list(usable.video_id), dict(zip(usable.video_id, usable.cache_key, strict=True)))
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    frame[CLIP_COLUMNS].to_parquet(out / "clips.parquet", index=False)
    crops.to_parquet(out / "crops.parquet", index=False)
    margin = crop_margin(cache, frame.config_hash.iloc[0])
    meta = {"cache": cache, "clips": len(frame), "crops": len(crops), "crop_margin": margin}
    (out / "meta.json").write_text(json.dumps(meta))
    return meta


# ----------------------------------------------------------------------------------------------- run (GPU machine)
def epoch_time(crops: pd.DataFrame, size: str, batch_size: int = 32, augmentation=CNN_AUGMENTATION,
               repeats: int = 2) -> dict:
    """Seconds per training epoch of the CNN on the given crops (the first epoch, which builds, not counted)."""
    import keras

    from features.learn.models import CNN_SIZES, build_cnn, crop_array

    side = CNN_SIZES[size][0]
    x = crop_array(crops.crop_jpeg, side)
    seconds = _epoch_seconds(build_cnn(size, seed=0, augmentation=tuple(augmentation)), x, batch_size, repeats)
    return {"device": keras_device(), "keras": keras.__version__, "crops": len(x), "side": side, "batch": batch_size,
            "epoch_s": seconds, "crops_per_s": len(x) / seconds}


def _epoch_seconds(model, x: np.ndarray, batch: int, repeats: int = 1) -> float:
    """The shortest of `repeats` timed training epochs over x (alternating labels), after a two-batch warm-up
    that builds the step; the GPU's queued work is waited for before each clock read."""
    y = (np.arange(len(x)) % 2).astype(np.float32)
    model.fit(x[:batch * 2], y[:batch * 2], epochs=1, batch_size=batch, verbose=0)
    times = []
    for _ in range(repeats):
        _sync()
        started = time.perf_counter()
        model.fit(x, y, epochs=1, batch_size=batch, verbose=0)
        _sync()
        times.append(time.perf_counter() - started)
    return min(times)


def _sync() -> None:
    """Wait for the GPU's queued work (torch runs asynchronously), so a timer reads the work done."""
    import keras

    if keras.backend.backend() == "torch":
        import torch

        if torch.cuda.is_available():
            torch.cuda.synchronize()


def augmentation_time(directory: str, n_crops: int, batches: list[int]) -> list[dict]:
    """Seconds per epoch of the large CNN with its augmentation, without any, and with each augmentation layer
    alone (the first batch size only): which part of a training step the backend makes slow."""
    from features.learn.models import build_cnn, crop_array

    crops = pd.read_parquet(Path(directory) / "crops.parquet").head(n_crops)
    x = crop_array(crops.crop_jpeg, 128)

    variants = [(batch, name, names) for batch in batches
                for name, names in (("build_cnn large (flip, contrast, translation)", CNN_AUGMENTATION),
                                    ("no augmentation", ()))]
    variants += [(batches[0], f"{name} only", (name,)) for name in CNN_AUGMENTATION]
    rows = [{"network": name, "batch": batch, "epoch_s": _epoch_seconds(build_cnn("large", augmentation=names), x,
                                                                         batch)}
            for batch, name, names in variants]
    for row in rows:
        row["crops_per_s"] = len(x) / row["epoch_s"]
    return rows


def fit_exported(train: pd.DataFrame, seed: int, crops: pd.DataFrame, args: argparse.Namespace,
                 margin: float | None):
    """features.learn.models.fit_cnn on the training clips' exported crops (self-blended fakes with a margin), with the
    size, epochs, batch size and augmentation asked for."""
    from features.learn import models

    labels = dict(zip(train.video_id, (train.label == "FAKE").astype(int), strict=True))
    return models.fit_cnn(crops[crops.video_id.isin(labels)], labels, dict(zip(train.video_id, train.leakage_group, strict=True)),
                          size=args.size, epochs=args.epochs, seed=seed, self_blend_margin=margin,
                          batch_size=args.batch_size, augmentation=tuple(args.augmentation))


def predictor(model, crops: pd.DataFrame):
    """P(FAKE) per test clip from the mean frame logit (bench/quality.py's fit_cnn), 0.5 without crops."""
    from features.learn import models

    def predict(test: pd.DataFrame) -> np.ndarray:
        scores = models.cnn_video_scores(model, crops[crops.video_id.isin(set(test.video_id))], list(test.video_id))
        return test.video_id.map(scores).fillna(0.5).to_numpy(np.float64)

    return predict


def run(args: argparse.Namespace) -> dict:
    from bench.quality import report, run_model
    from features.learn import models

    directory = Path(args.directory)
    meta = json.loads((directory / "meta.json").read_text())
    frame = pd.read_parquet(directory / "clips.parquet")
    crops = pd.read_parquet(directory / "crops.parquet")
    device = keras_device()
    print(f"{len(frame)} clips, {len(crops)} crops; Keras on {device}", flush=True)

    timing = [epoch_time(crops, args.size, args.batch_size, args.augmentation)]
    if not args.no_cpu_timing:
        env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "JAX_PLATFORMS": "cpu"}
        parquet = str(directory / "crops.parquet")
        probe = (f"import json, sys; sys.path.insert(0, {str(ROOT)!r}); import pandas as pd; "
                 f"from bench.cnn_gpu import epoch_time; crops = pd.read_parquet({parquet!r}); "
                 f"print(json.dumps(epoch_time(crops, {args.size!r}, {args.batch_size}, {args.augmentation!r}, 1)))")
        done = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=False)
        if done.returncode == 0:
            timing.append(json.loads(done.stdout.strip().splitlines()[-1]))
        else:
            print(f"CPU timing failed: {done.stderr[-2000:]}", flush=True)
    print(table(timing, ["device", "keras", "crops", "side", "batch", "epoch_s", "crops_per_s"]), flush=True)

    runs = []
    for name in args.models:
        margin = meta["crop_margin"] if name == "cnn_sbi" else None
        for seed in args.seeds:
            started = time.perf_counter()

            def fit(train, seed_, margin=margin):
                return predictor(fit_exported(train, seed_, crops, args, margin), crops)

            result = run_model(frame, name, seed, args.folds, args.bootstrap if seed == args.seeds[0] else 0, "",
                               fit=fit, evaluations=args.evaluations)
            result["seconds"] = round(time.perf_counter() - started, 1)
            print(f"{name} seed {seed}: c23 AUC {result['ffpp_c23'].get('roc_auc', float('nan')):.3f}, all clips "
                  f"log loss {result['all']['log_loss']:.3f} (prior {result['all']['prior_log_loss']:.3f}), "
                  f"{result['seconds']} s", flush=True)
            runs.append(result)
    text, verdicts = report(runs, args.models)
    print(text, flush=True)

    usable = frame[frame.status == "ok"]
    final_name = args.models[-1]
    final = fit_exported(usable, args.seeds[0], crops, args, meta["crop_margin"] if final_name == "cnn_sbi" else None)
    models.save_cnn(final, directory / "model.keras")
    side = final.network.input_shape[1]
    logits = {vid: models.video_logit(final.network, crops[crops.video_id == vid], side) for vid in usable.video_id}
    (directory / "logits.json").write_text(json.dumps({"model": final_name, "device": device, "logits": logits}))
    path = write_json(args.out, {
        "device": device, "size": args.size, "epochs": args.epochs, "batch_size": args.batch_size,
        "augmentation": args.augmentation, "folds": args.folds, "seeds": args.seeds,
        "evaluations": list(args.evaluations), "clips": len(frame), "crops": len(crops), "timing": timing,
        "targets": verdicts, "runs": [{k: v for k, v in r.items() if k != "oof"} for r in runs],
        "oof_seed0": {r["model"]: r["oof"] for r in runs if r["seed"] == args.seeds[0]},
    })
    print(f"wrote {path}; model and logits in {directory}")
    return {"runs": runs, "timing": timing}


# ----------------------------------------------------------------------------------------------- check (here)
def check(directory: str) -> dict:
    """Video logits of the saved model, loaded here, against those the training machine wrote."""
    from features.learn import models

    directory_ = Path(directory)
    written = json.loads((directory_ / "logits.json").read_text())
    crops = pd.read_parquet(directory_ / "crops.parquet")
    model = models.load_cnn(directory_ / "model.keras")
    side = model.network.input_shape[1]
    here = {vid: models.video_logit(model.network, crops[crops.video_id == vid], side) for vid in written["logits"]}
    theirs = np.array([written["logits"][v] for v in here])
    ours = np.array(list(here.values()))
    result = {"trained_on": written["device"], "scored_on": keras_device(), "videos": len(here),
              "max_abs_logit_difference": float(np.max(np.abs(theirs - ours))),
              "logit_spread": float(np.std(theirs)),
              "rank_correlation": float(pd.Series(theirs).corr(pd.Series(ours), method="spearman"))}
    print(table([result], list(result)))
    return result


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p_export = sub.add_parser("export", help="write the quality cache's clips and crops to DIR")
    p_export.add_argument("directory")
    p_export.add_argument("--cache", default=str(ROOT / "bench" / ".cache" / "quality"))
    p_export.add_argument("--ood", nargs="*", default=[], help="folders whose clips are left out (as bench/quality.py "
                          "--ood; ../shared/data/wild-dev always is)")
    p_run = sub.add_parser("run", help="time and cross-validate the CNN on the exported crops")
    p_run.add_argument("directory")
    p_run.add_argument("--size", default="large", choices=["small", "large"])
    p_run.add_argument("--epochs", type=int, default=20)
    p_run.add_argument("--batch-size", type=int, default=32)
    p_run.add_argument("--augmentation", nargs="*", default=list(CNN_AUGMENTATION), choices=list(CNN_AUGMENTATION),
                       help="augmentation layers (default all three; none with a bare --augmentation)")
    p_run.add_argument("--models", nargs="+", default=["cnn_sbi"], choices=["cnn", "cnn_sbi"])
    p_run.add_argument("--seeds", type=int, nargs="+", default=[0])
    p_run.add_argument("--folds", type=int, default=5)
    p_run.add_argument("--bootstrap", type=int, default=1000)
    p_run.add_argument("--evaluations", nargs="+", default=["all"],
                       choices=["all", "cross_compression", "ffpp_to_dfdc", "dfdc_held_out"])
    p_run.add_argument("--no-cpu-timing", action="store_true")
    p_run.add_argument("--out", default=str(ROOT / "bench" / "results" / "cnn_gpu.json"))
    p_profile = sub.add_parser("profile", help="epoch time of the large CNN with and without each augmentation layer")
    p_profile.add_argument("directory")
    p_profile.add_argument("--crops", type=int, default=2048)
    p_profile.add_argument("--batches", type=int, nargs="+", default=[32, 256])
    p_profile.add_argument("--out", default=str(ROOT / "bench" / "results" / "cnn_gpu-augmentation.json"))
    p_check = sub.add_parser("check", help="score with the saved model here and compare")
    p_check.add_argument("directory")
    args = parser.parse_args(argv)
    if args.command == "export":
        meta = export(args.directory, args.cache, args.ood)
        print(json.dumps(meta))
        return meta
    if args.command == "run":
        return run(args)
    if args.command == "profile":
        rows = augmentation_time(args.directory, args.crops, args.batches)
        device = keras_device()
        print(f"Keras on {device}, one epoch over {args.crops} crops of 128 px:\n")
        print(table(rows, ["network", "batch", "epoch_s", "crops_per_s"]))
        path = write_json(args.out, {"device": device, "crops": args.crops, "rows": rows})
        print(f"wrote {path}")
        return {"device": device, "rows": rows}
    return check(args.directory)


if __name__ == "__main__":
    main()
