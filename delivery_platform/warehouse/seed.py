"""Deterministic synthetic source data, generated inside DuckDB.

Every value is a pure function of (row number, seed) through DuckDB's `hash`, so the same
arguments always give the same tables, any number of threads may generate them, and no row
passes through Python: 10 million events a day stream from `range()` straight to disk.

The warehouse is written to a temporary file and renamed into place, so a reader never opens
a half-built warehouse.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

import duckdb

from .schema import TABLES

log = logging.getLogger(__name__)

# Rows per day (or entities) at scale 1; `--scale N` multiplies them.
# iSpot events are the biggest table: scale 500 gives 10 million events a day.
ISPOT_EVENTS_PER_DAY = 20_000
LOTAME_USERS = 5_000
OPTIMOVE_CUSTOMERS = 4_000
OPTIMOVE_TRANSACTIONS_PER_DAY = 3_000
CRM_CONTACTS = 3_000
IDOMOO_RECIPIENTS_PER_DAY = 200


@dataclass(frozen=True)
class SeedPlan:
    days: int
    scale: float
    end_date: dt.date  # last day with data (inclusive)
    seed: int = 7
    # iSpot events a day regardless of scale (the demo's day must pass iSpot's 8 MB minimum)
    ispot_events_per_day: int | None = None
    # Lotame users regardless of scale (the benchmark's 10 million-user day)
    lotame_users: int | None = None
    # only these tables (None: all); the Lotame benchmark seeds its two tables alone
    tables: tuple[str, ...] | None = None

    @property
    def start_date(self) -> dt.date:
        return self.end_date - dt.timedelta(days=self.days - 1)

    def n(self, base: int) -> int:
        return max(1, int(base * self.scale))


MACROS = """
CREATE OR REPLACE TEMP MACRO h(i, salt) AS hash(i, salt, getvariable('seed'));
CREATE OR REPLACE TEMP MACRO frac(i, salt) AS (h(i, salt) % 1000000)::DOUBLE / 1000000.0;
CREATE OR REPLACE TEMP MACRO pick(lst, i, salt) AS lst[(h(i, salt) % len(lst))::BIGINT + 1];
CREATE OR REPLACE TEMP MACRO uuid_of(i, salt) AS
    lpad(printf('%x', h(i, salt || 'a') % 4294967296), 8, '0') || '-' ||
    lpad(printf('%x', h(i, salt || 'b') % 65536), 4, '0') || '-4' ||
    lpad(printf('%x', h(i, salt || 'c') % 4096), 3, '0') || '-' ||
    lpad(printf('%x', 32768 + h(i, salt || 'd') % 16384), 4, '0') || '-' ||
    lpad(printf('%x', h(i, salt || 'e') % 281474976710656), 12, '0');
CREATE OR REPLACE TEMP MACRO ipv4_of(i, salt) AS
    (1 + h(i, salt || '1') % 223)::VARCHAR || '.' || (h(i, salt || '2') % 256)::VARCHAR || '.' ||
    (h(i, salt || '3') % 256)::VARCHAR || '.' || (1 + h(i, salt || '4') % 254)::VARCHAR;
CREATE OR REPLACE TEMP MACRO ipv6_of(i, salt) AS
    '2001:db8:' || printf('%x', h(i, salt || '5') % 65536) || ':' || printf('%x', h(i, salt || '6') % 65536)
    || '::' || printf('%x', h(i, salt || '7') % 65536);
