"""infra/ is checked without Docker or Kubernetes: every YAML parses, the compose file validates against the
Compose specification, the Kubernetes manifests against the Dask operator's CRD schemas and Kubernetes' models,
and the image installs exactly the way CI does."""

from __future__ import annotations

import json
import re
import shlex
from importlib import resources
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
INFRA = REPO / "infra"
YAML_FILES = sorted([*INFRA.rglob("*.yaml"), *INFRA.rglob("*.yml"), REPO / "prefect.yaml"])


def _validate(instance, schema) -> list[str]:
    from jsonschema.validators import validator_for

    validator = validator_for(schema)(schema)
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(instance)]


@pytest.mark.parametrize("path", YAML_FILES, ids=lambda p: str(p.relative_to(REPO)))
def test_every_yaml_file_parses(path):
    documents = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    assert documents and all(isinstance(d, dict) for d in documents)


def _compose() -> dict:
    return yaml.safe_load((INFRA / "docker-compose.yml").read_text())


def test_compose_file_validates_against_the_compose_specification():
    pytest.importorskip("check_jsonschema", reason="needs the infra extra (pip install -e '.[infra]')")
    schema = json.loads(resources.files("check_jsonschema.builtin_schemas.vendor").joinpath("compose-spec.json").read_text())
    assert _validate(_compose(), schema) == []
    broken = _compose()
    broken["services"]["dask-scheduler"]["ports"] = {"8786": 8786}  # a mapping where a list belongs
    assert any("services/dask-scheduler/ports" in e for e in _validate(broken, schema))


def test_compose_declares_the_whole_stack_with_pinned_images():
    services = _compose()["services"]
    assert set(services) == {"postgres", "prefect-server", "dask-scheduler", "cpu-worker", "gpu-worker", "prefect-worker"}
    assert services["prefect-server"]["environment"]["PREFECT_API_DATABASE_CONNECTION_URL"].startswith(
        "postgresql+asyncpg://")
    gpu = services["gpu-worker"]
    assert gpu["command"][gpu["command"].index("--resources") + 1] == "GPU=1"
    assert gpu["deploy"]["resources"]["reservations"]["devices"][0]["capabilities"] == ["gpu"]
    assert services["prefect-worker"]["command"][:2] == ["dfp", "serve"]
    for name, service in services.items():
        image = service["image"]
        assert re.fullmatch(r"[\w./-]+:\d[\w.-]*", image), f"{name}: image {image} is not pinned to a version"


def _crd_schema(kind: str) -> dict:
    pytest.importorskip("dask_kubernetes", reason="needs the infra extra (pip install -e '.[infra]')")
    crds = resources.files("dask_kubernetes").joinpath("operator/deployment/helm/dask-kubernetes-operator/crds")
    for entry in crds.iterdir():
        crd = yaml.safe_load(entry.read_text())
        if crd["spec"]["names"]["kind"] == kind:
            return crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    raise AssertionError(f"no CRD for {kind}")


def _manifests(name: str) -> list[dict]:
    return list(yaml.safe_load_all((INFRA / "k8s" / name).read_text()))


def test_dask_cluster_and_gpu_worker_group_validate_against_the_operator_crds():
    cluster, gpu_group = _manifests("dask-cluster.yaml")
    assert (cluster["kind"], gpu_group["kind"]) == ("DaskCluster", "DaskWorkerGroup")
    assert _validate(cluster, _crd_schema("DaskCluster")) == []
    assert _validate(gpu_group, _crd_schema("DaskWorkerGroup")) == []
    assert gpu_group["spec"]["cluster"] == cluster["metadata"]["name"]
    worker = gpu_group["spec"]["worker"]["spec"]["containers"][0]
    assert worker["args"][worker["args"].index("--resources") + 1] == "GPU=1"
    assert worker["resources"]["limits"]["nvidia.com/gpu"] == "1"
    broken = json.loads(json.dumps(cluster))
    broken["spec"]["worker"]["replicas"] = "four"
    assert any("spec/worker/replicas" in e for e in _validate(broken, _crd_schema("DaskCluster")))


def _k8s_model(manifest: dict, model: str):
    """Deserialise with the Kubernetes client's models; a misspelt field would be dropped, so compare round trips."""
    pytest.importorskip("kubernetes", reason="needs the infra extra (pip install -e '.[infra]')")
    from kubernetes.client import ApiClient

    client = ApiClient()
    obj = client.deserialize(json.dumps(manifest), model, "application/json")
    assert client.sanitize_for_serialization(obj) == manifest, "a field is unknown to Kubernetes"
    return obj


def test_prefect_worker_deployment_is_a_valid_kubernetes_deployment_that_serves_prefect_yaml():
    deployment = _k8s_model(_manifests("prefect-worker.yaml")[0], "V1Deployment")
    container = deployment.spec.template.spec.containers[0]
    assert container.command == ["dfp", "serve", "--file", "/app/prefect.yaml"]
    env = {e.name: e.value for e in container.env}
    assert env["PREFECT_API_URL"].endswith("/api") and env["DFP_DASK_ADDRESS"].startswith("tcp://dfp-scheduler.")
    assert env["DFP_CACHE"].startswith("s3://")  # pods share no disk
    _k8s_model(_manifests("namespace.yaml")[0], "V1Namespace")
    with pytest.raises(AssertionError, match="unknown to Kubernetes"):
        broken = _manifests("prefect-worker.yaml")[0]
        broken["spec"]["template"]["spec"]["containers"][0]["comand"] = ["typo"]
        _k8s_model(broken, "V1Deployment")


def _run_lines(dockerfile: str) -> list[str]:
    text = re.sub(r"\\\n", " ", dockerfile)
    return [line.strip()[4:] for line in text.splitlines() if line.strip().startswith("RUN ")]


def test_the_image_installs_with_the_same_script_as_ci():
    dockerfile = (INFRA / "Dockerfile").read_text()
    runs = _run_lines(dockerfile)
    assert any(shlex.split(r)[:1] == ["infra/install.sh"] for r in runs)
    assert not any("pip install" in r for r in runs), "the image must not install anything CI does not"
    makefile = (REPO / "Makefile").read_text()
    assert re.search(r"^\tPYTHON=\$\(PYTHON\) infra/install.sh \$\(VENV\) test,s3,infra --editable$", makefile, re.M)
    assert "make test" in (REPO / ".ci" / "run").read_text()
    base = re.search(r"^FROM python:(\d+\.\d+)\.\d+-slim-bookworm$", dockerfile, re.M)
    assert base, "the base image is pinned to a Python patch version"
    for source in re.findall(r"^COPY (.+) \S+$", dockerfile, re.M):
        for name in source.split():
            assert (REPO / name).exists(), f"COPY {name}: no such file in the repository"


def test_the_gpu_variant_only_adds_the_gpu_extra():
    import tomllib

    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert extras["gpu"] == ["tensorflow[and-cuda]>=2.16,<2.22"]
    compose = _compose()["services"]["gpu-worker"]["build"]
    assert compose["args"] == {"EXTRAS": "s3,gpu"} and compose["dockerfile"] == "infra/Dockerfile"
