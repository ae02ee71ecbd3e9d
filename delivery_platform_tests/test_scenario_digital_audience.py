"""digitalAudience over 30 simulated days: new, changed and opted-out contacts; dA's replica
equals the warehouse's truth after every day, and no opted-out contact is ever onboarded."""

from __future__ import annotations

import datetime as dt

from delivery_platform.vendors.digital_audience import reference as ref
from delivery_platform_tests.replicas.digital_audience import DigitalAudienceReplica
from delivery_platform_tests.scenario import Scenario, calendar
from delivery_platform_tests.warehouses import table_warehouse

FIRST = dt.date(2026, 9, 1)
DAYS = 30
JOB = "digital_audience_daily_delivery"


def contact(i: int, opted_in: dt.datetime) -> dict:
    return {
        "contact_id": f"CRM{i:05d}",
        "email_raw": f" Person.{i}@Example.com ",
        "phone_raw": f"06-{10000000 + i}",
        "country": "NL",
        "postal_code": f"{1000 + i} ab",
        "house_number": str(i % 90 + 1),
        "created_at": opted_in,
        "opted_in_at": opted_in,
    }


def truth(con, day: dt.date) -> dict[str, dict]:
    """What dA should hold after the delivery of `day`: every contact opted in and not out by the
    day's end, with its current identifiers normalised and hashed as the document asks."""
    end = dt.datetime.combine(day + dt.timedelta(days=1), dt.time())
    rows = con.execute(
        "SELECT contact_id, email_raw, phone_raw, country, postal_code, house_number FROM crm_contacts "
        "WHERE opted_in_at < ? AND (opted_out_at IS NULL OR opted_out_at >= ?)",
        [end, end],
    ).fetchall()
    out = {}
    for cid, email, phone, country, postal, house in rows:
        postal = (postal or "").strip().upper() or None
        out[cid] = {
            "email_sha256": ref.sha256_upper(ref.normal_email(email)),
            "phone_sha256": ref.sha256_upper(ref.normal_phone(phone, country)),
            "postal code": postal,
            "house number": house if postal else None,
            "extension": None,
            "aaid": None,
            "idfa": None,
        }
    return out


def change_the_day(con, day, index: int, next_id: list[int]) -> dict:
    """New contacts every day, an email, phone or address change most days, an opt-out every
    other day (and one person who opts out and comes back)."""
    noon = dt.datetime.combine(day, dt.time(12))
    events = {"new": [], "changed": [], "opted_out": []}
    for _ in range(2):
        row = contact(next_id[0], noon)
        next_id[0] += 1
        con.execute(
            "INSERT INTO crm_contacts (contact_id, email_raw, phone_raw, country, postal_code, house_number, "
            "created_at, opted_in_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [
                row[k]
                for k in (
                    "contact_id",
                    "email_raw",
                    "phone_raw",
                    "country",
                    "postal_code",
                    "house_number",
                    "created_at",
                    "opted_in_at",
                )
            ],
        )
        events["new"].append(row["contact_id"])
    if index == 0:
        return events
    target = f"CRM{(index * 7) % 40:05d}"
    column, value = [
        ("email_raw", f"moved.{index}@example.org"),
        ("phone_raw", f"+31 6 {20000000 + index}"),
        ("postal_code", f"{2000 + index}CD"),
    ][index % 3]
    events["changed"] += [
        r[0]
        for r in con.execute(
            f"UPDATE crm_contacts SET {column} = ? WHERE contact_id = ? AND opted_out_at IS NULL "
            "RETURNING contact_id",
            [value, target],
        ).fetchall()
    ]
    if index == 20:  # someone who left on day 2 opts in again: onboarded again, after the opt-out
        events["new"] += [
            r[0]
            for r in con.execute(
                "UPDATE crm_contacts SET opted_out_at = NULL, opted_in_at = ? WHERE contact_id = 'CRM00007' "
                "RETURNING contact_id",
                [noon],
            ).fetchall()
        ]
    if index % 2 == 0:
        leaver = f"CRM{(index * 3 + 1) % 40:05d}"
        events["opted_out"] += [
            r[0]
            for r in con.execute(
                "UPDATE crm_contacts SET opted_out_at = ? WHERE contact_id = ? AND opted_out_at IS NULL "
                "RETURNING contact_id",
                [noon, leaver],
            ).fetchall()
        ]
    return events


