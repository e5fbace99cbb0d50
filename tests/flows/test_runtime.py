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


def test_a_worker_on_every_core_decodes_single_threaded_unless_the_user_chose():
    from features.config import ExtractConfig
    from flows.extract import worker_per_core_settings

    cores = os.cpu_count()
    busy = worker_per_core_settings(ExtractConfig(workers=cores))
    assert (busy.prefetch_frames, busy.decode_threads) == (0, 1)
    chosen = worker_per_core_settings(ExtractConfig(workers=cores, prefetch_frames=4))
    assert (chosen.prefetch_frames, chosen.decode_threads) == (4, 1)
    remote = worker_per_core_settings(ExtractConfig(dask_address="tcp://h:8786"))
    assert (remote.prefetch_frames, remote.decode_threads) == (8, 0)
    assert busy.config_hash == ExtractConfig().config_hash  # not part of the cache key


def test_shared_storage_check_names_the_worker_and_path_it_cannot_see_and_cleans_up(tmp_path, monkeypatch):
    import pytest

    from flows.runtime import check_shared_storage

    class TwoMachines:
        """One worker shares our disk, the other has none of our paths."""

        def run(self, function, paths):
            assert all(os.path.isabs(p) for p in paths)  # workers run in other directories
            return {"tcp://here:1": function(paths), "tcp://elsewhere:2": list(paths)}

    monkeypatch.chdir(tmp_path)
    (tmp_path / "videos").mkdir()
    with pytest.raises(RuntimeError) as error:
        check_shared_storage(TwoMachines(), ["cache", "s3://bucket/runs"], read=["videos"])
    message = str(error.value)
    assert f"  tcp://elsewhere:2: {tmp_path / 'cache'}, {tmp_path / 'videos'}" in message
    assert "tcp://here:1" not in message and "s3://bucket" not in message
    assert list((tmp_path / "cache").iterdir()) == []  # the marker file is gone
    check_shared_storage(TwoMachines(), ["s3://bucket/cache"])  # nothing local: nothing to check
