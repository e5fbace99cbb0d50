"""Quiet by default: the log levels dfp sets for Prefect, Dask and TensorFlow by verbosity, the user's own settings
kept, and the plain stage lines quiet mode prints in place of Prefect's log."""

from __future__ import annotations

import logging
import os
import socket

import pytest

from flows import console, runtime

NOISE = ("TF_CPP_MIN_LOG_LEVEL", "DASK_LOGGING__DISTRIBUTED", "PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL",
         "DASK_LOGGING__ABSL")


@pytest.fixture
def environment(monkeypatch, tmp_path):
    """The noise settings unset by the user, and restored after the test."""
    for key in (*NOISE, "DFP_WORKER_LOG"):
        monkeypatch.setenv(key, "restored-after-the-test")
    monkeypatch.setenv("DFP_HOME", str(tmp_path))
    monkeypatch.setattr(runtime, "USER_ENV_KEYS", frozenset())
    monkeypatch.setattr(console, "verbosity", 0)
    return monkeypatch


@pytest.mark.parametrize("level, expected", [
    (0, {"TF_CPP_MIN_LOG_LEVEL": "3", "DASK_LOGGING__DISTRIBUTED": "error",
         "PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL": "WARNING", "DASK_LOGGING__ABSL": "error"}),
    (1, {"TF_CPP_MIN_LOG_LEVEL": "3", "DASK_LOGGING__DISTRIBUTED": "error", "DASK_LOGGING__ABSL": "error"}),
    (2, {"TF_CPP_MIN_LOG_LEVEL": "0"}),
])
def test_each_verbosity_sets_the_levels_the_libraries_read_at_import(level, expected, environment):
    console.quiet_start(level)
    assert {k: os.environ[k] for k in expected} == expected
    for key in set(NOISE) - set(expected):
        assert os.environ[key] == "restored-after-the-test"  # that verbosity leaves the library's own default


def test_a_level_the_user_set_is_kept(environment):
    environment.setenv("TF_CPP_MIN_LOG_LEVEL", "1")
    environment.setattr(runtime, "USER_ENV_KEYS", frozenset({"TF_CPP_MIN_LOG_LEVEL"}))
    console.quiet_start(0)
    assert os.environ["TF_CPP_MIN_LOG_LEVEL"] == "1" and os.environ["DASK_LOGGING__DISTRIBUTED"] == "error"


def _record(msg: str, pathname: str, level=logging.INFO) -> logging.LogRecord:
    return logging.LogRecord("prefect.flow_runs", level, pathname, 1, msg, None, None)


def test_quiet_mode_prints_our_flows_lines_once_and_no_engine_lines(environment, capsys):
    environment.setattr(console, "_echoed", set())
    environment.setattr(runtime, "temporary_server_url", "http://127.0.0.1:4242/api")
    handler = console._StageLines()
    ours = os.path.join(console._FLOWS_DIR, "train.py")
    handler.emit(_record("8 labelled videos (8 usable), 2 folds", ours))
    handler.emit(_record("Finished in state Completed()", "/venv/prefect/flow_engine.py"))
    handler.emit(_record("View at http://127.0.0.1:4242/runs/flow-run/1", "/venv/prefect/flow_engine.py"))
    handler.emit(_record("refused", ours, logging.WARNING))  # Prefect's console handler shows warnings
    console.say("8 labelled videos (8 usable), 2 folds")  # the same line as a summary: printed once
    assert capsys.readouterr().out == "8 labelled videos (8 usable), 2 folds\n"


def test_prefect_links_only_for_a_server_of_the_users(environment, capsys):
    environment.setattr(console, "_echoed", set())
    link = _record("View at http://prefect.example/runs/flow-run/1", "/venv/prefect/flow_engine.py")
    environment.setattr(runtime, "temporary_server_url", "http://127.0.0.1:4242/api")
    assert not console._no_temporary_links(link)
    environment.setattr(runtime, "temporary_server_url", None)
    assert console._no_temporary_links(link)
    console._StageLines().emit(link)
    assert capsys.readouterr().out == "View at http://prefect.example/runs/flow-run/1\n"


def test_a_dask_address_is_parsed_and_must_answer():
    with pytest.raises(ValueError, match=r"'tcp://host' is not a scheduler address"):
        runtime.check_dask_address("tcp://host")
    with pytest.raises(ValueError, match=r"'http://host:8786' is not a scheduler address"):
        runtime.check_dask_address("http://host:8786")
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        runtime.check_dask_address(f"tcp://127.0.0.1:{port}")
        runtime.check_dask_address(f"127.0.0.1:{port}")  # distributed reads a bare host:port as tcp
    with pytest.raises(ValueError, match=r"no Dask scheduler answers there \(connection refused\)"):
        runtime.check_dask_address(f"tcp://127.0.0.1:{port}")


