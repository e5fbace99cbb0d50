"""`dfp runs FOLDER`: the training runs under a folder as a table (rich in the terminal, optionally an HTML page)."""

from __future__ import annotations

import html
import sys
from pathlib import Path

from features.store.rundir import list_runs

COLUMNS = ("run", "model", "date", "data", "CV AUC", "log loss", "evaluations")


def _number(value, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def run_rows(runs: list[dict], folder: str) -> list[dict[str, str]]:
    """One row of text per run, in COLUMNS order; an evaluation reads `name: AUC a, log loss l (n videos)`."""
    rows = []
    for run in runs:
        relative = Path(run["run"]).relative_to(Path(folder)).as_posix() if Path(run["run"]) != Path(folder) else "."
        data = run["cache"] or "?"
        if run["videos"] is not None:
            data += f" ({run['videos']} videos)"
        evaluations = [f"{e['name']}: AUC {_number(e['roc_auc'])}, log loss {_number(e['log_loss'], 4)}"
                       + (f" ({e['n']} videos)" if e["n"] is not None else "") for e in run["evaluations"]]
        rows.append({"run": relative, "model": run["model"] or "?", "date": (run["created_at"] or "?")[:16].replace("T", " "),
                     "data": data, "CV AUC": _number(run["roc_auc"]), "log loss": _number(run["log_loss"], 4),
                     "evaluations": "\n".join(evaluations) or "-"})
    return rows


def runs_html(rows: list[dict[str, str]], folder: str) -> str:
    """The table as a small self-contained HTML page."""
    head = "".join(f"<th>{html.escape(c)}</th>" for c in COLUMNS)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(row[c]).replace(chr(10), '<br>')}</td>" for c in COLUMNS)
                   + "</tr>\n" for row in rows)
    return (f"<!doctype html>\n<html><head><meta charset='utf-8'><title>dfp runs: {html.escape(folder)}</title>"
            "<style>body{font-family:sans-serif}table{border-collapse:collapse}td,th{border:1px solid #ccc;"
            "padding:4px 8px;text-align:left;vertical-align:top}</style></head>\n"
            f"<body><h1>Training runs under {html.escape(folder)}</h1>\n<table><tr>{head}</tr>\n{body}</table>"
            "</body></html>\n")


def print_runs(folder: str, html_out: str | None = None) -> int:
    """Print the table of runs under `folder` (and write it as HTML); exit code 0, or 2 when the folder is absent."""
    from rich.console import Console
    from rich.table import Table

    if not Path(folder).is_dir():
        raise ValueError(f"folder {folder} does not exist: give the folder your `dfp train --out` runs are in")
    rows = run_rows(list_runs(folder), folder)
    if not rows:
        print(f"no training runs under {folder} (`dfp train CACHE --out {folder}/RUN` writes one)")
        return 0
    table = Table(title=f"training runs under {folder}")
    for column in COLUMNS:
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*(row[c] for c in COLUMNS))
    Console(file=sys.stdout, width=max(Console().width, 120)).print(table)
    if html_out:
        Path(html_out).parent.mkdir(parents=True, exist_ok=True)
        Path(html_out).write_text(runs_html(rows, folder), encoding="utf-8")
        print(f"html: {html_out}")
    return 0
