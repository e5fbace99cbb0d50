"""flows/demo.py: the whole job on generated clips, end to end, with a real Dask cluster."""

import json

import pandas as pd
import pytest

from flows.demo import DemoResult, prepare_clips, run_demo


@pytest.fixture(scope="module")
def demo_run(prefect_harness, tmp_path_factory) -> tuple[DemoResult, list[str]]:
    lines: list[str] = []
    result = run_demo(tmp_path_factory.mktemp("demo") / "out", clips=8, frames=30, seed=0, workers=2, say=lines.append)
    return result, lines


@pytest.mark.slow
def test_the_demo_writes_every_output_and_scores_only_the_held_out_pair(demo_run):
    result, _ = demo_run
    for path in (result.cache / "videos", result.run / "metrics.json", result.predictions, result.report):
        assert path.exists()
    held = json.loads((result.out / "demo.json").read_text())["held_out"]
    assert sorted(held.values()) == ["FAKE", "REAL"]
    predictions = pd.read_csv(result.predictions)
    assert sorted(predictions.filename) == sorted(held)
    assert predictions.label.between(0, 1).all()
    assert {c.filename: c.label for c in result.held_out} == held
    assert {c.filename: c.p_fake for c in result.held_out} == dict(zip(predictions.filename, predictions.label,
                                                                       strict=True))


@pytest.mark.slow
def test_the_held_out_pair_is_never_trained_on(demo_run):
    result, _ = demo_run
    held = json.loads((result.out / "demo.json").read_text())["held_out"]
    trained = pd.read_csv(result.run / "training_videos.csv").video_id
    assert len(trained) == 6 and not any(v.rsplit("/", 1)[-1] + ".mp4" in held for v in trained)
    oof = pd.read_csv(result.run / "oof_predictions.csv")
    assert len(oof) == 6 and not oof.video_id.str.startswith("held-out/").any()
    metrics = json.loads((result.run / "metrics.json").read_text())
    assert metrics["model"] == "crop_linear" and metrics["overall"]["n"] == 6
    assert result.cv_auc == metrics["overall"]["roc_auc"]


@pytest.mark.slow
def test_the_report_has_the_model_and_the_held_out_clips_unlabelled(demo_run):
    result, _ = demo_run
    page = result.report.read_text(encoding="utf-8")
    assert "<section id='model'>" in page and "<h2>Model: crop_linear (5-fold grouped)</h2>" in page
    assert page.count("data-label='unlabelled'") == 2


@pytest.mark.slow
def test_one_line_per_stage_ending_with_the_report_and_the_next_step(demo_run):
    result, lines = demo_run
    assert 5 <= len(lines) <= 8
    assert lines[0].startswith("generated 8 clips x 30 frames")
    assert lines[1].startswith("extract: 8 ok, 0 no face, 0 failed")  # every demo clip has a face
    assert str(result.report) in lines[-2]
    assert "dfp extract" in lines[-1] and "dfp train" in lines[-1]


@pytest.mark.slow
def test_a_second_run_reuses_the_clips_and_the_cache(demo_run, prefect_harness):
    result, _ = demo_run
    lines: list[str] = []
    again = run_demo(result.out, clips=8, frames=30, seed=0, workers=2, say=lines.append)
    assert lines[0].startswith("reusing 8 clips")
    assert lines[1].startswith("extract: 0 ok, 0 no face, 0 failed, 8 cached")
    assert again.held_out == result.held_out  # same clips, same model, same scores


def test_clips_are_reused_only_when_generated_with_the_same_settings(tmp_path):
    data, held_out, labels, generated = prepare_clips(tmp_path, clips=6, frames=2, seed=1, regenerate=False, workers=1)
    assert generated and sorted(labels.values()) == ["FAKE", "REAL"]
    assert len(json.loads((data / "metadata.json").read_text())) == 4 and len(list(held_out.iterdir())) == 2
    (tmp_path / "cache").mkdir()
    assert prepare_clips(tmp_path, 6, 2, 1, False, 1) == (data, held_out, labels, False)
    assert (tmp_path / "cache").is_dir()  # reused clips keep their cache
    _, _, _, generated = prepare_clips(tmp_path, 6, 3, 1, False, 1)  # other frames: new clips, the old cache goes
    assert generated and not (tmp_path / "cache").exists()
    assert json.loads((tmp_path / "demo.json").read_text())["frames"] == 3
