"""`dfp demo`: the whole job on generated clips: generate, extract, train with grouped CV, score two held-out clips,
write the HTML report. One line per stage; the last lines say where the report is and what to run on your own data.

OUT holds the demo's own folders: dfdc-demo/ (the labelled training clips), held-out/ (one FAKE clip and its REAL
original, unlabelled, so no training run sees them), cache/, run/, predictions.csv and report.html.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from features.config import ExtractConfig, ScoreConfig, TrainConfig
from features.video.demo import hold_out_pair, make_demo_dataset
from flows.report import write_report
from flows.runtime import prefect_server

SETTINGS_FILE = "demo.json"  # what the clips were generated with, and the held-out clips' true labels
MIN_CLIPS = 6  # two pairs to cross-validate on, one to hold out
NEXT_STEPS = ("on your own clips: dfp extract YOUR_CLIPS --cache CACHE, then dfp train CACHE --out RUN, "
              "then dfp report CACHE --run RUN")


@dataclass(frozen=True)
class HeldOutClip:
    """A clip kept out of training, its true label and the score the trained model gave it."""

    filename: str
    label: str
    p_fake: float


@dataclass(frozen=True)
class DemoResult:
    """Where the demo wrote, and the numbers it printed."""

    out: Path
    cache: Path
    run: Path
    predictions: Path
    report: Path
    cv_auc: float | None  # out-of-fold ROC AUC of the default model
    cv_log_loss: float
    prior_log_loss: float  # the class-prior baseline the model has to beat
    held_out: tuple[HeldOutClip, ...]
    seconds: float


def prepare_clips(out: Path, clips: int, frames: int, seed: int, regenerate: bool,
                  workers: int | None = None) -> tuple[Path, Path, dict, bool]:
    """The training dataset, the held-out folder and the held-out clips' labels: generated, or reused when OUT holds
    clips generated with the same settings. A new generation clears the demo's old cache, run and outputs."""
    data, held_out, settings_path = out / "dfdc-demo", out / "held-out", out / SETTINGS_FILE
    wanted = {"clips": clips, "frames": frames, "seed": seed}
    try:
        saved = json.loads(settings_path.read_text())
    except (OSError, ValueError):
        saved = {}
    held = saved.get("held_out") or {}
    if not regenerate and {k: saved.get(k) for k in wanted} == wanted and (data / "metadata.json").is_file() \
            and len(held) == 2 and all((held_out / name).is_file() for name in held):
        return data, held_out, held, False
    settings_path.unlink(missing_ok=True)  # written last: a generation cut short is redone
    for folder in (data, held_out, out / "cache", out / "run"):
        shutil.rmtree(folder, ignore_errors=True)
    for name in ("predictions.csv", "predictions_detail.csv", "report.html"):
        (out / name).unlink(missing_ok=True)
    make_demo_dataset(data, n_clips=clips, frames=frames, seed=seed, workers=workers or os.cpu_count() or 1)
    labels = hold_out_pair(data, held_out)
    tmp = out / f".{SETTINGS_FILE}.tmp"
    tmp.write_text(json.dumps({**wanted, "held_out": labels}, indent=1))
    os.replace(tmp, settings_path)
    return data, held_out, labels, True


def _extract_train_score(data: Path, held_out: Path, cache: Path, run: Path, out: Path, workers: int | None,
                         say: Callable[[str], None]) -> tuple[dict, dict]:
    """The three flows, on the caller's Prefect server: extract both folders, train, score the held-out pair; returns
    the training metrics and the scoring summary."""
    from flows.extract import extract_flow  # Prefect is imported while the server starts, not at import
    from flows.train import score_flow, train_flow

    summary = extract_flow(ExtractConfig(datasets=[str(data), str(held_out)], cache=str(cache), workers=workers))
    say(f"extract: {summary['line']}")
    metrics = train_flow(TrainConfig(cache=str(cache), out=str(run), workers=workers, overwrite=True))
    model, prior = metrics["overall"], metrics["prior"]
    auc = "n/a" if model["roc_auc"] is None else f"{model['roc_auc']:.3f}"
    say(f"train: {metrics['model']}, {metrics['validation']} CV on {model['n']} clips: AUC {auc}, log loss "
        f"{model['log_loss']:.3f} (class prior {prior['log_loss']:.3f}); run in {run}")
    scored = score_flow(ScoreConfig(videos=[str(held_out)], model=str(run), out=str(out), cache=str(cache),
                                    workers=workers))
    return metrics, scored


def run_demo(out: Path, *, clips: int = 20, frames: int = 60, seed: int = 0, regenerate: bool = False,
             workers: int | None = None, say: Callable[[str], None] = print) -> DemoResult:
    """Generate `clips` demo clips into OUT, hold one FAKE and its REAL original out, extract all of them, train the
    default model with grouped cross-validation on the rest, score the two held-out clips and write the report."""
    if clips < MIN_CLIPS:
        raise ValueError(f"the demo needs at least {MIN_CLIPS} clips (two pairs to train on, one held out), got {clips}")
    started = time.perf_counter()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    cache, run = out / "cache", out / "run"
    with ThreadPoolExecutor(max_workers=1) as background:
        # The clips render in processes of their own while the Prefect server starts and Prefect is imported.
        clips_ready = background.submit(prepare_clips, out, clips, frames, seed, regenerate, workers)
        with prefect_server():
            data, held_out, labels, generated = clips_ready.result()
            say(f"{'generated' if generated else 'reusing'} {clips} clips x {frames} frames: {clips - 2} in {data} "
                f"to train on, 2 held out in {held_out}")
            metrics, scored = _extract_train_score(data, held_out, cache, run, out, workers, say)
    model, prior = metrics["overall"], metrics["prior"]
    auc = model["roc_auc"]
    predictions = pd.read_csv(scored["predictions"])
    p_fake = dict(zip(predictions.filename, predictions.label, strict=True))
    held = tuple(HeldOutClip(name, label, float(p_fake[name])) for name, label in sorted(labels.items(),
                                                                                         key=lambda kv: kv[1]))
    say("score: " + ", ".join(f"{c.filename} ({c.label}) P(FAKE) {c.p_fake:.2f}" for c in held)
        + f" -> {scored['predictions']}")
    report = Path(write_report(str(cache), str(out / "report.html"), run=str(run)))
    seconds = time.perf_counter() - started
    say(f"report: {report}  ({seconds:.0f} s in all)")
    say(f"next, {NEXT_STEPS}")
    return DemoResult(out=out, cache=cache, run=run, predictions=Path(scored["predictions"]), report=report,
                      cv_auc=auc, cv_log_loss=model["log_loss"], prior_log_loss=prior["log_loss"], held_out=held,
                      seconds=seconds)
