"""A self-contained HTML report of a cache (and optionally a training run): images embedded, readable offline."""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path

import numpy as np
import pandas as pd

from features.visuals.plots import FAKE_COLOR, REAL_COLOR, _plt

UNLABELLED_COLOR = "#7f7f7f"


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


def _table(frame: pd.DataFrame, cls: str = "") -> str:
    return frame.to_html(index=False, escape=True, classes=cls, na_rep="", border=0)


def sparkline(values: np.ndarray, width: int = 160, height: int = 36) -> str:
    """An inline SVG polyline of a series (SSIM), scaled to its own range."""
    if len(values) < 2:
        return "<span class='muted'>no face series</span>"
    lo, hi = float(np.min(values)), float(np.max(values))
    span = hi - lo or 1.0
    xs = np.linspace(0, width, len(values))
    ys = height - 2 - (values - lo) / span * (height - 4)
    points = " ".join(f"{x:.1f},{y:.1f}" for x, y in zip(xs, ys, strict=True))
    return (f"<svg width='{width}' height='{height}' role='img' aria-label='face SSIM'>"
            f"<polyline fill='none' stroke='#444' stroke-width='1' points='{points}'/></svg>")


def _face_cells(vid: str, faces: pd.DataFrame, ssim: pd.DataFrame) -> tuple[str, pd.Series]:
    """The main-face thumbnail of a video and its face SSIM series."""
    mine = faces[(faces.video_id == vid) & faces.is_main & faces.crop_jpeg.notna()]
    thumb = ("<img class='thumb' alt='main face' src='data:image/jpeg;base64,"
             + base64.b64encode(mine.crop_jpeg.iloc[0]).decode() + "'>") if len(mine) else ""
    series = ssim[(ssim.video_id == vid) & ssim.is_main & (ssim.track_id >= 0)].sort_values("frame_index").ssim
    return thumb, series