"""

FIRST_NAMES = "['Anna','José','Zoë','Łukasz','Søren','Mía','Noah','Émile','Chloé','Björn','Ana','Jan','Ævar','Dvořák','Li','Mohammed','Sarah','Jürgen']"
LAST_NAMES = "['de Vries','Jansen','Müller','García','Nowak','Ångström','Smith','O''Brien','Bakker','Kowalski','Lindqvist','Peeters']"
USER_AGENTS = """[
 'Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/129.0.0.0 Safari/537.36',
 'Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0.0.0 Safari/537.36 Edg/130.0.0.0',
 'Mozilla/5.0 (iPhone; CPU iPhone OS 17_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.6 Mobile/15E148 Safari/604.1',
 'Mozilla/5.0 (Linux; Android 14; SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/25.0 Chrome/121.0.0.0 Mobile Safari/537.36',
 'Mozilla/5.0 (X11; Linux x86_64; rv:131.0) Gecko/20100101 Firefox/131.0',
 'MyShopApp/5.12.1 (iPhone15,2; iOS 17.6.1; Scale/3.00)',
 'MyShopApp/5.12.0 (Android 14; Pixel 8; "quoted" build)',
 'Dalvik/2.1.0 (Linux; U; Android 13; Redmi Note 12 Build/TKQ1.221114.001)'
]"""


def _tables_sql(plan: SeedPlan) -> list[tuple[str, str]]:
    start = plan.start_date.isoformat()
    days = plan.days
    ev = plan.ispot_events_per_day or plan.n(ISPOT_EVENTS_PER_DAY)
    users = plan.lotame_users or plan.n(LOTAME_USERS)
    cust = plan.n(OPTIMOVE_CUSTOMERS)
    tx = plan.n(OPTIMOVE_TRANSACTIONS_PER_DAY)
    crm = plan.n(CRM_CONTACTS)
    rcp = plan.n(IDOMOO_RECIPIENTS_PER_DAY)
    return [
        ("ispot_conversion_events", f"""
            WITH base AS (
              SELECT d.range AS day, r.range AS n, d.range * {ev} + r.range AS i
              FROM range({days}) d, range({ev}) r
            ), t AS (
              SELECT i, DATE '{start}' + day::INTEGER
                       + to_seconds((h(i, 'sec') % 86400)::BIGINT) AS event_ts
              FROM base
            )
            SELECT
              t.i AS event_id,
              CASE WHEN frac(t.i, 'v6') < 0.04 THEN ipv6_of(t.i, 'ip') ELSE ipv4_of(t.i, 'ip') END AS client_ip,
              t.event_ts,
              t.event_ts + CASE WHEN frac(t.i, 'late') < 0.02
                                THEN to_days((1 + h(t.i, 'lated') % 3)::INTEGER)
                                ELSE to_seconds((30 + h(t.i, 'lag') % 1800)::BIGINT) END AS loaded_at,
              CASE WHEN frac(t.i, 'pad') < 0.01 THEN ' ' || pick(['TC-1234-1','TC-1234-2'], t.i, 'site') || ' '
                   ELSE pick(['TC-1234-1','TC-1234-2','TC-1234-1'], t.i, 'site') END AS site_id,
              pick(['web','web','app','Web','APP ','app'], t.i, 'plat') AS platform,
              pick(['purchase','signup','add_to_cart','Purchase','purchase'], t.i, 'type') AS event_type,
              CASE WHEN frac(t.i, 'cd') < 0.5 THEN NULL
                   ELSE pick(['customer_new,channel_paid-search','customer_returning,channel_email',
                              'customer_new,channel_social'], t.i, 'cdv') END AS custom_data,
              pick({USER_AGENTS}, t.i, 'ua') AS user_agent,
              'ORD-' || lpad((t.i)::VARCHAR, 10, '0') AS order_id,
              ((1 + h(t.i, 'amt') % 50000) / 100.0)::DECIMAL(12,2) AS amount
            FROM t
        """),
        ("lotame_users", f"""
            SELECT
              CASE WHEN k % 3 = 0 THEN uuid_of(k, 'dev')
                   ELSE 'u' || lpad(k::VARCHAR, 9, '0') END AS userid,
              CASE WHEN k % 3 = 0 THEN pick(['IDFA','gaid','GAID','idfa'], k, 'dt')
                   WHEN frac(k, 'bad') < 0.01 THEN 'FOOID'
                   ELSE pick(['PANO','pid','PID','Pano'], k, 'it') END AS idtype,
              CASE WHEN frac(k, 'cons') < 0.05 THEN false
                   WHEN frac(k, 'cons') < 0.20 THEN NULL ELSE true END AS consent,
              CASE WHEN frac(k, 'cons') BETWEEN 0.10 AND 0.20
                   THEN 'CP' || upper(substr(md5(k::VARCHAR), 1, 18)) || 'AAAAAAAAA.YAAAAAAAAAA' END AS tcfconsent,
              pick(['US','GB','nl','DE','us','FR','CA'], k, 'cty') AS country,
              CASE WHEN frac(k, 'v6') < 0.1 THEN ipv6_of(k, 'lip') ELSE ipv4_of(k, 'lip') END AS last_ip,
              DATE '{start}' + (h(k, 'ipd') % {days})::INTEGER
                + to_seconds((h(k, 'ips') % 86400)::BIGINT) AS last_ip_seen_at
            FROM range({users}) r(k)
        """),
        ("lotame_segment_memberships", f"""
            WITH slots AS (
              SELECT k, j, k * 8 + j AS m FROM range({users}) a(k), range(6) b(j)
              WHERE j < 1 + h(k, 'nseg') % 6
            ), u AS (
              SELECT CASE WHEN k % 3 = 0 THEN uuid_of(k, 'dev') ELSE 'u' || lpad(k::VARCHAR, 9, '0') END AS userid,
                     m, j, k
              FROM slots
            ), v AS (
              SELECT userid, m,
                'seg_' || pick(['auto_intender','sports_fan','travel_lux','parents','gamers','foodies',
                                'pet_owners','home_improvement','streaming_heavy','finance_savvy'], m, 'seg') AS segment,
                -- about a third of memberships predate the window; the rest start inside it
                DATE '{start}' + ((h(m, 'from') % ({days} + {max(days // 2, 1)}))::INTEGER - {max(days // 2, 1)}) AS valid_from
              FROM u
            )
            SELECT userid, segment, min(valid_from) AS valid_from,
              CASE WHEN frac(min(m), 'end') < 0.25 THEN min(valid_from) + (1 + h(min(m), 'len') % 20)::INTEGER END AS valid_to,
              min(valid_from) + to_seconds((h(min(m), 'rec') % 86400)::BIGINT) AS last_seen_at
            FROM v GROUP BY userid, segment
        """),
        ("optimove_customers", f"""
            SELECT
              'C' || lpad(k::VARCHAR, 8, '0') AS customer_id,
              lower(pick({FIRST_NAMES}, k, 'fn')) || '.' || k::VARCHAR || '@' ||
                pick(['example.com','mail.example.org','example.net'], k, 'dom') AS email,
              pick({FIRST_NAMES}, k, 'fn') AS first_name,
              pick({LAST_NAMES}, k, 'ln') AS last_name,
              pick(['GB','IE','NL','DE','FR'], k, 'c') AS country,
              DATE '{start}' - (h(k, 'reg') % 900)::INTEGER AS registration_date,
              CASE WHEN frac(k, 'bd') < 0.03 THEN DATE '1900-01-01'
                   ELSE DATE '1950-01-01' + (h(k, 'bdd') % 20000)::INTEGER END AS birth_date,
              frac(k, 'opt') < 0.7 AS opt_in_email,
              DATE '{start}' + (h(k, 'lu') % {days})::INTEGER
                + to_seconds((h(k, 'lus') % 86400)::BIGINT) AS last_updated
            FROM range({cust}) r(k)
        """),
        ("optimove_transactions", f"""
            WITH base AS (
              SELECT d.range * {tx} + r.range AS i,
                     DATE '{start}' + d.range::INTEGER + to_seconds((h(d.range * {tx} + r.range, 'ts') % 86400)::BIGINT) AS ts
              FROM range({days}) d, range({tx}) r
            )
            SELECT
              'T' || lpad(i::VARCHAR, 10, '0') AS transaction_id,
              'C' || lpad((h(i, 'cust') % {cust})::VARCHAR, 8, '0') AS customer_id,
              ts AS transaction_ts,
              ((100 + h(i, 'amt') % 90000) / 100.0)::DECIMAL(12,2) AS amount,
              pick(['GBP','EUR','EUR','USD'], i, 'cur') AS currency,
              'P' || lpad((h(i, 'prod') % 500)::VARCHAR, 5, '0') AS product_id,
              CASE WHEN frac(i, 'ref') < 0.03 THEN 'refunded' ELSE 'completed' END AS status,
              CASE WHEN frac(i, 'ref') < 0.03 THEN ts + to_days((1 + h(i, 'refd') % 5)::INTEGER)
                   ELSE ts + to_seconds((h(i, 'lag') % 600)::BIGINT) END AS last_updated
            FROM base
        """),
        ("crm_contacts", f"""
            WITH c AS (
              SELECT k,
                -- 40% of contacts exist before the window (the initial onboarding file)
                DATE '{start}' + ((h(k, 'cr') % ({days} + {days} * 2 // 3))::INTEGER - {days} * 2 // 3)
                  + to_seconds((h(k, 'crs') % 86400)::BIGINT) AS created_at,
                pick(['NL','NL','SE','DE','BE'], k, 'cty') AS country
              FROM range({crm}) r(k)
            )
            SELECT
              'CRM' || lpad(k::VARCHAR, 8, '0') AS contact_id,
              CASE WHEN frac(k, 'noem') < 0.1 THEN NULL
                   ELSE pick(['', ' ', '  '], k, 'sp1') ||
                        pick(['John.Sam','anna.deVries','Bjorn.L','marie','Jan.Jansen'], k, 'em') || k::VARCHAR || '@' ||
                        pick(['Mail.com','gmail.com','Example.NL','outlook.com'], k, 'dom') || pick(['', ' '], k, 'sp2')
              END AS email_raw,
              CASE WHEN frac(k, 'noph') < 0.25 THEN NULL
                   WHEN country = 'NL' THEN pick(['+31 6 ', '06-', '0031 6', '(06) '], k, 'php')
                        || lpad((h(k, 'ph') % 100000000)::VARCHAR, 8, '0')
                   WHEN country = 'SE' THEN pick(['+46 70 ', '070-', '0046 70 '], k, 'php')
                        || lpad((h(k, 'ph') % 10000000)::VARCHAR, 7, '0')
                   WHEN country = 'DE' THEN pick(['+49 151 ', '0151 ', '0049-151-'], k, 'php')
                        || lpad((h(k, 'ph') % 100000000)::VARCHAR, 8, '0')
                   ELSE pick(['+32 470 ', '0470 '], k, 'php') || lpad((h(k, 'ph') % 1000000)::VARCHAR, 6, '0')
              END AS phone_raw,
              country,
              CASE WHEN frac(k, 'noaddr') < 0.3 THEN NULL
                   WHEN country = 'NL' THEN (1000 + h(k, 'pc') % 8999)::VARCHAR || ' ' ||
                        chr(65 + (h(k, 'pc1') % 26)::INTEGER) || chr(65 + (h(k, 'pc2') % 26)::INTEGER)
                   ELSE lpad((h(k, 'pc') % 99999)::VARCHAR, 5, '0') END AS postal_code,
              CASE WHEN frac(k, 'noaddr') < 0.3 THEN NULL ELSE (1 + h(k, 'hn') % 300)::VARCHAR END AS house_number,
              CASE WHEN frac(k, 'noaddr') >= 0.3 AND frac(k, 'ext') < 0.15 THEN pick(['A','B','bis','2'], k, 'ex') END AS house_number_ext,
              CASE WHEN frac(k, 'aaid') < 0.3 THEN
                   CASE WHEN frac(k, 'aaidc') < 0.2 THEN upper(uuid_of(k, 'aaid')) ELSE uuid_of(k, 'aaid') END END AS aaid,
              CASE WHEN frac(k, 'idfa') < 0.2 THEN upper(uuid_of(k, 'idfa')) END AS idfa,
              created_at,
              created_at + to_seconds((h(k, 'oi') % 3600)::BIGINT) AS opted_in_at,
              CASE WHEN frac(k, 'oo') < 0.08 THEN created_at + to_days((1 + h(k, 'ood') % {days})::INTEGER) END AS opted_out_at
            FROM c
        """),
        ("idomoo_recipients", f"""
            SELECT
              'R' || lpad((d.range * {rcp} + r.range)::VARCHAR, 9, '0') AS recipient_id,
              DATE '{start}' + d.range::INTEGER AS send_date,
              pick({FIRST_NAMES}, d.range * {rcp} + r.range, 'fn') AS first_name,
              pick({LAST_NAMES}, d.range * {rcp} + r.range, 'ln') AS last_name,
              translate(lower(pick({FIRST_NAMES}, d.range * {rcp} + r.range, 'fn')), 'éëøłæöüåçíñžšýřěčó', 'eeolaouacinzsyreco')
                || '.' || (d.range * {rcp} + r.range)::VARCHAR || '@example.com' AS email,
              pick(['en','nl','de','fr','pl','sv'], d.range * {rcp} + r.range, 'lang') AS language,
              pick(['WINTER10','FREESHIP','VIP20','WELCOME5'], d.range * {rcp} + r.range, 'off') AS offer_code,
              pick(['Amsterdam','Kraków','Malmö','São Paulo','Zürich','Reykjavík','Dublin'], d.range * {rcp} + r.range, 'city') AS city,
              (h(d.range * {rcp} + r.range, 'pts') % 100000)::INTEGER AS points_balance
            FROM range({days}) d, range({rcp}) r
        """),
    ]


def seed(path: Path, plan: SeedPlan, *, threads: int | None = None, memory_limit: str = "2GB") -> dict[str, int]:
    """Build the warehouse at `path` (replaced atomically). Returns row counts per table."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".building")
    partial.unlink(missing_ok=True)
    Path(str(partial) + ".wal").unlink(missing_ok=True)
    counts: dict[str, int] = {}
    con = duckdb.connect(str(partial))
    try:
        con.execute(f"SET memory_limit = '{memory_limit}'")
        con.execute("SET preserve_insertion_order = false")
        if threads:
            con.execute(f"SET threads = {int(threads)}")
        con.execute(f"SET VARIABLE seed = {int(plan.seed)}")
        con.execute(MACROS)
        for spec, (name, sql) in zip(TABLES, _tables_sql(plan)):
            assert spec.name == name, (spec.name, name)
            if plan.tables is not None and name not in plan.tables:
                continue
            started = time.monotonic()
            cols = ", ".join(f"{c.name} {c.type}" for c in spec.columns)
            con.execute(f"CREATE TABLE {name} ({cols})")
            con.execute(f"INSERT INTO {name} BY NAME {sql}")
            for col in spec.columns:
                con.execute(f"COMMENT ON COLUMN {name}.{col.name} IS '{col.description.replace(chr(39), chr(39) * 2)}'")
            con.execute(f"COMMENT ON TABLE {name} IS '{spec.description.replace(chr(39), chr(39) * 2)}'")
            counts[name] = con.execute(f"SELECT count(*) FROM {name}").fetchone()[0]
            log.info("seeded %s: %s rows in %.1fs", name, f"{counts[name]:,}", time.monotonic() - started)
        con.execute(
            "CREATE TABLE _seed_info AS SELECT ?::DATE AS start_date, ?::DATE AS end_date, ?::INTEGER AS days, "
            "?::DOUBLE AS scale, ?::INTEGER AS seed, now() AS built_at",
            [plan.start_date, plan.end_date, plan.days, plan.scale, plan.seed],
        )
        con.execute("CHECKPOINT")
    finally:
        con.close()
    os.replace(partial, path)
    return counts


def table_checksums(path: Path) -> dict[str, str]:
    """An order-independent checksum of each table's contents (for the determinism test)."""
    con = duckdb.connect(str(path), read_only=True)
    try:
        out = {}
        for spec in TABLES:
            cols = ", ".join(spec.column_names)
            out[spec.name] = con.execute(
                f"SELECT count(*)::VARCHAR || ':' || coalesce(bit_xor(hash(({cols})))::VARCHAR, '0') FROM {spec.name}"
            ).fetchone()[0]
        return out
    finally:
        con.close()
