"""The model kinds by name: the one place that lists them. The config's model type, the CLI's choices, the file
names a run directory holds and the loaders all come from here.

Adding a model is one new module in features.learn.kinds (a features.learn.model_kind.VideoModel) and one line
in MODEL_KINDS below (or `register(cls)` at run time, as the tests do).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import PurePath

from features.learn.kinds.cnn import Cnn
from features.learn.kinds.crop_gbm import CropGbm
from features.learn.kinds.crop_linear import CropLinear
from features.learn.kinds.gbm import Gbm
from features.learn.model_kind import VideoModel
from features.learn.training_set import READABLE

DEFAULT_MODEL = "crop_linear"
# The formats features.learn.model_files reads without running code.
SAFE_SUFFIXES = (".skops", ".keras", ".json")

MODEL_KINDS: dict[str, type[VideoModel]] = {}


def register(kind: type[VideoModel]) -> type[VideoModel]:
    """Name a model kind (usable as a class decorator); refuses a second kind of that name or model file, and a
    file format that dfp does not load safely."""
    problems = []
    if kind.name in MODEL_KINDS:
        problems.append(f"the name {kind.name!r} is taken")
    if PurePath(kind.model_file).suffix not in SAFE_SUFFIXES:
        problems.append(f"its model file {kind.model_file} is not one of {', '.join(SAFE_SUFFIXES)}")
    if any(other.model_file == kind.model_file for other in MODEL_KINDS.values()):
        problems.append(f"another kind saves {kind.model_file}")
    if not kind.reads or not kind.reads <= READABLE:
        problems.append(f"it reads {sorted(kind.reads)}, not a non-empty part of {sorted(READABLE)}")
    if problems:
        raise ValueError(f"cannot register model kind {kind.__name__}: " + "; ".join(problems))
    MODEL_KINDS[kind.name] = kind
    return kind


def unregister(name: str) -> None:
    MODEL_KINDS.pop(name)


def get(name: str) -> type[VideoModel]:
    """The model kind of a name; an unknown name is refused with the known ones."""
    try:
        return MODEL_KINDS[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}: choose from {', '.join(model_names())}") from None


def model_names() -> list[str]:
    """The registered model names, the default (DEFAULT_MODEL) first, then in registration order."""
    return sorted(MODEL_KINDS, key=lambda name: name != DEFAULT_MODEL)


def model_help() -> str:
    """One line per kind, for the config's and the CLI's help: `name: description`, the default marked."""
    return "; ".join(f"{name}{' (default)' if name == DEFAULT_MODEL else ''}: {MODEL_KINDS[name].description}"
                     for name in model_names())


def build(name: str, settings: Mapping | None = None) -> VideoModel:
    """An unfitted model of kind `name`, with the seed and the options it takes out of `settings` (a TrainConfig's
    fields, or a dict of some of them)."""
    kind = get(name)
    settings = dict(settings or {})
    return kind(seed=settings.get("seed", 0), **{k: settings[k] for k in kind.options if k in settings})


# One line per kind, the default first.
register(CropLinear)
register(Gbm)
register(CropGbm)
register(Cnn)