def build_report(videos: pd.DataFrame, faces: pd.DataFrame, ssim: pd.DataFrame, title: str,
                 run_dir: Path | None = None, sample: int = 24, seed: int = 0) -> str:
    """The whole report as one HTML string."""
    esc = html.escape
    parts = [f"<h1>{esc(title)}</h1>", f"<p class='muted'>{len(videos)} videos</p>"]

    # Dataset
    parts.append("<section id='dataset'><h2>Dataset</h2><div class='row'>")
    parts.append(f"<img class='chart' alt='REAL vs FAKE pie chart' src='{label_pie(videos)}'>")
    for column in ("split", "dataset", "method"):
        if column in videos and videos[column].notna().any():
            counts = videos.groupby([videos[column].fillna("—"), videos.label.fillna("unlabelled")]).size()
            by = counts.unstack(fill_value=0).rename_axis(columns=None).reset_index()
            parts.append(f"<div><h3>By {column}</h3>{_table(by)}</div>")
    fakes = videos[videos.label == "FAKE"].groupby("leakage_group").size()
    groups = videos.groupby("leakage_group").size()
    per_group = fakes.reindex(groups.index, fill_value=0).value_counts().sort_index()
    parts.append("<div><h3>Leakage groups</h3>"
                 f"<p>{len(groups)} groups; fakes per group:</p>"
                 f"{_table(pd.DataFrame({'fakes in group': per_group.index, 'groups': per_group.values}))}</div>")
    parts.append("</div></section>")

    # Extraction health
    parts.append("<section id='health'><h2>Extraction health</h2><div class='row'>")
    status = videos.status.value_counts().reindex(["ok", "no_face", "failed"], fill_value=0)
    parts.append(f"<div><h3>Status</h3>{_table(pd.DataFrame({'status': status.index, 'videos': status.values}))}</div>")
    timing = videos.total_s.dropna()
    rate = videos[videos.status != "failed"].face_detection_rate.dropna()
    stats = pd.DataFrame({
        "measure": ["face detection rate (mean over keyframes)", "seconds per video (mean)",
                    "seconds per video (median)", "seconds per video (95th percentile)"],
        "value": [f"{rate.mean():.1%}" if len(rate) else "n/a",
                  *(f"{v:.2f}" if len(timing) else "n/a" for v in
                    (timing.mean() if len(timing) else 0, timing.median() if len(timing) else 0,
                     timing.quantile(0.95) if len(timing) else 0))],
    })
    parts.append(f"<div><h3>Detection and time</h3>{_table(stats)}</div></div>")
    failed = videos[videos.status == "failed"][["video_id", "error_step", "error"]]
    parts.append("<h3>Failed videos</h3>" + (_table(failed, "failed") if len(failed) else "<p>None.</p>"))
    parts.append("</section>")

    # Per-video sample
    parts.append("<section id='videos'><h2>Videos (sample)</h2>"
                 "<p>Show: <button onclick=\"filterRows('all')\">all</button> "
                 "<button onclick=\"filterRows('REAL')\">REAL</button> "
                 "<button onclick=\"filterRows('FAKE')\">FAKE</button> · sort by "
                 "<button onclick=\"sortRows(2)\">label</button> <button onclick=\"sortRows(3)\">face SSIM</button></p>")
    rng = np.random.default_rng(seed)
    ok = videos[videos.status == "ok"]
    picked = []
    for _, part in ok.groupby(ok.label.fillna("unlabelled")):
        take = min(len(part), max(1, sample // max(1, ok.label.fillna("unlabelled").nunique())))
        picked.append(part.iloc[rng.permutation(len(part))[:take]])
    chosen = pd.concat(picked) if picked else ok.iloc[:0]
    parts.append("<table id='sample'><thead><tr><th>face</th><th>video</th><th>label</th><th>mean face SSIM</th>"
                 "<th>face SSIM over time</th></tr></thead><tbody>")
    for v in chosen.sort_values("video_id").itertuples():
        thumb, series = _face_cells(v.video_id, faces, ssim)
        mean = f"{series.mean():.4f}" if len(series) else ""
        label = v.label if isinstance(v.label, str) else "unlabelled"
        parts.append(f"<tr data-label='{esc(label)}'><td>{thumb}</td><td>{esc(v.video_id)}</td>"
                     f"<td class='{esc(label)}'>{esc(label)}</td><td>{mean}</td>"
                     f"<td>{sparkline(series.to_numpy())}</td></tr>")
    parts.append("</tbody></table></section>")

    # Fakes beside their originals
    pairs = []
    by_name = {str(v).rsplit("/", 1)[-1]: v for v in videos.video_id}
    for fake in videos[(videos.label == "FAKE") & videos.original.notna()].itertuples():
        original = by_name.get(str(fake.original).rsplit(".", 1)[0])
        if original is not None:
            pairs.append((original, fake.video_id))
    if pairs:
        parts.append("<section id='pairs'><h2>Fakes beside their originals</h2><table><thead><tr>"
                     "<th>original (REAL)</th><th></th><th>fake</th><th></th></tr></thead><tbody>")
        for original, fake in pairs[:sample]:
            cells = []
            for vid in (original, fake):
                thumb, series = _face_cells(vid, faces, ssim)
                cells.append(f"<td>{thumb}<br>{esc(vid)}</td><td>{sparkline(series.to_numpy())}</td>")
            parts.append(f"<tr>{''.join(cells)}</tr>")
        parts.append("</tbody></table></section>")

    # Latest model
    if run_dir is not None and (run_dir / "metrics.json").exists():
        metrics = json.loads((run_dir / "metrics.json").read_text())
        rows = [{"": name, **{k: metrics[key].get(k) for k in ("log_loss", "roc_auc", "accuracy", "balanced_accuracy",
                                                              "brier", "n")}}
                for name, key in (("model", "overall"), ("class prior", "prior"))]
        parts.append(f"<section id='model'><h2>Model: {esc(str(metrics.get('model')))} "
                     f"({esc(str(metrics.get('validation')))})</h2>{_table(pd.DataFrame(rows).round(4))}<div class='row'>")
        for name in ("roc", "calibration", "scores"):
            plot = run_dir / "plots" / f"{name}.png"
            if plot.exists():
                parts.append(f"<img class='chart' alt='{name}' src='{_file_data_uri(plot)}'>")
        parts.append("</div>")
        oof_path = run_dir / "oof_predictions.csv"
        if oof_path.exists():
            oof = pd.read_csv(oof_path)
            oof["error"] = (oof.label.eq("FAKE").astype(float) - oof.p_fake).abs()
            worst = oof.sort_values("error", ascending=False).head(10)[["video_id", "label", "p_fake", "status"]]
            parts.append(f"<h3>Videos the model gets most wrong</h3>{_table(worst.round(3))}")
        parts.append("</section>")

    style = ("body{font-family:sans-serif;margin:24px;color:#222} .row{display:flex;flex-wrap:wrap;gap:24px;"
             "align-items:flex-start} table{border-collapse:collapse;margin:6px 0} td,th{padding:3px 8px;"
             "border-bottom:1px solid #ddd;text-align:left} .chart{max-width:480px} .thumb{width:64px;height:64px}"
             f" .REAL{{color:{REAL_COLOR};font-weight:bold}} .FAKE{{color:{FAKE_COLOR};font-weight:bold}}"
             " .muted{color:#777} section{margin-bottom:32px}")
    script = ("function filterRows(l){document.querySelectorAll('#sample tbody tr').forEach(r=>{"
              "r.style.display=(l==='all'||r.dataset.label===l)?'':'none'})}"
              "function sortRows(c){const b=document.querySelector('#sample tbody');[...b.rows].sort((x,y)=>"
              "x.cells[c].textContent.localeCompare(y.cells[c].textContent,undefined,{numeric:true}))"
              ".forEach(r=>b.appendChild(r))}")
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{esc(title)}</title><style>{style}</style>"
            f"</head><body>{''.join(parts)}<script>{script}</script></body></html>")
