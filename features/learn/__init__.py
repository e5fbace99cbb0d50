"""Turning cached tables into verdicts: per-video features, per-crop descriptors, the self-blended fakes, the
model kinds (one class each in `kinds`, behind the `model_kind` interface, named in the `registry`), fitting
them (`training`) on a `training_set`, their safe model files, and the one evaluation harness (`evaluation`:
grouped folds, metrics, prior baseline, bootstrap intervals).

Pure functions on arrays and frames: it reads no cache and draws nothing.
"""
