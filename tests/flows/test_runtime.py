import os

from flows.runtime import QUIET_ENV, WORKER_THREAD_ENV, configure_environment, make_task_runner


def test_telemetry_is_off_before_prefect_is_used():
    configure_environment()
    from prefect._internal.analytics.enabled import is_telemetry_enabled

    assert os.environ["DO_NOT_TRACK"] == "1"
    assert os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] == "false"
    assert not is_telemetry_enabled()


def test_local_cluster_is_single_threaded_process_workers_with_capped_pools():
    runner = make_task_runner(workers=3, dask_address=None)
    kwargs = runner.cluster_kwargs
    assert (kwargs["n_workers"], kwargs["threads_per_worker"], kwargs["processes"]) == (3, 1, True)
    assert all(kwargs["env"][k] == "1" for k in WORKER_THREAD_ENV)
    assert kwargs["env"]["DO_NOT_TRACK"] == QUIET_ENV["DO_NOT_TRACK"]


def test_existing_cluster_address_is_used_as_given():
    runner = make_task_runner(workers=None, dask_address="tcp://10.0.0.5:8786")
    assert runner.address == "tcp://10.0.0.5:8786" and not runner.cluster_kwargs
