"""Careless command lines get one line naming what is wrong and how to fix it, exit 2, before Prefect, Dask or
TensorFlow are imported (issue #21, "errors in a second"): each test checks, in the finished process, that none of
them was. That is what keeps an error under 3 s; bench/cli_errors.py measures the times."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest

from tests.conftest import REPO

# The imports that cost seconds at start-up: an error must come before any of them.
HEAVY = ("prefect", "prefect_dask", "dask", "distributed", "tensorflow", "keras")
# What `dfp cache` commands import in their bodies only: their errors come before these too.
CACHE_HEAVY = ("deltalake", "pyarrow", "pandas")
# Runs dfp's main, then writes the heavy modules the process imported to the file named by argv[1].
_WRAPPER = f"""
import atexit, json, sys
out = sys.argv.pop(1)
atexit.register(lambda: open(out, "w").write(json.dumps(sorted(m for m in {HEAVY + CACHE_HEAVY} if m in sys.modules))))
from flows.cli import main
sys.exit(main(sys.argv[1:]))
"""


def _dfp(*args, cwd):
    """dfp ARGS in a fresh process: the result and the heavy modules it imported."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "DFP_DASK"))}
    env.update({"DFP_HOME": str(cwd / "dfp-home"), "PYTHONPATH": str(REPO)})
    imported = cwd / "imported.json"
    result = subprocess.run([sys.executable, "-c", _WRAPPER, str(imported), *map(str, args)], env=env, cwd=cwd,
                            capture_output=True, text=True, timeout=60)
    return result, json.loads(imported.read_text())


@pytest.fixture
def cache(tmp_path):
    (tmp_path / "cache" / "videos").mkdir(parents=True)
    return tmp_path / "cache"


