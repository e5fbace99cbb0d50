"""Model files load only when they hold exactly what dfp saves: gadgets, pickles and foreign layers are refused."""

from __future__ import annotations

import builtins
import os
import pickle
import zipfile

import numpy as np
import pandas as pd
import pytest
import skops.io as sio
from sklearn.dummy import DummyClassifier
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer

from features.learn.model_files import UnsafeModelFile, check_digest, load_skops, read_json, sha256_file, skops_types
from features.learn.models import fit_gbm, load_gbm, save_gbm
from features.learn.video_features import FEATURE_NAMES


def gadget_pipeline(marker) -> Pipeline:
    """The issue's gadget: dict(PAYLOAD=1) -> max -> exec(PAYLOAD), ending in a classifier."""
    payload = f"open({str(marker)!r}, 'w').write('ran')"
    return Pipeline([("a", FunctionTransformer(func=builtins.dict, kw_args={payload: 1})),
                     ("b", FunctionTransformer(func=builtins.max)),
                     ("c", FunctionTransformer(func=builtins.exec)),
                     ("d", DummyClassifier())])


def write_gadget(path, marker) -> None:
    sio.dump(gadget_pipeline(marker), str(path))


def test_the_exec_gadget_is_refused_before_anything_runs(tmp_path):
    marker = tmp_path / "marker"
    write_gadget(tmp_path / "model.skops", marker)
    with pytest.raises(UnsafeModelFile) as caught:
        load_gbm(tmp_path / "model.skops")
    message = str(caught.value)
    assert str(tmp_path / "model.skops") in message
    assert "builtins.exec" in message and "builtins.dict (TypeNode)" in message
    assert not marker.exists()


def test_a_function_transformer_with_an_allowed_class_but_a_function_is_refused(tmp_path):
    sio.dump(FunctionTransformer(func=os.system), str(tmp_path / "m.skops"))
    with pytest.raises(UnsafeModelFile, match="posix.system|nt.system"):
        load_skops(tmp_path / "m.skops")


def test_a_pickle_is_refused_naming_the_file(tmp_path):
    path = tmp_path / "model.skops"
    path.write_bytes(pickle.dumps(DummyClassifier()))
    with pytest.raises(UnsafeModelFile, match=f"refusing to load {path}: it is not a skops model file"):
        load_gbm(path)
    with pytest.raises(UnsafeModelFile, match=f"refusing to load {path}: it is not a JSON model file"):
        read_json(path)


def test_a_zip_without_a_skops_schema_is_refused(tmp_path):
    path = tmp_path / "model.skops"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("other.txt", "x")
    with pytest.raises(UnsafeModelFile, match="not a skops model file.*KeyError"):
        load_skops(path)


def _features(n=60):
    rng = np.random.default_rng(0)
    X = pd.DataFrame(rng.normal(size=(n, len(FEATURE_NAMES))), columns=FEATURE_NAMES)
    X.iloc[:4, 2] = np.nan
    return X, (X[FEATURE_NAMES[0]] > 0).astype(int).to_numpy(), (np.arange(n) // 2).astype(str)


def test_every_type_our_models_save_is_in_the_exact_list_and_round_trips(tmp_path):
    X, y, groups = _features()
    gbm = fit_gbm(X, y, groups)
    save_gbm(gbm, tmp_path / "gbm.skops")
    assert np.array_equal(load_gbm(tmp_path / "gbm.skops").predict_proba(X), gbm.predict_proba(X))
    boosting = HistGradientBoostingClassifier(max_iter=20, random_state=0).fit(X.to_numpy(np.float32), y)
    sio.dump(boosting, str(tmp_path / "crop.skops"))  # what save_crop_gbm writes
    again = load_skops(tmp_path / "crop.skops")
    assert np.array_equal(again.predict_proba(X.to_numpy(np.float32)), boosting.predict_proba(X.to_numpy(np.float32)))
    # The check reads the schema's every node: both files hold FunctionTransformer-free or func=None nodes only.
    assert not any(loader in ("FunctionNode", "MethodNode") for _, loader in skops_types(tmp_path / "gbm.skops"))


def test_a_digest_mismatch_is_refused(tmp_path):
    path = tmp_path / "model.json"
    path.write_text("{}")
    digest = sha256_file(path)
    check_digest(path, digest)
    path.write_text('{"x": 1}')
    with pytest.raises(UnsafeModelFile, match="sha256 is not the one recorded"):
        check_digest(path, digest)


def test_a_keras_file_naming_a_foreign_layer_is_refused(tmp_path):
    from features.learn.model_files import check_keras_file
    from features.learn.models import build_cnn

    build_cnn("small").save(str(tmp_path / "model.keras"))
    check_keras_file(tmp_path / "model.keras")  # our own network passes
    with zipfile.ZipFile(tmp_path / "model.keras") as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    members["config.json"] = members["config.json"].replace(b'"module": "keras.layers", "class_name": "Dense"',
                                                            b'"module": "evil.layers", "class_name": "Dense"')
    with zipfile.ZipFile(tmp_path / "evil.keras", "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    with pytest.raises(UnsafeModelFile, match="evil.layers.Dense"):
        check_keras_file(tmp_path / "evil.keras")
