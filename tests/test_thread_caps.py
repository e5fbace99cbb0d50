"""The test session's thread caps (conftest.py) are in force, and a test can ask for more."""

import os

import cv2
import numpy as np
import pytest
from threadpoolctl import threadpool_info


def _pool_sizes() -> set[int]:
    np.dot(np.ones((64, 64)), np.ones((64, 64)))  # make sure the BLAS pool is loaded
    return {pool["num_threads"] for pool in threadpool_info()}


def test_every_pool_runs_one_thread_by_default():
    assert cv2.getNumThreads() == 1
    assert _pool_sizes() == {1}
    assert all(os.environ[name] == "1" for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "TF_NUM_INTRAOP_THREADS"))


@pytest.mark.threads(2)
def test_a_test_can_ask_for_more_threads():
    assert cv2.getNumThreads() == 2
    assert _pool_sizes() == {2}


def test_the_cap_is_back_after_a_test_that_asked_for_more():
    assert cv2.getNumThreads() == 1 and _pool_sizes() == {1}

