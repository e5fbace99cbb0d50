"""Real/fake classifiers: calibrated gradient boosting on per-video features, and a small Keras CNN on face crops
(the frame-level models on crop descriptors live in features.learn.crop_models).

Models are saved in formats that load without running arbitrary code (features.learn.model_files): skops, checked
against the exact types a saved pipeline holds, for the gradient-boosted pipeline; Keras `.keras`, its config
checked against the CNN's own layers and loaded with safe_mode, for the CNN.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
from sklearn.calibration import CalibratedClassifierCV
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.inspection import permutation_importance
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedGroupKFold
from sklearn.pipeline import Pipeline

from features.learn.model_files import check_keras_file, load_skops, read_json
from features.learn.self_blend import self_blend
from features.learn.video_features import FEATURE_NAMES, decode_crops


def make_gbm(seed: int = 0, calibration_cv=3, columns: list[str] | None = None) -> Pipeline:
    """One Pipeline from raw feature rows to calibrated P(FAKE): column selection, boosting, Platt scaling."""
    boosting = HistGradientBoostingClassifier(
        max_iter=200, learning_rate=0.05, max_leaf_nodes=15, min_samples_leaf=5, l2_regularization=1.0,
        random_state=seed,
    )
    return Pipeline([
        ("features", ColumnTransformer([("keep", "passthrough", columns or FEATURE_NAMES)], remainder="drop")),
        ("model", CalibratedClassifierCV(boosting, method="sigmoid", cv=calibration_cv)),
    ])


def fit_gbm(X: pd.DataFrame, y: np.ndarray, groups: np.ndarray, seed: int = 0) -> Pipeline:
    """Fit the pipeline; calibration folds are grouped too, so a fake never calibrates against its original."""
    y = np.asarray(y, int)
    groups = np.asarray(groups)
    k = int(min(3, *(len(np.unique(groups[y == c])) for c in (0, 1))))
    if k < 2:
        raise ValueError("training needs at least two leakage groups of each label")
    splits = list(StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed).split(X, y, groups))
    splits = [(tr, te) for tr, te in splits if len(np.unique(y[tr])) == 2]
    # A feature missing on every training row (e.g. MTCNN confidence under the Haar detector) carries no
    # information and breaks histogram binning: leave it out of this model.
    present = X[FEATURE_NAMES].notna().to_numpy()
    columns = [c for i, c in enumerate(FEATURE_NAMES) if all(present[tr, i].any() for tr, _ in splits)]
    model = make_gbm(seed, calibration_cv=splits, columns=columns)
    model.fit(X, y)
    model.set_params(model__cv=k)  # the fitted calibrators are kept; the split indices need not be saved
    return model


def save_gbm(model: Pipeline, path: str | Path) -> None:
    import skops.io as sio  # lazy: ~1 s to import, needed only to read or write a model file

    sio.dump(model, str(path))


def load_gbm(path: str | Path) -> Pipeline:
    """Load a skops file holding only the exact types a saved gbm holds (features.learn.model_files.SKOPS_ALLOWED)."""
    return load_skops(path)


def gbm_importances(model: Pipeline, X: pd.DataFrame, y: np.ndarray, seed: int = 0) -> dict[str, float]:
    """Permutation importance (drop in ROC AUC) of each feature on the given rows."""
    result = permutation_importance(model, X, y, scoring="roc_auc", n_repeats=5, random_state=seed)
    return {name: float(v) for name, v in zip(X.columns, result.importances_mean, strict=True)}


# --- the CNN on face crops -------------------------------------------------------------------------------

CNN_SIZES = {"small": (64, (16, 32, 64)), "large": (128, (32, 64, 128, 256))}


CNN_AUGMENTATION = ("flip", "contrast", "translation")


def build_cnn(size: str = "small", seed: int = 0, augmentation: tuple[str, ...] = CNN_AUGMENTATION):
    """A small CNN trained from scratch (no pretrained weights exist here); outputs a FAKE logit per crop.

    `augmentation`, applied in training only: any of horizontal "flip", "contrast" (±20%) and "translation" (±5%).
    """
    import keras  # lazy: imports TensorFlow (seconds), only for the cnn model
    from keras import layers  # lazy: with keras

    makers = {"flip": lambda: layers.RandomFlip("horizontal", seed=seed),
              "contrast": lambda: layers.RandomContrast(0.2, seed=seed),
              "translation": lambda: layers.RandomTranslation(0.05, 0.05, seed=seed)}
    unknown = sorted(set(augmentation) - set(makers))
    if unknown:
        raise ValueError(f"unknown CNN augmentation {unknown}: choose from {sorted(makers)}")
    side, widths = CNN_SIZES[size]
    keras.utils.set_random_seed(seed)
    augmentation_layers = [makers[name]() for name in augmentation]
    inputs = keras.Input((side, side, 3))
    x = layers.Rescaling(1 / 255.0)(inputs)
    for layer in augmentation_layers:
        x = layer(x)
    for width in widths:
        x = layers.Conv2D(width, 3, padding="same", use_bias=False)(x)
        x = layers.BatchNormalization()(x)
        x = layers.ReLU()(x)
        x = layers.MaxPooling2D()(x)
    x = layers.GlobalAveragePooling2D()(x)
    x = layers.Dropout(0.3, seed=seed)(x)
    outputs = layers.Dense(1)(x)
    model = keras.Model(inputs, outputs, name=f"dfp_cnn_{size}")
    model.compile(optimizer=keras.optimizers.Adam(1e-3),
                  loss=keras.losses.BinaryCrossentropy(from_logits=True), metrics=["accuracy"])
    return model


def keras_device() -> str:
    """Where Keras trains in this process and with what: "GPU (name)" or "CPU", then the Keras version and the
    backend that KERAS_BACKEND chose (TensorFlow by default; a saved .keras loads on any backend)."""
    import keras  # lazy: imports TensorFlow (seconds), only for the cnn model

    backend = keras.backend.backend()
    if backend == "torch":
        import torch as module  # lazy: only the backend Keras runs on

        device = f"GPU ({module.cuda.get_device_name(0)})" if module.cuda.is_available() else "CPU"
    elif backend == "jax":
        import jax as module  # lazy: only the backend Keras runs on

        first = module.devices()[0]
        device = "CPU" if first.platform == "cpu" else f"GPU ({first.device_kind})"
    else:
        import tensorflow as module  # lazy: only the backend Keras runs on

        gpus = module.config.list_physical_devices("GPU")
        device = f"GPU ({gpus[0].name})" if gpus else "CPU"
    return f"{device} (Keras {keras.__version__}, {backend} {module.__version__})"


def crop_array(jpegs, side: int) -> np.ndarray:
    """Decode JPEG crops to an (n, side, side, 3) RGB uint8 array."""
    out = [cv2.cvtColor(cv2.resize(image, (side, side), interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2RGB)
           for image in decode_crops(jpegs)]
    return np.stack(out) if out else np.zeros((0, side, side, 3), np.uint8)


def self_blended_array(jpegs, side: int, margin: float, rng: np.random.Generator) -> np.ndarray:
    """A self-blended fake of each crop, blended at full crop resolution, then sized like crop_array."""
    out = [cv2.cvtColor(cv2.resize(self_blend(image, margin, rng), (side, side), interpolation=cv2.INTER_AREA),
                        cv2.COLOR_BGR2RGB) for image in decode_crops(jpegs)]
    return np.stack(out) if out else np.zeros((0, side, side, 3), np.uint8)


@dataclass
class CnnModel:
    """The Keras network plus a Platt scaling of its video logits, fitted on held-out training groups."""

    network: object
    scale: float = 1.0
    shift: float = 0.0


def fit_cnn(crops: pd.DataFrame, labels: dict[str, int], groups: dict[str, str], size: str = "small",
            epochs: int = 8, seed: int = 0, self_blend_margin: float | None = None, batch_size: int = 32,
            augmentation: tuple[str, ...] = CNN_AUGMENTATION) -> CnnModel:
    """Train on stored crops of the main face; a quarter of the leakage groups is held out to calibrate.

    With `self_blend_margin` (the crops' margin), every REAL training crop also yields a self-blended fake.
    """
    side = CNN_SIZES[size][0]
    network = build_cnn(size, seed, augmentation)
    vids = np.array(sorted(labels))
    group_of = np.array([groups[v] for v in vids])
    rng = np.random.default_rng(seed)
    unique = np.unique(group_of)
    held = set(rng.choice(unique, size=max(1, len(unique) // 4), replace=False)) if len(unique) >= 4 else set()
    calib = {v for v, g in zip(vids, group_of, strict=True) if g in held}
    if len({labels[v] for v in calib}) < 2 or len({labels[v] for v in set(vids) - calib}) < 2:
        calib = set()  # too few groups to hold any out: the network's own scale is kept
    train = crops[~crops.video_id.isin(calib)]
    x = crop_array(train.crop_jpeg, side)
    y = train.video_id.map(labels).to_numpy(np.float32)
    if self_blend_margin is not None:
        blended = self_blended_array(train[y == 0].crop_jpeg, side, self_blend_margin, rng)
        x = np.concatenate([x, blended])
        y = np.concatenate([y, np.ones(len(blended), np.float32)])
    order = rng.permutation(len(x))
    network.fit(x[order], y[order], epochs=epochs, batch_size=batch_size, verbose=0, shuffle=True)
    model = CnnModel(network)
    if calib:
        ids = sorted(calib)
        logits = np.array([video_logit(network, crops[crops.video_id == v], side) for v in ids])
        keep = np.isfinite(logits)
        platt = LogisticRegression(C=1.0).fit(logits[keep, None], [labels[v] for v, k in zip(ids, keep, strict=True) if k])
        model.scale, model.shift = float(platt.coef_[0, 0]), float(platt.intercept_[0])
    return model


def video_logit(network, crops: pd.DataFrame, side: int) -> float:
    """Mean frame logit of one video's crops (NaN without crops)."""
    if len(crops) == 0:
        return math.nan
    return float(network.predict(crop_array(crops.crop_jpeg, side), verbose=0).ravel().mean())


def cnn_video_scores(model: CnnModel, crops: pd.DataFrame, video_ids: list[str]) -> dict[str, float]:
    """P(FAKE) per video: the calibrated sigmoid of the mean frame logit.

    Averaging logits (a geometric mean of the frames' odds) rather than probabilities lets many mildly
    confident frames outvote one extreme frame, so a few badly cropped or blurred frames do not decide a video.
    """
    side = model.network.input_shape[1]
    scores = {}
    for vid in video_ids:
        logit = video_logit(model.network, crops[crops.video_id == vid], side)
        z = model.scale * logit + model.shift
        scores[vid] = math.nan if not math.isfinite(z) else float(1 / (1 + math.exp(-max(min(z, 30.0), -30.0))))
    return scores


def save_cnn(model: CnnModel, path: str | Path) -> None:
    """The network as .keras, its calibration as JSON beside it."""
    model.network.save(str(path))
    Path(str(path) + ".calibration.json").write_text(json.dumps({"scale": model.scale, "shift": model.shift}))


def load_cnn(path: str | Path) -> CnnModel:
    """The network (its config checked against build_cnn's layers first, then loaded in safe mode) and its
    calibration."""
    import keras  # lazy: imports TensorFlow (seconds), only for the cnn model

    check_keras_file(path)
    calibration = read_json(str(path) + ".calibration.json")
    network = keras.models.load_model(str(path), safe_mode=True, compile=False)
    return CnnModel(network, float(calibration["scale"]), float(calibration["shift"]))

