"""The dfp command line on cyclopts: options generated from the config models, one spelling per thing, --version,
help on every option, the deprecated spellings. In-process and fast: nothing here reaches Prefect."""

from __future__ import annotations

import importlib.metadata
import inspect
import typing

import pytest
from cyclopts import Parameter

from features.config import ExtractConfig, TrainConfig
from features.learn import registry
from flows import cli


def _parameters(command: str) -> dict[str, Parameter]:
    signature = inspect.signature(cli.app[command].default_command)
    hints = typing.get_type_hints(cli.app[command].default_command, include_extras=True)
    out = {}
    for name in signature.parameters:
        meta = [m for m in getattr(hints[name], "__metadata__", ()) if isinstance(m, Parameter)]
        out[name] = meta[0] if meta else None
    return out


COMMANDS = ["extract", "demo", "train", "evaluate", "score", "inspect", "report", "runs", "serve"]


@pytest.mark.parametrize("command", COMMANDS)
def test_every_option_of_every_command_has_help_text(command):
    for name, parameter in _parameters(command).items():
        assert parameter is not None and parameter.help, f"dfp {command}: {name} has no help"


def test_extraction_options_are_the_config_fields_with_their_descriptions_and_defaults(capsys):
    parameters = _parameters("extract")
    assert set(ExtractConfig.model_fields) - {"datasets"} <= set(parameters)
    field = ExtractConfig.model_fields["keyframe_interval"]
    assert parameters["keyframe_interval"].help == f"{field.description} (default: 10)"
    assert parameters["device"].help.endswith("Not part of the cache key. (default: auto)")
    assert cli.main(["extract", "--help"]) == 0
    out = capsys.readouterr().out
    assert "--no-detect-normalize" in out and "--no-retry-failed" in out  # each setting can be turned off


def test_train_options_are_the_train_config_fields_and_model_choices_come_from_one_function():
    parameters = _parameters("train")
    assert set(TrainConfig.model_fields) - {"cache"} <= set(parameters)
    assert cli.model_kinds() == tuple(registry.model_names()) == ("crop_linear", "gbm", "crop_gbm", "cnn")
    for kind in cli.model_kinds():
        assert TrainConfig(cache="c", out="r", model=kind).model == kind  # each choice is one the config takes
    hints = typing.get_type_hints(cli.app["train"].default_command, include_extras=True)
    choices = typing.get_args(typing.get_args(typing.get_args(hints["model"])[0])[0])
    assert choices == cli.model_kinds()


def test_the_same_flags_name_the_same_things():
    run_flags = {c: _parameters(c).get("model") or _parameters(c).get("run") for c in ("score", "report")}
    assert run_flags["score"].name == ("--run",) and run_flags["report"] is not None
    for command in ("extract", "demo", "train", "evaluate", "score"):
        parameters = _parameters(command)
        assert parameters["workers"].name == ("--workers",) and parameters["verbose"].name == ("--verbose", "-v")
        if command != "demo":  # the demo runs on a local cluster of its own
            assert parameters["dask_address"].name == ("--dask-address",)


def test_version_comes_from_the_installed_package(capsys):
    assert cli.main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == importlib.metadata.version("deepfake-pipeline")


def test_bare_dfp_prints_help_and_exits_0(capsys):
    assert cli.main([]) == 0
    out = capsys.readouterr().out
    assert "Usage: dfp COMMAND" in out and all(command in out for command in COMMANDS)


def test_an_unknown_command_is_one_line(capsys):
    assert cli.main(["trian", "cache"]) == 2
    assert capsys.readouterr().err == "dfp: error: unknown command 'trian' (`dfp --help` lists the commands)\n"


def test_score_model_is_a_deprecated_alias_of_run(tmp_path, capsys):
    assert cli.main(["score", str(tmp_path), "--model", "old-run", "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[0] == "dfp score: warning: --model RUN is deprecated and goes in the next release: use --run old-run"
    assert err[1].startswith("dfp score: error: run folder old-run does not exist")  # read as the run


def test_score_without_a_run_says_which_flag(tmp_path, capsys):
    assert cli.main(["score", str(tmp_path), "--out", str(tmp_path / "out")]) == 2
    assert capsys.readouterr().err.startswith("dfp score: error: --run is required")


def test_train_passes_every_given_option_to_its_config(tmp_path, monkeypatch):
    (tmp_path / "cache" / "videos").mkdir(parents=True)
    configs = []
    monkeypatch.setattr(cli, "_run_flow", lambda name, config: configs.append(config) or {})
    monkeypatch.setattr(cli, "_print_metrics", lambda metrics: None)
    argv = ["train", str(tmp_path / "cache"), "--out", str(tmp_path / "run"), "--model", "gbm", "--folds", "3",
            "--holdout", "--seed", "4", "--cnn-size", "large", "--cnn-epochs", "2", "--workers", "1"]
    assert cli.main(argv) == 0
    assert configs[0] == TrainConfig(cache=str(tmp_path / "cache"), out=str(tmp_path / "run"), model="gbm", folds=3,
                                     holdout=True, seed=4, cnn_size="large", cnn_epochs=2, workers=1)


def test_extract_reads_a_config_file_and_the_options_override_it(tmp_path, monkeypatch):
    (tmp_path / "settings.json").write_text('{"detector": "haar", "keyframe_interval": 3, "retry_failed": true}')
    configs = []
    monkeypatch.setattr(cli, "_run_extract", lambda config: configs.append(config) or {"line": "ok"})
    argv = ["extract", str(tmp_path), "--cache", str(tmp_path / "c"), "--config", str(tmp_path / "settings.json"),
            "--keyframe-interval", "5", "--no-detect-normalize", "--no-retry-failed"]
    assert cli.main(argv) == 0
    assert (configs[0].detector, configs[0].keyframe_interval, configs[0].detect_normalize) == ("haar", 5, False)
    assert not configs[0].retry_failed
    assert configs[0].datasets == [str(tmp_path)] and configs[0].cache == str(tmp_path / "c")


def test_demo_runs_the_whole_job_with_its_options(tmp_path, monkeypatch):
    import flows.demo

    calls = []
    monkeypatch.setattr(flows.demo, "run_demo", lambda out, **kw: calls.append((out, kw)))
    argv = ["demo", "--out", str(tmp_path / "d"), "--clips", "8", "--frames", "12", "--seed", "3", "--regenerate",
            "--workers", "1"]
    assert cli.main(argv) == 0
    (out, kw), = calls
    assert out == tmp_path / "d" and kw["say"] is cli.say
    assert {k: v for k, v in kw.items() if k != "say"} == {"clips": 8, "frames": 12, "seed": 3, "regenerate": True,
                                                           "workers": 1}


def test_demo_refuses_too_few_clips_before_anything_starts(tmp_path, capsys):
    assert cli.main(["demo", "--out", str(tmp_path / "d"), "--clips", "4"]) == 2
    assert capsys.readouterr().err.strip() == ("dfp demo: error: --clips: the demo needs at least 6 clips (two pairs "
                                               "to train on, one held out), got 4")
    assert not (tmp_path / "d").exists()
