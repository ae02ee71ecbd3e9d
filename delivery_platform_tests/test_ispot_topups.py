"""iSpot to the letter (issue 15): top-ups of late events, held small days, 409 after our own
retry, header profiles, the IPv6 switch, balanced parts. Uploads go to the API double."""

from __future__ import annotations

import hashlib
import time

import dagster as dg
import duckdb
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from delivery_platform.alerts.sensors import AlertLog, process_run
from delivery_platform.alerts.sinks import AlertSinks
from delivery_platform.core import clock
from delivery_platform.definitions import build_defs
from delivery_platform.formats.parts import BalancedSplit
from delivery_platform.ledger import Ledger
from delivery_platform.resources import LedgerResource
from delivery_platform.vendors.ispot.assets import ISpotSettings
from delivery_platform.vendors.ispot.sensor import find_topups
from delivery_platform.warehouse.resource import WarehouseResource
from delivery_platform_tests.ispot_api_double import ISpotApiServer
from delivery_platform_tests.warehouses import event, events_warehouse

DAY = "2026-11-19"
OUTBOX_NAME = "conversions_20261119_{:03d}.csv"


def run(partition=DAY, settings=None, at=None, instance=None):
    config = {"resources": {"ispot_settings": {"config": settings}}} if settings else None
    job = build_defs("local").resolve_job_def("ispot_daily_delivery")
    with clock.pinned(at or "2026-11-20T12:00:00Z"):
        return job.execute_in_process(
            partition_key=partition,
            instance=instance or dg.DagsterInstance.ephemeral(),
            raise_on_error=False,
            run_config=config,
        )


def checks(result):
    return {c.check_name: c for c in result.get_asset_check_evaluations()}


def day_events(n, hour=10, loaded=None, **kw):
    rows = [
        event(f"{DAY} {hour:02d}:{m // 60:02d}:{m % 60:02d}", ip=f"10.1.{m // 250}.{m % 250 + 1}", **kw)
        for m in range(n)
    ]
    return [{**r, "loaded_at": loaded} if loaded else r for r in rows]


def add_events(path, rows, first_id):
    con = duckdb.connect(str(path))
    for i, r in enumerate(rows):
        con.execute(
            "INSERT INTO ispot_conversion_events (event_id, client_ip, event_ts, loaded_at, site_id, "
            "platform, event_type, custom_data, user_agent) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                first_id + i,
                r["client_ip"],
                r["event_ts"],
                r.get("loaded_at") or r["event_ts"],
                r["site_id"],
                r["platform"],
                r["event_type"],
                r["custom_data"],
                r["user_agent"],
            ],
        )
    con.close()


@pytest.fixture
def warehouse(tmp_path, data_dir, monkeypatch):
    made = []

    def make(rows):
        made.append(rows)
        path = events_warehouse(tmp_path / f"events{len(made)}.duckdb", rows)
        monkeypatch.setenv("DELIVERY_WAREHOUSE_PATH", str(path))
        return path

    return make


@pytest.fixture
def api(monkeypatch):
    with ISpotApiServer() as server:
        monkeypatch.setenv("ISPOT_API_BASE_URL", server.url)
        monkeypatch.setenv("ISPOT_CLIENT_ID", server.state.client_id)
        monkeypatch.setenv("ISPOT_CLIENT_SECRET", server.state.client_secret)
        monkeypatch.setenv("ISPOT_MIN_UPLOAD_BYTES", "2000")
        monkeypatch.setenv("ISPOT_API_MAX_ATTEMPTS", "2")
        monkeypatch.setenv("ISPOT_API_BACKOFF_SECONDS", "0")
        server.state.min_bytes = 2000  # the document's 8 MB, scaled down with the test days
        yield server


def data_lines(body: bytes) -> list[bytes]:
    return body.split(b"\n")[1:-1]


# --- 1. late events: top-ups ---------------------------------------------------------------------


