"""Discovery of videos in the layouts users have (DFDC, FaceForensics++, plain folders, CSV) and their leakage groups."""

from __future__ import annotations

import csv
import hashlib
import json
import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath

VIDEO_EXTENSIONS = frozenset({".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv", ".3gp"})
LABELS = frozenset({"REAL", "FAKE"})


class DatasetError(ValueError):
    """A dataset cannot be read at all (for example its metadata.json is not JSON)."""


@dataclass(frozen=True)
class VideoEntry:
    """One video as discovered: where it is, what it is, and which leakage group it belongs to."""

    video_id: str  # "<dataset>/<path relative to the dataset root, without extension>"
    dataset: str
    dataset_format: str  # dfdc | ffpp | folder
    path: str
    relpath: str
    label: str | None = None
    split: str | None = None
    original: str | None = None
    method: str | None = None
    compression: str | None = None
    identities: tuple[str, ...] = ()
    leakage_group: str = ""
    discovery_error: str | None = None  # set when the listing itself is unusable (outside the folder, malformed)
    warning: str | None = None  # set when the entry is usable but the listing was careless (a video it does not list)

    def metadata(self) -> dict:
        """The descriptive columns written to the videos table."""
        return {
            "video_id": self.video_id,
            "dataset": self.dataset,
            "dataset_format": self.dataset_format,
            "path": self.path,
            "relpath": self.relpath,
            "label": self.label,
            "split": self.split,
            "original": self.original,
            "method": self.method,
            "compression": self.compression,
            "leakage_group": self.leakage_group,
        }


@dataclass
class _UnionFind:
    parent: dict[str, str] = field(default_factory=dict)

    def find(self, item: str) -> str:
        self.parent.setdefault(item, item)
        root = item
        while self.parent[root] != root:
            root = self.parent[root]
        while self.parent[item] != root:  # path compression
            self.parent[item], item = root, self.parent[item]
        return root

    def union(self, a: str, b: str) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            # The smaller name becomes the root so group names do not depend on input order.
            lo, hi = sorted((ra, rb))
            self.parent[hi] = lo


def assign_leakage_groups(entries: list[VideoEntry]) -> list[VideoEntry]:
    """Give every entry the name of its connected component over shared identities.

    A fake shares an identity with its original (DFDC `original`; FF++ `A_B` with both `A` and `B`), so a
    fake and every video of its sources land in one group and can never be split apart.
    """
    uf = _UnionFind()
    for entry in entries:
        ids = entry.identities or (f"video:{entry.video_id}",)
        for other in ids[1:]:
            uf.union(ids[0], other)
        uf.find(ids[0])
    out = []
    for entry in entries:
        ids = entry.identities or (f"video:{entry.video_id}",)
        out.append(_with_group(entry, uf.find(ids[0])))
    return out


def _with_group(entry: VideoEntry, group: str) -> VideoEntry:
    """`replace(entry, leakage_group=group)` without re-running the frozen __init__ (a third of discovery's time
    at 100,000 videos): a copy of the fields with the group set."""
    if entry.leakage_group == group:
        return entry
    new = object.__new__(VideoEntry)
    new.__dict__.update(entry.__dict__, leakage_group=group)
    return new


def listing_warnings(entries: list[VideoEntry]) -> list[str]:
    """The warnings discovery attached to the entries, in entry order."""
    return [e.warning for e in entries if e.warning]


def _dataset_name(root: Path) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", root.name) or "dataset"


def _is_inside(root: Path, relpath: str) -> bool:
    if not relpath or os.path.isabs(relpath) or "\\" in relpath:
        return False
    return ".." not in relpath.split("/") and not relpath.startswith("~")  # the parts PurePosixPath would give


def _is_plain(relpath: str) -> bool:
    """A relative POSIX path that pathlib would leave as it is: no empty, `.` or `..` part, no leading slash."""
    return all(part and part != "." and part != ".." for part in relpath.split("/"))


def _suffix(name: str) -> str:
    """The extension of a file name, as `PurePath.suffix` gives it."""
    i = name.rfind(".")
    return name[i:] if 0 < i < len(name) - 1 else ""


def _missing_cause(root: Path, relpath: str, regular: frozenset[str] = frozenset()) -> str | None:
    """Why a video that was found or listed cannot be read, or None when it is there. `regular`: paths the
    listing already saw as files that are not symbolic links, which need no look."""
    if relpath in regular:
        return None
    path = root / relpath
    if path.is_symlink() and not path.exists():
        return f"{relpath} is a symbolic link to {os.readlink(path)}, which does not exist"
    return None


