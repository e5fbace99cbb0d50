"""`dfp`: the command line. Each subcommand builds the run's config model and calls its Prefect flow."""

from __future__ import annotations

import argparse
import json
import sys
import types
import typing
from pathlib import Path

from flows.runtime import configure_environment

configure_environment()

from features.config import RUNTIME_FIELDS, ExtractConfig  # noqa: E402 - after the environment is set

# Options every extraction-shaped command takes, generated from the config model so help and defaults agree.
_POSITIONAL = {"datasets"}
_DEDICATED = {"cache", "force", "dask_address", "workers"}


def _add_config_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("extraction settings (part of the cache key unless noted)")
    for name, field in ExtractConfig.model_fields.items():
        if name in _POSITIONAL | _DEDICATED:
            continue
        flag = "--" + name.replace("_", "-")
        base = field.annotation
        if typing.get_origin(base) in (typing.Union, types.UnionType):  # X | None
            base = next(a for a in typing.get_args(base) if a is not type(None))
        note = " Not part of the cache key." if name in RUNTIME_FIELDS else ""
        help_text = f"{field.description}{note} (default: {field.default})"
        if base is bool:
            group.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=help_text)
        elif typing.get_origin(base) is typing.Literal:
            group.add_argument(flag, choices=typing.get_args(base), default=None, help=help_text)
        else:
            group.add_argument(flag, type=base, default=None, metavar=name.upper(), help=help_text)


def _config_from_args(args: argparse.Namespace, **fixed) -> ExtractConfig:
    values = json.loads(Path(args.config).read_text()) if getattr(args, "config", None) else {}
    for name in ExtractConfig.model_fields:
        value = getattr(args, name, None)
        if value is not None:
            values[name] = value
    values.update({k: v for k, v in fixed.items() if v is not None})
    return ExtractConfig(**values)


def _run_extract(config: ExtractConfig) -> dict:
    import os

    from flows.runtime import prefect_server

    if not os.environ.get("PREFECT_API_URL"):
        # Without a server of the user's, a run with nothing to do is answered from the cache alone:
        # starting a private Prefect server would cost more than the whole no-op run.
        from flows.extract import nothing_to_do

        summary = nothing_to_do(config)
        if summary is not None:
            return summary
    with prefect_server():
        from flows.extract import extract_flow

        return extract_flow(config)


EXIT_FAILED = 3  # some (with --fail-on-error) or all videos of this run failed


def extract_exit_code(summary: dict, fail_on_error: bool) -> int:
    """0, or EXIT_FAILED with a line on stderr when every video extracted in this run failed (a run that produced
    nothing must not look like a success to a scheduler) or, with --fail-on-error, when any did."""
    if summary.get("aborted"):  # the cache's storage is full: the run stopped, whatever --fail-on-error says
        print(f"dfp extract: error: run stopped: {summary['aborted']} (free space, then rerun: what was committed "
              "stays cached)", file=sys.stderr)
        return EXIT_FAILED
    failed, extracted = summary.get("failed", 0), summary.get("extracted", 0)
    if not failed:
        return 0
    first = summary["failed_videos"][0]
    detail = f"(first: {first['video_id']}: {first['error']})"
    if failed == extracted:
        print(f"dfp extract: error: all {failed} videos failed {detail}", file=sys.stderr)
        return EXIT_FAILED
    if fail_on_error:
        print(f"dfp extract: error: {failed} of {extracted} videos failed {detail}", file=sys.stderr)
        return EXIT_FAILED
    return 0


def cmd_extract(args: argparse.Namespace) -> int:
    config = _config_from_args(args, datasets=args.datasets)
    summary = _run_extract(config)
    print(summary["line"])
    return extract_exit_code(summary, args.fail_on_error)


def cmd_demo(args: argparse.Namespace) -> int:
    from features.video.demo import make_demo_dataset

    out = Path(args.out)
    data = out / "dfdc-demo"
    if not (data / "metadata.json").exists() or args.regenerate:
        print(f"generating {args.clips} demo clips in {data} ...", flush=True)
        make_demo_dataset(data, n_clips=args.clips, frames=args.frames, seed=args.seed)
    config = _config_from_args(args, datasets=[str(data)], cache=args.cache or str(out / "cache"))
    summary = _run_extract(config)
    print(summary["line"])
    print(f"cache: {config.cache}  (read it with pandas.read_parquet('{config.cache}/videos'))")
    return 0


