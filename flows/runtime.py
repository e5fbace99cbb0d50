"""How flows run here: telemetry off, thread pools capped, a local Prefect server, and the Dask task runner.

Nothing in this module imports Prefect at import time, so `configure_environment()` can run before it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

# What the user set before dfp touched the environment: their values win over dfp's defaults.
USER_ENV_KEYS = frozenset(os.environ)
# The URL of the Prefect server this process started for one command, while it runs (None: the user's server).
temporary_server_url: str | None = None

# Set for every process we start: no telemetry, quiet TensorFlow, one thread per library.
QUIET_ENV = {
    "DO_NOT_TRACK": "1",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "TF_CPP_MIN_LOG_LEVEL": "2",
}
WORKER_THREAD_ENV = {
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "TF_NUM_INTRAOP_THREADS": "1",
    "TF_NUM_INTEROP_THREADS": "1",
    "OPENCV_FOR_THREADS_NUM": "1",
}


def configure_environment() -> None:
    """Turn off telemetry before Prefect is imported; keep values the user set."""
    for key, value in QUIET_ENV.items():
        os.environ.setdefault(key, value)


def dfp_home() -> Path:
    """Where dfp keeps its local Prefect database and logs (DFP_HOME, default ~/.local/share/dfp)."""
    return Path(os.environ.get("DFP_HOME", Path.home() / ".local" / "share" / "dfp")).expanduser()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=1) as response:
            return response.status == 200
    except OSError:
        return False


@contextlib.contextmanager
def prefect_server(timeout_s: float = 90) -> Iterator[str]:
    """A Prefect API for this run: PREFECT_API_URL when set, else a server started on 127.0.0.1.

    Without a configured API, Prefect would start an ephemeral server in every Dask worker process on one
    SQLite file ("database is locked"). One local server for the whole run avoids that. Its database lives in
    DFP_HOME so run history persists; a second concurrent run gets a temporary database of its own.
    """
    if os.environ.get("PREFECT_API_URL"):
        yield os.environ["PREFECT_API_URL"]
        return

    home = dfp_home() / "prefect"
    home.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as stack:
        lock = stack.enter_context(open(home / "server.lock", "w"))
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:  # another dfp run owns the persistent database
            home = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="dfp-prefect-")))
        port = _free_port()
        url = f"http://127.0.0.1:{port}/api"
        env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
        env.update(QUIET_ENV)
        env.update({
            "PREFECT_HOME": str(home),
            "PREFECT_UI_ENABLED": "false",
            "PREFECT_SERVER_UI_ENABLED": "false",
            "PREFECT_SERVER_API_HOST": "127.0.0.1",
            "PREFECT_SERVER_API_PORT": str(port),
        })
        log_path = home / "server.log"
        log = stack.enter_context(open(log_path, "ab"))
        process = subprocess.Popen(
            [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)],
            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        stack.callback(_stop, process)
        # Importing Prefect takes about as long as the server takes to start: do it meanwhile.
        from prefect.settings import PREFECT_API_URL, get_current_settings, temporary_settings

        if get_current_settings().api.url:  # a profile names a server: use it, not ours
            yield str(get_current_settings().api.url)
            return
        stack.callback(_flush_prefect_logs)  # runs before the server stops
        deadline = time.monotonic() + timeout_s
        while not _healthy(url):
            if process.poll() is not None or time.monotonic() > deadline:
                tail = log_path.read_text(errors="replace")[-2000:]
                raise RuntimeError(f"local Prefect server did not start (see {log_path}):\n{tail}")
            time.sleep(0.2)
        global temporary_server_url
        temporary_server_url = url
        stack.callback(globals().__setitem__, "temporary_server_url", None)
        os.environ["PREFECT_API_URL"] = url  # inherited by local Dask worker processes
        stack.callback(os.environ.pop, "PREFECT_API_URL", None)
        stack.enter_context(temporary_settings(updates={PREFECT_API_URL: url}))
        yield url


def _flush_prefect_logs() -> None:
    """Send queued logs and events while the server is still up."""
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    for worker in (APILogWorker, EventsWorker):
        worker.drain_all(timeout=5)


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def cluster_address(dask_address: str | None) -> str | None:
    """The Dask scheduler to use: the one given, else DFP_DASK_ADDRESS (set on served deployments), else None."""
    return dask_address or os.environ.get("DFP_DASK_ADDRESS") or None


DASK_SCHEMES = ("tcp", "tls", "ws", "wss", "ucx")


def check_dask_address(address: str, timeout_s: float = 1.5) -> None:
    """Refuse a Dask scheduler address that is malformed or where nothing answers, in about a second (distributed
    itself would retry for its whole connect timeout, then print several tracebacks)."""
    from urllib.parse import urlsplit

    fix = "give the scheduler's address as tcp://host:port, or leave --dask-address out to use a local cluster"
    parts = urlsplit(address if "://" in address else f"tcp://{address}")
    try:
        port = parts.port
    except ValueError:
        port = None
    if parts.scheme not in DASK_SCHEMES or not parts.hostname or port is None or parts.path not in ("", "/"):
        raise ValueError(f"--dask-address {address!r} is not a scheduler address: {fix}")
    try:
        socket.create_connection((parts.hostname, port), timeout=timeout_s).close()
    except OSError as exc:
        reason = "timed out" if isinstance(exc, TimeoutError) else (exc.strerror or type(exc).__name__).lower()
        raise ValueError(f"--dask-address {address}: no Dask scheduler answers there ({reason}): start one "
                         f"(`dask scheduler`) or {fix.split(', or ')[1]}") from None


def make_task_runner(workers: int | None, dask_address: str | None):
    """A DaskTaskRunner: the given cluster, or a LocalCluster of single-threaded process workers."""
    from prefect_dask import DaskTaskRunner

    dask_address = cluster_address(dask_address)
    if dask_address:
        return DaskTaskRunner(address=dask_address)
    n_workers = workers or os.cpu_count() or 1
    # The workers log as this process does (flows.console sets the levels for -v and -vv).
    env = {**WORKER_THREAD_ENV, **{k: os.environ.get(k, v) for k, v in QUIET_ENV.items()}}
    if os.environ.get("PREFECT_API_URL"):
        env["PREFECT_API_URL"] = os.environ["PREFECT_API_URL"]
    cluster_kwargs = {"n_workers": n_workers, "threads_per_worker": 1, "processes": True, "dashboard_address": None,
                      "env": env}
    if os.environ.get("DFP_WORKER_LOG"):  # quiet: the workers' stderr goes to a log file (flows/worker_log.py)
        cluster_kwargs["preload"] = ["flows.worker_log"]
    return DaskTaskRunner(cluster_class="distributed.LocalCluster", cluster_kwargs=cluster_kwargs)


def _missing_paths(paths: list[str]) -> list[str]:
    return [p for p in paths if not os.path.exists(p)]


def check_shared_storage(client, written: list[str], read: list[str] = ()) -> None:
    """Refuse to start when a worker of an existing cluster cannot see a local path the run uses.

    Workers write the cache (and models) themselves: with a local path, a worker on another machine would
    write to its own disk, and its results would never reach the cache the driver reads. Object-store URLs
    need no check. `written` paths get a marker file the workers must see; `read` paths must merely exist.
    """
    import uuid

    from features.store.rundir import is_local

    markers = []
    try:
        for path in written:
            if is_local(path):
                Path(path).mkdir(parents=True, exist_ok=True)
                marker = Path(path).resolve() / f".dfp-visible-{uuid.uuid4().hex}"
                marker.touch()
                markers.append(str(marker))
        wanted = markers + [str(Path(p).resolve()) for p in read if is_local(p)]  # workers have other cwds
        if not wanted:
            return
        missing = {addr: lost for addr, lost in client.run(_missing_paths, wanted).items() if lost}
    finally:
        for marker in markers:
            with contextlib.suppress(OSError):
                os.remove(marker)
    if missing:
        lines = [f"  {addr}: {', '.join(str(Path(p).parent) if '.dfp-visible-' in p else p for p in lost)}"
                 for addr, lost in sorted(missing.items())]
        raise RuntimeError("these Dask workers cannot see local paths this run uses:\n" + "\n".join(lines)
                           + "\nUse an object-store cache and run directory (s3://...) or a filesystem mounted at "
                             "the same path on every machine.")
