"""What an alert says, and the scrubbing that keeps secrets and raw PII out of it."""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field

EMAIL = re.compile(r"[^@\s\"',;]+@[^@\s\"',;]+\.[A-Za-z]{2,}")
PHONE = re.compile(r"\+?\d[\d\s\-().]{7,}\d")
DATE_LIKE = re.compile(r"^\d{4}-\d{2}-\d{2}")
SECRETISH = re.compile(r"(?i)(secret|password|token|key)(\"?\s*[:=]\s*\"?)[^\s\"',}]+")


def scrub(text: str) -> str:
    """Mask anything shaped like an email, a phone number or `secret=...` (defence in depth: check
    samples of PII columns are already redacted where they are produced)."""
    text = EMAIL.sub("<email>", text)
    text = PHONE.sub(lambda m: m.group(0) if DATE_LIKE.match(m.group(0)) or sum(c.isdigit() for c in m.group(0)) < 9
                     else "<number>", text)
    return SECRETISH.sub(lambda m: m.group(1) + m.group(2) + "<redacted>", text)


@dataclass
class Alert:
    kind: str  # check_failed | run_failed | recovered | deadline_missed | leftover_file
    vendor: str
    title: str
    deliverable: str = ""
    partition: str = ""
    check: str = ""
    failure_count: int | None = None
    samples: list = field(default_factory=list)
    detail: str = ""
    link: str = ""

    def text(self) -> str:
        lines = [self.title, f"vendor: {self.vendor}"]
        for label, value in (("deliverable", self.deliverable), ("partition", self.partition), ("check", self.check),
                             ("failures", self.failure_count), ("detail", self.detail), ("run", self.link)):
            if value not in ("", None):
                lines.append(f"{label}: {value}")
        if self.samples:
            lines.append("samples: " + json.dumps(self.samples, default=str)[:1500])
        return scrub("\n".join(lines))

    def payload(self) -> dict:
        return json.loads(scrub(json.dumps(asdict(self), default=str)))