@pytest.mark.parametrize("level, preload", [(0, True), (1, True), (2, False)])
def test_quiet_local_workers_write_their_stderr_to_a_log_file(level, preload, environment, tmp_path):
    console.quiet_start(level)
    kwargs = runtime.make_task_runner(workers=1, dask_address=None).cluster_kwargs
    assert (kwargs.get("preload") == ["flows.worker_log"]) is preload
    assert os.environ.get("DFP_WORKER_LOG") == (str(tmp_path / "logs" / "workers.log") if preload else None)


def test_the_worker_preload_sends_stderr_to_the_log(tmp_path):
    import subprocess
    import sys

    from tests.conftest import REPO

    code = ("import os, sys; from flows import worker_log; worker_log.dask_setup(None); "
            "sys.stderr.write('to the log\\n'); sys.stderr.flush(); os.write(2, b'from C\\n')")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO,
                            env={**os.environ, "DFP_WORKER_LOG": str(tmp_path / "w.log"), "PYTHONPATH": str(REPO)})
    assert result.returncode == 0 and result.stderr == ""
    assert (tmp_path / "w.log").read_text() == "to the log\nfrom C\n"


def test_quiet_mode_hides_the_moved_dashboard_warning(environment):
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        console.quiet_start(0)
        warnings.warn("Port 8787 is already in use.\nPerhaps you already have a cluster running?", UserWarning,
                      stacklevel=1)
        warnings.warn("something else", UserWarning, stacklevel=1)
    assert [str(w.message) for w in caught] == ["something else"]


def test_a_library_whose_start_up_lines_no_level_silences_is_imported_quietly(tmp_path):
    import subprocess
    import sys

    from tests.conftest import REPO

    (tmp_path / "chatty.py").write_text("import os\nos.write(2, b'I0000 port.cc] oneDNN custom operations\\n')\n")
    code = ("import sys; from flows import console; console.quiet_start(0); console.import_quietly('chatty'); "
            "sys.stderr.write('after the import\\n')")
    env = {**os.environ, "DFP_HOME": str(tmp_path / "home"), "PYTHONPATH": f"{REPO}:{tmp_path}"}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, env=env)
    assert result.returncode == 0 and result.stderr == "after the import\n"  # stderr is back after the import
    assert (tmp_path / "home" / "logs" / "workers.log").read_text() == "I0000 port.cc] oneDNN custom operations\n"


def test_a_progress_bar_counts_the_step_and_leaves_no_line():
    import io

    stream = io.StringIO()
    with console.progress("crop descriptor computation", 3, stream=stream) as advance:
        for _ in range(3):
            advance()
    shown = stream.getvalue()
    assert "crop descriptor computation" in shown and "3/3" in shown
    assert "\x1b[2K" in shown  # the bar's line is erased when the step is done (transient)


def test_the_worker_log_rolls_over_past_its_size(tmp_path, monkeypatch):
    monkeypatch.setenv("DFP_HOME", str(tmp_path))
    monkeypatch.setattr(console, "WORKER_LOG_BYTES", 100)
    log = console.worker_log()
    log.write_bytes(b"x" * 50)
    assert console.worker_log() == log and log.stat().st_size == 50  # small: appended to
    log.write_bytes(b"y" * 150)
    assert console.worker_log() == log and not log.exists()  # rolled over, a fresh one starts
    assert (tmp_path / "logs" / "workers.log.1").read_bytes() == b"y" * 150


def test_the_verbosity_may_come_before_the_command(tmp_path, capsys):
    from flows import cli

    assert cli._verbosity_after_command(["-vv", "train", "C"]) == ["train", "-vv", "C"]
    assert cli._verbosity_after_command(["-v", "--verbose", "score", "V"]) == ["score", "-v", "--verbose", "V"]
    assert cli._verbosity_after_command(["train", "-v", "C"]) == ["train", "-v", "C"]
    assert cli._verbosity_after_command(["-v"]) == ["-v"]
    missing, out = str(tmp_path / "no-cache"), str(tmp_path / "run")
    assert cli.main(["-v", "train", missing, "--out", out]) == cli.main(["train", "-v", missing, "--out", out]) == 2
    before, after = capsys.readouterr().err.splitlines()
    assert before == after and "no-cache" in before
