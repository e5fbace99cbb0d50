"""`dfp serve`: run the deployments declared in prefect.yaml (schedules and triggered runs) in one process."""

from __future__ import annotations

import os
import re
from pathlib import Path

import yaml

_ENV = re.compile(r"\{\{\s*\$([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")


def _placeholders(value) -> set[str]:
    if isinstance(value, str):
        return set(_ENV.findall(value))
    if isinstance(value, dict):
        return set().union(*(_placeholders(v) for v in value.values())) if value else set()
    if isinstance(value, list):
        return set().union(*(_placeholders(v) for v in value)) if value else set()
    return set()


def _substitute(value, env: dict[str, str]):
    if isinstance(value, str):
        return _ENV.sub(lambda m: env[m.group(1)], value)
    if isinstance(value, dict):
        return {k: _substitute(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute(v, env) for v in value]
    return value


def load_deployments(path: str | Path, names: list[str] | None = None, env: dict[str, str] | None = None) -> list[dict]:
    """The deployments of a prefect.yaml with "{{ $VAR }}" read from the environment.

    Raises ValueError naming the deployment and the variables it needs when one is unset, and when a name
    asked for is not declared.
    """
    env = dict(os.environ if env is None else env)
    spec = yaml.safe_load(Path(path).read_text())
    declared = spec.get("deployments") or []
    if names:
        unknown = sorted(set(names) - {d["name"] for d in declared})
        if unknown:
            raise ValueError(f"{path} declares no deployment named {', '.join(unknown)} "
                             f"(declared: {', '.join(d['name'] for d in declared)})")
        declared = [d for d in declared if d["name"] in names]
    out = []
    for deployment in declared:
        missing = sorted(v for v in _placeholders(deployment) if not env.get(v))
        if missing:
            raise ValueError(f"deployment {deployment['name']!r} of {path} needs the environment variable(s) "
                             f"{', '.join(missing)}")
        out.append(_substitute(deployment, env))
    return out


def to_runner_deployment(spec: dict):
    """A served deployment (RunnerDeployment) from one prefect.yaml entry."""
    import importlib

    from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy
    from prefect.deployments.runner import EntrypointType
    from prefect.schedules import Cron, Interval

    # prefect.yaml names files (for `prefect deploy`); served runs import the installed package instead, so
    # they work from any directory and inside the worker image.
    file, _, function = spec["entrypoint"].partition(":")
    module = Path(file).with_suffix("").as_posix().replace("/", ".")
    flow = getattr(importlib.import_module(module), function)
    schedules = []
    for item in spec.get("schedules") or []:
        if "cron" in item:
            schedules.append(Cron(item["cron"], timezone=item.get("timezone", "UTC")))
        elif "interval" in item:
            schedules.append(Interval(float(item["interval"]), timezone=item.get("timezone", "UTC")))
        else:
            raise ValueError(f"deployment {spec['name']!r}: schedules take cron or interval, got {item}")
    limit = spec.get("concurrency_limit")
    if isinstance(limit, dict):
        limit = ConcurrencyLimitConfig(limit=int(limit["limit"]), collision_strategy=ConcurrencyLimitStrategy(
            limit.get("collision_strategy", "ENQUEUE")))
    return flow.to_deployment(name=spec["name"], parameters=spec.get("parameters") or {},
                              description=spec.get("description"), tags=spec.get("tags"),
                              schedules=schedules or None, concurrency_limit=limit,
                              entrypoint_type=EntrypointType.MODULE_PATH)


def serve(path: str | Path, names: list[str] | None = None, limit: int | None = None) -> None:
    """Register the deployments with the Prefect server and run their flow runs here until interrupted."""
    from prefect import serve as prefect_serve

    path = Path(path).resolve()
    deployments = [to_runner_deployment(spec) for spec in load_deployments(path, names)]
    prefect_serve(*deployments, limit=limit)
