"""The quality benchmark's CI tier on the real development clips: one split seed of the best model on the first
4 s of each clip, from a fresh extraction when its cache is empty, checked against the figures committed in
bench/results/quality_ci.json (made by the command CI_TIER names). The full-length figures are quality.json's,
from `python bench/quality.py`; the tier extracts about a third of the frames, so CI stays well under its limit."""

import json

import pytest

from bench import quality
from tests.conftest import shared_dataset

COMMITTED = quality.ROOT / "bench" / "results" / "quality_ci.json"
CACHE = quality.ROOT / "bench" / ".cache" / "quality-ci"  # one extraction setting per cache
CI_TIER = ["--max-seconds", "4", "--models", "crop_linear", "--seeds", "0", "--bootstrap", "200", "--ood",
           "--cache", str(CACHE)]
TOLERANCE = 0.05  # AUC; the full benchmark's spread over split seeds is 0.01-0.03


@pytest.mark.slow
def test_the_quality_tier_reproduces_the_committed_seed_0_figures(tmp_path):
    datasets = [shared_dataset("ffpp-dev"), shared_dataset("ffpp-mini"), shared_dataset("dfdc-mini") / "train_sample_videos"]
    out = tmp_path / "quality.json"
    quality.main([*map(str, datasets), *CI_TIER, "--out", str(out)])
    mine = json.loads(out.read_text())
    assert mine["clips"] == 130 and mine["groups"] == 26 and mine["max_seconds"] == 4
    run = mine["runs"][0]
    assert (run["model"], run["seed"]) == ("crop_linear", 0)
    assert run["all"]["n"] == 130 and run["ffpp_c23"]["n"] == 97 and run["cross_compression"]["n"] == 25

    committed_file = json.loads(COMMITTED.read_text())
    assert (committed_file["max_seconds"], committed_file["clips"]) == (4, 130)  # the same tier was committed
    committed = next(r for r in committed_file["runs"] if (r["model"], r["seed"]) == ("crop_linear", 0))
    for section in ("all", "ffpp_c23", "cross_compression"):
        assert run[section]["roc_auc"] == pytest.approx(committed[section]["roc_auc"], abs=TOLERANCE), section
    assert run["all"]["log_loss"] == pytest.approx(committed["all"]["log_loss"], abs=0.02)
    assert run["all"]["log_loss"] < run["all"]["prior_log_loss"]  # better than the prior, as committed
    assert run["ffpp_c23"]["roc_auc"] > 0.75  # far from chance even on 4 s per clip
