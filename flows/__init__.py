"""Prefect flows and the `dfp` command line: what runs, in which order, on which task runner."""

from flows.runtime import configure_environment

configure_environment()
