"""The clock seam: one `now()` for every date rule, pinned by DELIVERY_NOW in every process."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys

import pytest

from delivery_platform.core import clock
from delivery_platform.vendors.ispot import spec as ispot_spec


def test_the_suite_runs_on_a_pinned_clock_not_the_wall_clock():
    assert clock.is_pinned()
    assert clock.now() == dt.datetime(2026, 11, 21, 9, tzinfo=dt.timezone.utc)
    assert clock.yesterday() == dt.date(2026, 11, 20)


def test_pinned_block_restores_the_previous_value():
    before = os.environ["DELIVERY_NOW"]
    with clock.pinned(dt.date(2027, 3, 1)) as when:
        assert when == dt.datetime(2027, 3, 1, tzinfo=dt.timezone.utc)
        assert clock.today() == dt.date(2027, 3, 1)
    assert os.environ["DELIVERY_NOW"] == before


def test_a_bad_pin_names_the_variable(monkeypatch):
    monkeypatch.setenv("DELIVERY_NOW", "next tuesday")
    with pytest.raises(ValueError, match="DELIVERY_NOW='next tuesday'"):
        clock.now()


def test_unpinned_means_the_wall_clock(monkeypatch):
    monkeypatch.delenv("DELIVERY_NOW")
    assert abs((clock.now() - dt.datetime.now(dt.timezone.utc)).total_seconds()) < 5


def test_child_processes_read_the_same_clock():
    with clock.pinned("2030-01-02T03:04:05Z"):
        out = subprocess.run([sys.executable, "-c", "from delivery_platform.core import clock; print(clock.now())"],
                             capture_output=True, text=True, check=True).stdout.strip()
    assert out == "2030-01-02 03:04:05+00:00"


def test_ispot_window_follows_the_clock():
    with clock.pinned("2026-11-21T09:00:00Z"):
        assert ispot_spec.processing_window("2026-11-20", clock.now())[0] == "standard"
    with clock.pinned("2026-12-20T09:00:00Z"):
        assert ispot_spec.processing_window("2026-11-20", clock.now())[0] == "paid_reprocessing"
