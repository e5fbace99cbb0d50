"""`dfp`: the command line, on cyclopts. The options of each command are generated from its config model
(features/config.py), so help text and defaults have one source. Each command checks its paths, run folders,
caches, Dask address and values first, in about a second and before Prefect, Dask or TensorFlow are imported;
then it builds its config and calls its Prefect flow.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import sys
from pathlib import Path
from typing import Annotated, Literal

from flows.runtime import configure_environment

configure_environment()

from cyclopts import App, Parameter  # noqa: E402 - after the environment is set
from cyclopts.exceptions import CycloptsError, UnusedCliTokensError  # noqa: E402

from features.config import RUNTIME_FIELDS, EvaluateConfig, ExtractConfig, ScoreConfig, TrainConfig  # noqa: E402
from features.learn import registry  # noqa: E402
from flows import console  # noqa: E402
from flows.cache_cli import cache_app  # noqa: E402
from flows.cli_options import Verbosity, given, model_option, positional, with_options  # noqa: E402
from flows.console import say  # noqa: E402

EXIT_USAGE = 2  # a usage error: a path, run, cache, address or value is wrong
EXIT_FAILED = 3  # some (with --fail-on-error) or all videos of this run failed


def model_kinds() -> tuple[str, ...]:
    """The model kinds `dfp train --model` accepts: the registered ones, the default first."""
    return tuple(registry.model_names())


def _version() -> str:
    try:
        return importlib.metadata.version("deepfake-pipeline")
    except importlib.metadata.PackageNotFoundError:
        return "unknown (deepfake-pipeline is not installed: pip install -e .)"


app = App(name="dfp", help="deepfake-pipeline: video forensics data pipelines (extract, train, evaluate, score).",
          version=_version, help_on_error=False)

DatasetsArg = positional(ExtractConfig, "datasets", "DATASET")
CacheArg = positional(TrainConfig, "cache", "CACHE")
RunArg = positional(EvaluateConfig, "run", "RUN")
VideosArg = positional(ScoreConfig, "videos", "VIDEOS")


def _extract_options(*dedicated: str):
    skip = {"datasets", *dedicated}
    # Every setting can be turned off too (--no-retry-failed overrides a --config file's true).
    return [model_option(ExtractConfig, name, help=ExtractConfig.model_fields[name].description
                         + (" Not part of the cache key." if name in RUNTIME_FIELDS else ""), negative=True)
            for name in ExtractConfig.model_fields if name not in skip]


CLUSTER = ("workers", "dask_address", "force")


def _config_from(values: dict, config_file: str | None = None, **fixed) -> ExtractConfig:
    """An ExtractConfig from a --config JSON file, overridden by the options given and then by `fixed`."""
    merged = json.loads(Path(config_file).read_text()) if config_file else {}
    merged.update(given(values))
    merged.update(given(fixed))
    return ExtractConfig(**merged)


# --- cheap checks, before anything heavy is imported -------------------------------------------------------------

def _is_url(path: str) -> bool:
    return "://" in path


def check_inputs(paths: list[str], what: str = "input") -> None:
    """Every local input path exists."""
    for path in paths:
        if not _is_url(path) and not os.path.exists(path):
            raise ValueError(f"{what} {path} does not exist: give video files, folders of videos, dataset folders or "
                             "a CSV of path,label")


def check_cluster(dask_address: str | None) -> None:
    """A Dask scheduler address given (or in DFP_DASK_ADDRESS) is well formed and answers."""
    from flows.runtime import check_dask_address, cluster_address

    address = cluster_address(dask_address)
    if address:
        check_dask_address(address)


# --- commands -------------------------------------------------------------------------------------------------------

def _run_extract(config: ExtractConfig) -> dict:
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

        console.show_stages()
        return extract_flow(config)


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


@app.command(name="extract")
@with_options(
    model_option(ExtractConfig, "cache", help="Cache location: local path or fsspec URL (s3://...).",
                 required=True),
    model_option(ExtractConfig, "workers"), model_option(ExtractConfig, "dask_address"),
    model_option(ExtractConfig, "force", help="Redo every video."),
    ("config", Annotated[str | None, Parameter(help="JSON file with ExtractConfig fields; options override it.")]),
    ("fail_on_error", Annotated[bool | None, Parameter(negative="", help="Exit 3 if any video of this run failed "
                                                       "(without it: exit 3 only when all failed).")]),
    *_extract_options("cache", *CLUSTER),
)
def cmd_extract(datasets: DatasetsArg, /, **options) -> int:
    """Extract face tracks, crops and SSIM series of every new or changed video into the cache.

    DATASET is a DFDC folder (metadata.json), a FaceForensics++ root, any folder of videos (optionally with
    labels.csv), a CSV of path,label[,original], or a video file. Exit codes: 0 ok, 2 usage error, 3 videos failed.
    """
    if not options.get("cache"):
        raise ValueError("--cache is required: where the cache goes (a local path or s3://...)")
    fail_on_error = bool(options.pop("fail_on_error"))
    config = _config_from(options, options.pop("config"), datasets=list(datasets))
    from features.store.rundir import check_cache_layout

    check_cache_layout(config.cache)
    check_inputs(config.datasets, "dataset")
    check_cluster(config.dask_address)
    summary = _run_extract(config)
    say(summary["line"])
    return extract_exit_code(summary, fail_on_error)


@app.command(name="demo")
@with_options(
    ("out", Annotated[str, Parameter(help="Folder for the demo clips, cache, run, predictions and report.")],
     "demo-output"),
    ("clips", Annotated[int, Parameter(help="Number of clips, half REAL and half FAKE; one pair is held out.")], 20),
    ("frames", Annotated[int, Parameter(help="Frames per clip.")], 60),
    ("seed", Annotated[int, Parameter(help="Generator seed: same seed, same clips.")], 0),
    ("regenerate", Annotated[bool, Parameter(negative="", help="Regenerate the clips even if present.")], False),
    model_option(ExtractConfig, "workers"),
)
def cmd_demo(**options) -> int:
    """The whole job on generated clips: extract, train the default model with grouped CV, score two held-out
    clips, write the HTML report.

    The clips are made from face images that ship with scikit-image and matplotlib (no downloads). Its last lines
    say where the report is and what to run on your own clips.
    """
    from flows.demo import MIN_CLIPS, run_demo

    if options["clips"] < MIN_CLIPS:  # before Prefect starts
        raise ValueError(f"--clips: the demo needs at least {MIN_CLIPS} clips (two pairs to train on, one held "
                         f"out), got {options['clips']}")
    run_demo(Path(options.pop("out")), say=say, **options)
    return 0


def _run_flow(name: str, config):
    from flows.runtime import prefect_server

    with prefect_server():
        from flows import train

        console.show_stages()
        return getattr(train, name)(config)


def _print_metrics(metrics: dict) -> None:
    for name, label in (("overall", "model"), ("prior", "class prior")):
        m = metrics[name]
        print(f"{label:12s} log loss {m['log_loss']:.4f}  AUC {m['roc_auc'] if m['roc_auc'] is None else round(m['roc_auc'], 4)}"
              f"  accuracy {m['accuracy']:.3f}  balanced {m['balanced_accuracy']}  Brier {m['brier']:.4f}  n={m['n']}")


TRAIN_OPTIONS = ("out", "model", "folds", "holdout", "seed", "cnn_size", "cnn_epochs", "workers", "dask_address",
                 "overwrite")


@app.command(name="train")
@with_options(*(model_option(TrainConfig, name, annotation=Literal[model_kinds()] if name == "model" else None)
                for name in TRAIN_OPTIONS))
def cmd_train(cache: CacheArg, /, **options) -> int:
    """Cross-validate and train a real/fake classifier on a cache.

    Grouped K-fold cross-validation by leakage group (or the metadata split with --holdout), evaluation into RUN
    (metrics.json, plots, out-of-fold predictions), then the final model fitted on every labelled video.
    """
    from features.store.rundir import check_cache_dir, prepare_run_dir

    if not options.get("out"):
        raise ValueError("--out is required: the run folder this training writes (metrics, plots, the model)")
    config = TrainConfig(cache=cache, **given(options))
    if not config.overwrite:
        prepare_run_dir(config.out, overwrite=False)  # an --out holding a run is refused first
    check_cache_dir(config.cache)
    check_cluster(config.dask_address)
    prepare_run_dir(config.out, config.overwrite)  # before the Prefect server and cluster start
    metrics = _run_flow("train_flow", config)
    _print_metrics(metrics)
    say(f"run: {config.out}  (next: dfp score CLIPS --run {config.out} --out OUT, dfp runs "
        f"{Path(config.out).parent})")
    return 0


@app.command(name="evaluate")
@with_options(model_option(EvaluateConfig, "cache", required=True),
              model_option(ExtractConfig, "workers"), model_option(ExtractConfig, "dask_address"))
def cmd_evaluate(run: RunArg, /, **options) -> int:
    """Evaluate a trained run on another labelled cache.

    Score RUN's model on CACHE and write metrics, plots and predictions to RUN/evaluations/<cache name>/.
    """
    from features.store.rundir import check_cache_dir, check_run_dir

    if not options.get("cache"):
        raise ValueError("--cache is required: the labelled cache to evaluate RUN on")
    config = EvaluateConfig(run=run, **given(options))
    check_run_dir(config.run)
    check_cache_dir(config.cache)
    check_cluster(config.dask_address)
    from flows.train import check_run, evaluation_name

    check_run(config.run)  # the deeper checks: digests, safe formats, versions
    metrics = _run_flow("evaluate_flow", config)
    _print_metrics(metrics)
    say(f"evaluation: {config.run}/evaluations/{evaluation_name(config.cache)}/metrics.json")
    return 0


@app.command(name="score")
@with_options(
    model_option(ScoreConfig, "model", flag="--run", help="Run folder written by `dfp train` (its --out).",
                 required=True),
    ("deprecated_model", Annotated[str | None, Parameter(name="--model", show=False,
                                                         help="Deprecated spelling of --run (one more release).")]),
    model_option(ScoreConfig, "out", required=True),
    model_option(ScoreConfig, "cache", help="Extraction cache: give the one the clips are already in (a training "
                 "cache, say) to reuse their extraction; their labels are kept.", default_text=" (default: OUT/cache)"),
    model_option(ExtractConfig, "workers"), model_option(ExtractConfig, "dask_address"),
)
def cmd_score(videos: VideosArg, /, **options) -> int:
    """Score new videos into a DFDC-style submission.

    Extract whatever is not cached yet with the run's extraction settings, then write OUT/predictions.csv
    (filename,label = P(FAKE)) and OUT/predictions_detail.csv (status, flag, faces, top features).
    """
    from features.store.rundir import check_run_dir

    old = options.pop("deprecated_model")
    if old is not None:
        print(f"dfp score: warning: --model RUN is deprecated and goes in the next release: use --run {old}",
              file=sys.stderr)
        options["model"] = options.get("model") or old
    if not options.get("model"):
        raise ValueError("--run is required: the run folder of a `dfp train` run (`dfp runs FOLDER` lists them)")
    if not options.get("out"):
        raise ValueError("--out is required: the folder for predictions.csv and predictions_detail.csv")
    config = ScoreConfig(videos=list(videos), **given(options))
    check_run_dir(config.model)
    check_inputs(config.videos, "video")
    check_cluster(config.dask_address)
    from flows.train import check_run

    check_run(config.model)  # the deeper checks: digests, safe formats, versions
    summary = _run_flow("score_flow", config)
    say(f"{summary['videos']} videos scored, {summary['flagged']} flagged (0.5): {summary['predictions']}")
    return 0


@app.command(name="inspect")
def cmd_inspect(
    videos: Annotated[list[str], Parameter(name="VIDEO", help="Video files to look at.")], /, *,
    cache: Annotated[str | None, Parameter(help="Cache to read the face track and SSIM series from.")] = None,
    out: Annotated[str | None, Parameter(help="Output folder (default: inspect/<video name>).")] = None,
    frame: Annotated[int, Parameter(help="Frame shown in detections.png.")] = 0,
    step: Annotated[int, Parameter(help="Frames between grid images.")] = 30,
    columns: Annotated[int, Parameter(help="Grid columns.")] = 4,
    rows: Annotated[int, Parameter(help="Grid rows.")] = 3,
    verbose: Verbosity = 0,
) -> int:
    """Look at videos: detections, frames, face animation, SSIM.

    Write detections.png (MTCNN and Haar side by side), frames.png, face.gif and ssim.png for each VIDEO, reading
    the cache where it can and computing what is missing. With several videos (a fake and its original, say), each
    goes to OUT/<name>/ and OUT/comparison.png shows them side by side. Prints the paths it wrote.
    """
    from features.store.rundir import check_cache_dir

    console.quiet_start(verbose)
    for video in videos:
        if not os.path.isfile(video):
            raise ValueError(f"video {video} does not exist: give the path of a video file")
    if cache:
        check_cache_dir(cache)
    console.import_quietly("tensorflow")  # MTCNN runs in this process
    from flows.inspect import default_out, inspect_videos

    out = out or (default_out(videos[0]) if len(videos) == 1 else "inspect")
    results = inspect_videos(videos, out, cache=cache, frame=frame, step=step, columns=columns, rows=rows)
    for result in results.values():
        for path in (result.values() if isinstance(result, dict) else [result]):
            print(path)
    return 0


@app.command(name="report")
def cmd_report(
    cache: Annotated[str, Parameter(name="CACHE", help="Cache written by `dfp extract`.")], /, *,
    out: Annotated[str, Parameter(help="Output HTML file.")] = "report.html",
    run: Annotated[str | None, Parameter(help="Training run folder to include (its --out).")] = None,
    sample: Annotated[int, Parameter(help="Videos shown in the sample table.")] = 24,
) -> int:
    """Write a self-contained HTML report of a cache (and a run).

    One HTML file with every image embedded, readable offline: dataset composition, extraction health, a sample of
    videos with their main face and face-SSIM sparkline, and the model's metrics when --run is given.
    """
    from features.store.rundir import check_cache_dir, check_run_dir

    check_cache_dir(cache)
    if run:
        check_run_dir(run)
    from flows.report import write_report

    print(write_report(cache, out, run=run, sample=sample))
    return 0


@app.command(name="runs")
def cmd_runs(
    folder: Annotated[str, Parameter(name="FOLDER", help="Folder holding training runs (searched recursively).")] = ".",
    /, *,
    html: Annotated[str | None, Parameter(help="Also write the table as an HTML page here.")] = None,
) -> int:
    """List the training runs under a folder: model kind, date, data, CV AUC, log loss and their evaluations."""
    from flows.runs import print_runs

    return print_runs(folder, html)


@app.command(name="serve")
def cmd_serve(
    *,
    file: Annotated[str, Parameter(help="Deployment file.")] = "prefect.yaml",
    only: Annotated[list[str] | None, Parameter(help="Serve only these deployments (NAME ...).",
                                                consume_multiple=True)] = None,
    limit: Annotated[int | None, Parameter(help="Most flow runs at once (default: no limit).")] = None,
    verbose: Verbosity = 0,
) -> int:
    """Serve the deployments of prefect.yaml: schedules and triggered runs.

    Register the deployments declared in prefect.yaml (extract on a nightly schedule, train, score) with the Prefect
    server in PREFECT_API_URL (or a local one), and run their flow runs in this process until interrupted. Trigger
    one with `prefect deployment run extract/extract` or from the UI.
    """
    from flows.runtime import prefect_server
    from flows.serve import load_deployments, serve

    console.quiet_start(max(verbose, 1))  # a server's log is what it is for
    load_deployments(file, only)  # unset variables and unknown names fail before any server starts
    with prefect_server() as url:
        print(f"serving {', '.join(d['name'] for d in load_deployments(file, only))} from {file} "
              f"on {url} (Ctrl-C stops)", flush=True)
        serve(file, only, limit)
    return 0


app.command(cache_app)


@app.default
def _help() -> int:
    app.help_print([])
    return 0


@cache_app.default
def _cache_help() -> int:
    app.help_print(["cache"])
    return 0


# --- errors as one line ----------------------------------------------------------------------------------------------

_BOUNDS = {"greater_than_equal": "at least", "greater_than": "more than", "less_than_equal": "at most",
           "less_than": "less than"}


def _one_line(exc: Exception, flags: dict[str, str] | None = None) -> str:
    """A pydantic ValidationError as one line naming each field and its flag (its own text spans several lines)."""
    from pydantic import ValidationError

    if not isinstance(exc, ValidationError):
        return " ".join(str(exc).split()) if isinstance(exc, CycloptsError) else str(exc)
    parts = []
    for error in exc.errors():
        field = ".".join(str(p) for p in error["loc"])
        flag = (flags or {}).get(field, "--" + field.replace("_", "-"))
        message = error["msg"].removeprefix("Value error, ")
        bound = (error.get("ctx") or {})
        if error["type"] in _BOUNDS:
            message = f"must be {_BOUNDS[error['type']]} {next(iter(bound.values()))}"
        if error["type"] == "finite_number":
            message = "must be a finite number" + (" of seconds" if "seconds" in field else "")
        parts.append(f"{flag} ({field}): {message}, got {error.get('input')!r}")
    return "; ".join(parts)


def _is_cache_busy(exc: Exception) -> bool:
    if "features.store.cache" not in sys.modules:
        return False
    from features.store.cache import CacheBusyError

    return isinstance(exc, CacheBusyError)


def _command_of(argv: list[str]) -> str | None:
    return next((a for a in argv if not a.startswith("-")), None)


def _prog(argv: list[str]) -> str:
    """What an error line starts with: `dfp`, `dfp train`, or `dfp cache info` for a sub-app's command."""
    words = [a for a in argv if not a.startswith("-")][:2]
    if not words or words[0] not in app:
        return "dfp"
    if words[0] == "cache" and len(words) == 2 and words[1] in cache_app:
        return f"dfp cache {words[1]}"
    return f"dfp {words[0]}"