@pytest.fixture
def run(tmp_path):
    """A run folder as far as the cheap check sees it: its card and the model file the card names."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "model.skops").write_bytes(b"not read by the cheap check")
    (run / "model_card.json").write_text(json.dumps({"model": "gbm", "model_file": "model.skops"}))
    return run


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nothing listens there once the socket is closed


@pytest.fixture
def delta_cache(tmp_path):
    """A cache in Delta tables as far as the cheap checks see it: a videos table with a transaction log."""
    (tmp_path / "delta" / "videos" / "_delta_log").mkdir(parents=True)
    return tmp_path / "delta"


def _cases(tmp_path, cache, run, delta_cache):
    old = tmp_path / "old-cache"  # a cache in the per-video layout of earlier versions
    (old / "videos").mkdir(parents=True)
    (old / "videos" / "ds%2Fa.parquet").write_bytes(b"PAR1")
    return {
        "evaluate a missing run": (["evaluate", "nope-run", "--cache", cache],
                                   "dfp evaluate: error: run folder nope-run does not exist: give the --out folder of "
                                   "a `dfp train` run"),
        "score a missing clip": (["score", "nope.mp4", "--run", run, "--out", tmp_path / "out"],
                                 "dfp score: error: video nope.mp4 does not exist: give video files"),
        "inspect a missing clip": (["inspect", "nope.mp4"],
                                   "dfp inspect: error: video nope.mp4 does not exist: give the path of a video file"),
        "a Dask address where nothing answers": (
            ["train", cache, "--out", tmp_path / "r", "--dask-address", f"tcp://127.0.0.1:{_closed_port()}"],
            "dfp train: error: --dask-address tcp://127.0.0.1:"),
        "a malformed Dask address": (["evaluate", run, "--cache", cache, "--dask-address", "scheduler"],
                                     "dfp evaluate: error: --dask-address 'scheduler' is not a scheduler address: "
                                     "give the scheduler's address as tcp://host:port"),
        "train a missing cache": (["train", "MISSING", "--out", tmp_path / "r"],
                                  "dfp train: error: cache MISSING does not exist: write one with `dfp extract "
                                  "DATASET --cache MISSING`"),
        "report a missing run": (["report", cache, "--run", "nope", "--out", tmp_path / "r.html"],
                                 "dfp report: error: run folder nope does not exist"),
        "folds 0": (["train", cache, "--out", tmp_path / "r", "--folds", "0"],
                    "dfp train: error: --folds (folds): must be at least 2, got 0"),
        "an unknown model kind": (["train", cache, "--out", tmp_path / "r", "--model", "svm"],
                                  'dfp train: error: Invalid value "svm" for --model. Choose from: '),
        "a run folder without a card": (["evaluate", cache, "--cache", cache],
                                        f"dfp evaluate: error: {cache} is not a training run: it has no "
                                        "model_card.json"),
        "cache info without a cache": (["cache", "info"], 'dfp cache info: error: Command "cache info" parameter '
                                       "CACHE requires an argument. (`dfp cache info --help` shows the usage)"),
        "cache info of a missing cache": (["cache", "info", "MISSING"],
                                          "dfp cache info: error: cache MISSING does not exist: write one with `dfp "
                                          "extract DATASET --cache MISSING`"),
        "cache compact of a folder that is no cache": (["cache", "compact", tmp_path],
                                                       f"dfp cache compact: error: {tmp_path} is not a cache written "
                                                       "by `dfp extract` (it has no videos table)"),
        "cache vacuum of a per-video cache": (["cache", "vacuum", old],
                                              f"dfp cache vacuum: error: {old} holds a cache in the per-video layout "
                                              "of earlier versions (one Parquet file per video), and this version "
                                              "keeps its cache in Delta Lake tables: convert it once with `dfp cache "
                                              f"migrate {old}`"),
        "cache history of a per-video cache": (["cache", "history", old],
                                               f"dfp cache history: error: {old} holds a cache in the per-video "
                                               "layout"),
        "extract into a per-video cache": (["extract", tmp_path, "--cache", old],
                                           f"dfp extract: error: {old} holds a cache in the per-video layout"),
        "train on a per-video cache": (["train", old, "--out", tmp_path / "r"],
                                       f"dfp train: error: {old} holds a cache in the per-video layout"),
        "cache vacuum with a negative retention": (["cache", "vacuum", delta_cache, "--retention-hours", "-1"],
                                                   "dfp cache vacuum: error: --retention-hours: must be at least 0, "
                                                   "got -1"),
        "cache history of an unknown table": (["cache", "history", delta_cache, "--table", "crops"],
                                              'dfp cache history: error: Invalid value "crops" for --table. Choose '
                                              'from: "videos", "faces", "ssim", "features", "descriptors".'),
        "cache migrate of a missing cache": (["cache", "migrate", "MISSING"],
                                             "dfp cache migrate: error: cache MISSING does not exist"),
        "cache migrate of a Delta cache": (["cache", "migrate", delta_cache],
                                           f"dfp cache migrate: error: {delta_cache} already holds Delta tables: "
                                           "nothing to migrate"),
        "an unknown cache command": (["cache", "bogus", cache],
                                     "dfp cache: error: unknown command 'bogus' (`dfp cache --help` lists the "
                                     "commands)"),
    }


CASES = ["evaluate a missing run", "score a missing clip", "inspect a missing clip",
         "a Dask address where nothing answers", "a malformed Dask address", "train a missing cache",
         "report a missing run", "folds 0", "an unknown model kind", "a run folder without a card",
         "cache info without a cache", "cache info of a missing cache", "cache compact of a folder that is no cache",
         "cache vacuum of a per-video cache", "cache history of a per-video cache", "extract into a per-video cache",
         "train on a per-video cache",
         "cache vacuum with a negative retention", "cache history of an unknown table",
         "cache migrate of a missing cache", "cache migrate of a Delta cache", "an unknown cache command"]


@pytest.mark.parametrize("case", CASES)
def test_a_careless_command_gets_one_line_and_exit_2_before_any_heavy_import(case, tmp_path, cache, run,
                                                                            delta_cache):
    argv, message = _cases(tmp_path, cache, run, delta_cache)[case]
    result, imported = _dfp(*argv, cwd=tmp_path)
    assert result.returncode == 2, result.stderr[-2000:]
    assert result.stderr.startswith(message), result.stderr
    assert len(result.stderr.splitlines()) == 1 and result.stdout == ""
    heavy = imported if argv[0] == "cache" else [m for m in imported if m in HEAVY]
    assert heavy == [], f"{case}: imported {heavy} before the error"
    assert not (tmp_path / "r").exists() and not (tmp_path / "out").exists()  # nothing was written


def test_a_dask_address_where_nothing_answers_says_why(tmp_path, cache):
    port = _closed_port()
    result, _ = _dfp("train", cache, "--out", tmp_path / "r", "--dask-address", f"tcp://127.0.0.1:{port}",
                     cwd=tmp_path)
    assert result.stderr.strip() == (f"dfp train: error: --dask-address tcp://127.0.0.1:{port}: no Dask scheduler "
                                     "answers there (connection refused): start one (`dask scheduler`) or leave "
                                     "--dask-address out to use a local cluster")


def test_the_import_check_sees_a_command_that_gets_as_far_as_prefect(tmp_path, cache):
    """The control for the tests above: an empty but well-formed cache passes the cheap checks, so train starts
    Prefect before it finds no labelled video, and the check reports it."""
    result, imported = _dfp("train", cache, "--out", tmp_path / "r", cwd=tmp_path)
    assert result.returncode != 0
    assert "prefect" in imported
