"""A self-contained HTML report of a cache (and optionally a training run): images embedded, readable offline.

This module gathers what the report shows (counts, tables of strings, data-URI images, sparkline points); the
markup lives in the jinja2 templates of features/visuals/templates/, rendered with autoescape on, so a video id or
an error message is always shown as text, never read as HTML.
"""

from __future__ import annotations

import base64
import io
import json
from dataclasses import dataclass
from pathlib import Path

import jinja2
import numpy as np
import pandas as pd

from features.visuals.plots import FAKE_COLOR, REAL_COLOR, _plt

UNLABELLED_COLOR = "#7f7f7f"
MODEL_PLOTS = ("roc", "calibration", "scores")

_TEMPLATES = jinja2.Environment(
    loader=jinja2.PackageLoader("features.visuals", "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,  # a value the code forgot to pass fails the render instead of vanishing
    trim_blocks=True,
    lstrip_blocks=True,
)


@dataclass(frozen=True)
class Table:
    """A table as the template shows it: column names and rows of display strings."""

    columns: list[str]
    rows: list[list[str]]
    cls: str = ""


@dataclass(frozen=True)
class Sparkline:
    """An SVG polyline's size and its points attribute."""

    width: int
    height: int
    points: str


@dataclass(frozen=True)
class VideoCell:
    """One video as a row of the sample table or one side of a pair."""

    video_id: str
    label: str
    thumb: str | None  # data URI of the main-face crop
    mean_ssim: str
    sparkline: Sparkline | None


def _png_data_uri(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    _plt().close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _file_data_uri(path: Path) -> str:
    mime = "image/png" if path.suffix == ".png" else "image/jpeg"
    return f"data:{mime};base64," + base64.b64encode(path.read_bytes()).decode()


def label_pie(videos: pd.DataFrame) -> str:
    plt = _plt()
    counts = videos.label.fillna("unlabelled").value_counts()
    colors = [{"REAL": REAL_COLOR, "FAKE": FAKE_COLOR}.get(k, UNLABELLED_COLOR) for k in counts.index]
    fig, ax = plt.subplots(figsize=(4, 4))
    ax.pie(counts.to_numpy(), labels=[f"{k} ({v})" for k, v in counts.items()], colors=colors, autopct="%1.0f%%")
    ax.set_title("REAL vs FAKE videos")
    return _png_data_uri(fig)


def table(frame: pd.DataFrame, cls: str = "") -> Table:
    """A DataFrame's columns and values as strings, missing values as empty cells."""
    cells = frame.astype(object).where(frame.notna(), "")
    return Table([str(c) for c in frame.columns], [[str(v) for v in row] for row in cells.itertuples(index=False)], cls)


def sparkline(values: np.ndarray, width: int = 160, height: int = 36) -> Sparkline | None:
    """An inline SVG polyline of a series (SSIM), scaled to its own range; None for fewer than two values."""
    if len(values) < 2:
        return None
    lo, hi = float(np.min(values)), float(np.max(values))
    span = hi - lo or 1.0
    xs = np.linspace(0, width, len(values))
    ys = height - 2 - (values - lo) / span * (height - 4)
    return Sparkline(width, height, " ".join(f"{x:.1f},{y:.1f}" for x, y in zip(xs, ys, strict=True)))


def _video_cell(vid: str, label: str, faces: pd.DataFrame, ssim: pd.DataFrame) -> VideoCell:
    """The main-face thumbnail of a video and its face SSIM series."""
    mine = faces[(faces.video_id == vid) & faces.is_main & faces.crop_jpeg.notna()]
    thumb = "data:image/jpeg;base64," + base64.b64encode(mine.crop_jpeg.iloc[0]).decode() if len(mine) else None
    series = ssim[(ssim.video_id == vid) & ssim.is_main & (ssim.track_id >= 0)].sort_values("frame_index").ssim
    return VideoCell(vid, label, thumb, f"{series.mean():.4f}" if len(series) else "", sparkline(series.to_numpy()))


def _dataset_section(videos: pd.DataFrame) -> dict:
    by_column = []
    for column in ("split", "dataset", "method"):
        if column in videos and videos[column].notna().any():
            counts = videos.groupby([videos[column].fillna("—"), videos.label.fillna("unlabelled")]).size()
            by_column.append((column, table(counts.unstack(fill_value=0).rename_axis(columns=None).reset_index())))
    fakes = videos[videos.label == "FAKE"].groupby("leakage_group").size()
    groups = videos.groupby("leakage_group").size()
    per_group = fakes.reindex(groups.index, fill_value=0).value_counts().sort_index()
    return {"pie": label_pie(videos), "by_column": by_column, "n_groups": len(groups),
            "fakes_per_group": table(pd.DataFrame({"fakes in group": per_group.index, "groups": per_group.values}))}


def _health_section(videos: pd.DataFrame) -> dict:
    status = videos.status.value_counts().reindex(["ok", "no_face", "failed"], fill_value=0)
    timing = videos.total_s.dropna()
    rate = videos[videos.status != "failed"].face_detection_rate.dropna()
    seconds = [f"{v:.2f}" for v in (timing.mean(), timing.median(), timing.quantile(0.95))] if len(timing) else ["n/a"] * 3
    stats = pd.DataFrame({
        "measure": ["face detection rate (mean over keyframes)", "seconds per video (mean)",
                    "seconds per video (median)", "seconds per video (95th percentile)"],
        "value": [f"{rate.mean():.1%}" if len(rate) else "n/a", *seconds],
    })
    failed = videos[videos.status == "failed"][["video_id", "error_step", "error"]]
    return {"status": table(pd.DataFrame({"status": status.index, "videos": status.values})), "stats": table(stats),
            "failed": table(failed, "failed")}


def _label(value) -> str:
    return value if isinstance(value, str) else "unlabelled"


def _sample(videos: pd.DataFrame, faces: pd.DataFrame, ssim: pd.DataFrame, sample: int, seed: int) -> list[VideoCell]:
    """About `sample` extracted videos, the same share of each label, in video id order."""
    rng = np.random.default_rng(seed)
    ok = videos[videos.status == "ok"]
    picked = []
    for _, part in ok.groupby(ok.label.fillna("unlabelled")):
        take = min(len(part), max(1, sample // max(1, ok.label.fillna("unlabelled").nunique())))
        picked.append(part.iloc[rng.permutation(len(part))[:take]])
    chosen = pd.concat(picked) if picked else ok.iloc[:0]
    return [_video_cell(v.video_id, _label(v.label), faces, ssim) for v in chosen.sort_values("video_id").itertuples()]


def _pairs(videos: pd.DataFrame, faces: pd.DataFrame, ssim: pd.DataFrame, sample: int) -> list[tuple[VideoCell, ...]]:
    """Each fake whose original is in the cache, beside it."""
    pairs = []
    by_name = {str(v).rsplit("/", 1)[-1]: v for v in videos.video_id}
    for fake in videos[(videos.label == "FAKE") & videos.original.notna()].itertuples():
        original = by_name.get(str(fake.original).rsplit(".", 1)[0])
        if original is not None:
            pairs.append((original, fake.video_id))
    return [(_video_cell(original, "REAL", faces, ssim), _video_cell(fake, "FAKE", faces, ssim))
            for original, fake in pairs[:sample]]


def _model_section(run_dir: Path | None) -> dict | None:
    """The run's out-of-fold metrics beside the class prior, its plots and its worst videos; None without a run."""
    if run_dir is None or not (run_dir / "metrics.json").exists():
        return None
    metrics = json.loads((run_dir / "metrics.json").read_text())
    rows = [{"": name, **{k: metrics[key].get(k) for k in ("log_loss", "roc_auc", "accuracy", "balanced_accuracy",
                                                          "brier", "n")}}
            for name, key in (("model", "overall"), ("class prior", "prior"))]
    plots = [(name, _file_data_uri(run_dir / "plots" / f"{name}.png")) for name in MODEL_PLOTS
             if (run_dir / "plots" / f"{name}.png").exists()]
    worst = None
    oof_path = run_dir / "oof_predictions.csv"
    if oof_path.exists():
        oof = pd.read_csv(oof_path)
        oof["error"] = (oof.label.eq("FAKE").astype(float) - oof.p_fake).abs()
        worst = table(oof.sort_values("error", ascending=False).head(10)[["video_id", "label", "p_fake", "status"]]
                      .round(3))
    return {"name": str(metrics.get("model")), "validation": str(metrics.get("validation")),
            "metrics": table(pd.DataFrame(rows).round(4)), "plots": plots, "worst": worst,
            "evaluations": _evaluations(run_dir)}


def _evaluations(run_dir: Path) -> Table | None:
    """Each `dfp evaluate` of the run: all unseen clips, then those its guard flagged out of distribution and the
    others, each beside the class prior."""
    rows = []
    for path in sorted(run_dir.glob("evaluations/*/metrics.json")):
        evaluation = json.loads(path.read_text())
        parts = [("all", {**evaluation.get("overall", {}),
                          "prior_log_loss": evaluation.get("prior", {}).get("log_loss")})]
        parts += [(f"{name} out of distribution" if name == "flagged" else "in distribution", part)
                  for name, part in (evaluation.get("ood") or {}).items()]
        rows += [{"evaluation": path.parent.name, "clips": name, "n": part.get("n"), "roc_auc": part.get("roc_auc"),
                  "log_loss": part.get("log_loss"), "prior_log_loss": part.get("prior_log_loss")}
                 for name, part in parts]
    return table(pd.DataFrame(rows).round(4)) if rows else None


def build_report(videos: pd.DataFrame, faces: pd.DataFrame, ssim: pd.DataFrame, title: str,
                 run_dir: Path | None = None, sample: int = 24, seed: int = 0) -> str:
    """The whole report as one HTML string."""
    return _TEMPLATES.get_template("report.html").render(
        title=title,
        n_videos=len(videos),
        colors={"REAL": REAL_COLOR, "FAKE": FAKE_COLOR},
        dataset=_dataset_section(videos),
        health=_health_section(videos),
        sample=_sample(videos, faces, ssim, sample, seed),
        pairs=_pairs(videos, faces, ssim, sample),
        model=_model_section(run_dir),
    )