def _verbosity_after_command(argv: list[str]) -> list[str]:
    """`dfp -v train CACHE` as `dfp train -v CACHE`: the verbosity belongs to each command, given before or after it."""
    leading = 0
    while leading < len(argv) and re.fullmatch(r"-v+|--verbose", argv[leading]):
        leading += 1
    if 0 < leading < len(argv):
        return [argv[leading], *argv[:leading], *argv[leading + 1:]]
    return argv


def main(argv: list[str] | None = None) -> int:
    argv = _verbosity_after_command(sys.argv[1:] if argv is None else list(argv))
    command = _command_of(argv)
    prog = _prog(argv)
    try:
        result = app(argv, exit_on_error=False, print_error=False, result_action="return_value")
    except UnusedCliTokensError as exc:
        words = [a for a in argv if not a.startswith("-")]
        if command is not None and command not in app:
            print(f"dfp: error: unknown command {command!r} (`dfp --help` lists the commands)", file=sys.stderr)
        elif command == "cache" and len(words) > 1 and words[1] not in cache_app:
            print(f"dfp cache: error: unknown command {words[1]!r} (`dfp cache --help` lists the commands)",
                  file=sys.stderr)
        else:
            print(f"{prog}: error: {_one_line(exc)} (`{prog} --help` shows the usage)", file=sys.stderr)
        return EXIT_USAGE
    except CycloptsError as exc:
        print(f"{prog}: error: {_one_line(exc)} (`{prog} --help` shows the usage)", file=sys.stderr)
        return EXIT_USAGE
    except Exception as exc:  # noqa: BLE001 - one clear line for the user, not a traceback
        # DatasetError and UnsafeModelFile are ValueErrors; the cache module (pandas, pyarrow) is imported only when
        # the error may be one of its own.
        if isinstance(exc, ValueError) or _is_cache_busy(exc):
            flags = {"model": "--run"} if command == "score" else None
            print(f"{prog}: error: {_one_line(exc, flags)}", file=sys.stderr)
            return EXIT_USAGE
        raise
    return result if isinstance(result, int) else 0


if __name__ == "__main__":
    sys.exit(main())