def test_late_events_go_out_as_a_top_up_with_only_the_unsent_events(warehouse, api):
    path = warehouse(day_events(30))
    assert run().success
    first = api.state.received[OUTBOX_NAME.format(1)].body
    assert len(data_lines(first)) == 30
    # twenty events of the 19th reach the warehouse the next evening, after the delivery
    add_events(path, day_events(20, hour=22, loaded="2026-11-20 18:00:00"), 1000)
    topup = run(at="2026-11-21T09:00:00Z")
    assert topup.success
    second = api.state.received[OUTBOX_NAME.format(2)].body
    assert sorted(data_lines(second)) == sorted(
        line for line in data_lines(second) if b'"2026-11-19 22:' in line
    )
    assert len(data_lines(second)) == 20 and not set(data_lines(first)) & set(data_lines(second))
    # a re-run with nothing new sends nothing
    uploads = api.state.upload_requests
    again = run(at="2026-11-21T10:00:00Z")
    assert again.success and api.state.upload_requests == uploads
    meta = again.asset_materializations_for_node("ispot__conversions_delivery")[0].metadata
    assert meta["delivery_action"].value.startswith("nothing new")
    # the ledger says which rows each file carried: contiguous, non-overlapping key ranges
    contents = Ledger().contents("ispot", "conversions", DAY)
    assert [c.file_name for c in contents] == [OUTBOX_NAME.format(1), OUTBOX_NAME.format(2)]
    assert contents[0].after_key is None and contents[1].after_key == contents[0].through_key
    assert [c.rows for c in contents] == [30, 20]
    assert contents[1].through_key.startswith("2026-11-20 18:00:00")


def test_events_loaded_after_the_run_wait_for_the_next_one(warehouse, api):
    warehouse(day_events(20) + day_events(20, hour=23, loaded="2026-11-20 13:00:00"))
    assert run(at="2026-11-20T12:00:00Z").success  # the last 20 are not loaded yet at 12:00
    assert len(data_lines(api.state.received[OUTBOX_NAME.format(1)].body)) == 20
    assert run(at="2026-11-20T13:30:00Z").success
    assert len(data_lines(api.state.received[OUTBOX_NAME.format(2)].body)) == 20


def test_a_failed_upload_is_resent_with_exactly_its_recorded_rows_then_the_new_ones(warehouse, api):
    path = warehouse(day_events(30))
    api.state.outage = True
    failed = run()
    assert not failed.success and not api.state.received
    recorded = Ledger().contents("ispot", "conversions", DAY)
    assert [c.rows for c in recorded] == [30]  # recorded before the first attempt
    add_events(path, day_events(20, hour=21, loaded="2026-11-20 16:00:00"), 1000)
    api.state.outage = False
    assert run(at="2026-11-21T09:00:00Z").success
    assert len(data_lines(api.state.received[OUTBOX_NAME.format(1)].body)) == 30  # the same range again
    assert len(data_lines(api.state.received[OUTBOX_NAME.format(2)].body)) == 20


@pytest.mark.fault(
    "ispot-api",
    "file stored, answer lost (500), retry gets 409",
    "recorded delivered once as 'accepted earlier'; the run succeeds",
)
def test_409_after_our_own_retry_is_recorded_delivered_once(warehouse, api):
    warehouse(day_events(30))
    api.state.fail_next(("store_then", 500))
    result = run()
    assert result.success
    name = OUTBOX_NAME.format(1)
    assert list(api.state.received) == [name] and api.state.upload_requests == 2
    ledger = Ledger()
    delivered = ledger.history("ispot", "conversions", status="delivered")
    assert [d.file_name for d in delivered] == [name]
    assert ledger.notes("ispot")[delivered[0].id].startswith("accepted earlier")


@pytest.mark.fault(
    "ispot-api",
    "file stored, then the run dies (500 on every retry); next run gets 409",
    "the next run recognises its own bytes from the ledger: delivered once, 'accepted earlier'",
)
def test_409_in_a_later_run_for_bytes_we_sent_is_accepted_earlier(warehouse, api):
    warehouse(day_events(30))
    api.state.fail_next(("store_then", 500))
    api.state.outage = True  # the retries after the stored upload all fail
    assert not run().success
    api.state.outage = False
    assert run(at="2026-11-20T13:00:00Z").success
    delivered = Ledger().history("ispot", "conversions", status="delivered")
    assert len(delivered) == 1 and Ledger().notes("ispot")[delivered[0].id].startswith("accepted earlier")


