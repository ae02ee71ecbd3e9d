"""Jobs for test_warm_launcher: one step that waits until it is interrupted (terminate), one that ends at once."""

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


@dg.op
def nothing() -> None:
    pass


@dg.job(executor_def=dg.in_process_executor)
def ends_at_once():
    nothing()


defs = dg.Definitions(jobs=[waits_for_terminate, ends_at_once])
