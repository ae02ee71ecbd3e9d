"""Alerts: failed asset checks, failed runs, recoveries and missed delivery deadlines, sent once
each to the configured sinks (Slack, email, webhook)."""

from .model import Alert
from .sensors import build_alert_sensors, deadline_alerts, process_run
from .sinks import AlertSinks, alert_sinks_from_env

__all__ = ["Alert", "AlertSinks", "alert_sinks_from_env", "build_alert_sensors", "deadline_alerts", "process_run"]
