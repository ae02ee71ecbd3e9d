"""A job for test_warm_launcher's terminate test: one step that waits until it is interrupted."""

from __future__ import annotations

import time

import dagster as dg


@dg.op
def wait_for_terminate() -> None:
    for _ in range(1200):  # two minutes at most: terminate interrupts it long before
        time.sleep(0.1)


@dg.job(executor_def=dg.in_process_executor)
def waits_for_terminate():
    wait_for_terminate()


defs = dg.Definitions(jobs=[waits_for_terminate])