def _run_flow(name: str, config):
    from flows.runtime import prefect_server

    with prefect_server():
        from flows import train

        return getattr(train, name)(config)


def cmd_train(args: argparse.Namespace) -> int:
    from features.config import TrainConfig
    from features.store.rundir import prepare_run_dir

    config = TrainConfig(cache=args.cache, out=args.out, model=args.model, folds=args.folds, holdout=args.holdout,
                         seed=args.seed, cnn_size=args.cnn_size, cnn_epochs=args.cnn_epochs, workers=args.workers,
                         dask_address=args.dask_address, overwrite=args.overwrite)
    prepare_run_dir(config.out, config.overwrite)  # before the Prefect server and cluster start
    metrics = _run_flow("train_flow", config)
    _print_metrics(metrics)
    print(f"run: {args.out}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from features.config import EvaluateConfig
    from flows.train import check_run

    check_run(args.run)  # a missing or unsafe run is refused before any server or cluster starts
    metrics = _run_flow("evaluate_flow", EvaluateConfig(run=args.run, cache=args.cache, workers=args.workers,
                                                        dask_address=args.dask_address))
    _print_metrics(metrics)
    return 0


def cmd_score(args: argparse.Namespace) -> int:
    from features.config import ScoreConfig
    from flows.train import check_run

    check_run(args.model)  # a missing or unsafe run is refused before any server or cluster starts
    summary = _run_flow("score_flow", ScoreConfig(videos=args.videos, model=args.model, out=args.out,
                                                  cache=args.cache, workers=args.workers,
                                                  dask_address=args.dask_address))
    print(f"{summary['videos']} videos scored, {summary['flagged']} flagged (0.5): {summary['predictions']}")
    return 0


def cmd_inspect(args: argparse.Namespace) -> int:
    from flows.inspect import default_out, inspect_videos

    out = args.out or (default_out(args.videos[0]) if len(args.videos) == 1 else "inspect")
    results = inspect_videos(args.videos, out, cache=args.cache, frame=args.frame, step=args.step,
                             columns=args.columns, rows=args.rows)
    for result in results.values():
        for path in (result.values() if isinstance(result, dict) else [result]):
            print(path)
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from flows.report import write_report

    print(write_report(args.cache, args.out, run=args.run, sample=args.sample))
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from flows.runtime import prefect_server
    from flows.serve import load_deployments, serve

    load_deployments(args.file, args.only)  # unset variables and unknown names fail before any server starts
    with prefect_server() as url:
        print(f"serving {', '.join(d['name'] for d in load_deployments(args.file, args.only))} from {args.file} "
              f"on {url} (Ctrl-C stops)", flush=True)
        serve(args.file, args.only, args.limit)
    return 0


def _print_metrics(metrics: dict) -> None:
    for name, label in (("overall", "model"), ("prior", "class prior")):
        m = metrics[name]
        print(f"{label:12s} log loss {m['log_loss']:.4f}  AUC {m['roc_auc'] if m['roc_auc'] is None else round(m['roc_auc'], 4)}"
              f"  accuracy {m['accuracy']:.3f}  balanced {m['balanced_accuracy']}  Brier {m['brier']:.4f}  n={m['n']}")


def _add_cluster_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dask-address", default=None, help="Use an existing Dask scheduler (tcp://host:port).")
    parser.add_argument("--workers", type=int, default=None, help="Local Dask worker processes (default: cores).")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dfp", description="deepfake-pipeline: video forensics data pipelines.")
    sub = parser.add_subparsers(dest="command", required=True)

    extract = sub.add_parser("extract", help="Extract face tracks, crops and SSIM series into a Parquet cache.",
                             description="Extract face tracks, crops and SSIM series of every new or changed "
                                         "video into the cache. DATASET is a DFDC folder (metadata.json), a "
                                         "FaceForensics++ root, any folder of videos (optionally with labels.csv), "
                                         "a CSV of path,label[,original], or a video file. "
                                         "Exit codes: 0 ok, 2 usage error, 3 videos failed.")
    extract.add_argument("datasets", nargs="+", metavar="DATASET")
    extract.add_argument("--cache", required=True, help="Cache location: local path or fsspec URL (s3://...).")
    _add_cluster_options(extract)
    extract.add_argument("--force", action="store_true", default=None, help="Redo every video.")
    extract.add_argument("--config", default=None, help="JSON file with ExtractConfig fields; flags override it.")
    extract.add_argument("--fail-on-error", action="store_true",
                         help="Exit 3 if any video of this run failed (without it: exit 3 only when all failed).")
    _add_config_options(extract)
    extract.set_defaults(func=cmd_extract)

    demo = sub.add_parser("demo", help="Generate the built-in demo dataset and extract it.",
                          description="Generate a small labelled DFDC-style dataset from face images that ship "
                                      "with scikit-image and matplotlib (no downloads), then run extraction on it.")
    demo.add_argument("--out", default="demo-output", help="Folder for the demo data and cache.")
    demo.add_argument("--cache", default=None, help="Cache location (default: OUT/cache).")
    demo.add_argument("--clips", type=int, default=20, help="Number of clips, half REAL and half FAKE.")
    demo.add_argument("--frames", type=int, default=60, help="Frames per clip.")
    demo.add_argument("--seed", type=int, default=0, help="Generator seed: same seed, same clips.")
    demo.add_argument("--regenerate", action="store_true", help="Regenerate the clips even if present.")
    _add_cluster_options(demo)
    demo.add_argument("--force", action="store_true", default=None, help="Redo every video.")
    _add_config_options(demo)
    demo.set_defaults(func=cmd_demo)

    train = sub.add_parser("train", help="Cross-validate and train a real/fake classifier on a cache.",
                           description="Grouped K-fold cross-validation by leakage group (or the metadata split "
                                       "with --holdout), evaluation into RUN (metrics.json, plots, out-of-fold "
                                       "predictions), then the final model fitted on every labelled video.")
    train.add_argument("cache", metavar="CACHE")
    train.add_argument("--out", required=True, metavar="RUN", help="Run directory.")
    train.add_argument("--model", choices=["gbm", "crop_gbm", "crop_linear", "cnn"], default="crop_linear",
                       help="Classifier (default: crop_linear, linear model on crop texture and residual statistics "
                            "trained with self-blend pairs, the best on real clips (bench/quality.py); gbm: boosting "
                            "on per-video features; crop_gbm: per-crop texture boosting with self-blended fakes; "
                            "cnn: Keras CNN on crops).")
    train.add_argument("--folds", type=int, default=5, help="Grouped CV folds (default: 5).")
    train.add_argument("--holdout", action="store_true", help="Validate on the metadata split instead of CV.")
    train.add_argument("--seed", type=int, default=0, help="Seed (default: 0).")
    train.add_argument("--cnn-size", choices=["small", "large"], default="small", help="CNN size (large: GPU).")
    train.add_argument("--cnn-epochs", type=int, default=8, help="CNN epochs (default: 8).")
    train.add_argument("--overwrite", action="store_true",
                       help="Replace an existing run in RUN (its evaluations are deleted too).")
    _add_cluster_options(train)
    train.set_defaults(func=cmd_train)

    evaluate = sub.add_parser("evaluate", help="Evaluate a trained run on another labelled cache.",
                              description="Score RUN's model on OTHER_CACHE and write metrics, plots and "
                                          "predictions to RUN/evaluations/<cache name>/.")
    evaluate.add_argument("run", metavar="RUN")
    evaluate.add_argument("--cache", required=True, metavar="OTHER_CACHE")
    _add_cluster_options(evaluate)
    evaluate.set_defaults(func=cmd_evaluate)

    score = sub.add_parser("score", help="Score new videos into a DFDC-style submission.",
                           description="Extract whatever is not cached yet with the run's extraction settings, "
                                       "then write OUT/predictions.csv (filename,label = P(FAKE)) and "
                                       "OUT/predictions_detail.csv (status, flag, faces, top features).")
    score.add_argument("videos", nargs="+", metavar="VIDEOS")
    score.add_argument("--model", required=True, metavar="RUN")
    score.add_argument("--out", required=True, metavar="DIR")
    score.add_argument("--cache", default=None, help="Extraction cache (default: DIR/cache).")
    _add_cluster_options(score)
    score.set_defaults(func=cmd_score)

    inspect = sub.add_parser("inspect", help="Look at videos: detections, frames, face animation, SSIM.",
                             description="Write detections.png (MTCNN and Haar side by side), frames.png, face.gif "
                                         "and ssim.png for each VIDEO, reading the cache where it can and "
                                         "computing what is missing. With several videos (a fake and its "
                                         "original, say), each goes to OUT/<name>/ and OUT/comparison.png shows "
                                         "them side by side. Prints the paths it wrote.")
    inspect.add_argument("videos", nargs="+", metavar="VIDEO")
    inspect.add_argument("--cache", default=None, help="Cache to read the face track and SSIM series from.")
    inspect.add_argument("--out", default=None, help="Output folder (default: inspect/<video name>).")
    inspect.add_argument("--frame", type=int, default=0, help="Frame shown in detections.png (default: 0).")
    inspect.add_argument("--step", type=int, default=30, help="Frames between grid images (default: 30).")
    inspect.add_argument("--columns", type=int, default=4, help="Grid columns (default: 4).")
    inspect.add_argument("--rows", type=int, default=3, help="Grid rows (default: 3).")
    inspect.set_defaults(func=cmd_inspect)

    report = sub.add_parser("report", help="Write a self-contained HTML report of a cache (and a run).",
                            description="One HTML file with every image embedded, readable offline: dataset "
                                        "composition, extraction health, a sample of videos with their main face "
                                        "and face-SSIM sparkline, and the model's metrics when --run is given.")
    report.add_argument("cache", metavar="CACHE")
    report.add_argument("--out", default="report.html", help="Output HTML file (default: report.html).")
    report.add_argument("--run", default=None, help="Training run directory to include.")
    report.add_argument("--sample", type=int, default=24, help="Videos shown in the sample table (default: 24).")
    report.set_defaults(func=cmd_report)

    serve = sub.add_parser("serve", help="Serve the deployments of prefect.yaml: schedules and triggered runs.",
                           description="Register the deployments declared in prefect.yaml (extract on a nightly "
                                       "schedule, train, score) with the Prefect server in PREFECT_API_URL (or a "
                                       "local one), and run their flow runs in this process until interrupted. "
                                       "Trigger one with `prefect deployment run extract/extract` or from the UI.")
    serve.add_argument("--file", default="prefect.yaml", help="Deployment file (default: ./prefect.yaml).")
    serve.add_argument("--only", nargs="+", default=None, metavar="NAME", help="Serve only these deployments.")
    serve.add_argument("--limit", type=int, default=None, help="Most flow runs at once (default: no limit).")
    serve.set_defaults(func=cmd_serve)
    return parser


def _one_line(exc: Exception) -> str:
    """A pydantic ValidationError as one line naming each field and its flag (its own text spans several lines)."""
    from pydantic import ValidationError

    if not isinstance(exc, ValidationError):
        return str(exc)
    parts = []
    for error in exc.errors():
        field = ".".join(str(p) for p in error["loc"])
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "finite_number":
            message = "must be a finite number" + (" of seconds" if "seconds" in field else "")
        parts.append(f"--{field.replace('_', '-')} ({field}): {message}, got {error.get('input')!r}")
    return "; ".join(parts)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except Exception as exc:  # noqa: BLE001 - one clear line for the user, not a traceback
        from features.store.cache import CacheBusyError
        from features.store.datasets import DatasetError

        if isinstance(exc, (DatasetError, ValueError, CacheBusyError)):
            print(f"dfp {args.command}: error: {_one_line(exc)}", file=sys.stderr)
            return 2
        raise


if __name__ == "__main__":
    sys.exit(main())
