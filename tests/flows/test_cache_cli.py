"""`dfp cache` (flows/cache_cli.py) run in-process on small caches built by hand: the figures it prints are checked
against what was written and against the tables on disk afterwards."""

from __future__ import annotations

import inspect
import os
import typing

import pandas as pd
import pytest
from cyclopts import Parameter

from features.store.cache import TABLES, CacheStore
from features.store.delta_cache import DeltaCacheStore, OldLayoutError
from flows import cli
from flows.cache_cli import TableName
from flows.cli import main
from tests.features.test_delta_cache import _faces, _old_cache, _sorted, _ssim, _video

# What _old_cache leaves current: ds/a re-extracted (4 faces rows, 1 ssim row), ds/b (2 faces rows, 3 descriptors).
MIGRATED_ROWS = {"videos": 2, "faces": 6, "ssim": 1, "features": 2, "descriptors": 3}


def _dfp(capsys, *argv) -> list[str]:
    """dfp ARGV in this process: its stdout lines (it must exit 0 and print nothing on stderr)."""
    capsys.readouterr()
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert code == 0 and err == "", err
    return out.splitlines()


def _table(lines: list[str], first: str = "table") -> dict[str, dict[str, str]]:
    """A printed table (the lines from its header on, up to the first that is not one of its rows) as
    {first column: {header: cell}}; cells are split on runs of two spaces, as print_table aligns them."""
    start = next(i for i, line in enumerate(lines) if line.startswith(first))
    headers = [h.strip() for h in lines[start].split("  ") if h.strip()]
    rows = {}
    for line in lines[start + 1:]:
        cells = [c.strip() for c in line.split("  ") if c.strip()]
        if len(cells) != len(headers):
            break
        rows[cells[0]] = dict(zip(headers, cells, strict=True))
    return rows


def _data_files(url: str, table: str) -> list[str]:
    return sorted(n for n in os.listdir(os.path.join(url, table)) if n.endswith(".parquet"))


def test_migrate_to_a_new_url_prints_each_tables_rows_and_reads_as_the_old_cache(tmp_path, capsys):
    old = _old_cache(str(tmp_path / "old"))
    lines = _dfp(capsys, "cache", "migrate", old.url, "--to", tmp_path / "delta")
    assert lines[0] == f"migrated {old.url} to Delta tables at {tmp_path / 'delta'}:"
    printed = _table(lines)
    assert {t: int(row["rows"]) for t, row in printed.items()} == MIGRATED_ROWS
    assert all(row["files"] == "1" and row["version"] == "0" and int(row["bytes"]) > 0 for row in printed.values())
    new = DeltaCacheStore(str(tmp_path / "delta"))
    for table in TABLES:
        pd.testing.assert_frame_equal(_sorted(old.read(table)), _sorted(new.read(table)))
    assert not os.path.exists(os.path.join(old.url, "videos", "_delta_log"))  # --to leaves the old cache as it was
    assert new.read_config("cfg") == {"crop_margin": 0.3}


