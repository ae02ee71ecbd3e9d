"""A small Lotame world for day-by-day scenarios: users moving in and out of segments over a
calendar, some leaving every segment, some Lotame may never receive; and its truth per day,
computed here in Python (not by the code under test)."""

from __future__ import annotations

import datetime as dt
import random
from dataclasses import dataclass
from pathlib import Path

from delivery_platform_tests.warehouses import table_warehouse

SEGMENTS = [f"seg_{name}" for name in ("travel", "autos", "parents", "gamers", "sports", "finance")]


@dataclass(frozen=True)
class World:
    users: list[dict]
    memberships: list[dict]

    def eligible(self) -> set[str]:
        return {
            u["userid"] for u in self.users if u["idtype"] == "PANO" and (u["consent"] or u["tcfconsent"])
        }

    def truth(self, day: dt.date) -> set[tuple[str, str]]:
        """(userid, segment) Lotame must hold after the file of `day`."""
        ok = self.eligible()
        return {
            (m["userid"], m["segment"])
            for m in self.memberships
            if m["userid"] in ok and m["valid_from"] <= day and (m["valid_to"] is None or day < m["valid_to"])
        }

    def write(self, path: Path) -> Path:
        return table_warehouse(
            path,
            {
                "lotame_users": self.users,
                "lotame_segment_memberships": [
                    {
                        **m,
                        "valid_from": m["valid_from"].isoformat(),
                        "valid_to": m["valid_to"].isoformat() if m["valid_to"] else None,
                    }
                    for m in self.memberships
                ],
            },
        )


def make_world(first: dt.date, days: int, users: int = 60, seed: int = 16) -> World:
    rng = random.Random(seed)
    people, rows = [], []
    for i in range(users):
        userid = f"u{i:04d}"
        consent, tcf, idtype = True, None, "PANO"
        if i % 15 == 3:
            consent = False  # Lotame would skip it: never sent
        elif i % 15 == 7:
            consent, tcf = None, "CPXXXX.YAAA"  # a TCF string instead of the flag
        elif i % 20 == 11:
            idtype = "FOOID"  # unsupported: never sent
        people.append(
            {
                "userid": userid,
                "idtype": idtype,
                "consent": consent,
                "tcfconsent": tcf,
                "country": "us",
                "last_ip": "66.87.152.32",
                "last_ip_seen_at": "2026-08-01 10:00:00",
            }
        )
        # every fourth user leaves every segment at once, some day in the calendar
        leaves_all = first + dt.timedelta(days=rng.randrange(3, days - 2)) if i % 4 == 0 else None
        for segment in rng.sample(SEGMENTS, rng.randrange(1, 4)):
            start = first + dt.timedelta(days=rng.randrange(-5, days // 2))
            while start < first + dt.timedelta(days=days):
                length = rng.randrange(2, 25)
                end = start + dt.timedelta(days=length) if rng.random() < 0.6 else None
                if leaves_all and (end is None or end > leaves_all):
                    end = leaves_all
                if end is not None and end <= start:
                    break
                rows.append(
                    {
                        "userid": userid,
                        "segment": segment,
                        "valid_from": start,
                        "valid_to": end,
                        "last_seen_at": f"{start.isoformat()} 12:00:00",
                    }
                )
                if end is None or (leaves_all and end >= leaves_all):
                    break
                start = end + dt.timedelta(days=rng.randrange(1, 10))  # back in the segment later
    return World(people, rows)
