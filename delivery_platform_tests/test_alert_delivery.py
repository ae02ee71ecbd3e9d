"""Alerts reach every sink at least once and never twice: Slack throttling, an SMTP outage, the
same alert raised twice, and a sink that stays down (visible as a failing sensor tick)."""

from __future__ import annotations

import time

import dagster as dg
import pytest
from aiosmtpd.controller import Controller

from delivery_platform.alerts import Alert, AlertSinks
from delivery_platform.alerts.outbox import AlertOutbox
from delivery_platform.alerts.sensors import AlertSinkDown, build_alert_sensors
from delivery_platform_tests.http_doubles import Recorder
from delivery_platform_tests.servers import _free_port
from delivery_platform_tests.test_alerts import Inbox

ALERT = Alert("check_failed", "ispot", "[ERROR] check spec failed on ispot/conversions 2026-11-19",
              deliverable="conversions", partition="2026-11-19", check="spec")


@pytest.mark.fault("alerts", "Slack answers 429 (Retry-After) then 200", "slack_sdk waits and retries; the message "
                   "arrives exactly once")
def test_slack_throttling_then_ok_delivers_once(data_dir, ledger_backend):
    with Recorder(script=[(429, {"Retry-After": "1"})]) as slack:
        sinks = AlertSinks(slack_token="xoxb-test", slack_channel="#deliveries", slack_base_url=slack.url + "/api/")
        started = time.monotonic()
        assert sinks.send(ALERT) == ["slack"]
        assert time.monotonic() - started >= 1  # Retry-After honoured
        assert sinks.send(ALERT) == []  # the same alert again: already delivered
        assert sinks.flush() == []
    assert len(slack.requests) == 2 and len(slack.slack_texts()) == 2  # one refused, one accepted
    assert [r["status"] for r in AlertOutbox().rows()] == ["sent"]


@pytest.mark.fault("alerts", "SMTP server down, then up", "the alert waits in the outbox and arrives exactly once "
                   "when the server is back")
def test_smtp_down_then_up_delivers_once(data_dir, ledger_backend):
    port = _free_port()
    sinks = AlertSinks(smtp_host="127.0.0.1", smtp_port=port, email_to="oncall@example.com", timeout_s=2)
    assert sinks.send(ALERT) == []  # nothing listens: queued
    row = AlertOutbox().rows()[0]
    assert row["status"] == "pending" and row["attempts"] == 1 and "ConnectionRefusedError" in row["last_error"]
    assert sinks.flush() == []  # not due yet (backoff)
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        later = time.time() + 31  # past the first backoff
        assert sinks.flush(now=later) == ["email"]
        assert sinks.flush(now=later + 3600) == []
    finally:
        controller.stop()
    assert len(inbox.messages) == 1 and ALERT.title in inbox.messages[0]


def test_one_sink_down_does_not_hold_back_the_others_and_each_gets_it_once(data_dir, ledger_backend):
    port = _free_port()
    with Recorder() as hook:
        sinks = AlertSinks(webhook_url=hook.url, smtp_host="127.0.0.1", smtp_port=port, email_to="o@example.com",
                           timeout_s=2)
        assert sinks.send(ALERT) == ["webhook"]
        inbox = Inbox()
        controller = Controller(inbox, hostname="127.0.0.1", port=port)
        controller.start()
        try:
            assert sinks.flush(now=time.time() + 31) == ["email"]
        finally:
            controller.stop()
    assert len(hook.requests) == 1 and len(inbox.messages) == 1


@pytest.mark.fault("alerts", "a sink that stays down", "the alerts_retry sensor's tick fails naming the sink "
                   "(visible in the UI and the daemon log); nothing is dropped")
def test_a_sink_that_stays_down_fails_the_retry_sensor(data_dir, monkeypatch, ledger_backend):
    monkeypatch.setenv("ALERT_STUCK_MINUTES", "0")
    sinks = AlertSinks(smtp_host="127.0.0.1", smtp_port=_free_port(), email_to="o@example.com", timeout_s=2)
    sinks.send(ALERT)
    sensor = next(s for s in build_alert_sensors("local", {}) if s.name == "alerts_retry")
    with pytest.raises(AlertSinkDown, match=r"email: 1 alert\(s\) since .*ConnectionRefusedError"):
        sensor(dg.build_sensor_context(), alert_sinks=sinks)
    assert [r["status"] for r in AlertOutbox().rows()] == ["pending"]


def test_an_idomoo_batch_is_due_on_its_send_date(data_dir, ledger_backend):
    import datetime as dt

    from delivery_platform.alerts import deadline_alerts
    from delivery_platform.alerts.sensors import AlertLog
    from delivery_platform.vendors import DEADLINES
    from delivery_platform.ledger import Ledger

    deadlines = {("idomoo", "data_file"): DEADLINES[("idomoo", "data_file")]}
    with Recorder() as hook:
        sinks = AlertSinks(webhook_url=hook.url)
        morning = dt.datetime(2026, 11, 21, 11, 59, tzinfo=dt.timezone.utc)
        assert [a.partition for a in deadline_alerts(deadlines, Ledger(), AlertLog(), sinks, morning)] == ["2026-11-20"]
        noon = dt.datetime(2026, 11, 21, 12, 1, tzinfo=dt.timezone.utc)
        assert [a.partition for a in deadline_alerts(deadlines, Ledger(), AlertLog(), sinks, noon)] == ["2026-11-21"]
