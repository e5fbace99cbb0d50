"""Real components for the operations tests: `prefect server start` and `dask scheduler` + `dask worker` processes.

Everything listens on 127.0.0.1, keeps its state in a temporary folder, and has telemetry off.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from flows.runtime import QUIET_ENV, WORKER_THREAD_ENV, _free_port

BIN = Path(sys.executable).parent


def _wait(check, what: str, log: Path, process: subprocess.Popen, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not start:\n{log.read_text(errors='replace')[-3000:]}")
        time.sleep(0.3)


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


@dataclass
class PrefectServer:
    url: str
    process: subprocess.Popen

    @classmethod
    def start(cls, home: Path) -> PrefectServer:
        port = _free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
        env.update(QUIET_ENV, PREFECT_HOME=str(home), PREFECT_SERVER_UI_ENABLED="false", PREFECT_UI_ENABLED="false")
        log = home / "server.log"
        home.mkdir(parents=True, exist_ok=True)
        process = subprocess.Popen([str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
                                   env=env, stdout=open(log, "wb"), stderr=subprocess.STDOUT, start_new_session=True)
        url = f"http://127.0.0.1:{port}/api"

        def healthy() -> bool:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=1) as response:
                    return response.status == 200
            except OSError:
                return False

        _wait(healthy, "prefect server", log, process)
        return cls(url, process)

    def stop(self) -> None:
        _stop(self.process)


@dataclass
class DaskCluster:
    """A scheduler and named workers, each its own `dask` process group (nanny + worker) that a test may kill."""

    address: str
    home: Path
    env: dict
    scheduler: subprocess.Popen
    workers: dict[str, subprocess.Popen] = field(default_factory=dict)

    @classmethod
    def start(cls, home: Path, prefect_url: str) -> DaskCluster:
        home.mkdir(parents=True, exist_ok=True)
        port = _free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("DASK_LOGGING")}
        env.update(WORKER_THREAD_ENV, **QUIET_ENV, PREFECT_API_URL=prefect_url)
        log = home / "scheduler.log"
        scheduler = subprocess.Popen([str(BIN / "dask"), "scheduler", "--host", "127.0.0.1", "--port", str(port),
                                      "--no-dashboard"], env=env, stdout=open(log, "wb"), stderr=subprocess.STDOUT,
                                     start_new_session=True)
        cluster = cls(f"tcp://127.0.0.1:{port}", home, env, scheduler)
        _wait(lambda: _listening(port), "dask scheduler", log, scheduler)
        return cluster

    def add_worker(self, name: str, *extra: str) -> None:
        log = self.home / f"worker-{name}.log"
        self.workers[name] = subprocess.Popen(
            [str(BIN / "dask"), "worker", self.address, "--name", name, "--nthreads", "1", "--nworkers", "1",
             "--host", "127.0.0.1", "--no-dashboard", *extra],
            env=self.env, stdout=open(log, "wb"), stderr=subprocess.STDOUT, start_new_session=True)

    def wait_for_workers(self, n: int, timeout_s: float = 120) -> dict[str, str]:
        """Worker name -> address once n workers are connected."""
        from distributed import Client

        with Client(self.address, timeout=30) as client:
            client.wait_for_workers(n, timeout=timeout_s)
            return {w["name"]: addr for addr, w in client.scheduler_info(n_workers=-1)["workers"].items()}

    def kill_worker(self, name: str) -> None:
        """SIGKILL the worker's whole process group (nanny and worker): nothing gets to clean up."""
        os.killpg(self.workers[name].pid, signal.SIGKILL)
        self.workers[name].wait()

    def stop(self) -> None:
        for process in self.workers.values():
            _stop(process)
        _stop(self.scheduler)