def test_thirty_days_of_new_changed_and_opted_out_contacts(data_dir, tmp_path, monkeypatch):
    warehouse = table_warehouse(
        tmp_path / "crm.duckdb", {"crm_contacts": [contact(i, dt.datetime(2026, 8, 1)) for i in range(40)]}
    )
    monkeypatch.setenv("DELIVERY_WAREHOUSE_PATH", str(warehouse))
    monkeypatch.setenv("DELIVERY_DIGITAL_AUDIENCE_OPTOUT_DESTINATION", "local")
    monkeypatch.setenv("DELIVERY_DIGITAL_AUDIENCE_OPTOUT_FORMAT", "custom,email_sha256,phone_sha256")
    scenario, replica, next_id = Scenario(warehouse), DigitalAudienceReplica(), [40]
    hashes_of: dict[str, set] = {}  # every hash a contact ever had
    changed_seen = opted_seen = 0
    for day in calendar(FIRST, DAYS):
        with scenario.warehouse() as con:
            events = change_the_day(con, day.date, day.index, next_id)
            expected = truth(con, day.date)
            opted_out = {
                r[0]
                for r in con.execute(
                    "SELECT contact_id FROM crm_contacts WHERE opted_out_at < ?",
                    [dt.datetime.combine(day.date + dt.timedelta(days=1), dt.time())],
                ).fetchall()
            }
        for cid, ids in expected.items():
            hashes_of.setdefault(cid, set()).update({ids["email_sha256"], ids["phone_sha256"]} - {None})
        result = scenario.run(JOB, day.partition, at=day.runs_at)
        assert result.success, day
        check = next(c for c in result.get_asset_check_evaluations() if c.check_name == "opt_outs")
        assert check.metadata["opt_outs"].value == len(events["opted_out"]), (day, check.description)
        meta = result.asset_materializations_for_node("digital_audience__crm_records")[0].metadata
        assert meta["changed_records"].value == len(
            [c for c in events["changed"] if c not in events["opted_out"]]
        )
        for item in scenario.new_deliveries("digital_audience"):
            replica.apply(item)
        assert replica.records == expected, f"dA differs from the truth after {day.partition}"
        # no opted-out contact's id or hash is in any onboarding or update file of a later day
        for partition, name, rows in replica.onboarding_files:
            if partition != day.partition:
                continue
            sent = (
                {r["custom"] for r in rows}
                | {r["email_sha256"] for r in rows}
                | {r["phone_sha256"] for r in rows}
            )
            for cid in opted_out:
                assert not ({cid} | hashes_of.get(cid, set())) & sent, f"{cid} (opted out) is in {name}"
        changed_seen += len(events["changed"])
        opted_seen += len(events["opted_out"])
    assert changed_seen >= 20 and opted_seen >= 10 and len(replica.removed) == opted_seen
    assert "CRM00007" in replica.records and "CRM00007" in replica.removed  # left, then came back
    # the onboarding location only ever received onboarding and update files
    assert {n.split("_crm_")[1].split("_")[0] for _, n, _ in replica.onboarding_files} <= {
        "update",
        "20260901.csv",
    }


def test_without_an_opt_out_location_nobody_who_opted_out_is_onboarded(data_dir, tmp_path, monkeypatch):
    warehouse = table_warehouse(
        tmp_path / "crm.duckdb", {"crm_contacts": [contact(i, dt.datetime(2026, 8, 1)) for i in range(40)]}
    )
    monkeypatch.setenv("DELIVERY_WAREHOUSE_PATH", str(warehouse))
    scenario, replica, next_id = Scenario(warehouse), DigitalAudienceReplica(), [40]
    for day in calendar(FIRST, 6):
        with scenario.warehouse() as con:
            change_the_day(con, day.date, day.index, next_id)
            expected = truth(con, day.date)
        assert scenario.run(JOB, day.partition, at=day.runs_at).success
        for item in scenario.new_deliveries("digital_audience"):
            replica.apply(item)
        # dA holds every current contact exactly; the only extras are people who opted out (never re-sent)
        assert {c: replica.records[c] for c in expected} == expected
        assert all(c not in expected for c in set(replica.records) - set(expected))
    assert not (data_dir / "outbox" / "digital_audience_optout").exists()