def test_info_compact_vacuum_and_history_on_a_cache_migrated_in_place(tmp_path, capsys):
    url = str(tmp_path / "cache")
    _old_cache(url)
    expected = {table: _sorted(CacheStore(url).read(table)) for table in TABLES}
    assert _table(_dfp(capsys, "cache", "migrate", url))["faces"]["rows"] == "6"
    store = DeltaCacheStore(url)
    for table in TABLES:
        pd.testing.assert_frame_equal(expected[table], _sorted(store.read(table)))
    for i in range(3):  # three commits of staged files, one file per table each
        store.write_video(_video(f"ds/x{i}"), _faces(3), _ssim(2))

    before = _table(_dfp(capsys, "cache", "info", url))
    assert {t: (r["rows"], r["files"], r["version"]) for t, r in before.items()} == {
        "videos": ("5", "4", "3"), "faces": ("15", "4", "3"), "ssim": ("7", "4", "3"), "features": ("2", "1", "0"),
        "descriptors": ("3", "1", "0")}

    compacted = _table(_dfp(capsys, "cache", "compact", url))
    assert {t: (r["files before"], r["files after"]) for t, r in compacted.items()} == {
        "videos": ("4", "1"), "faces": ("4", "1"), "ssim": ("4", "1"), "features": ("1", "1"),
        "descriptors": ("1", "1")}
    after = _table(_dfp(capsys, "cache", "info", url))
    assert all(r["files"] == "1" and r["rows"] == before[t]["rows"] for t, r in after.items())
    assert after["faces"]["version"] == "4" and after["features"]["version"] == "0"
    assert len(_data_files(url, "faces")) == 5  # compacted away, still on disk for readers of older versions

    assert _table(_dfp(capsys, "cache", "vacuum", url))["faces"]["files deleted"] == "0"  # younger than a week
    dry = _dfp(capsys, "cache", "vacuum", url, "--retention-hours", "0", "--dry-run")
    assert _table(dry)["faces"]["files to delete"] == "4" and len(_data_files(url, "faces")) == 5
    assert sum(line.startswith("  faces/") for line in dry) == 4
    assert _table(_dfp(capsys, "cache", "vacuum", url, "--retention-hours", "0"))["faces"]["files deleted"] == "4"
    assert len(_data_files(url, "faces")) == 1 and len(_data_files(url, "features")) == 1
    assert len(DeltaCacheStore(url).read("faces")) == 15

    lines = _dfp(capsys, "cache", "history", url, "--table", "faces")
    assert lines[0] == "faces (newest first)"
    commits = list(_table(lines, "version").values())
    assert [(c["version"], c["operation"]) for c in commits] == [
        ("6", "VACUUM END"), ("5", "VACUUM START"), ("4", "OPTIMIZE"), ("3", "WRITE (extract)"),
        ("2", "WRITE (extract)"), ("1", "WRITE (extract)"), ("0", "WRITE (migrate)")]
    assert [(c["files added"], c["files removed"], c["rows added"]) for c in commits[2:]] == [
        ("1", "4", "15"), ("1", "0", "3"), ("1", "0", "3"), ("1", "0", "3"), ("1", "0", "6")]
    sections = "\n".join(_dfp(capsys, "cache", "history", url, "--limit", "2")).split("\n\n")
    newest = {section.splitlines()[0]: list(_table(section.splitlines(), "version")) for section in sections}
    assert newest == {"videos (newest first)": ["6", "5"], "faces (newest first)": ["6", "5"],
                      "ssim (newest first)": ["6", "5"], "features (newest first)": ["0"],
                      "descriptors (newest first)": ["0"]}


def test_prune_and_compact_leave_any_delta_reader_only_the_current_rows(tmp_path, capsys):
    from deltalake import DeltaTable

    url = str(tmp_path / "cache")
    store = DeltaCacheStore(url)
    store.write_video(_video("ds/a", key="k1"), _faces(3), _ssim(2))
    store.write_video(_video("ds/a", key="k2"), _faces(4), _ssim(1))  # re-extracted: the first write is superseded
    store.write_video(_video("ds/b", key="k3"), _faces(2, track=1), [])

    def raw(table):  # what duckdb, polars or Spark see: every row of the table's current files
        return DeltaTable(f"{url}/{table}").to_pandas()

    assert len(raw("faces")) == 9 and len(store.read("faces")) == 6
    assert _table(_dfp(capsys, "cache", "prune", url))["faces"]["rows deleted"] == "3"
    assert len(raw("faces")) == 6 and sorted(raw("faces").cache_key) == sorted(store.read("faces").cache_key)
    store.write_video(_video("ds/b", key="k4"), _faces(5, track=1), [])
    compacted = _table(_dfp(capsys, "cache", "compact", url))
    assert (compacted["faces"]["rows pruned"], compacted["faces"]["files after"]) == ("2", "1")
    assert compacted["ssim"]["rows pruned"] == "0"  # ds/a's first ssim rows went with the prune above
    current = raw("faces").groupby("video_id").cache_key.unique().map(list).to_dict()
    assert current == {"ds/a": ["k2"], "ds/b": ["k4"]} and len(raw("faces")) == 9
    assert len(store.read("faces")) == 9


def test_migrating_a_migrated_cache_is_refused_in_one_line(tmp_path, capsys):
    url = str(tmp_path / "cache")
    _old_cache(url)
    _dfp(capsys, "cache", "migrate", url)
    assert main(["cache", "migrate", url]) == 2
    assert capsys.readouterr().err == (f"dfp cache migrate: error: {url} already holds Delta tables: nothing to "
                                       f"migrate (`dfp cache info {url}` shows them)\n")


def test_the_help_lists_the_cache_commands_and_the_table_names_are_the_caches(capsys):
    assert set(typing.get_args(TableName)) == set(TABLES)
    _dfp(capsys, "--help")
    assert main(["--help"]) == 0 and "cache" in capsys.readouterr().out
    lines = _dfp(capsys, "cache", "--help")
    for command in ("info", "compact", "prune", "vacuum", "history", "migrate"):
        assert any(line.strip("│ ").startswith(command + " ") for line in lines), command


