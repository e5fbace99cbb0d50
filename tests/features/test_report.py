"""features/visuals/report.py: the report's sections from small tables, and text that looks like HTML shown as text."""

import json

import cv2
import numpy as np
import pandas as pd

from features.visuals.report import build_report, sparkline

EVIL = "<script>alert('x')</script>"


def _tables(video_ids: list[str], labels: list[str | None], statuses: list[str], errors: list[str | None]):
    n = len(video_ids)
    videos = pd.DataFrame({
        "video_id": video_ids, "label": labels, "status": statuses, "error": errors,
        "error_step": [("decode" if s == "failed" else None) for s in statuses],
        "split": ["train"] * n, "dataset": [v.split("/")[0] for v in video_ids], "method": [None] * n,
        "original": [None] * n, "leakage_group": [f"g{i}" for i in range(n)], "total_s": np.linspace(1, 2, n),
        "face_detection_rate": [1.0] * n,
    })
    jpeg = cv2.imencode(".jpg", np.random.default_rng(0).integers(0, 255, (32, 32, 3), np.uint8))[1].tobytes()
    faces = pd.DataFrame({"video_id": video_ids, "is_main": True, "frame_index": 0, "crop_jpeg": [jpeg] * n})
    ssim = pd.DataFrame([{"video_id": v, "track_id": 0, "frame_index": i, "is_main": True, "ssim": 0.9 + 0.01 * i}
                         for v in video_ids for i in range(5)])
    return videos, faces, ssim


def test_a_video_id_that_looks_like_html_is_shown_as_text():
    videos, faces, ssim = _tables([f"demo/{EVIL}", "demo/plain", "demo/broken"], ["FAKE", "REAL", None],
                                  ["ok", "ok", "failed"], [None, None, f"decode failed: {EVIL}"])
    page = build_report(videos, faces, ssim, title=f"report of {EVIL}")
    assert page.count("<script>") == 1  # the page's own filter and sort script, nothing injected
    assert "alert(" not in page.replace("alert(&#39;x&#39;)", "")
    assert page.count("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;") == 4  # title, h1, sample row, error
    assert "<tr data-label='FAKE'>" in page and "<tr data-label='REAL'>" in page
    assert "<h3>Failed videos</h3>\n<table class='failed'>" in page


def test_sections_and_model_from_a_run(tmp_path):
    videos, faces, ssim = _tables(["demo/a", "demo/b"], ["REAL", "FAKE"], ["ok", "ok"], [None, None])
    videos.loc[1, "original"] = "a.mp4"
    run = tmp_path / "run"
    (run / "plots").mkdir(parents=True)
    metric = {"log_loss": 0.3, "roc_auc": 0.9, "accuracy": 0.8, "balanced_accuracy": 0.8, "brier": 0.1, "n": 2}
    (run / "metrics.json").write_text(json.dumps({"model": "crop_linear", "validation": "5-fold grouped",
                                                  "overall": metric, "prior": {**metric, "roc_auc": None}}))
    cv2.imwrite(str(run / "plots" / "roc.png"), np.full((20, 20, 3), 128, np.uint8))
    pd.DataFrame({"video_id": ["demo/a", "demo/b"], "label": ["REAL", "FAKE"], "p_fake": [0.2, 0.3],
                  "status": ["ok", "ok"]}).to_csv(run / "oof_predictions.csv", index=False)
    evaluation = run / "evaluations" / "wild-1234abcd"
    evaluation.mkdir(parents=True)
    (evaluation / "metrics.json").write_text(json.dumps({
        "overall": {"n": 9, "roc_auc": 0.61, "log_loss": 0.8}, "prior": {"log_loss": 0.7},
        "ood": {"flagged": {"n": 4, "roc_auc": 0.5, "log_loss": 0.69, "prior_log_loss": 0.7},
                "unflagged": {"n": 5, "roc_auc": 0.83, "log_loss": 0.41, "prior_log_loss": 0.69}}}))
    page = build_report(videos, faces, ssim, title="t", run_dir=run)
    evaluations = page[page.index("<h3>Evaluations on other clips"):page.index("Videos the model gets most wrong")]
    for row in (("wild-1234abcd", "all", "9", "0.61", "0.8", "0.7"),
                ("wild-1234abcd", "flagged out of distribution", "4", "0.5", "0.69", "0.7"),
                ("wild-1234abcd", "in distribution", "5", "0.83", "0.41", "0.69")):
        assert "<td>" + "</td><td>".join(row) + "</td>" in evaluations.replace("\n", ""), row
    for section in ("dataset", "health", "videos", "pairs", "model"):
        assert f"<section id='{section}'>" in page
    assert "<h2>Model: crop_linear (5-fold grouped)</h2>" in page
    assert "<img class='chart' alt='roc' src='data:image/png;base64," in page
    assert page.count("<tr><td><img") == 1  # the fake beside its original
    assert "<p>None.</p>" in page  # no failed videos
    assert page.index("demo/b") < page.index("demo/a", page.index("Videos the model gets most wrong"))


def test_sparkline_needs_two_values():
    assert sparkline(np.array([0.5])) is None
    line = sparkline(np.array([0.0, 1.0]), width=10, height=10)
    assert line.points == "0.0,8.0 10.0,2.0"