@pytest.mark.fault(
    "ispot-api",
    "409 for a name this platform never sent",
    "the run fails naming the file; nothing recorded as delivered; alerted as a failed run",
)
def test_409_for_a_name_we_never_sent_fails_the_run(warehouse, api, tmp_path):
    warehouse(day_events(30))
    from delivery_platform_tests.ispot_api_double import Received

    name = OUTBOX_NAME.format(1)
    api.state.received[name] = Received(name, b"someone else's file", "text/csv")
    instance = dg.DagsterInstance.ephemeral()
    result = run(instance=instance)
    assert not result.success
    alerts = process_run(instance, result.run_id, AlertSinks(), AlertLog(tmp_path / "alerts.sqlite"))
    run_alert = next(a for a in alerts if a.kind == "run_failed")
    assert name in run_alert.detail and "409" in run_alert.detail
    failure = result.get_run_failure_event() or next(e for e in result.all_events if e.is_step_failure)
    text = "\n".join(
        str(e.message) + str(getattr(e.event_specific_data, "error", ""))
        for e in result.all_events
        if e.is_step_failure
    )
    assert failure is not None and name in text and "No delivery of ours used this name" in text
    assert Ledger().history("ispot", "conversions", status="delivered") == []


# --- 2. size policy ------------------------------------------------------------------------------


def test_a_day_under_the_minimum_is_held_before_upload_and_sent_once_it_is_allowed(
    warehouse, api, monkeypatch, tmp_path
):
    warehouse(day_events(5))
    instance = dg.DagsterInstance.ephemeral()
    held = run(instance=instance)
    assert not held.success and api.state.upload_requests == 0
    alerts = process_run(instance, held.run_id, AlertSinks(), AlertLog(tmp_path / "alerts.sqlite"))
    check_alert = next(a for a in alerts if a.kind == "check_failed")
    assert check_alert.check == "minimum_size" and "too small" in check_alert.detail
    assert "run_failed" in {a.kind for a in alerts}
    check = checks(held)["minimum_size"]
    assert check.passed is False and check.severity == dg.AssetCheckSeverity.ERROR
    for words in ("400 'The file is too small", "5 rows", "ISPOT_MIN_UPLOAD_BYTES", "top-up", "2026-12-01"):
        assert words in check.description
    assert Ledger().attempts("ispot", "conversions", DAY) == [] and not Ledger().contents(
        "ispot", "conversions", DAY
    )
    # the operator agrees a lower minimum with iSpot: the rows are still eligible
    monkeypatch.setenv("ISPOT_MIN_UPLOAD_BYTES", "500")
    api.state.min_bytes = 500
    assert run(at="2026-11-20T13:00:00Z").success
    assert len(data_lines(api.state.received[OUTBOX_NAME.format(1)].body)) == 5


def test_the_local_outbox_still_writes_a_small_day_and_warns(warehouse, data_dir):
    warehouse(day_events(5))
    result = run()
    assert result.success and (data_dir / "outbox" / "ispot" / OUTBOX_NAME.format(1)).exists()
    check = checks(result)["minimum_size"]
    assert check.passed is False and check.severity == dg.AssetCheckSeverity.WARN
    assert "Written anyway because the target is not iSpot's API" in check.description