@pytest.mark.parametrize("argv", [["cache", "info", "{old}"], ["cache", "history", "{old}", "--table", "faces"]])
def test_a_per_video_cache_is_pointed_to_migrate(tmp_path, capsys, argv):
    old = _old_cache(str(tmp_path / "old"))
    assert main([a.format(old=old.url) for a in argv]) == 2
    assert capsys.readouterr().err == (f"dfp cache {argv[1]}: error: {old.url} holds a cache in the per-video layout "
                                       "of earlier versions (one Parquet file per video), and this version keeps its "
                                       f"cache in Delta Lake tables: convert it once with `dfp cache migrate {old.url}` "
                                       "(in place; `--to URL` keeps the original)\n")


def test_on_s3_a_per_video_cache_is_refused_by_the_store_and_migrates(s3_bucket, capsys):
    """The cheap checks leave object-store URLs to the store: its refusal is still one line, exit 2."""
    old = _old_cache(f"{s3_bucket}/old")
    assert main(["cache", "info", old.url]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"dfp cache info: error: {old.url} holds a cache in the per-video layout") and \
        err.count("\n") == 1 and f"`dfp cache migrate {old.url}`" in err
    lines = _dfp(capsys, "cache", "migrate", old.url, "--to", f"{s3_bucket}/delta")
    assert {t: int(row["rows"]) for t, row in _table(lines).items()} == MIGRATED_ROWS
    assert _table(_dfp(capsys, "cache", "info", f"{s3_bucket}/delta"))["faces"]["files"] == "1"
    assert main(["cache", "info", f"{s3_bucket}/nothing"]) == 2
    assert capsys.readouterr().err == (f"dfp cache info: error: {s3_bucket}/nothing holds no cache in Delta tables "
                                       "(no videos/_delta_log): convert a per-video cache with `dfp cache migrate "
                                       "CACHE`\n")


def test_compact_refuses_in_one_line_while_an_extraction_holds_the_cache(tmp_path, capsys):
    url = str(tmp_path / "cache")
    _old_cache(url)
    _dfp(capsys, "cache", "migrate", url)
    with DeltaCacheStore(url).run_lock("extract"):  # the lock the flows' CacheStore takes: one per cache
        assert main(["cache", "compact", url]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"dfp cache compact: error: cache compact refused: another run is writing to {url}") and \
        err.count("\n") == 1
    assert _table(_dfp(capsys, "cache", "info", url))["faces"]["version"] == "0"  # nothing was compacted


@pytest.mark.parametrize("command", ["info", "compact", "prune", "vacuum", "history", "migrate"])
def test_every_cache_command_and_option_has_help_text(command):
    function = cli.app["cache"][command].default_command
    assert function.__doc__
    hints = typing.get_type_hints(function, include_extras=True)
    for name in inspect.signature(function).parameters:
        parameters = [m for m in getattr(hints[name], "__metadata__", ()) if isinstance(m, Parameter)]
        assert parameters and parameters[0].help, f"dfp cache {command}: {name} has no help"


def test_the_flows_refuse_a_per_video_cache_in_one_line_until_it_is_migrated(tmp_path, capsys):
    url, copy = str(tmp_path / "cache"), str(tmp_path / "delta")
    _old_cache(url)
    for argv in (["train", url, "--out", str(tmp_path / "run")], ["extract", str(tmp_path), "--cache", url],
                 ["report", url]):
        assert main(argv) == 2  # refused before Prefect starts
        err = capsys.readouterr().err
        assert err.startswith(f"dfp {argv[0]}: error: {url} holds a cache in the per-video layout of earlier "
                              "versions") and f"`dfp cache migrate {url}`" in err and err.count("\n") == 1, err
    with pytest.raises(OldLayoutError, match=f"convert it once with `dfp cache migrate {url}`"):
        DeltaCacheStore(url)
    _dfp(capsys, "cache", "migrate", url, "--to", copy)
    assert len(CacheStore(url).read("videos")) == 2 and len(DeltaCacheStore(copy).read("videos")) == 2
    _dfp(capsys, "cache", "migrate", url)
    assert len(DeltaCacheStore(url).read("videos")) == 2
    with pytest.raises(ValueError, match=r"holds Delta Lake tables: read it with .*DeltaCacheStore"):
        CacheStore(url)
