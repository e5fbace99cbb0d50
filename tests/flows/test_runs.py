"""`dfp runs FOLDER`: the table of training runs, checked on its values, in the terminal and as HTML."""

from __future__ import annotations

import json

from flows import cli
from flows.runs import run_rows
from tests.features.test_rundir import _card


def _two_runs(tmp_path):
    run = _card(tmp_path / "gbm-run", model="gbm", created_at="2026-01-01T10:00:00+00:00",
                training_data={"cache": "caches/dfdc", "videos": 20})
    (run / "metrics.json").write_text(json.dumps({"overall": {"roc_auc": 0.75, "log_loss": 0.6123, "n": 20}}))
    (run / "evaluations" / "ffpp-1234").mkdir(parents=True)
    (run / "evaluations" / "ffpp-1234" / "metrics.json").write_text(json.dumps(
        {"cache": "caches/ffpp", "overall": {"roc_auc": 0.6, "log_loss": 0.7, "n": 8}}))
    _card(tmp_path / "later", model="crop_linear", created_at="2026-02-01T09:30:00+00:00")


def test_run_rows_are_the_values_of_each_run(tmp_path):
    from features.store.rundir import list_runs

    _two_runs(tmp_path)
    rows = run_rows(list_runs(str(tmp_path)), str(tmp_path))
    assert rows == [
        {"run": "later", "model": "crop_linear", "date": "2026-02-01 09:30", "data": "?", "CV AUC": "n/a",
         "log loss": "n/a", "evaluations": "-"},
        {"run": "gbm-run", "model": "gbm", "date": "2026-01-01 10:00", "data": "caches/dfdc (20 videos)",
         "CV AUC": "0.750", "log loss": "0.6123", "evaluations": "ffpp-1234: AUC 0.600, log loss 0.7000 (8 videos)"},
    ]


def test_dfp_runs_prints_the_table_and_writes_html(tmp_path, capsys):
    _two_runs(tmp_path)
    page = tmp_path / "runs.html"
    assert cli.main(["runs", str(tmp_path), "--html", str(page)]) == 0
    out = capsys.readouterr().out
    assert "gbm-run" in out and "0.750" in out and "0.6123" in out and "ffpp-1234: AUC 0.600" in out
    html = page.read_text()
    assert "<td>gbm-run</td><td>gbm</td><td>2026-01-01 10:00</td><td>caches/dfdc (20 videos)</td><td>0.750</td>" in html
    assert html.index("later") < html.index("gbm-run")


def test_dfp_runs_on_an_empty_or_missing_folder(tmp_path, capsys):
    assert cli.main(["runs", str(tmp_path)]) == 0
    assert capsys.readouterr().out.startswith(f"no training runs under {tmp_path}")
    assert cli.main(["runs", str(tmp_path / "nope")]) == 2
    assert "dfp runs: error: folder" in capsys.readouterr().err