def test_parts_are_balanced_and_each_under_the_maximum(warehouse, api):
    warehouse(day_events(100))
    result = run(settings={"split_bytes": 6000, "min_bytes": 2000})
    assert result.success
    sizes = [len(f.body) for f in api.state.received.values()]
    total = sum(len(data_lines(f.body)) for f in api.state.received.values())
    assert total == 100 and len(sizes) == -(-sum(sizes) // 6000) + (1 if max(sizes) > 6000 else 0)
    assert max(sizes) <= 6000 and min(sizes) / max(sizes) > 0.95


def balanced_cuts(line_bytes: np.ndarray, *, header_bytes: int, max_bytes: int) -> list[int]:
    """The cuts of the release before the streaming split (whole-array), kept as the oracle: where to cut lines into the fewest parts that each stay at or under `max_bytes` (header
    included), with sizes as even as whole lines allow: 385 MB under 200 → 2 × ~192.5, never
    190 + 190 + 5. Returns the end index (exclusive) of each part; one part for no lines.

    A line belongs to the part its first byte falls in when the data is cut into n equal
    stretches, so every part is within one line of total/n.
    """
    n_lines = len(line_bytes)
    if n_lines == 0:
        return [0]
    longest = int(line_bytes.max())
    room = max_bytes - header_bytes - longest  # a part may overshoot its share by one line
    if room <= 0:
        raise ValueError(f"a line of {longest} bytes does not fit in a part of at most {max_bytes} bytes")
    ends = np.cumsum(line_bytes, dtype=np.int64)
    total = int(ends[-1])
    parts = max(1, -(-total // room))
    starts = ends - line_bytes
    while parts < n_lines:
        share = total / parts
        # a line longer than a share leaves a stretch empty: drop the empty cut
        cuts = sorted({int(np.searchsorted(starts, share * k, side="left")) for k in range(1, parts)} - {0})
        cuts = [c for c in cuts if c < n_lines] + [n_lines]
        bytes_per_part = [int(ends[c - 1] - (ends[p - 1] if p else 0)) for p, c in zip([0] + cuts[:-1], cuts)]
        if max(bytes_per_part) + header_bytes <= max_bytes:
            return cuts
        parts += 1  # only with a few, very uneven lines: one more part
    return list(range(1, n_lines + 1))


@settings(max_examples=200, deadline=None, derandomize=True)
@given(
    st.lists(st.integers(min_value=50, max_value=400), min_size=1, max_size=400),
    st.integers(min_value=4_000, max_value=40_000),
)
def test_balanced_cuts_fewest_parts_under_the_maximum_and_even(lengths, max_bytes):
    line_bytes = np.array(lengths, dtype=np.int64)
    header = 50
    cuts = balanced_cuts(line_bytes, header_bytes=header, max_bytes=max_bytes)
    sizes = [header + int(line_bytes[a:b].sum()) for a, b in zip([0] + cuts[:-1], cuts)]
    assert cuts[-1] == len(lengths) and all(b > a for a, b in zip([0] + cuts[:-1], cuts))
    assert max(sizes) <= max_bytes
    # fewest: one part fewer could not hold the data, even with perfect cuts
    assert len(cuts) == 1 or sum(lengths) > (len(cuts) - 1) * (max_bytes - header - max(lengths))
    # even: every part within one line of the mean
    mean = sum(lengths) / len(cuts)
    assert all(abs(s - header - mean) <= max(lengths) for s in sizes)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(
    st.lists(st.integers(min_value=1, max_value=900), min_size=1, max_size=400),
    st.integers(min_value=0, max_value=60),
    st.integers(min_value=1, max_value=3_000),
    st.integers(min_value=1, max_value=70),
)
def test_the_streaming_split_cuts_exactly_where_balanced_cuts_does(lengths, header, slack, batch):
    """The files step cuts in one pass over batches (no per-line array): same cuts, so same bytes."""
    line_bytes = np.array(lengths, dtype=np.int64)
    max_bytes = header + max(lengths) + slack
    split = BalancedSplit(len(lengths), int(line_bytes.sum()), max(lengths), header_bytes=header, max_bytes=max_bytes)
    cuts, seen = [], 0
    for start in range(0, len(lengths), batch):
        chunk = line_bytes[start:start + batch]
        cuts += [seen + c for c in split.cuts(chunk)]
        seen += len(chunk)
    assert cuts + [len(lengths)] == balanced_cuts(line_bytes, header_bytes=header, max_bytes=max_bytes)
    assert split.parts >= len(cuts) + 1 or split.every_line


# --- 3. header profiles (golden bytes) -----------------------------------------------------------

GOLDEN_ROWS = [
    {
        **event("2026-11-19 08:00:00", custom="customer_new,channel_paid-search"),
        "order_id": "ORD-1",
        "amount": "12.30",
    },
    {
        **event("2026-11-19 09:30:00", ip="10.0.0.2", platform="APP", kind="signup", custom=None),
        "order_id": None,
        "amount": None,
    },
]


@pytest.mark.parametrize(
    "profile,optional,expected",
    [
        (
            "document",
            "",
            (
                b"ip,datetime,siteid,app,type,customdata,useragent\n"
                b'"66.87.152.32","2026-11-19 08:00:00","TC-1234-1","web","purchase",'
                b'"customer_new,channel_paid-search",'
                b'"Mozilla/5.0 (Macintosh; Intel) AppleWebKit/537.36"\n'
                b'"10.0.0.2","2026-11-19 09:30:00","TC-1234-1","app","signup","",'
                b'"Mozilla/5.0 (Macintosh; Intel) AppleWebKit/537.36"\n'
            ),
        ),
        (
            "error_table",
            "orderid,amount,customertype,channel",
            (
                b"LATEST_IPADDRESS,TIME_STAMP,SITE_ID,app,type,customdata,useragent,"
                b"orderid,amount,customertype,channel\n"
                b'"66.87.152.32","2026-11-19 08:00:00","TC-1234-1","web","purchase",'
                b'"customer_new,channel_paid-search",'
                b'"Mozilla/5.0 (Macintosh; Intel) AppleWebKit/537.36","ORD-1","12.30","new","paid-search"\n'
                b'"10.0.0.2","2026-11-19 09:30:00","TC-1234-1","app","signup","",'
                b'"Mozilla/5.0 (Macintosh; Intel) AppleWebKit/537.36","","","",""\n'
            ),
        ),
    ],
)
def test_golden_bytes_of_each_header_profile(warehouse, data_dir, monkeypatch, profile, optional, expected):
    warehouse(GOLDEN_ROWS)
    monkeypatch.setenv("ISPOT_HEADER_PROFILE", profile)
    monkeypatch.setenv("ISPOT_OPTIONAL_COLUMNS", optional)
    result = run()
    assert result.success
    assert (data_dir / "outbox" / "ispot" / OUTBOX_NAME.format(1)).read_bytes() == expected
    assert checks(result)["spec"].passed and checks(result)["files_match_spec"].passed
    # the receipt's event span, taken by the spec check under the profile's name for `datetime`
    from delivery_platform import receipts
    from delivery_platform.vendors import vendor

    span = receipts.event_span(vendor("ispot").deliverables[0], DAY)
    assert (span["first_event"], span["last_event"]) == ("2026-11-19 08:00:00", "2026-11-19 09:30:00"), span


def test_the_pandera_model_follows_the_profile(warehouse, monkeypatch):
    warehouse([{**GOLDEN_ROWS[0], "amount": "12.3"}])  # DECIMAL(12,2) renders 12.30: the rule is checked
    monkeypatch.setenv("ISPOT_HEADER_PROFILE", "error_table")
    monkeypatch.setenv("ISPOT_OPTIONAL_COLUMNS", "orderid,amount")
    result = run()
    assert result.success and checks(result)["spec"].passed
    warehouse([{**GOLDEN_ROWS[0], "event_ts": "2026-11-18 08:00:00", "client_ip": "300.1.1.1"}])
    failed = run(partition="2026-11-18")
    samples = checks(failed)["spec"].metadata["sample_rows"].value
    assert any(f["column"] == "LATEST_IPADDRESS" for f in samples)


def test_an_optional_column_without_a_warehouse_source_is_refused(warehouse, monkeypatch):
    warehouse(GOLDEN_ROWS)
    monkeypatch.setenv("ISPOT_OPTIONAL_COLUMNS", "orderid,sku")
    result = run()
    assert not result.success
    text = "\n".join(
        str(getattr(e.event_specific_data, "error", "")) for e in result.all_events if e.is_step_failure
    )
    assert "sku" in text and "no column for it" in text


# --- 5. IPv6 ------------------------------------------------------------------------------------


@pytest.mark.parametrize("include", [False, True])
def test_ipv6_switch_default_off_counted_either_way(warehouse, data_dir, monkeypatch, include):
    warehouse([event("2026-11-19 08:00:00"), event("2026-11-19 09:00:00", ip="2001:db8::1")])
    if include:
        monkeypatch.setenv("ISPOT_INCLUDE_IPV6", "true")
    result = run()
    assert result.success
    body = (data_dir / "outbox" / "ispot" / OUTBOX_NAME.format(1)).read_bytes()
    assert (b'"2001:db8::1"' in body) is include
    meta = result.asset_materializations_for_node("ispot__conversions")[0].metadata
    assert (meta["filtered_ipv6"].value, meta["ipv6_included"].value) == ((0, 1) if include else (1, 0))


# --- the sensor ---------------------------------------------------------------------------------


def test_the_top_up_sensor_requests_days_inside_the_window_with_late_events(warehouse, api):
    path = warehouse(day_events(30))
    assert run().success
    ledger = Ledger()
    sensor_settings = ISpotSettings(min_bytes=2000)
    wh = WarehouseResource()
    at = clock.parse("2026-11-22T09:00:00Z")
    assert find_topups(at, wh, ledger, sensor_settings, True) == ([], [])
    add_events(path, day_events(3, hour=20, loaded="2026-11-21 10:00:00"), 1000)
    found, held = find_topups(at, wh, ledger, sensor_settings, True)
    assert found == [] and held and "3 unsent events" in held[0]  # under the minimum: held, not requested
    add_events(path, day_events(20, hour=21, loaded="2026-11-21 11:00:00"), 2000)
    found, held = find_topups(at, wh, ledger, sensor_settings, True)
    assert [(t.partition, t.events) for t in found] == [(DAY, 23)]
    # 13 days later the day is outside iSpot's 12-day window: not requested (paid reprocessing)
    assert find_topups(clock.parse("2026-12-02T09:00:00Z"), wh, ledger, sensor_settings, True) == ([], [])
    # the real sensor definition, evaluated with the code location's resources
    defs = build_defs("local")
    sensor = defs.resolve_sensor_def("ispot_topup_sensor")
    with clock.pinned(at):
        with dg.build_sensor_context(
            instance=dg.DagsterInstance.ephemeral(),
            resources={
                "warehouse": wh,
                "ledger": LedgerResource(),
                "ispot_api": defs.resources["ispot_api"],
                "ispot_settings": ISpotSettings(min_bytes=2000),
            },
        ) as context:
            requests = sensor(context)
    assert [r.partition_key for r in requests] == [DAY]


def test_the_ledger_never_lets_a_name_carry_other_rows(tmp_path):
    from delivery_platform.ledger import FileContents, LedgerError

    ledger = Ledger(tmp_path / "ledger.sqlite")
    first = FileContents(DAY, OUTBOX_NAME.format(1), None, "2026-11-20 00:10:00.000000|00000000000000000030", 30)
    ledger.record_contents("ispot", "conversions", first)
    ledger.record_contents("ispot", "conversions", first)  # the same range again (a retry): fine
    with pytest.raises(LedgerError, match="refusing to reuse the name"):
        ledger.record_contents("ispot", "conversions", FileContents(
            DAY, OUTBOX_NAME.format(1), None, "2026-11-20 18:00:00.000000|00000000000000001011", 42))
    assert ledger.contents("ispot", "conversions", DAY) == [first]


@pytest.mark.fault("ispot-api", "zipped upload stored, answer lost, run dies; next run re-sends the zip",
                   "the same zip bytes under the same name: 409 recognised as ours, delivered once")
def test_a_zipped_file_is_resent_with_the_same_bytes_and_recognised(warehouse, api, monkeypatch):
    warehouse(day_events(30))
    monkeypatch.setenv("ISPOT_ZIP", "true")
    monkeypatch.setenv("ISPOT_MIN_UPLOAD_BYTES", "300")
    api.state.min_bytes = 300
    api.state.fail_next(("store_then", 500))
    api.state.outage = True
    assert not run().success
    name = "conversions_20261119_001.zip"
    stored = api.state.received[name].body
    api.state.outage = False
    time.sleep(1.1)  # a member time taken from the clock would now differ
    assert run(at="2026-11-20T13:00:00Z").success
    ledger = Ledger()
    delivered = ledger.history("ispot", "conversions", status="delivered")
    assert [d.file_name for d in delivered] == [name]
    assert delivered[0].md5 == hashlib.md5(stored).hexdigest()  # the very bytes iSpot kept
    assert ledger.notes("ispot")[delivered[0].id].startswith("accepted earlier")


def test_the_datetime_column_renders_as_the_documents_format():
    """topups.SOURCES renders `datetime` with a cast of the timestamp cut to the second, not strftime: the two must
    give the same text for every time (here ~430,000 of them across years 1-9999, with fractions of a second, the
    ends included)."""
    from delivery_platform.vendors.ispot import topups

    con = duckdb.connect()
    fmt, expression = topups.DATETIME_FORMAT, topups.SOURCES["datetime"]
    seconds = "SELECT to_timestamp(s + 0.654321)::TIMESTAMP AS event_ts FROM range(-62135596800, 253402300000, 733103) r(s)"
    edges = ["0001-01-01 00:00:00", "0999-12-31 23:59:59.999999", "1000-01-01 00:00:00", "2024-02-29 12:00:00.5",
             "2026-11-28 00:00:00", "2026-11-28 23:59:59.999999", "9999-12-31 23:59:59.999999"]
    values = f"{seconds} UNION ALL SELECT t::TIMESTAMP FROM unnest({edges}) u(t)"
    total, different, sample = con.execute(
        f"SELECT count(*), count(*) FILTER (WHERE {expression} IS DISTINCT FROM strftime(event_ts, '{fmt}')), "
        f"any_value({expression} || ' / ' || strftime(event_ts, '{fmt}')) FILTER (WHERE {expression} <> "
        f"strftime(event_ts, '{fmt}')) FROM ({values})").fetchone()
    assert total > 400_000 and different == 0, sample
    # and it is what a file line shows (the document's example: 2017-01-19 18:15:03)
    assert con.execute("SELECT CAST(TIMESTAMP '2017-01-19 18:15:03' AS VARCHAR)").fetchone()[0] == "2017-01-19 18:15:03"
