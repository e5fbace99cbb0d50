"""Reading model files without running code from them: an exact allow-list for skops files, JSON that must be
JSON, a Keras config checked before Keras sees it, and the sha256 digests a run's card records.

A skops file is a zip of a JSON schema (`schema.json`) naming, for every object, its module, class and loader,
plus NumPy arrays. Before skops builds anything, every node of the schema must be one of the exact
(type, loader) pairs that this project's own models save: no prefix matching, no functions, no methods, no
types but `str`. A pickle, a zip without a schema or a schema naming anything else is refused, naming the file.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from pathlib import Path

# Every (module.class, skops loader) pair that a saved gbm pipeline or crop_gbm classifier holds (measured by
# saving each model kind: tests/features/test_model_files.py saves them again and loads them through this list).
# FunctionTransformer is here because ColumnTransformer's "passthrough" is one with func=None; a func would be a
# FunctionNode or TypeNode, and neither loader is allowed for anything but the `str` type.
SKOPS_ALLOWED = frozenset({
    ("builtins.dict", "DictNode"), ("builtins.list", "ListNode"), ("builtins.tuple", "TupleNode"),
    ("builtins.slice", "SliceNode"), ("builtins.str", "JsonNode"), ("builtins.int", "JsonNode"),
    ("builtins.float", "JsonNode"), ("builtins.bool", "JsonNode"), ("builtins.NoneType", "JsonNode"),
    ("builtins.str", "TypeNode"),
    *((f"numpy.{t}", "NdArrayNode") for t in ("ndarray", "float64", "float32", "int64", "int32", "uint64", "uint8",
                                               "bool_")),
    ("numpy.random._generator.Generator", "RandomGeneratorNode"),
    ("sklearn._loss._loss.CyHalfBinomialLoss", "LossNode"),
    ("sklearn._loss.link.Interval", "ObjectNode"),
    ("sklearn._loss.link.LogitLink", "ObjectNode"),
    ("sklearn._loss.loss.HalfBinomialLoss", "ObjectNode"),
    ("sklearn.calibration.CalibratedClassifierCV", "ObjectNode"),
    ("sklearn.calibration._CalibratedClassifier", "ObjectNode"),
    ("sklearn.calibration._SigmoidCalibration", "ObjectNode"),
    ("sklearn.compose._column_transformer.ColumnTransformer", "ObjectNode"),
    ("sklearn.ensemble._hist_gradient_boosting.binning._BinMapper", "ObjectNode"),
    ("sklearn.ensemble._hist_gradient_boosting.gradient_boosting.HistGradientBoostingClassifier", "ObjectNode"),
    ("sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor", "ObjectNode"),
    ("sklearn.pipeline.Pipeline", "ObjectNode"),
    ("sklearn.preprocessing._function_transformer.FunctionTransformer", "ObjectNode"),
    ("sklearn.preprocessing._label.LabelEncoder", "ObjectNode"),
})

# The (module, class) of every object in the config of a network that features.learn.models.build_cnn makes: the
# layers, their initialisers and dtype policy, the optimiser and loss it compiles with. Nothing else is loaded.
KERAS_ALLOWED = frozenset({
    *(("keras.layers", name) for name in ("InputLayer", "Rescaling", "RandomFlip", "RandomContrast",
                                          "RandomTranslation", "Conv2D", "BatchNormalization", "ReLU",
                                          "MaxPooling2D", "GlobalAveragePooling2D", "Dropout", "Dense")),
    ("keras.src.models.functional", "Functional"), ("keras", "DTypePolicy"),
    ("keras.initializers", "GlorotUniform"), ("keras.initializers", "Zeros"), ("keras.initializers", "Ones"),
    ("keras.optimizers", "Adam"), ("keras.losses", "BinaryCrossentropy"), ("None", "__keras_tensor__"),
})


class UnsafeModelFile(ValueError):
    """A model file that is not what this project saves: refused before anything in it is built."""


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a whole file, read in blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_digest(path: str | Path, expected: str | None) -> None:
    """Refuse a file whose sha256 is not the one its run's card recorded."""
    if expected is not None and sha256_file(path) != expected:
        raise UnsafeModelFile(f"refusing to load {path}: its sha256 is not the one recorded in the run's "
                              "model_card.json (the file was replaced or damaged after training)")


