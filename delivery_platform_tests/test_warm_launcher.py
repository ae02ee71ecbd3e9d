"""The warm run launcher (delivery_platform/runs/launcher.py) on a real instance: a partitioned
iSpot run launched as the run queue launches it (`instance.launch_run`) succeeds and delivers its
files; the next run is forked from the same warm process, with the code location already imported;
terminate cancels a run in progress; a warm process that cannot start leaves runs to a cold process."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.definitions.reconstruct import ReconstructableRepository

from delivery_platform.runs.launcher import PARENT_TAG, PID_TAG, WARM_START, WarmRunLauncher
from delivery_platform_tests.fixtures import wait_for

ROOT = Path(__file__).resolve().parents[1]
DAY = "2026-11-20"  # the last day of the test calendar (fixtures.END_DATE)
LAUNCHER_YAML = """
telemetry:
  enabled: false
run_launcher:
  module: delivery_platform.runs.launcher
  class: WarmRunLauncher
  config:
    preload_modules: [delivery_platform.definitions, delivery_platform_tests.warm_jobs]
    terminate_grace_seconds: 10
"""


@pytest.fixture
def instance(data_dir, tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    (home / "dagster.yaml").write_text(LAUNCHER_YAML)
    with dg.DagsterInstance.from_config(str(home)) as instance:
        yield instance  # disposing it stops the warm process


def launch(instance, module: str, job: str, tags: dict | None = None) -> str:
    """Create the run with its code origin and launch it, as the queued run coordinator does."""
    recon = ReconstructableRepository.for_module(module, "defs", working_directory=str(ROOT)).get_reconstructable_job(job)
    run = instance.create_run_for_job(job_def=recon.get_definition(), job_code_origin=recon.get_python_origin(),
                                      tags=tags or {})
    instance.launch_run(run.run_id, workspace=None)
    return run.run_id


def finished(instance, run_id: str):
    run = instance.get_run_by_id(run_id)
    return run if run.is_finished else None


def engine_messages(instance, run_id: str) -> list[str]:
    return [e.message for e in instance.all_logs(run_id, of_type=dg.DagsterEventType.ENGINE_EVENT)]


def test_runs_fork_from_the_warm_process_and_deliver(instance, data_dir, monkeypatch):
    launcher = instance.run_launcher
    assert isinstance(launcher, WarmRunLauncher)
    warm_pid = launcher.warm()  # what the daemon pays once
    assert warm_pid != os.getpid()

    first = launch(instance, "delivery_platform.definitions", "ispot_daily_delivery", {"dagster/partition": DAY})
    run = wait_for(lambda: finished(instance, first), timeout=120, what="the first iSpot run")
    assert run.status == dg.DagsterRunStatus.SUCCESS, engine_messages(instance, first)[-3:]
    files = sorted(p.name for p in (data_dir / "outbox" / "ispot").rglob("*") if p.is_file())
    assert any(name.startswith("conversions_") for name in files), files

    # the second run: forked from the same warm process, which had imported the code location
    second = launch(instance, "delivery_platform.definitions", "ispot_daily_delivery",
                    {"dagster/partition": "2026-11-19"})
    run = wait_for(lambda: finished(instance, second), timeout=120, what="the second iSpot run")
    assert run.status == dg.DagsterRunStatus.SUCCESS
    for run_id in (first, second):
        tags = instance.get_run_by_id(run_id).tags
        assert tags[PARENT_TAG] == str(warm_pid), tags
        assert tags[PID_TAG] not in (str(warm_pid), str(os.getpid()))
        assert any(m.startswith(WARM_START) and f"warm process {warm_pid}," in m
                   for m in engine_messages(instance, run_id))
    # the run process Dagster reports is the forked child the launcher tagged
    started = [m for m in engine_messages(instance, second) if m.startswith("Started process for run")]
    assert started == [f"Started process for run (pid: {instance.get_run_by_id(second).tags[PID_TAG]})."]
    assert launcher.check_run_worker_health(instance.get_run_by_id(second)).status.value == "SUCCESS"
    assert launcher.warm() == warm_pid  # nothing changed: the same warm process
    # a changed environment (or code) is not what the warm process loaded: the next launch starts a new one
    monkeypatch.setenv("DELIVERY_WARM_TEST", "changed")
    changed = launcher.warm()
    assert changed != warm_pid
    os.kill(changed, signal.SIGKILL)  # a warm process that died is replaced at the next launch
    wait_for(lambda: launcher._server.poll() is not None, timeout=10, what="the warm process to die")
    assert launcher.warm() not in (changed, warm_pid)


def test_terminate_cancels_a_run_in_progress(instance):
    run_id = launch(instance, "delivery_platform_tests.warm_jobs", "waits_for_terminate")
    wait_for(lambda: any(e.dagster_event and e.dagster_event.event_type == dg.DagsterEventType.STEP_START
                         for e in instance.all_logs(run_id)), timeout=60, what="the step to start")
    run = instance.get_run_by_id(run_id)
    assert instance.run_launcher.check_run_worker_health(run).status.value == "RUNNING"
    started = time.monotonic()
    assert instance.run_launcher.terminate(run_id)
    run = wait_for(lambda: finished(instance, run_id), timeout=30, what="the run to end")
    assert run.status == dg.DagsterRunStatus.CANCELED
    assert time.monotonic() - started < 10  # the run stopped itself (SIGTERM), not the grace-period kill
    pid = int(run.tags[PID_TAG])
    wait_for(lambda: not Path(f"/proc/{pid}/cmdline").exists() or not Path(f"/proc/{pid}/cmdline").read_bytes(),
             timeout=10, what="the run's process to exit")
    assert not instance.run_launcher.terminate(run_id)  # already finished


def test_a_warm_process_that_cannot_start_falls_back_to_a_cold_run(data_dir, tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    (home / "dagster.yaml").write_text(LAUNCHER_YAML.replace("delivery_platform_tests.warm_jobs", "no_such_module"))
    with dg.DagsterInstance.from_config(str(home)) as instance:
        run_id = launch(instance, "delivery_platform_tests.warm_jobs", "ends_at_once")
        run = wait_for(lambda: finished(instance, run_id), timeout=60, what="the cold run")
        assert run.status == dg.DagsterRunStatus.SUCCESS
        assert PARENT_TAG not in run.tags and PID_TAG in run.tags  # its own process, `dagster api execute_run`
        messages = engine_messages(instance, run_id)
        assert any("starting the run cold" in m for m in messages) and not any(m.startswith(WARM_START)
                                                                              for m in messages)
