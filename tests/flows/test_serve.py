from pathlib import Path

import pytest

from flows.serve import load_deployments, to_runner_deployment

REPO = Path(__file__).resolve().parents[2]
ENV = {"DFP_DATASETS": "/videos", "DFP_CACHE": "s3://b/cache", "DFP_RUNS": "s3://b/runs", "DFP_INBOX": "/inbox"}


def test_prefect_yaml_declares_extract_train_and_score_with_environment_values():
    deployments = {d["name"]: d for d in load_deployments(REPO / "prefect.yaml", env=ENV)}
    assert set(deployments) == {"extract", "train", "score"}
    assert deployments["extract"]["parameters"]["config"] == {"datasets": ["/videos"], "cache": "s3://b/cache",
                                                              "detector": "mtcnn", "compact": True}
    assert deployments["train"]["parameters"]["config"]["out"] == "s3://b/runs/latest"
    assert deployments["score"]["parameters"]["config"]["model"] == "s3://b/runs/latest"


def test_served_deployments_carry_schedule_concurrency_limit_and_validated_parameters():
    spec = load_deployments(REPO / "prefect.yaml", ["extract"], env=ENV)[0]
    deployment = to_runner_deployment(spec)
    assert deployment.entrypoint == "flows.extract.extract_flow"
    assert [s.schedule.cron for s in deployment.schedules] == ["0 2 * * *"]
    assert deployment.concurrency_limit == 1 and deployment.concurrency_options.collision_strategy.value == "ENQUEUE"
    schema = deployment._parameter_openapi_schema.model_dump()
    assert schema["required"] == ["config"]  # Prefect validates the ExtractConfig parameter on every run


def test_an_unset_variable_or_unknown_name_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match=r"deployment 'extract' of .*prefect.yaml needs the environment variable\(s\) "
                                         r"DFP_CACHE, DFP_DATASETS"):
        load_deployments(REPO / "prefect.yaml", ["extract"], env={})
    with pytest.raises(ValueError, match=r"declares no deployment named nightly \(declared: extract, train, score\)"):
        load_deployments(REPO / "prefect.yaml", ["nightly"], env=ENV)


def test_dfp_serve_refuses_before_starting_anything_when_a_variable_is_unset(monkeypatch, capsys):
    from flows.cli import main

    for name in ENV:
        monkeypatch.delenv(name, raising=False)
    assert main(["serve", "--file", str(REPO / "prefect.yaml"), "--only", "train"]) == 2
    assert "dfp serve: error: deployment 'train'" in capsys.readouterr().err