def _schema_nodes(node, found: set) -> None:
    if isinstance(node, dict):
        if "__class__" in node or "__loader__" in node:
            found.add((f"{node.get('__module__')}.{node.get('__class__')}", node.get("__loader__")))
        for value in node.values():
            _schema_nodes(value, found)
    elif isinstance(node, list):
        for value in node:
            _schema_nodes(value, found)


def _zipped_json(path: str | Path, member: str, kind: str):
    """The JSON document `member` of a zip model file; refused, naming the file, when there is none (a pickle)."""
    try:
        with zipfile.ZipFile(path) as archive:
            return json.loads(archive.read(member))
    except (zipfile.BadZipFile, KeyError, UnicodeDecodeError, json.JSONDecodeError, OSError) as exc:
        raise UnsafeModelFile(f"refusing to load {path}: it is not a {kind} model file written by dfp train "
                              f"({type(exc).__name__}: {exc})") from exc


def skops_types(path: str | Path) -> set[tuple[str, str]]:
    """The (type, loader) pairs of every node in a skops file's schema; a file that is no skops file is refused."""
    schema = _zipped_json(path, "schema.json", "skops")
    found: set[tuple[str, str]] = set()
    _schema_nodes(schema, found)
    return found


def load_skops(path: str | Path):
    """A skops file whose every node is in SKOPS_ALLOWED; refused, naming the file and the types, otherwise."""
    import skops.io as sio  # lazy: ~1 s to import, needed only to read or write a model file

    check_model_file(path)
    trusted = sio.get_untrusted_types(file=str(path))  # every one of them passed the exact check above
    return sio.load(str(path), trusted=trusted)


def read_json(path: str | Path) -> dict:
    """A JSON object from a model file, or a refusal naming the file (a pickle there is not JSON)."""
    try:
        value = json.loads(Path(path).read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UnsafeModelFile(f"refusing to load {path}: it is not a JSON model file written by dfp train "
                              f"({type(exc).__name__}: {exc})") from exc
    if not isinstance(value, dict):
        raise UnsafeModelFile(f"refusing to load {path}: expected a JSON object, found {type(value).__name__}")
    return value


def _keras_classes(node, found: set) -> None:
    if isinstance(node, dict):
        if "class_name" in node:
            found.add((str(node.get("module")), str(node["class_name"]), node.get("registered_name")))
        for value in node.values():
            _keras_classes(value, found)
    elif isinstance(node, list):
        for value in node:
            _keras_classes(value, found)


def check_keras_file(path: str | Path) -> None:
    """Refuse a .keras file whose config names any object outside KERAS_ALLOWED or outside Keras itself, before
    Keras reads it (safe_mode stops lambdas; this also stops custom classes from other modules)."""
    config = _zipped_json(path, "config.json", ".keras")
    found: set = set()
    _keras_classes(config, found)
    refused = sorted(f"{module}.{name}" for module, name, registered in found
                     if (module, name) not in KERAS_ALLOWED or registered not in (None, name))
    if refused:
        raise UnsafeModelFile(f"refusing to load {path}: its config names objects that dfp's CNN never saves: "
                              f"{', '.join(refused)}")


def check_model_file(path: str | Path) -> None:
    """Refuse a model file, by its kind (.skops, .keras, .json), that holds anything dfp does not save, without
    building anything from it."""
    suffix = Path(path).suffix
    if suffix == ".skops":
        refused = sorted(f"{name} ({loader})" for name, loader in skops_types(path) - SKOPS_ALLOWED)
        if refused:
            raise UnsafeModelFile(f"refusing to load {path}: it holds objects that dfp's models never save: "
                                  f"{', '.join(refused)}")
    elif suffix == ".keras":
        check_keras_file(path)
    elif suffix == ".json":
        read_json(path)
    else:
        raise UnsafeModelFile(f"refusing to load {path}: dfp saves models only as .skops, .keras or .json")
