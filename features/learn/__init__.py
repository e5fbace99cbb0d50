"""Turning cached tables into verdicts: per-video features, per-crop descriptors, the self-blended fakes, the
model kinds, their safe model files, and the evaluation harness (grouped folds, metrics, prior baseline).

Pure functions on arrays and frames: it reads no cache and draws nothing.
"""
