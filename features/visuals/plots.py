"""The notebook's pictures, headless: detections side by side, a frame grid, the zoomed face animation, SSIM."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image
from sklearn.calibration import calibration_curve
from sklearn.metrics import roc_auc_score, roc_curve

from features.learn.video_features import drop_mask

REAL_COLOR, FAKE_COLOR = "#1f77b4", "#d62728"
LABEL_COLORS = {"REAL": REAL_COLOR, "FAKE": FAKE_COLOR}


def _plt():
    import matplotlib  # lazy: the Agg backend must be chosen before pyplot loads, and only drawing needs it

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # lazy: see above

    return plt


def detections_png(rows: list[tuple[str, np.ndarray, np.ndarray, np.ndarray | None]], title: str, path: Path) -> Path:
    """One row per detector: the original frame, every detected face boxed, and the zoomed main face.

    `rows` holds (detector name, RGB frame, boxes (n, 4) x1 y1 x2 y2, RGB crop of the main face or None).
    """
    plt = _plt()
    from matplotlib.patches import Rectangle  # lazy: with pyplot

    fig, axes = plt.subplots(len(rows), 3, figsize=(13, 3.6 * len(rows)), squeeze=False)
    for (name, frame, boxes, crop), ax in zip(rows, axes, strict=True):
        ax[0].imshow(frame)
        ax[0].set_title(f"{name}: original frame")
        ax[1].imshow(frame)
        for x1, y1, x2, y2 in boxes:
            ax[1].add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, color="lime", linewidth=2))
        ax[1].set_title(f"{name}: {len(boxes)} face(s) detected")
        if crop is not None:
            ax[2].imshow(crop)
            ax[2].set_title(f"{name}: main face, zoomed")
        else:
            ax[2].text(0.5, 0.5, "no face found", ha="center", va="center", fontsize=14)
            ax[2].set_title(f"{name}: main face")
        for a in ax:
            a.axis("off")
    fig.suptitle(title, fontsize=14)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def frames_png(frames: list[tuple[int, np.ndarray]], columns: int, title: str, path: Path) -> Path:
    """A grid of frames through the video, each titled with its frame index."""
    plt = _plt()
    rows = max(1, -(-len(frames) // columns))
    h, w = frames[0][1].shape[:2]
    fig, axes = plt.subplots(rows, columns, figsize=(3.2 * columns, 3.2 * rows * h / w + 0.6), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, (index, frame) in zip(axes.ravel(), frames, strict=False):
        ax.imshow(frame)
        ax.set_title(f"frame {index}")
    fig.suptitle(title, fontsize=13)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def face_gif(crops: list[np.ndarray], fps: float, path: Path) -> Path:
    """The zoomed face track as an animated GIF at the video's frame rate."""
    images = [Image.fromarray(c) for c in crops]
    duration = int(round(1000 / fps)) if fps and fps > 0 else 40
    images[0].save(path, save_all=True, append_images=images[1:], duration=duration, loop=0)
    return path


