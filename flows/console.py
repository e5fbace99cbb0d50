"""How loud dfp is: quiet by default (one line per stage and the closing summary), `-v` adds Prefect's logs and
`-vv` Dask's and TensorFlow's too (without it, local Dask workers write their stderr to DFP_HOME/logs/workers.log).

Nothing here imports Prefect, Dask or TensorFlow: `quiet_start` runs before them, because TensorFlow reads its log
level and Dask its logging config only when they are imported (here and in every local worker process, which
inherits this environment).
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

from flows import runtime

# Environment read at import by TensorFlow, Dask (DASK_LOGGING__<logger>) and Prefect (its console handler), by
# verbosity. A value the user set is kept.
_NOISE_ENV = {
    0: {"TF_CPP_MIN_LOG_LEVEL": "3", "GRPC_VERBOSITY": "ERROR", "DASK_LOGGING__DISTRIBUTED": "error",
        "DASK_LOGGING__TENSORFLOW": "error", "DASK_LOGGING__ABSL": "error",
        "PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL": "WARNING"},
    1: {"TF_CPP_MIN_LOG_LEVEL": "3", "GRPC_VERBOSITY": "ERROR", "DASK_LOGGING__DISTRIBUTED": "error",
        "DASK_LOGGING__TENSORFLOW": "error", "DASK_LOGGING__ABSL": "error"},
    2: {"TF_CPP_MIN_LOG_LEVEL": "0"},
}
_FLOWS_DIR = str(Path(__file__).resolve().parent)
WORKER_LOG_BYTES = 8 << 20  # workers.log is rolled over to workers.log.1 past this size
_echoed: set[str] = set()
verbosity = 0


def quiet_start(level: int) -> None:
    """Set the log levels of Prefect, Dask, TensorFlow and absl for this run (0 quiet, 1 -v, 2 -vv)."""
    global verbosity
    verbosity = max(0, min(level, 2))
    for key, value in _NOISE_ENV[verbosity].items():
        if key not in runtime.USER_ENV_KEYS:
            os.environ[key] = value
    if verbosity < 2:
        for name in ("tensorflow", "absl", "h5py", "numexpr"):
            logging.getLogger(name).setLevel(logging.ERROR)
        # A local cluster's scheduler moves its dashboard to a free port when another holds 8787: not news.
        warnings.filterwarnings("ignore", message=r"Port \d+ is already in use", category=UserWarning)
        if "DFP_WORKER_LOG" not in runtime.USER_ENV_KEYS:
            os.environ["DFP_WORKER_LOG"] = str(worker_log())
    elif "DFP_WORKER_LOG" not in runtime.USER_ENV_KEYS:
        os.environ.pop("DFP_WORKER_LOG", None)
    # Prefect's "View at http://127.0.0.1:…" points to the temporary server, gone when the command ends.
    logging.getLogger("prefect.flow_runs").addFilter(_no_temporary_links)


def worker_log() -> Path:
    """Where a quiet run sends the stderr of its local Dask workers and of TensorFlow's start-up in this process."""
    path = runtime.dfp_home() / "logs" / "workers.log"
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists() and path.stat().st_size > WORKER_LOG_BYTES:  # appended to by every run: keep one old copy
        path.replace(path.with_suffix(".log.1"))
    return path


def import_quietly(module: str) -> None:
    """Import a library whose C++ start-up lines no log level silences (TensorFlow) with the process's stderr sent
    to the worker log meanwhile, unless -vv. For commands that load it in this process (dfp inspect)."""
    import importlib

    if verbosity >= 2 or module in sys.modules:
        return
    sys.stderr.flush()
    saved = os.dup(2)
    fd = os.open(worker_log(), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.dup2(fd, 2)
        importlib.import_module(module)
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(fd)


def _no_temporary_links(record: logging.LogRecord) -> bool:
    return not (runtime.temporary_server_url and str(record.msg).startswith("View at "))


class _StageLines(logging.Handler):
    """Quiet mode: our flows' own INFO lines as plain lines on stdout, once each; Prefect's engine lines stay out."""

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno >= logging.WARNING:  # Prefect's console handler shows those
            return
        link = str(record.msg).startswith("View at ") and not runtime.temporary_server_url
        if not (link or record.pathname.startswith(_FLOWS_DIR)):
            return
        say(record.getMessage())


def show_stages() -> None:
    """Call after Prefect is imported (its logging setup replaces the handlers of its loggers)."""
    logger = logging.getLogger("prefect.flow_runs")
    if verbosity == 0 and not any(isinstance(h, _StageLines) for h in logger.handlers):
        logger.addHandler(_StageLines())


def say(line: str) -> None:
    """Print a line for the user once (a flow's stage line and the command's summary are often the same)."""
    if line in _echoed:
        return
    _echoed.add(line)
    print(line, file=sys.stdout, flush=True)


@contextlib.contextmanager
def progress(label: str, total: int, stream=None) -> Iterator[Callable[[], None]]:
    """A progress bar on stderr for one long step (features, descriptors, folds, scoring); yields `advance`.

    The bar is transient: on a terminal it shows while the step runs and leaves no line, so the stage lines
    and the closing summary stay what the user reads; -v and -vv show it too, beside the logs."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    out = Console(stderr=True) if stream is None else Console(file=stream, force_terminal=True, width=100)
    with Progress(*columns, console=out, transient=True) as bar:
        task = bar.add_task(label, total=total)
        yield lambda: bar.advance(task)
