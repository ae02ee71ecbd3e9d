"""Where alerts go: a Slack channel (the Slack Web API through slack_sdk, which dagster-slack
uses), an email (SMTP) and a generic JSON webhook. Each is optional; secrets are EnvVars."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import smtplib
from email.message import EmailMessage
from typing import Optional

import dagster as dg

from .model import Alert, scrub
from .outbox import AlertOutbox

log = logging.getLogger(__name__)


class AlertSinks(dg.ConfigurableResource):
    """Resource `alert_sinks`. From env: `ALERT_SLACK_TOKEN`, `ALERT_SLACK_CHANNEL`, `ALERT_SLACK_BASE_URL`,
    `ALERT_SMTP_HOST`, `ALERT_SMTP_PORT`, `ALERT_SMTP_USERNAME`, `ALERT_SMTP_PASSWORD`, `ALERT_EMAIL_FROM`,
    `ALERT_EMAIL_TO`, `ALERT_WEBHOOK_URL`, `DAGSTER_UI_URL` (links to runs)."""

    slack_token: Optional[str] = None
    slack_channel: Optional[str] = None
    slack_base_url: str = "https://slack.com/api/"
    smtp_host: Optional[str] = None
    smtp_port: int = 25
    smtp_username: Optional[str] = None
    smtp_password: Optional[str] = None
    email_from: str = "delivery-platform@localhost"
    email_to: Optional[str] = None
    webhook_url: Optional[str] = None
    ui_url: str = "http://127.0.0.1:3000"
    timeout_s: float = 10.0

    def configured(self) -> list[str]:
        return [name for name, on in (("slack", self.slack_token and self.slack_channel),
                                      ("email", self.smtp_host and self.email_to), ("webhook", self.webhook_url)) if on]

    def send(self, alert: Alert, key: str | None = None) -> list[str]:
        """Queue the alert for every configured sink, once per `key` (default: its content), and
        deliver it now where the sink answers; returns the sinks that accepted it in this call.
        What fails stays queued and the `alerts_retry` sensor sends it later (alerts/outbox.py)."""
        sinks = self.configured()
        if not sinks:
            return []
        key = key or alert_key(alert)
        outbox = AlertOutbox()
        outbox.enqueue(key, sinks, alert)
        return self.flush(outbox, key=key)

    def flush(self, outbox: AlertOutbox | None = None, *, key: str | None = None,
              now: float | None = None) -> list[str]:
        """Send every queued alert that is due (or only `key`'s); returns the sinks that accepted one."""
        outbox = outbox or AlertOutbox()
        accepted = []
        for k, sink, alert in outbox.take_due(self.configured(), now, key):
            try:
                getattr(self, f"_{sink}")(alert)
            except Exception as exc:  # noqa: BLE001 - one broken sink must not silence the others
                # the type and a scrubbed, short message: never a credential
                outbox.failed(k, sink, f"{type(exc).__name__}: {scrub(str(exc))[:200]}", now)
                log.warning("alert sink %s failed (%s); queued for a retry", sink, type(exc).__name__)
            else:
                outbox.sent(k, sink, now)
                accepted.append(sink)
        return accepted

    def _slack(self, alert: Alert) -> None:
        from slack_sdk import WebClient
        from slack_sdk.http_retry.builtin_handlers import ConnectionErrorRetryHandler, RateLimitErrorRetryHandler

        # slack_sdk's own handlers: wait Retry-After on a 429, retry a dropped connection; beyond
        # those the outbox retries later
        client = WebClient(token=self.slack_token, base_url=self.slack_base_url, timeout=int(self.timeout_s),
                           retry_handlers=[RateLimitErrorRetryHandler(max_retry_count=2),
                                           ConnectionErrorRetryHandler(max_retry_count=2)])
        client.chat_postMessage(channel=self.slack_channel, text=alert.text())

    def _email(self, alert: Alert) -> None:
        message = EmailMessage()
        message["Subject"] = alert.title[:200]
        message["From"], message["To"] = self.email_from, self.email_to
        message.set_content(alert.text())
        with smtplib.SMTP(self.smtp_host, self.smtp_port, timeout=self.timeout_s) as smtp:
            if self.smtp_username:
                smtp.starttls()
                smtp.login(self.smtp_username, self.smtp_password or "")
            smtp.send_message(message)

    def _webhook(self, alert: Alert) -> None:
        import requests  # here, not at module level: ~35 ms of every code-location load

        requests.post(self.webhook_url, json=alert.payload(), timeout=self.timeout_s).raise_for_status()


def alert_key(alert: Alert) -> str:
    """The same alert (same content) is queued once."""
    return "content:" + hashlib.sha256(json.dumps(alert.payload(), sort_keys=True).encode()).hexdigest()[:32]


def alert_sinks_from_env(environ: dict | None = None) -> AlertSinks:
    environ = os.environ if environ is None else environ
    kwargs: dict = {}
    plain = {"ALERT_SLACK_CHANNEL": "slack_channel", "ALERT_SLACK_BASE_URL": "slack_base_url", "ALERT_SMTP_HOST": "smtp_host",
             "ALERT_SMTP_USERNAME": "smtp_username", "ALERT_EMAIL_FROM": "email_from", "ALERT_EMAIL_TO": "email_to",
             "ALERT_WEBHOOK_URL": "webhook_url", "DAGSTER_UI_URL": "ui_url"}
    for var, field in plain.items():
        if environ.get(var):
            kwargs[field] = environ[var]
    if environ.get("ALERT_SMTP_PORT"):
        kwargs["smtp_port"] = int(environ["ALERT_SMTP_PORT"])
    for var, field in (("ALERT_SLACK_TOKEN", "slack_token"), ("ALERT_SMTP_PASSWORD", "smtp_password")):
        if environ.get(var):
            kwargs[field] = dg.EnvVar(var)
    return AlertSinks(**kwargs)