def ssim_png(frame_series: tuple[np.ndarray, np.ndarray], face_series: tuple[np.ndarray, np.ndarray] | None,
             fps: float, drops: np.ndarray, title: str, label: str | None, path: Path) -> Path:
    """Face and frame SSIM between consecutive frames over time, with sharp drops marked."""
    plt = _plt()
    scale = fps if fps and fps > 0 else 1.0
    unit = "s" if fps and fps > 0 else "frames"
    fig, ax = plt.subplots(figsize=(10, 4))
    fi, fv = frame_series
    ax.plot(fi / scale, fv, color="grey", label="whole frame", linewidth=1.2)
    if face_series is not None and len(face_series[0]):
        color = LABEL_COLORS.get(label or "", "black")
        ax.plot(face_series[0] / scale, face_series[1], color=color, label="main face", linewidth=1.5)
        if len(drops):
            values = dict(zip(face_series[0], face_series[1], strict=True))
            ax.scatter(drops / scale, [values[d] for d in drops], color="orange", zorder=3, s=40,
                       label=f"sharp drops ({len(drops)})")
    ax.set(xlabel=f"time ({unit})", ylabel="SSIM with previous frame (1 = identical)", title=title)
    ax.legend(loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def sharp_drops(values: np.ndarray, frames: np.ndarray) -> np.ndarray:
    """Frames where SSIM falls more than 3 robust deviations (and at least 0.02) below its median."""
    if len(values) < 3:
        return np.array([], int)
    return frames[drop_mask(np.asarray(values, np.float64))]


def comparison_png(videos: list[tuple[str, list[np.ndarray], tuple[np.ndarray, np.ndarray] | None, str | None]],
                   fps: float, path: Path) -> Path:
    """Videos side by side: a strip of main-face crops each, and their face SSIM series on one plot.

    `videos` holds (name, a few RGB face crops, (frame indices, face SSIM) or None, label).
    """
    plt = _plt()
    n_crops = max(len(c) for _, c, _, _ in videos) or 1
    fig = plt.figure(figsize=(2.2 * n_crops, 2.2 * len(videos) + 3.5))
    grid = fig.add_gridspec(len(videos) + 1, n_crops, height_ratios=[1] * len(videos) + [1.6])
    for row, (name, crops, _, label) in enumerate(videos):
        for col in range(n_crops):
            ax = fig.add_subplot(grid[row, col])
            ax.axis("off")
            if col < len(crops):
                ax.imshow(crops[col])
            if col == 0:
                ax.set_title(f"{name} ({label or 'unlabelled'})", loc="left", fontsize=10,
                             color=LABEL_COLORS.get(label or "", "black"))
    ax = fig.add_subplot(grid[len(videos), :])
    scale = fps if fps and fps > 0 else 1.0
    for name, _, series, label in videos:
        if series is not None and len(series[0]):
            ax.plot(series[0] / scale, series[1], label=f"{name} ({label or 'unlabelled'})",
                    color=LABEL_COLORS.get(label or "", None), linewidth=1.2)
    ax.set(xlabel="time (s)" if fps else "frame", ylabel="face SSIM with previous frame",
           title="Main-face SSIM between consecutive frames")
    ax.legend(loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def plot_evaluation(frame: pd.DataFrame, out_dir, title: str, score: str = "p_fake") -> dict[str, str]:
    """ROC curve, calibration curve and score distributions as PNG files; returns their paths."""
    plt = _plt()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    y = (frame.label == "FAKE").to_numpy(int)
    p = frame[score].to_numpy(np.float64)
    paths = {}

    fig, ax = plt.subplots(figsize=(5, 5))
    if len(np.unique(y)) == 2:
        fpr, tpr, _ = roc_curve(y, p)
        ax.plot(fpr, tpr, color=FAKE_COLOR, label=f"model (AUC {roc_auc_score(y, p):.3f})")
    ax.plot([0, 1], [0, 1], "--", color="grey", label="chance")
    ax.set(xlabel="false positive rate (REAL called FAKE)", ylabel="true positive rate (FAKE caught)",
           title=f"ROC — {title}")
    ax.legend(loc="lower right")
    paths["roc"] = str(out / "roc.png")
    fig.savefig(paths["roc"], dpi=100, bbox_inches="tight")
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(5, 5))
    bins = max(2, min(10, len(y) // 5))
    frac, mean_p = calibration_curve(y, p, n_bins=bins, strategy="quantile")
    ax.plot(mean_p, frac, "o-", color=FAKE_COLOR, label="model")
    ax.plot([0, 1], [0, 1], "--", color="grey", label="perfectly calibrated")
    ax.set(xlabel="predicted P(FAKE)", ylabel="observed FAKE fraction", title=f"Calibration — {title}",
           xlim=(0, 1), ylim=(0, 1))
    ax.legend(loc="upper left")
    paths["calibration"] = str(out / "calibration.png")
    fig.savefig(paths["calibration"], dpi=100, bbox_inches="tight")
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6, 4))
    edges = np.linspace(0, 1, 21)
    ax.hist(p[y == 0], bins=edges, alpha=0.6, color=REAL_COLOR, label=f"REAL (n={int((y == 0).sum())})")
    ax.hist(p[y == 1], bins=edges, alpha=0.6, color=FAKE_COLOR, label=f"FAKE (n={int((y == 1).sum())})")
    ax.set(xlabel="predicted P(FAKE)", ylabel="videos", title=f"Score distribution — {title}")
    ax.legend()
    paths["scores"] = str(out / "scores.png")
    fig.savefig(paths["scores"], dpi=100, bbox_inches="tight")
    plt.close(fig)
    return paths
