"""Dask worker preload of quiet local runs: the worker's stderr goes to the file in DFP_WORKER_LOG.

TensorFlow prints its start-up lines (oneDNN, the CUDA probe) from C++ before any log level applies, once in every
worker; with `-vv` the workers keep the terminal. Task errors still reach the command through the task results.
"""

from __future__ import annotations

import os


def dask_setup(worker) -> None:
    path = os.environ.get("DFP_WORKER_LOG")
    if not path:
        return
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 2)
    os.close(fd)