def _entry(dataset: str, fmt: str, root: Path, relpath: str, **kwargs) -> VideoEntry:
    if not _is_inside(root, relpath):
        stem, path = relpath, relpath
    elif _is_plain(relpath):  # the common case, without building two Path objects per video
        name = relpath.rpartition("/")[2]
        stem = relpath[:len(relpath) - len(_suffix(name))]
        root_s = str(root)
        path = f"{root_s}{relpath}" if root_s.endswith("/") else f"{root_s}/{relpath}"
    else:
        stem, path = str(PurePosixPath(relpath).with_suffix("")), str(root / relpath)
    return VideoEntry(
        video_id=f"{dataset}/{stem}",
        dataset=dataset,
        dataset_format=fmt,
        path=path,
        relpath=relpath,
        **kwargs,
    )


def discover_dfdc(root: Path) -> list[VideoEntry]:
    """A Kaggle DFDC folder: `*.mp4` plus `metadata.json` mapping file name to label, split and original."""
    meta_path = root / "metadata.json"
    try:
        metadata = json.loads(meta_path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DatasetError(f"cannot read {meta_path}: {exc}") from exc
    if not isinstance(metadata, dict):
        raise DatasetError(f"{meta_path} must map file names to entries, found {type(metadata).__name__}")
    dataset = _dataset_name(root)
    entries = []
    for name, info in sorted(metadata.items()):
        if not _is_inside(root, name):
            problem = f"metadata.json entry {name!r} points outside {root}"
            entries.append(_entry(dataset, "dfdc", root, name, discovery_error=problem, identities=(f"dfdc:{name}",)))
            continue
        problem = None
        if not isinstance(info, dict):
            problem = f"metadata.json entry {name!r} is malformed: expected an object, found {type(info).__name__}"
        elif str(info.get("label", "")).upper() not in LABELS:
            problem = f"metadata.json entry {name!r} is malformed: label {info.get('label')!r} is not REAL or FAKE"
        elif info.get("original") is not None and not _is_inside(root, str(info["original"])):
            problem = f"metadata.json entry {name!r} is malformed: original {info['original']!r} is not a file name"
        if problem:  # the labelling is bad, not the video: it is extracted (or stays cached) unlabelled
            entries.append(_entry(dataset, "dfdc", root, name, identities=(f"dfdc:{name}",),
                                  warning=f"{problem}: its labels are rejected, the video is kept unlabelled"))
            continue
        label = str(info["label"]).upper()
        original = info.get("original")
        # Identities name the source footage: a fake is identified by its original, a real clip by itself.
        identity = f"dfdc:{original}" if (label == "FAKE" and original) else f"dfdc:{name}"
        entries.append(
            _entry(
                dataset, "dfdc", root, name,
                label=label, split=info.get("split"), original=original, identities=(identity,),
            )
        )
    listed = set(metadata)
    for extra in sorted(p.name for p in root.iterdir() if p.suffix.lower() in VIDEO_EXTENSIONS and p.name not in listed):
        entries.append(_entry(
            dataset, "dfdc", root, extra, identities=(f"dfdc:{extra}",), discovery_error=_missing_cause(root, extra),
            warning=f"{root / extra} is in the folder but not in metadata.json: extracted unlabelled",
        ))
    return entries


_DFD_FAKE = re.compile(r"^(?P<target>\d+)_(?P<source>\d+)__(?P<scene>.+?)(__(?P<tag>[A-Z0-9]+))?$")
_DFD_REAL = re.compile(r"^(?P<actor>\d+)__(?P<scene>.+)$")
_YT_FAKE = re.compile(r"^(?P<target>\d+)_(?P<source>\d+)$")


def _ffpp_identities(stem: str, is_fake: bool, source_kind: str) -> tuple[str, ...]:
    if is_fake:
        if m := _DFD_FAKE.match(stem):
            return (f"ffpp-actor:{int(m['target'])}", f"ffpp-actor:{int(m['source'])}")
        if m := _YT_FAKE.match(stem):
            return (f"ffpp-youtube:{m['target']}", f"ffpp-youtube:{m['source']}")
        return (f"ffpp-video:{stem}",)
    if source_kind == "actors" and (m := _DFD_REAL.match(stem)):
        return (f"ffpp-actor:{int(m['actor'])}",)
    return (f"ffpp-youtube:{stem}",)


def discover_ffpp(root: Path) -> list[VideoEntry]:
    """FaceForensics++: `original_sequences/<source>/<comp>/videos` and `manipulated_sequences/<method>/<comp>/videos`."""
    dataset = _dataset_name(root)
    entries = []
    for kind, label in (("original_sequences", "REAL"), ("manipulated_sequences", "FAKE")):
        for video in sorted((root / kind).glob("*/*/videos/*")):
            if video.suffix.lower() not in VIDEO_EXTENSIONS:
                continue
            group_dir, compression = video.parent.parent.parent.name, video.parent.parent.name
            stem = video.stem
            is_fake = label == "FAKE"
            original = None
            if is_fake and (m := _YT_FAKE.match(stem)):
                original = m["target"]
            elif is_fake and (m := _DFD_FAKE.match(stem)):
                original = f"{m['target']}__{m['scene']}"
            entries.append(
                _entry(
                    dataset, "ffpp", root, video.relative_to(root).as_posix(),
                    label=label,
                    original=original,
                    method=group_dir if is_fake else None,
                    compression=compression,
                    identities=_ffpp_identities(stem, is_fake, group_dir),
                )
            )
    return entries


def _read_label_csv(csv_path: Path, root: Path, dataset: str, regular: frozenset[str] = frozenset()) -> list[VideoEntry]:
    try:
        with csv_path.open(newline="") as fh:
            reader = csv.DictReader(fh)
            rows = list(reader)
            columns = reader.fieldnames
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DatasetError(f"cannot read {csv_path}: {exc}") from exc
    # A misspelt header would otherwise unlabel every video silently; empty label cells stay allowed.
    if columns is not None and not {"path", "label"} <= set(columns):
        missing = " and ".join(c for c in ("path", "label") if c not in columns)
        raise DatasetError(f"{csv_path} has no {missing} column: its header has columns {','.join(columns)}, "
                           f"expected path,label[,original]")
    entries = []
    for line, row in enumerate(rows, start=2):
        rel = (row.get("path") or "").strip()
        label = (row.get("label") or "").strip().upper() or None
        original = (row.get("original") or "").strip() or None
        problem, rejected = None, None
        if not _is_inside(root, rel):
            problem = f"{csv_path.name} line {line}: path {rel!r} points outside {root}"
        elif cause := _missing_cause(root, rel, regular):
            problem = f"{csv_path.name} line {line}: {cause}"
        elif label is not None and label not in LABELS:
            rejected = f"{csv_path.name} line {line}: label {row.get('label')!r} is not REAL or FAKE"
        elif original is not None and not _is_inside(root, original):
            rejected = f"{csv_path.name} line {line}: original {original!r} points outside {root}"
        if problem or rejected:
            label, original = None, None
        source = original if (label == "FAKE" and original) else rel
        entries.append(
            _entry(
                dataset, "folder", root, rel,
                label=label,
                original=original,
                identities=(f"file:{dataset}/{source}",),
                discovery_error=problem,
                # the labelling is bad, not the video: it is extracted (or stays cached) unlabelled
                warning=rejected and f"{rejected}: its labels are rejected, the video is kept unlabelled",
            )
        )
    return entries


def discover_folder(root: Path) -> list[VideoEntry]:
    """Any folder of videos, searched recursively; labels come from `labels.csv` when present.

    Every video file found gets an entry: one labels.csv does not list is extracted unlabelled with a
    warning, and a dangling symbolic link becomes a failed row naming its target.
    """
    dataset = _dataset_name(root)
    labels_csv = root / "labels.csv"
    has_labels = labels_csv.is_file()
    found = _video_files(str(root))
    regular = frozenset(rel for rel, is_link in found.items() if not is_link)
    entries = _read_label_csv(labels_csv, root, dataset, regular) if has_labels else []
    listed = {e.relpath if _is_plain(e.relpath) else str(PurePosixPath(e.relpath)) for e in entries}
    for rel in sorted(found, key=lambda r: r.split("/")):  # the order of sorted Path objects: part by part
        if rel in listed:
            continue
        warning = f"{root / rel} is in the folder but not in labels.csv: extracted unlabelled" if has_labels else None
        entries.append(_entry(dataset, "folder", root, rel, identities=(f"file:{dataset}/{rel}",),
                              discovery_error=_missing_cause(root, rel, regular), warning=warning))
    return entries


def _video_files(root: str) -> dict[str, bool]:
    """Every video file under a folder, as what `Path.rglob("*")` finds (symbolic links to folders are not
    followed, unreadable folders are skipped): its POSIX path relative to the folder -> whether it is a symbolic
    link. Read from the directory entries alone, so a folder of regular files costs no stat per file; a
    link is kept whatever it points to, as `is_file() or is_symlink()` keeps it (a dangling one becomes a failed
    row)."""
    found: dict[str, bool] = {}
    pending = [("", root)]
    while pending:
        prefix, folder = pending.pop()
        try:
            with os.scandir(folder) as it:
                children = list(it)
        except PermissionError:
            continue
        for child in children:
            try:
                is_link = child.is_symlink()
                is_dir = child.is_dir()
                is_file = child.is_file()
            except OSError:
                continue
            if is_dir and not is_link:
                pending.append((f"{prefix}{child.name}/", child.path))
            elif (is_file or is_link) and _suffix(child.name).lower() in VIDEO_EXTENSIONS:
                found[prefix + child.name] = is_link
    return found


def _discover_roots(path: str | os.PathLike) -> list[tuple[Path, list[VideoEntry]]]:
    """The dataset roots behind one command-line argument, each with its videos."""
    p = Path(path).expanduser().resolve()
    if not p.exists():
        raise DatasetError(f"dataset {path} does not exist")
    if p.is_file():
        if p.suffix.lower() == ".csv":
            return [(p.parent, _read_label_csv(p, p.parent, _dataset_name(p.parent)))]
        return [(p.parent, [_entry(_dataset_name(p.parent), "folder", p.parent, p.name, identities=(f"file:{p}",))])]
    if (p / "metadata.json").is_file():
        return [(p, discover_dfdc(p))]
    if (p / "original_sequences").is_dir() or (p / "manipulated_sequences").is_dir():
        return [(p, discover_ffpp(p))]
    parts = sorted(d for d in p.iterdir() if d.is_dir() and (d / "metadata.json").is_file())
    if parts:  # a parent of DFDC parts, like dfdc_train_part_0 ... dfdc_train_part_49
        return [(d, discover_dfdc(d)) for d in parts]
    return [(p, discover_folder(p))]


def discover_one(path: str | os.PathLike) -> list[VideoEntry]:
    """The videos behind one command-line argument, without leakage groups."""
    return [e for _, found in _discover_roots(path) for e in found]


def _qualified_names(roots: list[Path]) -> dict[Path, str]:
    """The dataset name of every root, qualified where distinct roots share a folder name.

    Computed from the set of roots, not their order, so a video keeps its id whatever order the arguments
    come in; names that do not collide are kept as they are, which keeps existing caches valid.
    """
    by_name: dict[str, set[Path]] = {}
    for root in roots:
        by_name.setdefault(_dataset_name(root), set()).add(root)
    names = {}
    for name, group in by_name.items():
        if len(group) == 1:
            names.update((root, name) for root in group)
            continue
        qualified = {root: f"{_dataset_name(root.parent)}-{name}" for root in group}
        for root in group:
            if list(qualified.values()).count(qualified[root]) > 1:  # the parents share a name too
                names[root] = f"{qualified[root]}-{hashlib.sha1(str(root).encode()).hexdigest()[:8]}"
            else:
                names[root] = qualified[root]
    return names


def _renamed(entry: VideoEntry, dataset: str) -> VideoEntry:
    if dataset == entry.dataset:
        return entry
    old = f"file:{entry.dataset}/"
    # Folder identities carry the dataset name: rename them too, or two same-named roots would share groups.
    identities = tuple(f"file:{dataset}/{i[len(old):]}" if i.startswith(old) else i for i in entry.identities)
    return replace(entry, dataset=dataset, video_id=f"{dataset}/{entry.video_id.split('/', 1)[1]}",
                   identities=identities)


def discover(paths: list[str]) -> list[VideoEntry]:
    """Every video behind the given arguments, with unique ids and leakage groups across all of them."""
    found = [pair for path in paths for pair in _discover_roots(path)]
    names = _qualified_names([root for root, _ in found])
    entries: list[VideoEntry] = []
    seen_ids: set[str] = set()
    for root, root_entries in found:
        for entry in root_entries:
            entry = _renamed(entry, names[root])
            if entry.video_id in seen_ids:
                continue  # the same file given twice (one root given twice, or a folder and a file in it)
            seen_ids.add(entry.video_id)
            entries.append(entry)
    return assign_leakage_groups(entries)
