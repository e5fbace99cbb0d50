"""Fault matrix, model files: a run directory whose model file was replaced never runs code, names the file."""

from __future__ import annotations

import json
import pickle

import pytest
from sklearn.dummy import DummyClassifier

import flows.train  # noqa: F401 - Prefect sets up its logging at import: here, not inside a captured test
from features import FEATURE_CODE_VERSION
from features.learn.model_files import sha256_file
from flows.cli import main
from tests.features.test_model_files import write_gadget


def _run_with(tmp_path, write_model, record_digest: bool):
    """A run directory as dfp train writes it, with its model file written by `write_model`."""
    run = tmp_path / "run"
    run.mkdir()
    (tmp_path / "cache" / "videos").mkdir(parents=True)  # a cache as dfp evaluate checks it, before the model
    write_model(run / "model.skops")
    card = {"model": "gbm", "model_file": "model.skops", "feature_code_version": FEATURE_CODE_VERSION,
            "extract_configs": {}, "training_data": {"fake_rate": 0.5}}
    if record_digest:  # an attacker who also rewrites the card: the type check still refuses
        card["model_sha256"] = {"model.skops": sha256_file(run / "model.skops")}
    (run / "model_card.json").write_text(json.dumps(card))
    return run


@pytest.mark.parametrize("record_digest", [True, False])
@pytest.mark.parametrize("command", ["evaluate", "score"])
def test_a_gadget_model_file_is_refused_by_evaluate_and_score(tmp_path, capsys, command, record_digest):
    marker = tmp_path / "PAYLOAD-RAN"
    run = _run_with(tmp_path, lambda path: write_gadget(path, marker), record_digest)
    clips = tmp_path / "clips"
    clips.mkdir()
    argv = (["evaluate", str(run), "--cache", str(tmp_path / "cache")] if command == "evaluate" else
            ["score", str(clips), "--model", str(run), "--out", str(tmp_path / "out")])
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"refusing to load {run / 'model.skops'}" in err and "builtins.exec" in err
    assert not marker.exists()


def test_a_pickle_in_place_of_the_model_is_refused_naming_the_file(tmp_path, capsys):
    run = _run_with(tmp_path, lambda path: path.write_bytes(pickle.dumps(DummyClassifier())), record_digest=False)
    assert main(["evaluate", str(run), "--cache", str(tmp_path / "cache")]) == 2
    err = capsys.readouterr().err
    assert f"refusing to load {run / 'model.skops'}: it is not a skops model file" in err


def test_a_model_file_replaced_after_training_fails_its_recorded_digest(tmp_path, capsys):
    run = _run_with(tmp_path, lambda path: write_gadget(path, tmp_path / "m"), record_digest=True)
    write_gadget(run / "model.skops", tmp_path / "other-marker")  # same kind of file, other bytes
    assert main(["evaluate", str(run), "--cache", str(tmp_path / "cache")]) == 2
    assert "sha256 is not the one recorded in the run's model_card.json" in capsys.readouterr().err
