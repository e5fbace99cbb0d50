"""Every command of the README runs, as written, in a fresh folder: the README stays true.

The folder gets what the README's commands expect to find: `data/dfdc` (DFDC layout), `data/ffpp`
(FaceForensics++ layout), `data/my-clips` (the README's own labels.csv example), `data/inbox`, a local S3 server
with `my-bucket`, and a Dask scheduler in `$DASK_SCHEDULER`. The `make` lines are checked with `make -n`
(running `make test` inside the tests would recurse): they must run the commands the README says they run.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

README = REPO / "README.md"
BIN = Path(sys.executable).parent
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.M | re.S)


def blocks(language: str) -> list[str]:
    return [body for lang, body in FENCE.findall(README.read_text()) if lang == language]


def commands() -> list[str]:
    """Each line of the README's bash blocks, without its trailing comment."""
    lines = []
    for body in blocks("bash"):
        for line in body.splitlines():
            line = re.sub(r"\s+#\s.*$", "", line).strip()
            if line:
                lines.append(line)
    return lines


def test_the_readme_is_a_manual_not_a_notebook():
    text = README.read_text()
    assert len(text.splitlines()) < 200
    assert re.search(r"!\[[^\]]+\]\((docs/[^)]+\.png)\)", text)
    picture = re.search(r"!\[[^\]]+\]\((docs/[^)]+\.png)\)", text).group(1)
    assert (REPO / picture).stat().st_size > 10_000
    for link in re.findall(r"\]\(((?:docs|bench|infra)/[^)#]+)", text):
        assert (REPO / link).exists(), link
    quick = text.split("## Quick start", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    assert [line.split()[:2] for line in quick.strip().splitlines()] == [["make", "demo"], ["make", "test"]]


def test_the_make_targets_run_what_the_readme_says():
    make = [c for c in commands() if c.startswith("make ")]
    assert make == ["make demo", "make test"]
    dry = {target: subprocess.run(["make", "-n", "-o", ".venv/.installed", "-o", "browser", target], cwd=REPO,
                                  capture_output=True, text=True, check=True).stdout for target in ("demo", "test")}
    assert re.search(r"^\S*dfp demo --out demo-output$", dry["demo"], re.M)
    assert re.search(r"^\S*python -m pytest$", dry["test"], re.M)
    assert "tests/test_readme.py" in README.read_text()  # the README says this test exists


def _clips(root: Path, n: int, seed: int) -> Path:
    from features.video.demo import make_demo_dataset

    return make_demo_dataset(root, n_clips=n, frames=30, seed=seed)


def _workspace(tmp: Path) -> Path:
    """The data folders the README's commands name, made from generated clips."""
    import json

    data = tmp / "data"
    _clips(data / "dfdc", 10, seed=3)
    source = _clips(tmp / "source", 4, seed=4)
    meta = json.loads((source / "metadata.json").read_text())
    reals = sorted(k for k, v in meta.items() if v["label"] == "REAL")
    fakes = sorted(k for k, v in meta.items() if v["label"] == "FAKE")
    ffpp = data / "ffpp"
    for i, name in enumerate(reals):
        dest = ffpp / "original_sequences/youtube/c23/videos" / f"{i:03d}.mp4"
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(source / name, dest)
    for i, name in enumerate(fakes):
        dest = ffpp / "manipulated_sequences/Deepfakes/c23/videos" / f"{i:03d}_{(i + 1) % len(reals):03d}.mp4"
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(source / name, dest)
    # data/my-clips holds exactly the README's labels.csv example.
    csv = next(body for body in blocks("") if body.startswith("path,label"))
    clips = data / "my-clips"
    rows = [line.split(",") for line in csv.strip().splitlines()[1:]]
    pool = [source / reals[0], source / fakes[0], source / reals[1]]
    for (path, _, _), clip in zip(rows, pool, strict=True):
        (clips / path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(clip, clips / path)
    (clips / "labels.csv").write_text(csv)
    inbox = _clips(tmp / "inbox-source", 2, seed=5)
    (data / "inbox").mkdir()
    for clip in sorted(inbox.glob("*.mp4")):
        shutil.copy(clip, data / "inbox" / clip.name)
    return tmp


def _run(line: str, cwd: Path, env: dict) -> subprocess.CompletedProcess:
    argv = shlex.split(re.sub(r"\$\{?(\w+)\}?", lambda m: env.get(m.group(1), m.group(0)), line))  # as the shell
    if argv[0] == "dfp":
        argv[0] = str(BIN / "dfp")
    elif argv[0] == ".venv/bin/dfp":
        argv[0] = str(BIN / "dfp")
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_every_readme_command_runs_as_written(tmp_path, s3_endpoint):
    import fsspec
    from distributed import LocalCluster

    work = _workspace(tmp_path)
    fsspec.filesystem("s3", skip_instance_cache=True).mkdir("my-bucket")
    with LocalCluster(n_workers=1, threads_per_worker=1, dashboard_address=None) as cluster:
        env = {**os.environ, "DASK_SCHEDULER": cluster.scheduler_address, "DFP_HOME": str(tmp_path / "home")}
        # make demo is `dfp demo --out demo-output` (checked above): the lines after it read its output.
        ran = [("dfp demo --out demo-output", _run("dfp demo --out demo-output", work, env))]
        for line in commands():
            if not line.startswith("make "):
                ran.append((line, _run(line, work, env)))
    for line, result in ran:
        assert result.returncode == 0, f"{line}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    demo = ran[0][1].stdout.strip().splitlines()
    assert 3 <= len(demo) <= 10 and "report" in demo[-2] + demo[-1]
    assert (work / "demo-output/report.html").stat().st_size > 10_000
    predictions = (work / "scores/predictions.csv").read_text().splitlines()
    assert predictions[0] == "filename,label" and len(predictions) == 3
    assert all(0.0 <= float(row.split(",")[1]) <= 1.0 for row in predictions[1:])
    runs = dict(ran)[".venv/bin/dfp runs demo-output"].stdout
    assert "crop_linear" in runs


@pytest.mark.slow
def test_the_readme_python_snippets_read_a_cache(tmp_path):
    """The deltalake, duckdb and polars snippets, on a cache the README's own extract command made."""
    work = _workspace(tmp_path)
    env = {**os.environ, "DFP_HOME": str(tmp_path / "home")}
    extract = _run("dfp extract data/my-clips --cache cache", work, env)
    assert extract.returncode == 0, extract.stderr[-3000:]
    snippets = blocks("python")
    assert [s.split()[1] for s in snippets] == ["deltalake", "duckdb", "polars"]
    outputs = []
    for snippet in snippets:
        result = subprocess.run([sys.executable, "-c", snippet], cwd=work, capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, f"{snippet}\n{result.stderr[-2000:]}"
        outputs.append(result.stdout)
    assert "REAL" in outputs[0] and "FAKE" in outputs[0]  # label x status counts of the 3 listed clips
    assert "REAL" in outputs[1] and "FAKE" in outputs[1]
    assert "my-clips/" in outputs[2]  # main-face SSIM means per video
